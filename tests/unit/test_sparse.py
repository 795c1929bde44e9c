from __future__ import annotations

import hashlib
import math
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from rank_bm25 import BM25Okapi

from kb.errors import IndexNotReady
from kb.search import sparse
from kb.search.sparse import BM25Params, CorpusStats, SparseIndex

PARAMS = [BM25Params(), BM25Params(k1=0.9, b=0.4, epsilon=0.5)]


def make_corpus(n_docs: int, n_terms: int = 60, seed: int = 7) -> list[list[str]]:
    """Zipf-like documents with repeated tokens; "common" is in ~70% of them (negative idf: epsilon rule)."""
    rng = np.random.default_rng(seed)
    p = 1.0 / np.arange(1, n_terms + 1)
    docs = []
    for _ in range(n_docs):
        doc = [f"t{i}" for i in rng.choice(n_terms, int(rng.integers(1, 30)), p=p / p.sum())]
        docs.append(doc + ["common"] * int(rng.integers(1, 3)) if rng.random() < 0.7 else doc)
    return docs


def make_queries(n: int, n_terms: int = 60, seed: int = 3) -> list[list[str]]:
    rng = np.random.default_rng(seed)
    queries = [[f"t{i}" for i in rng.choice(n_terms, int(rng.integers(1, 6)))] for _ in range(n)]
    return [*queries, ["t1", "t1", "unknown", "common"], ["common"], ["t5", "zzz", "t5", "t5"]]


def reference_top_k(scores: np.ndarray, k: int, mask: np.ndarray | None = None) -> np.ndarray:
    """Full sort: rows with score > 0 (and allowed), score descending, row ascending."""
    rows = np.flatnonzero((scores > 0) & (True if mask is None else mask))
    return rows[np.lexsort((rows, -scores[rows]))][:k]


@pytest.fixture(scope="module")
def corpus() -> list[list[str]]:
    return make_corpus(300)


@pytest.fixture(scope="module")
def index(corpus: list[list[str]]) -> SparseIndex:
    return SparseIndex.build(corpus)


@pytest.mark.parametrize("params", PARAMS, ids=["defaults", "k1=0.9,b=0.4,eps=0.5"])
@pytest.mark.parametrize("dense_min_df", [None, 10**9], ids=["dense-rows", "csr-only"])
def test_sparse_scores_match_rank_bm25(
    corpus: list[list[str]], params: BM25Params, dense_min_df: int | None
) -> None:
    ref = BM25Okapi(corpus, k1=params.k1, b=params.b, epsilon=params.epsilon)
    assert ref.idf["common"] == pytest.approx(params.epsilon * ref.average_idf)  # the floor is exercised
    ix = SparseIndex.build(corpus, params, dense_min_df=dense_min_df)
    assert (len(ix._a.dense_terms) > 0) == (dense_min_df is None)
    for query in make_queries(40):
        ours = ix.scores(query)
        assert ours.dtype == np.float32 and ours.shape == (len(corpus),)
        assert np.allclose(ours, ref.get_scores(query)), query


@pytest.mark.parametrize("epsilon", [None, 0.5])
def test_sparse_corpus_stats_idf_matches_rank_bm25(corpus: list[list[str]], epsilon: float | None) -> None:
    ref = BM25Okapi(corpus) if epsilon is None else BM25Okapi(corpus, epsilon=epsilon)
    stats = CorpusStats.from_docs(corpus)
    idf = stats.idf() if epsilon is None else stats.idf(epsilon)
    assert idf.keys() == ref.idf.keys()
    assert all(math.isclose(idf[t], ref.idf[t], rel_tol=1e-12, abs_tol=1e-12) for t in idf)


def test_sparse_unknown_tokens_score_nothing(index: SparseIndex) -> None:
    assert not index.scores(["nope", "zzz"]).any()
    rows, scores = index.top_k(["nope"], 5)
    assert rows.size == scores.size == 0 and rows.dtype == np.int64 and scores.dtype == np.float32


