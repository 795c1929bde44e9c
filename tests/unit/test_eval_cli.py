"""The evaluation harness: the embedding cache, run_eval with a fake engine, and the CLI."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pytest

from eval.__main__ import main
from eval.cache import CachedEmbedder, cache_key
from eval.datasets import Dataset, Query
from eval.metrics import METRIC_KEYS
from eval.run import report_dict, report_json, run_eval
from kb.search.types import Document, Embedder, FloatArray, Hit, Mode

ROOT = Path(__file__).resolve().parents[2]


class CountingEmbedder:
    """Deterministic unit vectors from a hash; records every batch it is asked to encode."""

    def __init__(self, name: str = "fake/model:v1", dim: int = 8) -> None:
        self._name = name
        self._dim = dim
        self.calls: list[list[str]] = []

    @property
    def dim(self) -> int:
        return self._dim

    @property
    def name(self) -> str:
        return self._name

    @property
    def cjk_capable(self) -> bool:
        return True

    def encode(self, texts: Sequence[str], *, batch_size: int = 64, progress: bool = False) -> FloatArray:
        self.calls.append(list(texts))
        seeds = [int.from_bytes(hashlib.sha256(t.encode()).digest()[:8], "big") for t in texts]
        vecs = np.array([np.random.default_rng(s).standard_normal(self._dim) for s in seeds]).reshape(
            -1, self._dim
        )
        out: FloatArray = (vecs / np.linalg.norm(vecs, axis=1, keepdims=True)).astype(np.float32)
        return out


# ---- CachedEmbedder -----------------------------------------------------------------------------------


def test_eval_cache_encodes_only_misses(tmp_path: Path) -> None:
    inner = CountingEmbedder()
    cache = CachedEmbedder(inner, tmp_path)
    assert isinstance(cache, Embedder)
    assert (cache.dim, cache.name, cache.cjk_capable) == (8, "fake/model:v1", True)

    first = cache.encode(["a", "b"])
    assert (cache.hits, cache.misses) == (0, 2)
    second = cache.encode(["a", "c", "a"])
    assert (cache.hits, cache.misses) == (2, 3)
    assert inner.calls == [["a", "b"], ["c"]]  # one inner batch per call, misses only
    assert second.dtype == np.float32 and second.shape == (3, 8)
    np.testing.assert_array_equal(second[0], first[0])
    np.testing.assert_array_equal(second[2], first[0])
    np.testing.assert_allclose(second[1], CountingEmbedder().encode(["c"])[0])


def test_eval_cache_persists_across_instances(tmp_path: Path) -> None:
    with CachedEmbedder(CountingEmbedder(), tmp_path) as cache:
        expected = cache.encode(["打印机", "printer"])
    files = sorted(p.name for p in (tmp_path).rglob("*") if p.is_file())
    assert len(files) == 2 and not any(name.endswith(".tmp") for name in files)

    inner = CountingEmbedder()
    again = CachedEmbedder(inner, tmp_path)
    np.testing.assert_array_equal(again.encode(["printer", "打印机"]), expected[::-1])
    assert inner.calls == [] and (again.hits, again.misses) == (2, 0)
    assert len(again) == 2


def test_eval_cache_flushes_when_enough_pending(tmp_path: Path) -> None:
    cache = CachedEmbedder(CountingEmbedder(), tmp_path, flush_at=2)
    cache.encode(["a"])
    assert not list(tmp_path.rglob("*.npy"))
    cache.encode(["b"])
    assert len(list(tmp_path.rglob("*.npy"))) == 1
    assert cache.flush() is None  # nothing pending


def test_eval_cache_models_do_not_share_vectors(tmp_path: Path) -> None:
    with CachedEmbedder(CountingEmbedder("model-a"), tmp_path) as cache:
        cache.encode(["x"])
    other = CountingEmbedder("model-b")
    with CachedEmbedder(other, tmp_path) as cache:
        cache.encode(["x"])
    assert other.calls == [["x"]]
    assert cache_key("model-a", "x") != cache_key("model-b", "x")
    assert len([p for p in tmp_path.iterdir() if p.is_dir()]) == 2


def test_eval_cache_ignores_damaged_and_mismatched_shards(tmp_path: Path) -> None:
    with CachedEmbedder(CountingEmbedder(), tmp_path) as cache:
        cache.encode(["x"])
    (npy,) = tmp_path.rglob("*.npy")
    npy.write_bytes(b"not numpy")
    inner = CountingEmbedder()
    CachedEmbedder(inner, tmp_path).encode(["x"])
    assert inner.calls == [["x"]]
    wider = CountingEmbedder(dim=16)  # same name, other width: old vectors must not be served
    assert CachedEmbedder(wider, tmp_path).encode(["x"]).shape == (1, 16)
    assert wider.calls == [["x"]]


def test_eval_cache_empty_batch(tmp_path: Path) -> None:
    inner = CountingEmbedder()
    assert CachedEmbedder(inner, tmp_path).encode([]).shape == (0, 8)
    assert inner.calls == []


# ---- run_eval with a fake engine -----------------------------------------------------------------------


class FixedEngine:
    """Returns a fixed ranking per query text."""

    def __init__(self, docs: list[Document], rankings: Mapping[str, list[str]]) -> None:
        self.docs = docs
        self.rankings = rankings
        self.calls: list[tuple[str, int, str]] = []

    def search(self, query: str, k: int = 10, mode: Mode = "hybrid") -> list[Hit]:
        self.calls.append((query, k, mode))
        return [Hit(doc_id, 1.0 / (rank + 1)) for rank, doc_id in enumerate(self.rankings.get(query, []))]

    def params(self) -> dict[str, object]:
        return {"k1": 1.2, "b": 0.75}


RANKINGS = {"alpha": ["d1", "d2"], "beta": ["d3", "d4", "d2"], "gamma": ["d4", "d1"]}


def tiny_dataset() -> Dataset:
    docs = [Document(f"d{i}", "", f"text {i}", "zh" if i % 2 else "en") for i in range(1, 5)]
    queries = [Query("q1", "alpha", "zh"), Query("q2", "beta", "en")]
    return Dataset(
        name="tiny",
        docs=docs,
        queries=queries,
        qrels={"q1": {"d1": 1}, "q2": {"d2": 1}},
        skipped_queries=1,
        skipped_by_lang={"en": 1},
        query_lang=None,
        doc_lang="en",
    )


def test_eval_run_metrics_per_language() -> None:
    engines: list[FixedEngine] = []

    def factory(docs: list[Document]) -> FixedEngine:
        engines.append(FixedEngine(docs, RANKINGS))
        return engines[-1]

    report = run_eval(tiny_dataset(), "bm25", 50, factory)
    assert [d.doc_id for d in engines[0].docs] == ["d1", "d2", "d3", "d4"]
    assert engines[0].calls == [("alpha", 50, "bm25"), ("beta", 50, "bm25")]
    assert list(report.metrics) == ["all", "zh", "en"]
    assert report.metrics["zh"] == dict.fromkeys(METRIC_KEYS, 1.0)
    # q2: relevant d2 at rank 3 -> nDCG 1/log2(4) = 0.5, MRR = AP = 1/3, found within 10
    assert report.metrics["en"] == pytest.approx(
        {"ndcg@10": 0.5, "mrr@10": 1 / 3, "recall@10": 1.0, "recall@100": 1.0, "map": 1 / 3}
    )
    assert report.metrics["all"] == pytest.approx(
        {"ndcg@10": 0.75, "mrr@10": 2 / 3, "recall@10": 1.0, "recall@100": 1.0, "map": 2 / 3}
    )
    assert report.n_queries == 2 and report.n_by_lang == {"all": 2, "zh": 1, "en": 1}
    assert report.params == {
        "k1": 1.2,
        "b": 0.75,
        "query_lang": None,
        "doc_lang": "en",
        "k": 50,
        "skipped_queries": 1,
    }
    assert report.rankings["q2"] == ["d3", "d4", "d2"]
    assert report.build_seconds >= 0 and report.query_ms_p50 >= 0


def test_eval_run_truncates_to_k_and_reports_mixed() -> None:
    base = tiny_dataset()
    ds = Dataset(
        name="tiny",
        docs=base.docs,
        queries=[*base.queries, Query("q3", "gamma", "mixed")],
        qrels={**base.qrels, "q3": {"d1": 1}},
    )
    report = run_eval(ds, "hybrid", 1, lambda docs: FixedEngine(docs, RANKINGS))
    assert report.rankings["q3"] == ["d4"]
    assert list(report.metrics) == ["all", "zh", "en", "mixed"]
    assert report.metrics["mixed"]["recall@10"] == 0.0
    assert report.metrics["zh"]["recall@10"] == 1.0


def test_eval_run_empty_language_group_is_none() -> None:
    base = tiny_dataset()
    ds = Dataset(name="zh-only", docs=base.docs, queries=base.queries[:1], qrels={"q1": {"d1": 1}})
    report = run_eval(ds, "vector", 10, lambda docs: FixedEngine(docs, RANKINGS))
    assert report.metrics["en"] == dict.fromkeys(METRIC_KEYS)
    assert json.loads(report_json(report))["metrics"]["en"]["map"] is None


def test_eval_run_rejects_bad_mode_and_k() -> None:
    with pytest.raises(ValueError, match="mode"):
        run_eval(tiny_dataset(), "sparse", 10, lambda docs: FixedEngine(docs, RANKINGS))
    with pytest.raises(ValueError, match="k must be"):
        run_eval(tiny_dataset(), "bm25", 0, lambda docs: FixedEngine(docs, RANKINGS))


# ---- CLI -------------------------------------------------------------------------------------------------


def write_tiny(folder: Path, *, mixed: bool = False) -> Path:
    folder.mkdir()
    docs = [{"id": f"d{i}", "title": "", "text": f"text {i}", "lang": "en"} for i in range(1, 5)]
    queries = [{"id": "q1", "text": "alpha", "lang": "zh"}, {"id": "q2", "text": "beta", "lang": "en"}]
    qrels = "q1\td1\t1\nq2\td2\t1\n"
    if mixed:
        queries.append({"id": "q3", "text": "gamma", "lang": "mixed"})
        qrels += "q3\td1\t1\n"
    (folder / "corpus.jsonl").write_text("".join(json.dumps(d) + "\n" for d in docs), encoding="utf-8")
    (folder / "queries.jsonl").write_text("".join(json.dumps(q) + "\n" for q in queries), encoding="utf-8")
    (folder / "qrels.tsv").write_text(qrels, encoding="utf-8")
    return folder


def fake_factory(docs: list[Document]) -> FixedEngine:
    return FixedEngine(docs, RANKINGS)


@pytest.mark.parametrize("mixed", [False, True])
def test_eval_cli_json_has_exact_keys(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], mixed: bool
) -> None:
    folder = write_tiny(tmp_path / "my-set", mixed=mixed)
    status = main([str(folder), "--json", "--mode", "bm25", "--k", "20"], engine_factory=fake_factory)
    out = capsys.readouterr().out
    assert status == 0
    assert out.count("\n") == 1
    report = json.loads(out)
    assert set(report) == {"dataset", "mode", "n_queries", "metrics", "params"}
    assert (report["dataset"], report["mode"], report["n_queries"]) == ("my-set", "bm25", 3 if mixed else 2)
    assert list(report["metrics"]) == (["all", "zh", "en", "mixed"] if mixed else ["all", "zh", "en"])
    for values in report["metrics"].values():
        assert list(values) == list(METRIC_KEYS)
    assert report["metrics"]["zh"]["ndcg@10"] == 1.0
    assert report["params"] == {
        "k1": 1.2,
        "b": 0.75,
        "query_lang": None,
        "doc_lang": None,
        "k": 20,
        "skipped_queries": 0,
    }


def test_eval_cli_report_dict_matches_json(tmp_path: Path) -> None:
    report = run_eval(tiny_dataset(), "bm25", 10, fake_factory)
    assert json.loads(report_json(report)) == json.loads(json.dumps(report_dict(report)))


def test_eval_cli_prints_table(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = write_tiny(tmp_path / "my-set")
    assert main([str(folder), "--query-lang", "en"], engine_factory=fake_factory) == 0
    out = capsys.readouterr().out
    for column in ("nDCG@10", "MRR@10", "Recall@10", "Recall@100", "MAP", "query p50", "build"):
        assert column in out
    assert "query_lang en" in out


def test_eval_cli_no_query_left_fails(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = write_tiny(tmp_path / "my-set")
    assert main([str(folder), "--doc-lang", "zh", "--json"], engine_factory=fake_factory) == 1
    captured = capsys.readouterr()
    assert captured.out == "" and "no query has a relevant document" in captured.err


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "eval", *args], cwd=ROOT, capture_output=True, text=True, timeout=120
    )


def test_eval_cli_bad_path_exits_with_message(tmp_path: Path) -> None:
    result = run_cli(str(tmp_path / "does-not-exist"), "--json")
    assert result.returncode == 1
    assert "not a dataset folder" in result.stderr and "Traceback" not in result.stderr
    assert result.stdout == ""


def test_eval_cli_malformed_dataset_names_line(tmp_path: Path) -> None:
    folder = write_tiny(tmp_path / "broken")
    (folder / "qrels.tsv").write_text("q1\td1\t1\nq2 d2 1\n", encoding="utf-8")
    result = run_cli(str(folder))
    assert result.returncode == 1
    assert "qrels.tsv:2" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize("option", [["--mode", "sparse"], ["--k", "0"], ["--query-lang", "fr"]])
def test_eval_cli_bad_option_exits_2(tmp_path: Path, option: list[str]) -> None:
    result = run_cli(str(tmp_path), *option)
    assert result.returncode == 2
    assert "usage:" in result.stderr and "Traceback" not in result.stderr
