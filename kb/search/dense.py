"""Dense retrieval over passage vectors with document-level results (faiss + numpy).

Each passage vector belongs to one document row; a document scores by its best passage. Small indexes
are exact (``IndexFlatIP``); above ``hnsw_threshold`` passages the index is ``IndexHNSWFlat`` with inner
product. Vectors must be L2-normalised, so inner product is cosine.

Filters are a boolean ``doc_mask`` over document rows applied *inside* the faiss search through an
``IDSelectorBitmap`` (cutting after top-k would return fewer than k). When few passages are allowed the
search is exact over just those rows (the flat vectors with the same selector): HNSW with a very
selective selector loses recall. faiss' flat scan beats numpy here: one-query BLAS calls in numpy spin
OpenBLAS threads (6 ms for 2,000 rows on a busy 2-core machine, against 0.3 ms).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

import faiss as _faiss
import numpy as np

from kb.errors import IndexNotReady
from kb.search.types import BoolArray, FloatArray, IntArray

# faiss' bundled stubs lack SearchParametersHNSW and the numpy-array constructors of its Python wrappers.
faiss: Any = _faiss

SearchResult = tuple[IntArray, FloatArray, IntArray]
"""(doc rows, scores, best passage row) of one query, best document first."""

FORMAT: Final = 1
META_FILE: Final = "dense.json"
VECTORS_FILE: Final = "vectors.npy"
DOC_ROWS_FILE: Final = "doc_rows.npy"
HNSW_FILE: Final = "hnsw.faiss"
_PARAMS: Final = ("hnsw_threshold", "hnsw_m", "ef_construction", "ef_search")
# Below max(5,000 passages, 5% of the index) allowed by a mask, search those exactly: HNSW with a selective
# selector loses recall (0.92 at 20% of 20k real MiniLM vectors), and an exact scan of 5,000 rows costs ~1 ms.
EXACT_FALLBACK_FRACTION: Final = 0.05
EXACT_FALLBACK_ROWS: Final = 5_000


def set_faiss_threads(n: int) -> None:
    """Set faiss' OpenMP thread count; call once at start-up, never per search."""
    if n < 1:
        raise ValueError(f"faiss threads must be at least 1, not {n}")
    faiss.omp_set_num_threads(n)


def _top_docs(docs: IntArray, scores: FloatArray, passages: IntArray, k: int) -> SearchResult:
    """Best k of distinct ``docs``: score descending, ties by doc row ascending (exact at the cut)."""
    if docs.size > k:
        kth = np.partition(scores, docs.size - k)[docs.size - k]
        keep = np.flatnonzero(scores >= kth)  # every tie with the k-th score, so the tie-break is exact
        docs, scores, passages = docs[keep], scores[keep], passages[keep]
    order = np.lexsort((docs, -scores))[:k]
    return docs[order], scores[order].astype(np.float32), passages[order]


