"""DenseIndex: parity with numpy brute force, best passage per document, masks inside the search, HNSW."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import faiss
import numpy as np
import pytest

from kb.errors import IndexNotReady
from kb.search import dense
from kb.search.dense import DenseIndex, set_faiss_threads
from kb.search.types import BoolArray, FloatArray, IntArray


@pytest.fixture(autouse=True, scope="module")
def _one_faiss_thread() -> Iterator[None]:
    # OpenMP threads spin on a busy shared machine: one thread builds small HNSW graphs ~10x faster here.
    before = faiss.omp_get_max_threads()
    set_faiss_threads(1)
    yield
    set_faiss_threads(before)


def unit_rows(rng: np.random.Generator, n: int, dim: int) -> FloatArray:
    x = rng.standard_normal((n, dim)).astype(np.float32)
    out: FloatArray = x / np.linalg.norm(x, axis=1, keepdims=True)
    return out


def clustered(rng: np.random.Generator, n: int, dim: int, clusters: int = 50) -> FloatArray:
    centers = unit_rows(rng, clusters, dim)
    noise = rng.standard_normal((n, dim)).astype(np.float32) / dim**0.5
    x = centers[rng.integers(0, clusters, n)] + 0.35 * noise
    out: FloatArray = (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)
    return out


def passages_of(rng: np.random.Generator, n_passages: int, n_docs: int) -> IntArray:
    """Every document gets at least one passage, the rest are spread at random."""
    rows = np.concatenate([np.arange(n_docs), rng.integers(0, n_docs, n_passages - n_docs)])
    return rng.permutation(rows).astype(np.int64)


def brute(
    vectors: FloatArray, doc_rows: IntArray, query: FloatArray, k: int, doc_mask: BoolArray | None = None
) -> tuple[IntArray, FloatArray, IntArray]:
    """Reference: every passage scored, a document keeps its best, sort by (-score, doc row)."""
    sims = vectors @ query
    best: dict[int, tuple[float, int]] = {}
    for p, (d, s) in enumerate(zip(doc_rows.tolist(), sims.tolist(), strict=True)):
        if doc_mask is not None and not doc_mask[d]:
            continue
        if d not in best or s > best[d][0]:
            best[d] = (s, p)
    ranked = sorted(best.items(), key=lambda kv: (-kv[1][0], kv[0]))[:k]
    return (
        np.array([d for d, _ in ranked], dtype=np.int64),
        np.array([s for _, (s, _) in ranked], dtype=np.float32),
        np.array([p for _, (_, p) in ranked], dtype=np.int64),
    )


@pytest.fixture(scope="module")
def data() -> tuple[FloatArray, IntArray]:
    rng = np.random.default_rng(7)
    return unit_rows(rng, 3_000, 32), passages_of(rng, 3_000, 1_000)


@pytest.fixture(scope="module")
def small_hnsw(data: tuple[FloatArray, IntArray]) -> DenseIndex:
    """Built once: HNSW over the same data, for tests where recall does not matter."""
    return DenseIndex.build(*data, hnsw_threshold=1_000, hnsw_m=8, ef_construction=40)


def test_dense_exact_equals_brute_force(data: tuple[FloatArray, IntArray]) -> None:
    vectors, doc_rows = data
    index = DenseIndex.build(vectors, doc_rows)
    assert index.exact and index.n_vectors == 3_000 and index.dim == 32
    queries = unit_rows(np.random.default_rng(1), 20, 32)
    for q, (docs, scores, passages) in zip(queries, index.search(queries, k=10), strict=True):
        want_docs, want_scores, want_passages = brute(vectors, doc_rows, q, 10)
        np.testing.assert_array_equal(docs, want_docs)
        np.testing.assert_allclose(scores, want_scores, atol=1e-5)
        np.testing.assert_array_equal(passages, want_passages)
        assert scores.dtype == np.float32 and docs.dtype == np.int64


def test_dense_document_scores_by_its_best_passage() -> None:
    e = np.eye(4, dtype=np.float32)
    near = np.array([0.8, 0.6, 0, 0], dtype=np.float32)
    vectors = np.stack([e[1], e[0], near, near, near, e[2], 0.6 * e[0] + 0.8 * e[3]])
    doc_rows = np.array([0, 0, 1, 1, 1, 2, 3], dtype=np.int64)
    docs, scores, passages = DenseIndex.build(vectors, doc_rows).search(e[0][None, :], k=3)[0]
    # doc 1 has three close passages but appears once; doc 0 wins through its second passage.
    assert docs.tolist() == [0, 1, 3]
    np.testing.assert_allclose(scores, [1.0, 0.8, 0.6], atol=1e-6)
    assert passages.tolist() == [1, 2, 6]


def test_dense_ties_go_to_the_lower_doc_row() -> None:
    v = unit_rows(np.random.default_rng(3), 1, 8)
    vectors = np.repeat(v, 5, axis=0)
    docs, _, _ = DenseIndex.build(vectors, np.array([4, 2, 3, 0, 1])).search(v, k=3)[0]
    assert docs.tolist() == [0, 1, 2]


def spy_search(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """Record, per faiss call, whether the HNSW graph (True) or the exact flat vectors (False) answered."""
    calls: list[bool] = []
    real = DenseIndex._faiss_search

    def spy(
        self: DenseIndex, q: FloatArray, fetch: int, sel: object, approximate: bool, widen: float
    ) -> object:
        calls.append(approximate)
        return real(self, q, fetch, sel, approximate, widen)

    monkeypatch.setattr(DenseIndex, "_faiss_search", spy)
    return calls


def test_dense_mask_applies_inside_the_search(data: tuple[FloatArray, IntArray]) -> None:
    vectors, doc_rows = data
    index = DenseIndex.build(vectors, doc_rows)
    q = unit_rows(np.random.default_rng(2), 1, 32)
    nearest, _, _ = brute(vectors, doc_rows, q[0], 50)
    mask = np.ones(1_000, dtype=np.bool_)
    mask[nearest] = False  # the 50 nearest documents are all filtered out; cutting after top-k would return 0
    docs, scores, passages = index.search(q, k=10, doc_mask=mask)[0]
    want = brute(vectors, doc_rows, q[0], 10, mask)
    assert len(docs) == 10 and not set(docs.tolist()) & set(nearest.tolist())
    np.testing.assert_array_equal(docs, want[0])
    np.testing.assert_allclose(scores, want[1], atol=1e-5)
    np.testing.assert_array_equal(passages, want[2])


def test_dense_few_allowed_docs_all_come_back(data: tuple[FloatArray, IntArray]) -> None:
    vectors, doc_rows = data
    index = DenseIndex.build(vectors, doc_rows)
    mask = np.zeros(1_000, dtype=np.bool_)
    mask[[5, 17, 400, 999]] = True
    queries = unit_rows(np.random.default_rng(4), 3, 32)
    for q, (docs, scores, passages) in zip(queries, index.search(queries, k=10, doc_mask=mask), strict=True):
        want = brute(vectors, doc_rows, q, 10, mask)
        assert sorted(docs.tolist()) == [5, 17, 400, 999]  # fewer than k allowed: all of them
        np.testing.assert_array_equal(docs, want[0])
        np.testing.assert_allclose(scores, want[1], atol=1e-5)
        np.testing.assert_array_equal(passages, want[2])


@pytest.mark.parametrize("hnsw_threshold", [20_000, 1_000], ids=["exact", "hnsw"])
def test_dense_widens_when_one_document_fills_the_top(hnsw_threshold: int) -> None:
    rng = np.random.default_rng(13)
    q = unit_rows(rng, 1, 32)
    crowd = q + 0.05 * unit_rows(rng, 300, 32)  # 300 passages of doc 0 beat every other passage
    vectors = np.vstack([crowd / np.linalg.norm(crowd, axis=1, keepdims=True), unit_rows(rng, 2_700, 32)])
    doc_rows = np.concatenate([np.zeros(300, dtype=np.int64), 1 + np.arange(2_700) // 3])
    index = DenseIndex.build(vectors.astype(np.float32), doc_rows, hnsw_threshold=hnsw_threshold, hnsw_m=16)
    docs, _, passages = index.search(q, k=5)[0]
    want = brute(vectors.astype(np.float32), doc_rows, q[0], 5)
    assert docs[0] == 0 and len(docs) == 5
    np.testing.assert_array_equal(docs, want[0])
    np.testing.assert_array_equal(passages, want[2])


def test_dense_empty_mask_and_all_true_mask(data: tuple[FloatArray, IntArray]) -> None:
    vectors, doc_rows = data
    index = DenseIndex.build(vectors, doc_rows)
    q = vectors[:2]
    none = index.search(q, k=5, doc_mask=np.zeros(1_000, dtype=np.bool_))
    assert [r[0].size for r in none] == [0, 0]
    full = index.search(q, k=5, doc_mask=np.ones(1_000, dtype=np.bool_))
    for a, b in zip(full, index.search(q, k=5), strict=True):
        np.testing.assert_array_equal(a[0], b[0])


@pytest.fixture(scope="module")
def hnsw_data() -> tuple[FloatArray, IntArray, FloatArray]:
    rng = np.random.default_rng(11)
    vectors = clustered(rng, 5_000, 48)
    queries = clustered(np.random.default_rng(12), 100, 48)
    return vectors, passages_of(rng, 5_000, 2_500), queries


@pytest.fixture(scope="module")
def hnsw(hnsw_data: tuple[FloatArray, IntArray, FloatArray]) -> DenseIndex:
    vectors, doc_rows, _ = hnsw_data
    return DenseIndex.build(vectors, doc_rows, hnsw_threshold=1_000)


def doc_recall(
    index: DenseIndex, data: tuple[FloatArray, IntArray, FloatArray], mask: BoolArray | None
) -> float:
    vectors, doc_rows, queries = data
    found = 0
    for q, (docs, _, _) in zip(queries, index.search(queries, k=10, doc_mask=mask), strict=True):
        found += len(set(docs.tolist()) & set(brute(vectors, doc_rows, q, 10, mask)[0].tolist()))
    return found / (10 * len(queries))


def test_dense_hnsw_recall_unmasked(
    hnsw: DenseIndex, hnsw_data: tuple[FloatArray, IntArray, FloatArray], monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = spy_search(monkeypatch)
    assert not hnsw.exact
    assert hnsw.recall_at_k(hnsw_data[2], k=10) >= 0.95
    assert doc_recall(hnsw, hnsw_data, None) >= 0.95
    assert calls and all(calls)


def test_dense_hnsw_recall_masked(
    hnsw: DenseIndex, hnsw_data: tuple[FloatArray, IntArray, FloatArray], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(dense, "EXACT_FALLBACK_ROWS", 1_000)  # scaled to this 5k index (default: 5,000)
    calls = spy_search(monkeypatch)
    mask = np.random.default_rng(5).random(2_500) < 0.6  # 60% allowed: the HNSW graph with the selector
    assert doc_recall(hnsw, hnsw_data, mask) >= 0.95
    assert calls and all(calls)
    calls.clear()
    few = np.random.default_rng(6).random(2_500) < 0.15  # ~750 passages allowed: exact, recall 1.0
    assert doc_recall(hnsw, hnsw_data, few) == 1.0
    assert calls and not any(calls)


def test_dense_exact_recall_is_one(data: tuple[FloatArray, IntArray]) -> None:
    assert DenseIndex.build(*data).recall_at_k(data[0][:5]) == 1.0


def test_dense_add_appends_passages(data: tuple[FloatArray, IntArray]) -> None:
    vectors, doc_rows = data
    index = DenseIndex.build(vectors[:2_000], doc_rows[:2_000])
    extra = unit_rows(np.random.default_rng(8), 300, 32)
    extra_rows = np.repeat(np.arange(1_000, 1_100), 3)  # 100 new documents, 3 passages each
    index.add(vectors[2_000:], doc_rows[2_000:])
    index.add(extra, extra_rows)
    all_vectors, all_rows = np.concatenate([vectors, extra]), np.concatenate([doc_rows, extra_rows])
    assert index.n_vectors == 3_300 and index.n_docs == 1_100
    q = extra[:3] + 0.1 * unit_rows(np.random.default_rng(9), 3, 32)
    for qi, (docs, _, passages) in zip(q, index.search(q, k=10), strict=True):
        want = brute(all_vectors, all_rows, qi, 10)
        np.testing.assert_array_equal(docs, want[0])
        np.testing.assert_array_equal(passages, want[2])


def test_dense_add_past_threshold_switches_to_hnsw(data: tuple[FloatArray, IntArray]) -> None:
    vectors, doc_rows = data
    index = DenseIndex.build(vectors[:1_000], doc_rows[:1_000], hnsw_threshold=1_500, hnsw_m=8)
    assert index.exact
    index.add(vectors[1_000:2_000], doc_rows[1_000:2_000])
    assert not index.exact
    index.add(vectors[2_000:], doc_rows[2_000:])
    assert not index.exact and index.n_vectors == 3_000


def test_dense_subset_renumbers_documents(data: tuple[FloatArray, IntArray]) -> None:
    vectors, doc_rows = data
    keep = np.arange(0, 1_000, 2)
    small = DenseIndex.build(vectors, doc_rows).subset(keep)
    mask = np.zeros(1_000, dtype=np.bool_)
    mask[keep] = True
    q = vectors[:4]
    for qi, (docs, scores, _) in zip(q, small.search(q, k=10), strict=True):
        want_docs, want_scores, _ = brute(vectors, doc_rows, qi, 10, mask)
        np.testing.assert_array_equal(keep[docs], want_docs)
        np.testing.assert_allclose(scores, want_scores, atol=1e-5)


@pytest.mark.parametrize("exact", [True, False], ids=["exact", "hnsw"])
@pytest.mark.parametrize("mmap", [True, False])
def test_dense_save_load_round_trip(
    tmp_path: Path, data: tuple[FloatArray, IntArray], small_hnsw: DenseIndex, exact: bool, mmap: bool
) -> None:
    index = DenseIndex.build(*data) if exact else small_hnsw
    checksums = index.save(tmp_path / "dense")
    assert {"vectors.npy", "doc_rows.npy", "dense.json"} <= set(checksums)
    assert ("hnsw.faiss" in checksums) is not exact
    loaded = DenseIndex.load(tmp_path / "dense", mmap=mmap, checksums=checksums)
    assert (loaded.exact, loaded.n_vectors, loaded.dim, loaded.n_docs) == (index.exact, 3_000, 32, 1_000)
    q = data[0][:5]
    mask = np.arange(1_000) % 3 != 0
    for a, b in zip(loaded.search(q, k=7, doc_mask=mask), index.search(q, k=7, doc_mask=mask), strict=True):
        for x, y in zip(a, b, strict=True):
            np.testing.assert_array_equal(x, y)


@pytest.mark.parametrize("name", ["vectors.npy", "doc_rows.npy", "hnsw.faiss", "dense.json"])
def test_dense_truncated_file_is_not_ready(tmp_path: Path, small_hnsw: DenseIndex, name: str) -> None:
    small_hnsw.save(tmp_path)
    path = tmp_path / name
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(IndexNotReady) as info:
        DenseIndex.load(tmp_path)
    assert info.value.path == tmp_path


def test_dense_missing_file_or_bad_checksum_is_not_ready(
    tmp_path: Path, data: tuple[FloatArray, IntArray]
) -> None:
    checksums = DenseIndex.build(*data).save(tmp_path)
    with pytest.raises(IndexNotReady, match="checksum"):
        DenseIndex.load(tmp_path, checksums={**checksums, "vectors.npy": "0" * 64})
    (tmp_path / "doc_rows.npy").unlink()
    with pytest.raises(IndexNotReady):
        DenseIndex.load(tmp_path)
    with pytest.raises(IndexNotReady, match="missing"):
        DenseIndex.load(tmp_path / "nowhere")


def test_dense_rejects_bad_arguments(data: tuple[FloatArray, IntArray]) -> None:
    index = DenseIndex.build(*data)
    q = data[0][:1]
    for k in (0, -3):
        with pytest.raises(ValueError, match="k must be"):
            index.search(q, k=k)
    with pytest.raises(ValueError, match="queries"):
        index.search(q[:, :16], k=3)
    with pytest.raises(ValueError, match="doc_mask"):
        index.search(q, k=3, doc_mask=np.ones(10, dtype=np.bool_))
    with pytest.raises(TypeError, match="doc_mask"):
        index.search(q, k=3, doc_mask=np.ones(1_000, dtype=np.int64))
    with pytest.raises(ValueError, match="doc_rows"):
        DenseIndex.build(data[0], data[1][:10])
    with pytest.raises(ValueError, match="k must be"):
        index.recall_at_k(q, k=0)
