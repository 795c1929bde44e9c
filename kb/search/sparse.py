"""BM25 over precomputed term-major arrays (the bm25s layout), scored with numpy only.

Every posting (CSR: ``indptr`` per term, int32 ``rows``, float32 ``weights``) carries its final weight
``idf * tf*(k1+1) / (tf + k1*(1-b+b*dl/avgdl))``, so a query is a sum of posting slices. Scores equal
rank-bm25's ``BM25Okapi.get_scores`` (same idf rule, epsilon floor included). The few terms in at least a
quarter of the rows also get a dense weight row: adding 1M floats is ~20x faster than scattering ~1M
postings, and with Zipf-distributed text most queries hold such a term.
"""

from __future__ import annotations

import hashlib
import json
import queue
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from itertools import chain, count, islice
from pathlib import Path
from typing import Final, Literal, NamedTuple

import numpy as np
import numpy.typing as npt

from kb.errors import IndexNotReady
from kb.search.types import BoolArray, FloatArray, IntArray

Int32Array = npt.NDArray[np.int32]
_FORMAT: Final = 1
_META: Final = "sparse.json"
_CHUNK_TOKENS: Final = 1 << 24  # tokens sorted at once while building: bounds the build's working memory
_DENSE_MAX_TERMS: Final = 64  # at most 64 x 4 bytes x n_docs of dense rows (256 MB at 1M rows)
_SAMPLE: Final = 2048  # rows whose scores give the top-k threshold (see SparseIndex.top_k)


@dataclass(frozen=True, slots=True)
class BM25Params:
    """BM25Okapi hyperparameters; the defaults are rank-bm25's."""

    k1: float = 1.5
    b: float = 0.75
    epsilon: float = 0.25

    def __post_init__(self) -> None:
        if not (self.k1 >= 0 and 0 <= self.b <= 1 and self.epsilon >= 0):
            raise ValueError(f"invalid BM25 parameters k1={self.k1}, b={self.b}, epsilon={self.epsilon}")

    def as_dict(self) -> dict[str, float]:
        """The parameters as a JSON-ready dict (written into every index manifest)."""
        return {"k1": self.k1, "b": self.b, "epsilon": self.epsilon}


@dataclass(frozen=True, slots=True)
class CorpusStats:
    """What BM25 weights are computed from: document count, total token count, document frequencies."""

    n_docs: int
    total_len: int
    df: Mapping[str, int]

    @property
    def avgdl(self) -> float:
        """Average document length (0.0 for an empty corpus)."""
        return self.total_len / self.n_docs if self.n_docs else 0.0

    @classmethod
    def from_docs(cls, docs: Sequence[Sequence[str]]) -> CorpusStats:
        """Count the statistics of tokenised documents (``SparseIndex.stats()`` is faster for an index)."""
        df: Counter[str] = Counter(chain.from_iterable(set(doc) for doc in docs))
        return cls(len(docs), sum(map(len, docs)), dict(df))

    def merge(self, other: CorpusStats) -> CorpusStats:
        """The statistics of the union of two disjoint corpora."""
        df = dict(self.df)
        for term, n in other.df.items():
            df[term] = df.get(term, 0) + n
        return CorpusStats(self.n_docs + other.n_docs, self.total_len + other.total_len, df)

    def idf(self, epsilon: float = 0.25) -> dict[str, float]:
        """rank-bm25 BM25Okapi's idf ``log(N-df+0.5) - log(df+0.5)``; negatives become epsilon x mean idf."""
        values = _idf(np.fromiter(self.df.values(), np.int64, len(self.df)), self.n_docs, epsilon)
        return dict(zip(self.df, values.tolist(), strict=True))


def _idf(df: npt.NDArray[np.int64], n_docs: int, epsilon: float) -> npt.NDArray[np.float64]:
    """Vectorised rank_bm25 ``BM25Okapi._calc_idf``: only idf < 0 is floored (idf == 0 stays 0)."""
    idf: npt.NDArray[np.float64] = np.log(n_docs - df + 0.5) - np.log(df + 0.5)
    if idf.size:
        idf[idf < 0] = epsilon * float(idf.mean())
    return idf


