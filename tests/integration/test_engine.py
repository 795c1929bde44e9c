"""The engine end to end with real jieba, faiss and files and a fake embedder.

The real model: test_engine_real.py.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from kb.config import Settings
from kb.errors import DuplicateDocument, IndexNotReady, QueryError
from kb.search import store
from kb.search.engine import SearchEngine
from kb.search.types import Document, Filter
from kb.text import Analyzer
from tests.fakes import HashEmbedder

pytestmark = pytest.mark.integration

DOCS = [
    Document(
        "en-outlook",
        "Outlook cannot connect to Exchange",
        "Outlook shows error 0x800CCC0E when sending mail.",
        "en",
        {"product": "outlook-exchange", "audience": "public"},
    ),
    Document(
        "zh-printer",
        "打印机脱机",
        "打印机显示脱机，打印队列卡住，错误 0x00000709。",
        "zh",
        {"product": "printers", "audience": "public"},
    ),
    Document(
        "zh-bsod",
        "更新后蓝屏",
        "安装 KB5005565 后电脑蓝屏，错误代码 0x0000007E。",
        "zh",
        {"product": "windows-client", "audience": "internal"},
    ),
    Document(
        "en-sql",
        "SQL Server login failed",
        "Login failed for user, error 18456 state 38.",
        "en",
        {"product": "sql-server", "audience": "public"},
    ),
]


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings.from_env({}, index_dir=tmp_path / "index", hnsw_threshold=50)


@pytest.fixture
def engine(settings: Settings, analyzer: Analyzer) -> SearchEngine:
    return SearchEngine.build(DOCS, settings, embedder=HashEmbedder(), analyzer=analyzer)


def test_engine_finds_identifier_across_case(engine: SearchEngine) -> None:
    for mode in ("bm25", "hybrid"):
        hits = engine.search("0x800ccc0e", k=3, mode=mode)
        assert hits[0].doc_id == "en-outlook"
        assert "bm25" in hits[0].signals


def test_engine_cross_lingual_through_glosses(engine: SearchEngine) -> None:
    assert engine.search("printer offline", k=1, mode="bm25")[0].doc_id == "zh-printer"
    assert engine.search("蓝屏 更新", k=1, mode="bm25")[0].doc_id == "zh-bsod"
    assert engine.search("blue screen after update", k=1, mode="bm25")[0].doc_id == "zh-bsod"


def test_engine_filters_apply_before_top_k(engine: SearchEngine) -> None:
    hits = engine.search("蓝屏 打印机 outlook", k=2, mode="hybrid", filters=Filter.of(audience="public"))
    assert "zh-bsod" not in {h.doc_id for h in hits}
    assert len(hits) == 2
    only_sql = engine.search("printer", k=5, mode="vector", filters=Filter.of(product="sql-server"))
    assert [h.doc_id for h in only_sql] == ["en-sql"]
    assert engine.search("printer", k=5, filters=Filter.of(product="no-such-product")) == []


def test_engine_upsert_and_delete_take_effect_at_once(engine: SearchEngine) -> None:
    engine.upsert(
        [Document("en-outlook", "Outlook PST repair", "Run scanpst.exe to repair the PST file.", "en")]
    )
    assert engine.search("0x800ccc0e", k=5, mode="bm25") == []  # the replaced text is gone
    assert engine.search("scanpst.exe", k=1, mode="hybrid")[0].doc_id == "en-outlook"
    assert len(engine) == 4
    assert engine.delete(["zh-printer", "missing"]) == 1
    for mode in ("bm25", "vector", "hybrid"):
        assert "zh-printer" not in {h.doc_id for h in engine.search("打印机 脱机", k=10, mode=mode)}
    with pytest.raises(DuplicateDocument):
        engine.upsert([DOCS[0], DOCS[0]])


def test_engine_compact_keeps_results(engine: SearchEngine) -> None:
    engine.upsert([Document("en-new", "VPN drops", "AnyConnect VPN disconnects every 5 minutes.", "en")])
    engine.delete(["en-sql"])
    before = [h.doc_id for h in engine.search("vpn anyconnect", k=3, mode="bm25")]
    compacted = engine.compact()
    assert len(compacted.docs) == len(compacted) == 4
    assert [h.doc_id for h in compacted.search("vpn anyconnect", k=3, mode="bm25")] == before


def test_engine_rejects_bad_arguments(engine: SearchEngine, settings: Settings, analyzer: Analyzer) -> None:
    with pytest.raises(ValueError, match="k must be"):
        engine.search("x", k=0)
    with pytest.raises(ValueError, match="mode"):
        engine.search("x", mode="fuzzy")  # type: ignore[arg-type]
    bm25_only = SearchEngine.build(DOCS, settings, analyzer=analyzer)
    with pytest.raises(QueryError):
        bm25_only.search("x", mode="hybrid")
    with pytest.raises(DuplicateDocument):
        SearchEngine.build([DOCS[0], DOCS[0]], settings, analyzer=analyzer)


def test_store_round_trip_with_delta_segment(
    engine: SearchEngine, settings: Settings, analyzer: Analyzer
) -> None:
    engine.upsert([Document("en-new", "VPN drops", "AnyConnect VPN disconnects every 5 minutes.", "en")])
    engine.delete(["en-sql"])
    gen = store.save(engine, settings.index_dir)
    loaded = store.load(settings, embedder=HashEmbedder(), analyzer=analyzer)
    for q in ("vpn", "打印机", "0x800ccc0e", "login failed 18456"):
        assert [(h.doc_id, round(h.score, 5)) for h in loaded.search(q, k=3)] == [
            (h.doc_id, round(h.score, 5)) for h in engine.search(q, k=3)
        ]
    assert store.verify(gen)["counts"] == {"rows": 5, "live": 4, "main_rows": 4, "passages": 5}


def test_store_detects_corruption_and_rebuilds(
    engine: SearchEngine, settings: Settings, analyzer: Analyzer
) -> None:
    gen = store.save(engine, settings.index_dir)
    victim = next(p for p in (gen / "native").iterdir() if p.suffix == ".npy")
    victim.write_bytes(victim.read_bytes()[:-16])  # truncated
    with pytest.raises(IndexNotReady, match="checksum"):
        store.load(settings, embedder=HashEmbedder(), analyzer=analyzer)
    reasons: list[str] = []
    rebuilt = store.open_engine(settings, embedder=HashEmbedder(), on_rebuild=reasons.append)
    assert reasons and "checksum" in reasons[0]
    assert rebuilt.search("0x800ccc0e", k=1)[0].doc_id == "en-outlook"
    store.load(settings, embedder=HashEmbedder(), analyzer=analyzer)  # the rebuilt generation is current


def test_store_refuses_other_model_and_missing_index(
    engine: SearchEngine, settings: Settings, analyzer: Analyzer
) -> None:
    with pytest.raises(IndexNotReady, match="no index"):
        store.load(settings, analyzer=analyzer)
    store.save(engine, settings.index_dir)
    with pytest.raises(IndexNotReady, match="embedding model"):
        store.load(settings, embedder=HashEmbedder(dim=16, name="other-model"), analyzer=analyzer)
    with pytest.raises(IndexNotReady, match="embedding model"):
        store.load(settings, embedder=None, analyzer=analyzer)


def test_store_keeps_two_generations_and_switches_atomically(
    engine: SearchEngine, settings: Settings
) -> None:
    gens = [store.save(engine, settings.index_dir) for _ in range(3)]
    assert sorted(p.name for p in settings.index_dir.glob("gen-*")) == [g.name for g in gens[1:]]
    assert store.current_generation(settings.index_dir) == gens[-1]
    shutil.rmtree(gens[-1] / "dense")
    with pytest.raises(IndexNotReady, match="missing"):
        store.verify(gens[-1])


def test_engine_mask_matches_filter_semantics(engine: SearchEngine) -> None:
    mask = engine.mask(Filter.of(lang="zh", audience=["public", "customer"]))
    assert np.flatnonzero(mask).tolist() == [1]
