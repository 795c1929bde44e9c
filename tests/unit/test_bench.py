"""eval.bench at a tiny size: report shape, peer agreement on the same tokens, a deterministic generator.

No timing is asserted (figures live in eval/BENCH.md); no embedding model is loaded (--no-embed).
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest

from eval import bench
from kb.search.sparse import BM25Params, SparseIndex

pytest.importorskip("tantivy")
pytest.importorskip("rank_bm25")


@pytest.fixture(scope="module")
def report() -> dict[str, Any]:
    return bench.run_bench(bench.BenchConfig(docs=2_000, queries=20, embed=False))


def test_bench_cli_prints_one_json_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert bench.main(["--docs", "300", "--queries", "5", "--no-embed", "--json"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 1
    assert json.loads(lines[0])["docs"] == 300


def test_bench_report_shape(report: dict[str, Any]) -> None:
    assert report["docs"] == 2_000
    assert set(report["bm25"]) >= {"p50_ms", "p99_ms"}
    assert "p50_ms" in report["rank_bm25"] and "p50_ms" in report["tantivy"]
    assert report["hybrid"] is None and report["dense"] is None
    assert set(report["build"]) >= {"docs_per_s", "peak_rss_mb"}
    assert report["build"]["peak_rss_mb"] > 0
    for part in ("bm25", "rank_bm25", "tantivy"):
        assert report[part]["p50_ms"] > 0 and report["rare"][part]["p50_ms"] > 0
    assert report["queries"]["a"] == report["queries"]["b"] == report["queries"]["rank_bm25"] == 20
    assert report["skipped"] == {"hybrid": "--no-embed"}
    json.dumps(report)  # serialisable as is


def test_bench_engines_agree_on_top1(report: dict[str, Any]) -> None:
    agreement = report["agreement_top1"]
    assert agreement["rank_bm25"] >= 0.95  # same scorer: only float32 vs float64 near-ties may differ
    assert agreement["tantivy"] >= 0.6  # Lucene idf, k1=1.2 and quantised lengths: close, not equal


def test_bench_scores_match_rank_bm25() -> None:
    from rank_bm25 import BM25Okapi

    vocab = bench.make_vocab(0)
    tokens = bench.generate_corpus(1_000, 0, vocab).tokens()
    ours, theirs = SparseIndex.build(tokens, BM25Params()), BM25Okapi(tokens)
    for query in bench.make_queries(vocab, 10, 0) + bench.make_queries(vocab, 10, 0, skip=bench.RARE_SKIP):
        assert np.allclose(ours.scores(query), theirs.get_scores(query), rtol=1e-5, atol=1e-4)


def test_bench_generator_is_deterministic() -> None:
    first, again, other = (bench.generate_corpus(500, seed) for seed in (3, 3, 4))
    assert np.array_equal(first.ids, again.ids) and np.array_equal(first.offsets, again.offsets)
    assert first.tokens() == again.tokens() and first.documents() == again.documents()
    assert not np.array_equal(first.ids[:1_000], other.ids[:1_000])
    vocab = bench.make_vocab(3)
    assert bench.make_queries(vocab, 5, 3) == bench.make_queries(vocab, 5, 3)


def test_bench_corpus_is_bilingual_zipf_with_codes() -> None:
    corpus = bench.generate_corpus(3_000, 0)
    tokens = corpus.tokens()
    assert 110 <= np.mean([len(t) for t in tokens]) <= 130
    assert np.allclose(np.bincount(corpus.lang, minlength=3) / 3_000, 1 / 3, atol=0.03)
    flat = [t for doc in tokens for t in doc]
    assert any(t.startswith("0x8007") and len(t) == 10 for t in flat)
    assert any(t.count(".") == 2 and t.replace(".", "").isdigit() for t in flat)
    zh_doc = tokens[int(np.flatnonzero(corpus.lang == bench.LANGS.index("zh"))[0])]
    words = [t for t in zh_doc if not t[0].isdigit()]
    assert all(2 <= len(t) <= 4 and all("\u4e00" <= c <= "\u9fff" for c in t) for t in words)
    counts = np.bincount(corpus.ids[corpus.ids < bench.VOCAB_TERMS])
    assert counts[0] > 10 * np.median(counts[counts > 0])  # Zipf: the head dominates
    rare = bench.make_queries(corpus.vocab, 50, 0, skip=bench.RARE_SKIP)
    assert not set(corpus.vocab.terms[: bench.RARE_SKIP]) & {t for q in rare for t in q}
    assert all(3 <= len(q) <= 8 for q in rare)