class DenseIndex:
    """Passage vectors, their document rows, and a faiss index over them. Build with :meth:`build`."""

    def __init__(self, vectors: FloatArray, doc_rows: IntArray, index: Any, params: dict[str, int]) -> None:
        self._vectors = vectors
        self._doc_rows = doc_rows
        self._index = index
        self._params = params
        self._n_docs = int(doc_rows.max()) + 1 if doc_rows.size else 0

    @classmethod
    def build(
        cls,
        vectors: FloatArray,
        doc_rows: IntArray,
        *,
        hnsw_threshold: int = 20_000,
        hnsw_m: int = 32,
        ef_construction: int = 80,
        ef_search: int = 128,
    ) -> DenseIndex:
        """Index normalised passage ``vectors``; ``doc_rows[i]`` is the document row of passage ``i``.

        Exact ``IndexFlatIP`` while there are at most ``hnsw_threshold`` passages, else ``IndexHNSWFlat``.
        """
        vecs, rows = _check_input(vectors, doc_rows, None)
        params = {"hnsw_threshold": hnsw_threshold, "hnsw_m": hnsw_m, "ef_construction": ef_construction}
        params["ef_search"] = ef_search
        for name, value in params.items():
            if value < 1:
                raise ValueError(f"{name} must be at least 1, not {value}")
        return cls(vecs, rows, _make_index(vecs, params), params)

    @property
    def dim(self) -> int:
        """Vector width."""
        return int(self._vectors.shape[1])

    @property
    def n_vectors(self) -> int:
        """Number of passage vectors."""
        return int(self._vectors.shape[0])

    @property
    def n_docs(self) -> int:
        """1 + the largest document row (the length a ``doc_mask`` must have at least)."""
        return self._n_docs

    @property
    def exact(self) -> bool:
        """True for the flat (exact) index, False for HNSW."""
        return not isinstance(self._index, faiss.IndexHNSW)

    def add(self, vectors: FloatArray, doc_rows: IntArray) -> None:
        """Append passages (new documents, or new versions under new rows; mask the old rows when searching).

        Crossing ``hnsw_threshold`` turns the exact index into HNSW (rebuilt from the stored vectors).
        """
        vecs, rows = _check_input(vectors, doc_rows, self.dim)
        if vecs.shape[0] == 0:
            return
        self._vectors = np.concatenate([np.asarray(self._vectors), vecs])
        self._doc_rows = np.concatenate([np.asarray(self._doc_rows), rows])
        if self.exact and self.n_vectors > self._params["hnsw_threshold"]:
            self._index = _make_index(self._vectors, self._params)
        else:
            self._index.add(vecs)
        self._n_docs = max(self._n_docs, int(rows.max()) + 1)

    def subset(self, doc_rows: IntArray) -> DenseIndex:
        """A new index with only the passages of ``doc_rows``, renumbered: ``doc_rows[j]`` becomes row ``j``.

        For compaction: vectors are reused, never re-embedded. Exact or HNSW is chosen again by size.
        """
        keep_docs = np.ascontiguousarray(doc_rows, dtype=np.int64)
        if keep_docs.ndim != 1 or np.unique(keep_docs).size != keep_docs.size or keep_docs.min(initial=0) < 0:
            raise ValueError("doc_rows must be a 1-d array of distinct, non-negative document rows")
        new_row = np.full(max(self._n_docs, int(keep_docs.max(initial=-1)) + 1), -1, dtype=np.int64)
        new_row[keep_docs] = np.arange(keep_docs.size)
        mapped = new_row[self._doc_rows]
        keep = np.flatnonzero(mapped >= 0)
        vecs = np.ascontiguousarray(self._vectors[keep], dtype=np.float32)
        return DenseIndex(vecs, mapped[keep], _make_index(vecs, self._params), dict(self._params))

    def search(self, queries: FloatArray, k: int, doc_mask: BoolArray | None = None) -> list[SearchResult]:
        """Best ``k`` documents per query: ``(doc rows, scores, best passage row)``, best first.

        A document scores by its best passage; ties go to the lower doc row. ``doc_mask[row]`` False
        excludes the document (filters and deletions); the mask is applied inside the search, so up to
        ``k`` allowed documents come back even when every nearest one is masked.
        """
        if k < 1:
            raise ValueError(f"k must be at least 1, not {k}")
        q = np.ascontiguousarray(queries, dtype=np.float32)
        if q.ndim != 2 or q.shape[1] != self.dim:
            raise ValueError(f"queries must have shape (n, {self.dim}), not {q.shape}")
        allowed = self._allowed_passages(doc_mask)
        n_allowed = self.n_vectors if allowed is None else int(np.count_nonzero(allowed))
        empty = (np.empty(0, np.int64), np.empty(0, np.float32), np.empty(0, np.int64))
        if n_allowed == 0 or q.shape[0] == 0:
            return [empty for _ in range(q.shape[0])]
        # The selector keeps a reference to the packed bitmap; faiss tests each passage id against it.
        sel = None if allowed is None else faiss.IDSelectorBitmap(np.packbits(allowed, bitorder="little"))
        selective = n_allowed < max(EXACT_FALLBACK_ROWS, EXACT_FALLBACK_FRACTION * self.n_vectors)
        approximate = not self.exact and not (allowed is not None and selective)
        results: list[SearchResult] = [empty] * q.shape[0]
        todo = np.arange(q.shape[0])
        per_doc = self.n_vectors / max(1, self._n_docs)  # passages per document, to fetch enough at once
        fetch = min(n_allowed, max(2 * k, math.ceil(1.5 * k * per_doc)))
        while todo.size:
            if approximate and fetch > n_allowed // 2:
                approximate = False  # so wide an HNSW search costs more than an exact one
            scores, ids = self._faiss_search(q[todo], fetch, sel, approximate, self.n_vectors / n_allowed)
            again = []
            for i, s_row, id_row in zip(todo, scores, ids, strict=True):
                valid = id_row >= 0  # faiss pads with -1 when fewer results exist
                p, s = id_row[valid], s_row[valid]
                order = np.lexsort((p, -s))  # equal scores: the lower passage row first
                p, s = p[order], s[order]
                docs, first = np.unique(self._doc_rows[p], return_index=True)  # first hit = best passage
                # k documents among the top passages are the top k documents: any other scores lower.
                if docs.size >= k or fetch >= n_allowed or (not approximate and p.size < fetch):
                    results[i] = _top_docs(docs, s[first], p[first], k)
                else:
                    again.append(i)
            todo = np.asarray(again, dtype=np.int64)
            fetch = min(n_allowed, fetch * 4)
        return results

    def _faiss_search(self, q: FloatArray, fetch: int, sel: Any, approximate: bool, widen: float) -> tuple[Any, Any]:
        """Top ``fetch`` passages by HNSW, or exactly by the flat vectors (HNSW keeps them as its storage)."""
        if approximate:
            # A selector hides part of the graph's candidates: search wider in proportion (at most 4x).
            ef = max(math.ceil(self._params["ef_search"] * min(widen, 4.0)), fetch)
            params = faiss.SearchParametersHNSW(efSearch=ef)
            if sel is not None:
                params.sel = sel  # faiss' wrapper keeps a reference, so the selector outlives the call
            return self._index.search(q, fetch, params=params)  # type: ignore[no-any-return]
        flat = self._index if self.exact else faiss.downcast_index(self._index.storage)
        params = faiss.SearchParameters(sel=sel) if sel is not None else None
        return flat.search(q, fetch, params=params)  # type: ignore[no-any-return]

    def _allowed_passages(self, doc_mask: BoolArray | None) -> BoolArray | None:
        if doc_mask is None:
            return None
        mask = np.asarray(doc_mask)
        if mask.dtype != np.bool_ or mask.ndim != 1:
            raise TypeError(f"doc_mask must be a 1-d bool array, not {mask.dtype} with shape {mask.shape}")
        if mask.shape[0] < self._n_docs:
            raise ValueError(f"doc_mask has {mask.shape[0]} rows; the index has documents up to row {self._n_docs - 1}")
        if mask.all():
            return None
        allowed: BoolArray = mask[self._doc_rows]
        return allowed

    def recall_at_k(self, queries: FloatArray, k: int = 10) -> float:
        """Mean share of the exact top-``k`` passages that the index returns (1.0 for an exact index)."""
        if k < 1:
            raise ValueError(f"k must be at least 1, not {k}")
        if self.exact:
            return 1.0
        q = np.ascontiguousarray(queries, dtype=np.float32)
        k = min(k, self.n_vectors)
        params = faiss.SearchParametersHNSW(efSearch=max(self._params["ef_search"], k))
        _, approx = self._index.search(q, k, params=params)
        hits = 0
        for start in range(0, q.shape[0], 256):  # bounded memory: 256 x n_vectors scores at a time
            sims = q[start : start + 256] @ np.asarray(self._vectors).T
            exact = np.argpartition(-sims, k - 1, axis=1)[:, :k]
            for a, e in zip(approx[start : start + 256], exact, strict=True):
                hits += np.intersect1d(a, e).size
        return hits / (k * q.shape[0]) if q.shape[0] else 1.0

    def save(self, directory: Path) -> dict[str, str]:
        """Write the index under ``directory``; returns ``{file name: sha256}`` for the manifest."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        meta = {"format": FORMAT, "dim": self.dim, "n_vectors": self.n_vectors, "exact": self.exact}
        meta.update(self._params)
        checksums: dict[str, str] = {}

        def commit(name: str, tmp: Path) -> None:  # write-then-rename: a reader never sees half a file
            os.replace(tmp, directory / name)
            checksums[name] = _sha256(directory / name)

        for name, array in ((VECTORS_FILE, self._vectors), (DOC_ROWS_FILE, self._doc_rows)):
            tmp = directory / f".{name}.tmp"
            with open(tmp, "wb") as handle:  # a handle, so np.save does not append ".npy" to the tmp name
                np.save(handle, np.asarray(array), allow_pickle=False)
            commit(name, tmp)
        if not self.exact:
            tmp = directory / f".{HNSW_FILE}.tmp"
            faiss.write_index(self._index, str(tmp))
            commit(HNSW_FILE, tmp)
        tmp = directory / f".{META_FILE}.tmp"
        tmp.write_text(json.dumps(meta, indent=2, sort_keys=True), encoding="utf-8")
        commit(META_FILE, tmp)
        return checksums

    @classmethod
    def load(cls, directory: Path, *, mmap: bool = True, checksums: Mapping[str, str] | None = None) -> DenseIndex:
        """Open an index written by :meth:`save`; vectors are memory-mapped when ``mmap``.

        ``checksums`` (from :meth:`save`) are verified when given. Any missing, truncated or inconsistent
        file raises :class:`kb.errors.IndexNotReady`.
        """
        directory = Path(directory)
        try:
            return cls._load(directory, mmap, checksums)
        except IndexNotReady:
            raise
        except (OSError, ValueError, RuntimeError, KeyError, TypeError, EOFError) as exc:
            raise IndexNotReady(directory, f"cannot read dense index: {exc}") from exc

    @classmethod
    def _load(cls, directory: Path, mmap: bool, checksums: Mapping[str, str] | None) -> DenseIndex:
        meta_path = directory / META_FILE
        if not meta_path.is_file():
            raise IndexNotReady(directory, f"{META_FILE} is missing")
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        if meta.get("format") != FORMAT:
            raise IndexNotReady(directory, f"dense format {meta.get('format')!r}, expected {FORMAT}")
        for name, digest in (checksums or {}).items():
            if not (directory / name).is_file() or _sha256(directory / name) != digest:
                raise IndexNotReady(directory, f"{name} is missing or its checksum does not match")
        vectors = np.load(directory / VECTORS_FILE, mmap_mode="r" if mmap else None, allow_pickle=False)
        doc_rows = np.load(directory / DOC_ROWS_FILE, mmap_mode="r" if mmap else None, allow_pickle=False)
        n, dim = int(meta["n_vectors"]), int(meta["dim"])
        if vectors.dtype != np.float32 or vectors.shape != (n, dim):
            found = f"{vectors.dtype} {vectors.shape}"
            raise IndexNotReady(directory, f"vectors are {found}, expected float32 {(n, dim)}")
        if doc_rows.dtype != np.int64 or doc_rows.shape != (n,):
            found = f"{doc_rows.dtype} {doc_rows.shape}"
            raise IndexNotReady(directory, f"doc_rows are {found}, expected int64 ({n},)")
        doc_rows = np.asarray(doc_rows)  # small; kept in memory for the per-passage lookups
        params = {name: int(meta[name]) for name in _PARAMS}
        if meta["exact"]:
            index = faiss.IndexFlatIP(dim)
            if n:
                index.add(np.ascontiguousarray(vectors))
        else:
            if not (directory / HNSW_FILE).is_file():
                raise IndexNotReady(directory, f"{HNSW_FILE} is missing")
            index = faiss.read_index(str(directory / HNSW_FILE))
            if index.ntotal != n or index.d != dim or not isinstance(index, faiss.IndexHNSW):
                found = f"{index.ntotal} x {index.d}"
                raise IndexNotReady(directory, f"{HNSW_FILE} holds {found} vectors, expected {n} x {dim}")
            index.hnsw.efSearch = params["ef_search"]
        return cls(vectors, doc_rows, index, params)


def _check_input(vectors: FloatArray, doc_rows: IntArray, dim: int | None) -> tuple[FloatArray, IntArray]:
    vecs = np.ascontiguousarray(vectors, dtype=np.float32)
    rows = np.ascontiguousarray(doc_rows, dtype=np.int64)
    if vecs.ndim != 2 or (dim is not None and vecs.shape[1] != dim):
        raise ValueError(f"vectors must have shape (n, {dim or 'dim'}), not {vecs.shape}")
    if rows.shape != (vecs.shape[0],):
        raise ValueError(f"doc_rows has shape {rows.shape}, expected ({vecs.shape[0]},) to match the vectors")
    if rows.size and rows.min() < 0:
        raise ValueError("doc_rows must be non-negative")
    return vecs, rows


def _make_index(vectors: FloatArray, params: dict[str, int]) -> Any:
    dim = vectors.shape[1]
    if vectors.shape[0] <= params["hnsw_threshold"]:
        index = faiss.IndexFlatIP(dim)
    else:
        index = faiss.IndexHNSWFlat(dim, params["hnsw_m"], faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = params["ef_construction"]
        index.hnsw.efSearch = params["ef_search"]
    if vectors.shape[0]:
        index.add(np.ascontiguousarray(vectors))
    return index


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