@pytest.mark.parametrize("n_docs", [300, 6000])  # 6000: more postings than the threshold sample holds
def test_sparse_top_k_agrees_with_full_sort(n_docs: int) -> None:
    ix = SparseIndex.build(make_corpus(n_docs, n_terms=400), dense_min_df=n_docs // 8)
    for query in make_queries(30, n_terms=400):
        scores = ix.scores(query)
        for k in (1, 3, 10, 100):
            rows, top = ix.top_k(query, k)
            assert rows.dtype == np.int64 and top.dtype == np.float32
            assert rows.tolist() == reference_top_k(scores, k).tolist()
            assert np.array_equal(top, scores[rows])


def test_sparse_top_k_breaks_ties_by_row() -> None:
    ix = SparseIndex.build([["a", "b"], ["c"], ["a", "b"], ["a", "b"], ["b", "a"]] + [["x"]] * 5)
    rows, scores = ix.top_k(["a"], 3)
    assert rows.tolist() == [0, 2, 3] and len(set(scores.tolist())) == 1


@pytest.mark.parametrize("n_docs", [300, 6000])
def test_sparse_mask_applies_before_top_k(n_docs: int) -> None:
    ix = SparseIndex.build(make_corpus(n_docs, n_terms=400))
    query = ["t1", "t7", "common"]
    scores = ix.scores(query)
    # Keep only the lowest-scoring matching rows: a post-filter on the top k would return nothing.
    positive = np.flatnonzero(scores > 0)
    low = positive[np.argsort(scores[positive], kind="stable")[: len(positive) // 3]]
    mask = np.zeros(n_docs, dtype=bool)
    mask[low] = True
    rows, top = ix.top_k(query, 10, mask=mask)
    assert len(rows) == 10 and mask[rows].all()
    assert rows.tolist() == reference_top_k(scores, 10, mask).tolist()
    assert not set(rows.tolist()) & set(ix.top_k(query, 10)[0].tolist())


def test_sparse_mask_with_fewer_matches_than_k(index: SparseIndex) -> None:
    mask = np.zeros(index.n_docs, dtype=bool)
    mask[[3, 5]] = True
    rows, _ = index.top_k(["common", "t0", "t1", "t2"], 10, mask=mask)
    assert set(rows.tolist()) <= {3, 5}
    assert rows.tolist() == reference_top_k(index.scores(["common", "t0", "t1", "t2"]), 10, mask).tolist()


@pytest.mark.parametrize("k", [0, -3])
def test_sparse_top_k_rejects_k_below_one(index: SparseIndex, k: int) -> None:
    with pytest.raises(ValueError, match=f"k must be >= 1, got {k}"):
        index.top_k(["t1"], k)


def test_sparse_top_k_rejects_mask_of_wrong_length(index: SparseIndex) -> None:
    with pytest.raises(ValueError, match="mask"):
        index.top_k(["t1"], 5, mask=np.ones(index.n_docs - 1, dtype=bool))


def test_sparse_top_k_is_consistent_across_threads() -> None:
    index = SparseIndex.build(make_corpus(3000, n_terms=400))
    queries = make_queries(100, n_terms=400) * 3
    expected = [index.top_k(q, 7)[0].tolist() for q in queries]
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as possible, so that calls overlap
    try:
        with ThreadPoolExecutor(max_workers=8) as pool:
            got = list(pool.map(lambda q: index.top_k(q, 7)[0].tolist(), queries))
    finally:
        sys.setswitchinterval(interval)
    assert got == expected


@pytest.mark.parametrize("mmap", [True, False])
def test_sparse_save_load_round_trip(index: SparseIndex, tmp_path: Path, mmap: bool) -> None:
    digests = index.save(tmp_path / "ix")
    assert {p.name for p in (tmp_path / "ix").iterdir()} == digests.keys()
    for name, digest in digests.items():
        assert hashlib.sha256((tmp_path / "ix" / name).read_bytes()).hexdigest() == digest
    loaded = SparseIndex.load(tmp_path / "ix", mmap=mmap)
    assert loaded.n_docs == index.n_docs and loaded.params == index.params
    assert loaded._a.weights.flags.writeable is not mmap  # mmap_mode="r": read-only views of the files
    assert loaded.stats() == index.stats()
    for query in make_queries(20):
        assert np.array_equal(loaded.scores(query), index.scores(query))
        assert np.array_equal(loaded.top_k(query, 5)[0], index.top_k(query, 5)[0])


@pytest.mark.parametrize("mmap", [True, False])
@pytest.mark.parametrize("name", ["rows.npy", "weights.npy", "dense.npy"])
def test_sparse_load_truncated_file_is_not_ready(
    index: SparseIndex, tmp_path: Path, name: str, mmap: bool
) -> None:
    index.save(tmp_path)
    data = (tmp_path / name).read_bytes()
    (tmp_path / name).write_bytes(data[: len(data) - 40])
    with pytest.raises(IndexNotReady) as info:
        SparseIndex.load(tmp_path, mmap=mmap)
    assert info.value.path == tmp_path


@pytest.mark.parametrize("name", ["indptr.npy", "df.npy", "sparse.json"])
def test_sparse_load_missing_file_is_not_ready(index: SparseIndex, tmp_path: Path, name: str) -> None:
    index.save(tmp_path)
    (tmp_path / name).unlink()
    with pytest.raises(IndexNotReady, match=name.split(".")[0]):
        SparseIndex.load(tmp_path)


@pytest.mark.parametrize(
    "name, array",
    [("rows.npy", np.zeros(3, np.int32)), ("doc_len.npy", np.ones(5, np.int32)), ("rows.npy", np.zeros(3))],
)
def test_sparse_load_inconsistent_arrays_are_not_ready(
    index: SparseIndex, tmp_path: Path, name: str, array: np.ndarray
) -> None:
    index.save(tmp_path)
    np.save(tmp_path / name, array)  # a whole, well-formed file that does not fit the others
    with pytest.raises(IndexNotReady, match=name.split(".")[0]):
        SparseIndex.load(tmp_path)


def test_sparse_delta_with_merged_stats_scores_like_the_union() -> None:
    main_docs, delta_docs = make_corpus(250, seed=1), make_corpus(40, seed=2) + [["only-in-delta", "t1"]]
    union = SparseIndex.build(main_docs + delta_docs)
    main = SparseIndex.build(main_docs)
    merged = main.stats().merge(CorpusStats.from_docs(delta_docs))
    delta = SparseIndex.build(delta_docs, stats=merged)
    assert delta.stats() == merged == union.stats()
    for query in [*make_queries(30), ["only-in-delta"]]:
        assert np.allclose(delta.scores(query), union.scores(query)[len(main_docs) :], rtol=1e-6)
        assert np.allclose(main.scores(query), SparseIndex.build(main_docs).scores(query))


def test_sparse_build_rejects_stats_missing_a_term() -> None:
    stats = CorpusStats.from_docs([["a", "b"]])
    with pytest.raises(ValueError, match="'c'"):
        SparseIndex.build([["a", "c"]], stats=stats)


def test_sparse_corpus_stats_merge() -> None:
    left = CorpusStats.from_docs([["a", "b", "a"], ["b"]])
    right = CorpusStats.from_docs([["b", "c"]])
    merged = left.merge(right)
    assert merged == CorpusStats(3, 6, {"a": 1, "b": 3, "c": 1})
    assert merged == CorpusStats.from_docs([["a", "b", "a"], ["b"], ["b", "c"]])
    assert merged.avgdl == 2.0 and left.df == {"a": 1, "b": 2}  # inputs untouched


def test_sparse_build_in_chunks_equals_build_at_once(
    corpus: list[list[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    whole = SparseIndex.build(corpus)
    monkeypatch.setattr(sparse, "_CHUNK_TOKENS", 97)  # many chunks, splitting inside the corpus
    chunked = SparseIndex.build(corpus)
    for field in whole._a._fields:
        assert np.array_equal(getattr(whole._a, field), getattr(chunked._a, field)), field


def test_sparse_build_with_progress_bar_builds_the_same_index(corpus: list[list[str]]) -> None:
    shown = SparseIndex.build(corpus, progress=True)
    assert np.array_equal(shown.scores(["t1", "common"]), SparseIndex.build(corpus).scores(["t1", "common"]))


def test_sparse_empty_corpus_and_empty_documents() -> None:
    empty = SparseIndex.build([])
    assert empty.n_docs == 0 and empty.scores(["a"]).shape == (0,) and empty.top_k(["a"], 3)[0].size == 0
    ix = SparseIndex.build([[], ["a"], []])
    assert ix.top_k(["a"], 3)[0].tolist() == [1]
    assert SparseIndex.build([[], []]).scores(["a"]).tolist() == [0.0, 0.0]


def test_sparse_params_round_trip_and_validation() -> None:
    params = BM25Params(k1=1.2, b=0.5, epsilon=0.1)
    assert BM25Params(**params.as_dict()) == params
    with pytest.raises(ValueError, match="b=1.5"):
        BM25Params(b=1.5)