class _Arrays(NamedTuple):
    """What ``save`` writes, one ``<field>.npy`` each."""

    indptr: npt.NDArray[np.int64]  # postings of term t: [indptr[t], indptr[t + 1])
    rows: Int32Array  # ascending within a term
    weights: FloatArray
    doc_len: Int32Array
    df: npt.NDArray[np.int64]  # document frequency in the statistics the weights use, per vocabulary term
    dense_terms: npt.NDArray[np.int64]
    dense: FloatArray  # (len(dense_terms), n_docs): the weights of dense_terms[j] as one row


_DTYPES: Final = (np.int64, np.int32, np.float32, np.int32, np.int64, np.int64, np.float32)


class _Term(NamedTuple):
    lo: int
    hi: int
    times: int  # how often the query repeats the term: rank-bm25 adds its score once per occurrence
    dense: int  # row in the dense block, or -1


class SparseIndex:
    """BM25 over term-major CSR postings. Immutable after build/load, so safe to share between threads."""

    def __init__(self, vocab: list[str], arrays: _Arrays, params: BM25Params, stats: tuple[int, int]) -> None:
        self.params = params
        self.n_docs = len(arrays.doc_len)
        self._vocab_list = vocab
        self._vocab = {term: i for i, term in enumerate(vocab)}
        self._a = arrays
        self._dense_of = {int(t): j for j, t in enumerate(arrays.dense_terms)}
        self._stats = stats  # (n_docs, total_len) of the statistics the weights use
        # Score buffers reused by top_k: one per concurrent call, handed out through a thread-safe queue.
        self._scratch: queue.SimpleQueue[tuple[FloatArray, BoolArray]] = queue.SimpleQueue()
        self._term_max: FloatArray | None = None  # computed on first use

    @classmethod
    def build(
        cls,
        docs: Sequence[Sequence[str]],
        params: BM25Params = BM25Params(),  # noqa: B008 (frozen)
        *,
        stats: CorpusStats | None = None,
        progress: bool = False,
        dense_min_df: int | None = None,
    ) -> SparseIndex:
        """Index tokenised documents; row ``i`` is ``docs[i]``.

        ``stats`` (e.g. a main segment's stats merged with this delta's) replaces this corpus's own statistics
        for idf and avgdl, so a small segment scores comparably with a big one; it must cover every term of
        ``docs``. ``progress`` shows a bar. Terms in at least ``dense_min_df`` rows (default: a quarter of
        them) also get a dense weight row (a speed/memory trade-off, never a change of scores).
        """
        n = len(docs)
        if n >= 2**31:
            raise ValueError(f"too many documents for int32 rows: {n}")
        doc_len = np.fromiter(map(len, docs), np.int64, n)
        ids: defaultdict[str, int] = defaultdict(count().__next__)
        # Cut the corpus into chunks of ~16M tokens; each chunk's (term << 32 | row) keys are sorted once,
        # which groups its postings by term with rows ascending; runs of equal keys give the term frequency.
        ends = np.searchsorted(np.cumsum(doc_len), np.arange(_CHUNK_TOKENS, doc_len.sum(), _CHUNK_TOKENS))
        bounds = [0, *sorted(set((ends + 1).tolist()) - {0, n}), n] if n else [0]
        chunks: Iterable[tuple[int, int]] = zip(bounds[:-1], bounds[1:], strict=True)
        if progress:
            from tqdm import tqdm  # only when asked: the serving path never imports it

            chunks = tqdm(list(chunks), desc="sparse index", unit="chunk")
        docs_iter = iter(docs)
        parts = [_chunk_postings(islice(docs_iter, hi - lo), lo, doc_len[lo:hi], ids) for lo, hi in chunks]
        vocab = list(ids)
        if stats is None:
            stats_n, stats_total = n, int(doc_len.sum())
        else:
            missing = [t for t in vocab if t not in stats.df]
            if missing or stats.n_docs < n:
                raise ValueError(f"stats ({stats.n_docs} docs) do not cover these {n} docs: {missing[:5]}")
            vocab += [t for t in stats.df if t not in ids]  # scored through idf/avgdl only: no postings here
            stats_n, stats_total = stats.n_docs, stats.total_len
        indptr, rows, tf = _merge(parts, len(vocab))
        term_df = np.diff(indptr)
        df = term_df if stats is None else np.fromiter(map(stats.df.__getitem__, vocab), np.int64, len(vocab))
        avgdl = stats_total / stats_n if stats_total else 1.0  # no tokens: no postings to weigh
        norm = (params.k1 * (1 - params.b + params.b * doc_len / avgdl)).astype(np.float32)
        weights = tf  # computed in place: tf*(k1+1) / (tf + norm[row]) * idf[term]
        np.divide(tf * np.float32(params.k1 + 1), tf + norm[rows], out=weights)
        weights *= np.repeat(_idf(df, stats_n, params.epsilon).astype(np.float32), term_df)
        min_df = max(n // 4, 1) if dense_min_df is None else max(dense_min_df, 1)
        dense_terms = np.sort(np.argsort(-term_df, kind="stable")[:_DENSE_MAX_TERMS])
        dense_terms = dense_terms[term_df[dense_terms] >= min_df].astype(np.int64)
        dense = np.zeros((dense_terms.size, n), np.float32)
        for j, t in enumerate(dense_terms.tolist()):
            dense[j, rows[indptr[t] : indptr[t + 1]]] = weights[indptr[t] : indptr[t + 1]]
        arrays = _Arrays(indptr, rows, weights, doc_len.astype(np.int32), df, dense_terms, dense)
        return cls(vocab, arrays, params, (stats_n, stats_total))

    def stats(self) -> CorpusStats:
        """The statistics the weights were computed from (the ``stats`` given to ``build``, if any)."""
        df = {t: n for t, n in zip(self._vocab_list, self._a.df.tolist(), strict=True) if n}
        return CorpusStats(*self._stats, df)

    def _terms(self, tokens: Sequence[str]) -> list[_Term]:
        """Query terms that have postings, in first-occurrence order (the order scores are summed in)."""
        terms = []
        for token, times in Counter(tokens).items():
            tid = self._vocab.get(token)
            if tid is not None and self._a.indptr[tid + 1] > self._a.indptr[tid]:
                lo, hi = int(self._a.indptr[tid]), int(self._a.indptr[tid + 1])
                terms.append(_Term(lo, hi, times, self._dense_of.get(tid, -1)))
        return terms

    def _accumulate(self, terms: Sequence[_Term], scores: FloatArray) -> FloatArray:
        """Add the terms' weights to the zeroed ``scores`` in query order (so ``scores``, ``top_k`` agree)."""
        for term in terms:
            if term.dense >= 0:  # adding 0.0 to rows without the term leaves their sums unchanged
                for _ in range(term.times):  # repeated adds, not `dense * times`: no 4 MB temporary per call
                    scores += self._a.dense[term.dense]
            else:
                weights = self._a.weights[term.lo : term.hi]
                # ufunc.at has had a fast path since numpy 1.25: 3x faster than `scores[rows] += w` here
                # (which first converts int32 rows to intp). A term lists each row once, so both are exact.
                weights = weights * np.float32(term.times) if term.times > 1 else weights
                np.add.at(scores, self._a.rows[term.lo : term.hi], weights)
        return scores

    def doc_freq(self, token: str) -> int:
        """How many rows of the statistics the weights use contain ``token`` (0 when unknown)."""
        tid = self._vocab.get(token)
        return 0 if tid is None else int(self._a.df[tid])

    @property
    def stats_docs(self) -> int:
        """The document count of the statistics the weights use."""
        return int(self._stats[0])

    def term_max(self, token: str) -> float:
        """The largest weight ``token`` has in any row (0.0 when absent): a query's score upper bound is
        the sum of its terms' maxima, which lets fusion read a score as "share of the query matched"."""
        if self._term_max is None:
            a = self._a
            term_max = np.zeros(len(a.indptr) - 1, np.float32)
            nonempty = np.flatnonzero(np.diff(a.indptr) > 0)
            if nonempty.size:
                term_max[nonempty] = np.maximum.reduceat(a.weights, a.indptr[:-1][nonempty])
            self._term_max = term_max
        tid = self._vocab.get(token)
        return 0.0 if tid is None else float(self._term_max[tid])

    def scores(self, tokens: Sequence[str]) -> FloatArray:
        """BM25 score of every row (float32, length ``n_docs``); unknown tokens contribute 0."""
        return self._accumulate(self._terms(tokens), np.zeros(self.n_docs, np.float32))

    def top_k(self, tokens: Sequence[str], k: int, mask: BoolArray | None = None) -> tuple[IntArray, FloatArray]:
        """Rows (int64) and scores (float32) of the best ``k`` rows with score > 0 and ``mask[row]``.

        Sorted by score descending, then row ascending. The mask is applied before selection, so a filter
        never returns fewer than ``k`` rows while ``k`` allowed rows score > 0.
        """
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        if mask is not None:
            if np.shape(mask) != (self.n_docs,):
                raise ValueError(f"mask has shape {np.shape(mask)}, expected ({self.n_docs},)")
            mask = np.asarray(mask, dtype=np.bool_)
        terms = self._terms(tokens)
        if not terms:
            return np.empty(0, np.int64), np.empty(0, np.float32)
        try:  # a fresh 4 MB array costs ~3 ms of page faults per call at 1M rows (measured in a VM)
            scores, keep = self._scratch.get_nowait()
            scores.fill(0)
        except queue.Empty:
            scores, keep = np.zeros(self.n_docs, np.float32), np.empty(self.n_docs, np.bool_)
        try:
            self._accumulate(terms, scores)
            return _select(self._candidates(terms, k, mask, scores, keep), scores, k)
        finally:
            self._scratch.put((scores, keep))  # no view of it escapes: _select returns copies

    def _candidates(
        self, terms: Sequence[_Term], k: int, mask: BoolArray | None, scores: FloatArray, keep: BoolArray
    ) -> IntArray:
        """Allowed rows that may be in the top k: those scoring at least the k-th best score of a sample.

        Never partition the whole (mostly zero) array (PERF-NOTES): the k-th best of a few thousand distinct
        scored rows is a lower bound of the k-th best overall, and few rows reach it. The rarest terms' rows
        are sampled first: they are the likeliest to rank high.
        """
        picked: list[Int32Array] = []
        budget = max(_SAMPLE, 8 * k)
        for term in sorted(terms, key=lambda t: t.hi - t.lo):
            picked.append(self._a.rows[term.lo : term.hi : max(1, -(-(term.hi - term.lo) // budget))])
            budget -= picked[-1].size
            if budget <= 0:
                break
        sample = np.sort(np.concatenate(picked))
        sample = sample[np.concatenate(([True], sample[1:] != sample[:-1]))]
        if mask is not None:
            sample = sample[mask[sample]]
        found = scores[sample]
        found = found[found > 0]
        if found.size >= k:
            np.greater_equal(scores, np.partition(found, found.size - k)[found.size - k], out=keep)
        else:
            np.greater(scores, 0, out=keep)
        if mask is not None:
            keep &= mask
        return np.flatnonzero(keep)

    def save(self, directory: Path) -> dict[str, str]:
        """Write the index into ``directory`` (created if missing); return ``{filename: sha256 hex}``."""
        directory.mkdir(parents=True, exist_ok=True)
        for name, array in self._a._asdict().items():
            np.save(directory / f"{name}.npy", np.ascontiguousarray(array), allow_pickle=False)
        stats = {"n_docs": self._stats[0], "total_len": self._stats[1]}
        meta = {"format": _FORMAT, "params": self.params.as_dict(), "n_docs": self.n_docs, "stats": stats}
        meta["vocab"] = self._vocab_list
        (directory / _META).write_text(json.dumps(meta, ensure_ascii=False), encoding="utf-8")
        digests = {}
        for name in [f"{field}.npy" for field in _Arrays._fields] + [_META]:
            with open(directory / name, "rb") as fh:
                digests[name] = hashlib.file_digest(fh, "sha256").hexdigest()
        return digests

    @classmethod
    def load(cls, directory: Path, *, mmap: bool = True) -> SparseIndex:
        """Open an index written by ``save``; arrays are memory-mapped read-only when ``mmap``.

        Raises ``IndexNotReady`` when a file is missing, truncated or inconsistent with the others.
        """
        try:
            meta = json.loads((directory / _META).read_text(encoding="utf-8"))
            if meta.get("format") != _FORMAT:
                raise ValueError(f"unknown format {meta.get('format')!r}")
            # np.asarray drops the np.memmap subclass (same memory), whose wrapping slows every operation.
            mode: Literal["r"] | None = "r" if mmap else None
            files = [directory / f"{name}.npy" for name in _Arrays._fields]
            arrays = _Arrays(*(np.asarray(np.load(f, mmap_mode=mode, allow_pickle=False)) for f in files))
            _check(arrays, len(meta["vocab"]), int(meta["n_docs"]))
            stats = (int(meta["stats"]["n_docs"]), int(meta["stats"]["total_len"]))
            index = cls(meta["vocab"], arrays, BM25Params(**meta["params"]), stats)
        except (OSError, ValueError, EOFError, KeyError, TypeError) as exc:
            raise IndexNotReady(directory, f"{type(exc).__name__}: {exc}") from exc
        return index


def _chunk_postings(
    docs: Iterable[Sequence[str]], row0: int, doc_len: npt.NDArray[np.int64], ids: defaultdict[str, int]
) -> tuple[Int32Array, Int32Array, Int32Array]:
    """Term ids, rows and term frequencies of one chunk's postings, sorted by (term, row)."""
    keys = np.fromiter(map(ids.__getitem__, chain.from_iterable(docs)), np.int64, int(doc_len.sum()))
    keys <<= 32
    keys |= np.repeat(np.arange(row0, row0 + doc_len.size, dtype=np.int64), doc_len)
    keys.sort()
    starts = np.flatnonzero(np.diff(keys, prepend=-1))  # keys >= 0, so the first one always starts a run
    tf = np.diff(starts, append=keys.size).astype(np.int32)
    keys = keys[starts]
    return (keys >> 32).astype(np.int32), (keys & 0xFFFFFFFF).astype(np.int32), tf


def _merge(
    parts: list[tuple[Int32Array, Int32Array, Int32Array]], n_terms: int
) -> tuple[npt.NDArray[np.int64], Int32Array, FloatArray]:
    """CSR ``indptr``, rows and term frequencies from chunk postings; chunk i's rows precede chunk i+1's."""
    counts = [np.bincount(terms, minlength=n_terms) for terms, _, _ in parts]
    indptr = np.concatenate(([0], np.cumsum(sum(counts, np.zeros(n_terms, np.int64))))).astype(np.int64)
    rows, tf = np.empty(indptr[-1], np.int32), np.empty(indptr[-1], np.float32)
    cursor = indptr[:-1].copy()  # where each term's next postings go
    for local in counts:
        terms, chunk_rows, chunk_tf = parts.pop(0)  # pop: free each chunk once placed
        first = np.concatenate(([0], np.cumsum(local)[:-1]))
        pos = cursor[terms] + (np.arange(terms.size) - first[terms])
        rows[pos], tf[pos] = chunk_rows, chunk_tf
        cursor += local
    return indptr, rows, tf


def _check(a: _Arrays, n_terms: int, n_docs: int) -> None:
    """Raise ValueError unless the arrays have the dtypes and lengths of one index."""
    for (name, array), dtype in zip(a._asdict().items(), _DTYPES, strict=True):
        if array.dtype != dtype or array.ndim != (2 if name == "dense" else 1):
            raise ValueError(f"{name}.npy holds {array.dtype} {array.shape}")
    if not len(a.indptr) == n_terms + 1 == len(a.df) + 1 or a.indptr[0] != 0:
        raise ValueError(f"{n_terms} vocabulary terms, but indptr has {len(a.indptr)} and df {len(a.df)}")
    if not a.indptr[-1] == len(a.rows) == len(a.weights):
        raise ValueError(f"indptr ends at {a.indptr[-1]}; rows has {len(a.rows)}, weights {len(a.weights)}")
    if len(a.doc_len) != n_docs or a.dense.shape != (len(a.dense_terms), n_docs):
        raise ValueError(f"{n_docs} documents, but doc_len has {len(a.doc_len)}, dense is {a.dense.shape}")
    if np.any((a.dense_terms < 0) | (a.dense_terms >= n_terms)):
        raise ValueError("dense_terms holds ids outside the vocabulary")


def _select(rows: IntArray, scores: FloatArray, k: int) -> tuple[IntArray, FloatArray]:
    """The best ``k`` of ``rows`` (score descending, row ascending); ``scores`` is indexed by row."""
    values = scores[rows]
    if rows.size > k:
        kth = np.partition(values, rows.size - k)[rows.size - k]
        keep = values >= kth  # every tie of the k-th score stays, so the row tie-break below is exact
        rows, values = rows[keep], values[keep]
    order = np.lexsort((rows, -values))[:k]
    return rows[order].astype(np.int64), values[order]


__all__ = ["BM25Params", "CorpusStats", "SparseIndex"]
