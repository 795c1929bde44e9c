"""The search engine: analysis, sparse + dense retrieval, filters, fusion, incremental updates.

Rows are append-only: a document's row never changes; an update appends a new row and marks the
old one dead, a delete marks it dead. Dead rows and filters are one boolean mask applied inside each
retrieval (before any top-k), so a deleted or replaced document is never returned after the call
returns. Sparse postings live in a big *main* segment plus a small *delta* segment (rebuilt on each
add with the merged corpus statistics); ``compact()`` folds everything back into one segment.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from tqdm import tqdm

from kb.config import Settings
from kb.errors import DuplicateDocument, QueryError
from kb.search.dense import DenseIndex
from kb.search.fusion import FusionProfile, Weights, fuse, load_profile
from kb.search.passages import split_passages
from kb.search.sparse import BM25Params, CorpusStats, SparseIndex
from kb.search.types import MODES, BoolArray, Document, Embedder, Filter, FloatArray, Hit, IntArray, Mode
from kb.text import Analyzer

CANDIDATES = 100
"""Each signal contributes at least this many candidates to fusion (more when k is larger)."""


@dataclass(slots=True)
class Segments:
    """Sparse segments for one field: ``main`` covers rows [0, main_rows), ``delta`` the rest."""

    main: SparseIndex
    delta: SparseIndex | None = None
    delta_tokens: list[list[str]] = field(default_factory=list)

    def scores(self, tokens: Sequence[str]) -> FloatArray:
        main = self.main.scores(tokens)
        if self.delta is None:
            return main
        return np.concatenate([main, self.delta.scores(tokens)])

    def max_score(self, tokens: Sequence[str]) -> float:
        """Upper bound of any row's score for ``tokens`` (repeats count, as in scoring)."""
        total = 0.0
        for t in tokens:
            best = self.main.term_max(t)
            if self.delta is not None:
                best = max(best, self.delta.term_max(t))
            total += best
        return total

    def idf(self, tokens: Iterable[str]) -> dict[str, float]:
        """Per distinct token, ``ln(1 + (N - df + 0.5) / (df + 0.5))`` over every row (always > 0; a token
        no row has gets the largest value): how much finding the token in a text says."""
        # The delta's statistics are main + delta merged (see ``append``): its df is the whole df of every term
        # in its vocabulary; a term only main has keeps main's df.
        n = (self.delta or self.main).stats_docs
        out: dict[str, float] = {}
        for t in tokens:
            if t not in out:
                df = self.delta.doc_freq(t) if self.delta is not None else 0
                df = df or self.main.doc_freq(t)
                out[t] = math.log(1.0 + (n - df + 0.5) / (df + 0.5))
        return out

    def append(self, tokens: list[list[str]], params: BM25Params) -> None:
        self.delta_tokens.extend(tokens)
        merged = self.main.stats().merge(CorpusStats.from_docs(self.delta_tokens))
        self.delta = SparseIndex.build(self.delta_tokens, params, stats=merged)


class SearchEngine:
    """Build with ``SearchEngine.build``; persist and reload with ``kb.search.store``."""

    def __init__(
        self,
        settings: Settings,
        analyzer: Analyzer,
        embedder: Embedder | None,
        docs: list[Document],
        alive: BoolArray,
        native: Segments,
        gloss: Segments,
        dense: DenseIndex | None,
        params: BM25Params,
        profile: FusionProfile,
    ) -> None:
        self.settings = settings
        self.analyzer = analyzer
        self.embedder = embedder
        self.docs = docs
        self.alive = alive
        self.native = native
        self.gloss = gloss
        self.dense = dense
        self.bm25_params = params
        self.profile = profile
        self.row_of = {d.doc_id: row for row, d in enumerate(docs) if alive[row]}
        self._attr_cache: dict[str, tuple[dict[str, int], IntArray]] = {}

    # ---- building ---------------------------------------------------------------------------------
    @classmethod
    def build(
        cls,
        docs: Iterable[Document],
        settings: Settings,
        *,
        embedder: Embedder | None = None,
        analyzer: Analyzer | None = None,
        progress: bool = False,
        params: BM25Params | None = None,
    ) -> SearchEngine:
        """Index ``docs`` from scratch (duplicate ids raise ``DuplicateDocument``)."""
        docs = list(docs)
        seen: set[str] = set()
        for d in docs:
            if d.doc_id in seen:
                raise DuplicateDocument(d.doc_id)
            seen.add(d.doc_id)
        analyzer = analyzer or Analyzer(settings.data_dir)
        params = params or BM25Params()
        native, gloss = _analyze_all(analyzer, docs, progress)
        dense = None
        if embedder is not None:
            vectors, rows = _embed_docs(analyzer, embedder, docs, settings, progress)
            dense = DenseIndex.build(vectors, rows, hnsw_threshold=settings.hnsw_threshold)
        profile = _profile(settings, embedder)
        return cls(
            settings,
            analyzer,
            embedder,
            docs,
            np.ones(len(docs), dtype=np.bool_),
            Segments(SparseIndex.build(native, params)),
            Segments(SparseIndex.build(gloss, params)),
            dense,
            params,
            profile,
        )

    # ---- updates ----------------------------------------------------------------------------------
    def upsert(
        self, docs: Sequence[Document], *, progress: bool = False, guard: AbstractContextManager[Any] | None = None
    ) -> None:
        """Add new documents or replace existing ones (same ``doc_id``) without a rebuild.

        ``guard`` (e.g. a writer lock) is held only while the prepared rows are switched in, not while the
        documents are analysed and embedded."""
        ids = [d.doc_id for d in docs]
        if len(set(ids)) != len(ids):
            raise DuplicateDocument(next(i for i in ids if ids.count(i) > 1))
        if not docs:
            return
        native, gloss = _analyze_all(self.analyzer, docs, progress)
        vectors = rows = None
        if self.dense is not None and self.embedder is not None:
            vectors, rel = _embed_docs(self.analyzer, self.embedder, docs, self.settings, progress)
            rows = rel + len(self.docs)
        # All work that can fail is done; now switch the state over.
        with guard if guard is not None else nullcontext():
            self._switch_in(docs, native, gloss, vectors, rows)

    def _switch_in(
        self,
        docs: Sequence[Document],
        native: list[list[str]],
        gloss: list[list[str]],
        vectors: FloatArray | None,
        rows: IntArray | None,
    ) -> None:
        self.native.append(native, self.bm25_params)
        self.gloss.append(gloss, self.bm25_params)
        if self.dense is not None and vectors is not None and rows is not None:
            self.dense.add(vectors, rows)
        for d in docs:
            old = self.row_of.get(d.doc_id)
            if old is not None:
                self.alive[old] = False
        start = len(self.docs)
        self.docs.extend(docs)
        self.alive = np.concatenate([self.alive, np.ones(len(docs), dtype=np.bool_)])
        for i, d in enumerate(docs):
            self.row_of[d.doc_id] = start + i
        self._attr_cache.clear()

    def delete(self, doc_ids: Iterable[str]) -> int:
        """Remove documents; returns how many existed. Unknown ids are ignored."""
        removed = 0
        for doc_id in doc_ids:
            row = self.row_of.pop(doc_id, None)
            if row is not None:
                self.alive[row] = False
                removed += 1
        return removed

    def needs_compaction(self) -> bool:
        """True when the delta segment or the dead rows have grown enough to fold them back."""
        rows = len(self.docs)
        delta = rows - self.native.main.n_docs
        dead = rows - len(self.row_of)
        return delta > max(2_000, rows // 5) or dead > max(1_000, rows // 3)

    def compact(self, *, progress: bool = False) -> SearchEngine:
        """A new engine over the live documents only (re-analysed; vectors reused, not re-embedded)."""
        live_rows = np.flatnonzero(self.alive)
        docs = [self.docs[r] for r in live_rows]
        native, gloss = _analyze_all(self.analyzer, docs, progress)
        dense = self.dense.subset(live_rows) if self.dense is not None else None
        return SearchEngine(
            self.settings,
            self.analyzer,
            self.embedder,
            docs,
            np.ones(len(docs), dtype=np.bool_),
            Segments(SparseIndex.build(native, self.bm25_params)),
            Segments(SparseIndex.build(gloss, self.bm25_params)),
            dense,
            self.bm25_params,
            self.profile,
        )

    # ---- reading ----------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.row_of)

    def get(self, doc_id: str) -> Document | None:
        row = self.row_of.get(doc_id)
        return None if row is None else self.docs[row]

    def params(self) -> dict[str, Any]:
        """Retrieval hyperparameters, for manifests and evaluation reports."""
        return {
            "bm25": self.bm25_params.as_dict(),
            "analyzer": self.analyzer.describe(),
            "embed_model": self.embedder.name if self.embedder else None,
            "gloss_for_embedding": self.glossing,
            "fusion": {"candidates": CANDIDATES, **self.profile.as_dict()},
            "dense": {"exact": self.dense.exact, "hnsw_threshold": self.settings.hnsw_threshold}
            if self.dense
            else None,
        }

    @property
    def glossing(self) -> bool:
        """Whether Chinese reaches the embedding model as English glosses."""
        return _glossing(self.settings, self.embedder)

    def mask(self, filters: Filter | None) -> BoolArray:
        """Rows that are alive and pass ``filters`` (``lang`` filters on the document language)."""
        mask = self.alive.copy()
        if not filters:
            return mask
        for key, allowed in filters.allowed.items():
            codes_of, column = self._column(key)
            wanted = [codes_of[v] for v in allowed if v in codes_of]
            mask &= np.isin(column, np.array(wanted, dtype=np.int64))
        return mask

    def search(
        self,
        query: str,
        k: int = 10,
        mode: Mode = "hybrid",
        filters: Filter | None = None,
        *,
        embed_chars: int | None = None,
    ) -> list[Hit]:
        """Top ``k`` live documents for ``query`` that pass ``filters`` (``embed_chars``: see ``candidates``)."""
        cands = self.candidates(query, k, mode, filters, embed_chars=embed_chars)
        if mode == "bm25":
            weights = self.profile.sparse(cands.lang)
        elif mode == "vector":
            weights = Weights(0.0, 0.0, 1.0)
        else:
            weights = self.profile.weights(cands.lang)
        return cands.rank(weights, k, self.profile.norm, self.profile.overlap, self.profile.gloss_same)

    def candidates(
        self,
        query: str,
        k: int,
        mode: Mode = "hybrid",
        filters: Filter | None = None,
        *,
        embed_chars: int | None = None,
    ) -> Candidates:
        """The fusion input: every signal's exact score for the union of each signal's top candidates.

        Filters and deleted rows are applied inside each retrieval, before its top-k. ``embed_chars`` caps the
        text the embedding model reads (after glossing; default ``max_query_chars``): its cost grows with length.
        """
        if k < 1:
            raise ValueError(f"k must be at least 1, got {k}")
        if mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
        if mode != "bm25" and (self.dense is None or self.embedder is None):
            raise QueryError(f"mode {mode!r} needs an index built with an embedding model")
        analysis = self.analyzer.analyze_query(
            query, max_chars=self.settings.max_query_chars, max_terms=self.settings.max_query_terms
        )
        mask = self.mask(filters)
        n_cand = max(CANDIDATES, k)
        signals: dict[str, FloatArray] = {}
        bounds: dict[str, float] = {"vector": 1.0}
        pool: set[int] = set()
        if mode in ("bm25", "hybrid"):
            for name, seg, toks in (
                ("bm25", self.native, boost_identifiers(analysis.native)),
                ("gloss", self.gloss, boost_identifiers(analysis.gloss)),
            ):
                full = seg.scores(toks) if toks else np.zeros(len(self.docs), dtype=np.float32)
                full = np.where(mask, full, np.float32(0.0)).astype(np.float32)
                signals[name] = full
                bounds[name] = seg.max_score(toks)
                pool.update(_top_rows(full, n_cand).tolist())
        qvec = None
        if mode in ("vector", "hybrid") and self.dense is not None and self.embedder is not None:
            text = self.analyzer.embed_text(query) if self.glossing and analysis.lang != "en" else query
            limit = min(embed_chars or self.settings.max_query_chars, self.settings.max_query_chars)
            qvec = self.embedder.encode([text[:limit]])
            rows, _, _ = self.dense.search(qvec, n_cand, doc_mask=mask)[0]
            pool.update(rows.tolist())
        cand = np.array(sorted(pool), dtype=np.int64)
        per_signal: dict[str, FloatArray] = {name: full[cand] for name, full in signals.items()}
        passage_of: dict[int, int] = {}
        if qvec is not None and self.dense is not None and cand.size:
            cand_mask = np.zeros(len(self.docs), dtype=np.bool_)
            cand_mask[cand] = True
            rows, scores, passages = self.dense.search(qvec, int(cand.size), doc_mask=cand_mask)[0]
            by_row = dict(zip(rows.tolist(), scores.tolist(), strict=True))
            passage_of = dict(zip(rows.tolist(), passages.tolist(), strict=True))
            per_signal["vector"] = np.array([by_row.get(r, 0.0) for r in cand.tolist()], dtype=np.float32)
        ids = [self.docs[r].doc_id for r in cand.tolist()]
        other = {"zh": "en", "en": "zh"}.get(analysis.lang)
        cross = np.array([self.docs[r].lang == other for r in cand.tolist()], dtype=np.bool_)
        best_passages = [passage_of.get(r) for r in cand.tolist()]
        return Candidates(ids, per_signal, analysis.lang, best_passages, bounds, cross)

    def _column(self, key: str) -> tuple[dict[str, int], IntArray]:
        cached = self._attr_cache.get(key)
        if cached is None:
            codes: dict[str, int] = {}
            values = [d.lang if key == "lang" else d.attrs.get(key, "") for d in self.docs]
            column = np.array([codes.setdefault(v, len(codes)) for v in values], dtype=np.int64)
            cached = self._attr_cache[key] = (codes, column)
        return cached


@dataclass(frozen=True, slots=True)
class Candidates:
    """Per-signal scores of one query's candidates (aligned with ``doc_ids``)."""

    doc_ids: list[str]
    signals: dict[str, FloatArray]
    lang: str
    passages: list[int | None]
    bounds: dict[str, float]
    cross: BoolArray
    """Per candidate: the document is in the other language than the query (zh query, en doc or back)."""

    def rank(
        self, weights: Weights, k: int, norm: str = "minmax", overlap: float = 0.0, gloss_same: float = 1.0
    ) -> list[Hit]:
        """Fuse with ``weights`` and keep the best ``k``; a document no weighted signal matched is dropped."""
        hits = []
        scale = None if gloss_same == 1.0 else np.where(self.cross, np.float32(1.0), np.float32(gloss_same))
        fused = fuse(
            self.signals, weights, self.doc_ids, norm=norm, bounds=self.bounds, overlap=overlap, gloss_scale=scale
        )
        for i, score in fused:
            # A lexical signal found the document when it scored > 0; the vector signal always "finds"
            # its candidates (nearest neighbours), whatever the sign of the cosine.
            matched = {
                n: float(s[i]) for n, s in self.signals.items() if weights.of(n) > 0 and (s[i] > 0 or n == "vector")
            }
            if not matched:
                continue
            hits.append(Hit(self.doc_ids[i], score, matched, self.passages[i]))
            if len(hits) == k:
                break
        return hits


_IDENTIFIER = re.compile(
    r"0x[0-9a-f]{8}|kb\d{6,8}|cve-\d{4}-\d+"
    r"|(?=[a-z0-9._-]*\d)(?=[a-z0-9._-]*[a-z])[a-z0-9._-]{5,}"  # letters and digits: hscla319, 22621.1702a
)
IDENTIFIER_BOOST = 2
"""Query-side repeat count of identifiers (error codes, KB / CVE ids, alphanumeric ids such as hscla319):
in support search the exact code is the strongest evidence there is, stronger than its idf alone says."""


def is_identifier(token: str) -> bool:
    """An error code, KB / CVE id or other letters-and-digits id (``0x800ccc0e``, ``kb5005565``, ``hscla319``)."""
    return _IDENTIFIER.fullmatch(token) is not None


def boost_identifiers(tokens: list[str]) -> list[str]:
    """``tokens`` with each identifier repeated ``IDENTIFIER_BOOST`` times (BM25 counts query repeats)."""
    out: list[str] = []
    for t in tokens:
        out.extend([t] * (IDENTIFIER_BOOST if _IDENTIFIER.fullmatch(t) else 1))
    return out


def _top_rows(scores: FloatArray, n: int) -> IntArray:
    nz = np.flatnonzero(scores > 0)
    if nz.size > n:
        nz = nz[np.argpartition(-scores[nz], n - 1)[:n]]
    return nz.astype(np.int64)


def index_text(doc: Document) -> str:
    """The text the sparse fields are analysed from: the title counts twice (it states the problem)."""
    return f"{doc.title}\n{doc.title}\n{doc.text}" if doc.title else doc.text


def _analyze_all(
    analyzer: Analyzer, docs: Sequence[Document], progress: bool
) -> tuple[list[list[str]], list[list[str]]]:
    native: list[list[str]] = []
    gloss: list[list[str]] = []
    for d in tqdm(docs, desc="analyse", unit="doc", disable=not progress, leave=False):
        a = analyzer.analyze(index_text(d))
        native.append(a.native)
        gloss.append(a.gloss)
    return native, gloss


def _glossing(settings: Settings, embedder: Embedder | None) -> bool:
    if embedder is None or settings.gloss_for_embedding == "off":
        return False
    return settings.gloss_for_embedding == "on" or not embedder.cjk_capable


def _passage_chars(lang: str) -> int:
    # ~256 word pieces fit the default model: 600 English chars, or 300 Chinese chars glossed to English.
    return 600 if lang == "en" else 300


def _embed_docs(
    analyzer: Analyzer, embedder: Embedder, docs: Sequence[Document], settings: Settings, progress: bool
) -> tuple[FloatArray, IntArray]:
    glossing = _glossing(settings, embedder)
    texts: list[str] = []
    rows: list[int] = []
    for row, d in enumerate(docs):
        passages = split_passages(d.text, max_chars=_passage_chars(d.lang)) or [""]
        for p in passages:
            text = f"{d.title}\n{p}" if d.title else p
            texts.append(analyzer.embed_text(text) if glossing and d.lang != "en" else text)
            rows.append(row)
    vectors = embedder.encode(texts, batch_size=settings.embed_batch_size, progress=progress)
    return vectors, np.array(rows, dtype=np.int64)


def _profile(settings: Settings, embedder: Embedder | None) -> FusionProfile:
    name = embedder.name if embedder else "none"
    return load_profile(settings.data_dir / "fusion.json", name, bool(embedder and embedder.cjk_capable))
