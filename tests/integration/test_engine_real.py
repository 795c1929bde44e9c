"""The engine with the real bundled model on the sample knowledge base."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from kb.config import Settings
from kb.documents import read_documents
from kb.search import store
from kb.search.engine import SearchEngine, boost_identifiers
from kb.search.types import Filter
from kb.text import Analyzer

pytestmark = [pytest.mark.slow, pytest.mark.integration]
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def real_engine(tmp_path_factory: pytest.TempPathFactory) -> tuple[SearchEngine, Settings]:
    from kb.search.embed import SentenceTransformerEmbedder

    settings = Settings.from_env({}, index_dir=tmp_path_factory.mktemp("idx") / "index")
    docs = list(read_documents(ROOT / "data" / "samples"))
    engine = SearchEngine.build(
        docs, settings, embedder=SentenceTransformerEmbedder(threads=2), analyzer=Analyzer(ROOT / "data")
    )
    return engine, settings


def top(engine: SearchEngine, query: str, k: int = 3, **kw: Any) -> list[str]:
    return [h.doc_id for h in engine.search(query, k=k, **kw)]


def test_real_engine_exact_error_code_first(real_engine: tuple[SearchEngine, Settings]) -> None:
    engine, _ = real_engine
    assert top(engine, "Outlook 无法连接 Exchange 0x800CCC0E")[0] == "KB-OUTL-0001"
    assert top(engine, "outlook 0x800ccc0e")[0] == "KB-OUTL-0001"
    assert engine.params()["embed_model"] == "bundled:all-MiniLM-L6-v2" and engine.glossing


def test_real_engine_cross_lingual_both_ways(real_engine: tuple[SearchEngine, Settings]) -> None:
    engine, _ = real_engine
    docs = {d.doc_id: d for d in engine.docs}
    # an English query finds a Chinese-only document, a Chinese query an English-only one
    assert docs["KB-PRN-0008"].lang == "zh" and docs["KB-PRN-0002"].lang == "en"
    assert "KB-PRN-0008" in top(engine, "printer added through a WSD port keeps going offline")
    assert "KB-PRN-0002" in top(engine, "添加共享打印机时报错 0x00000709", 5)
    for mode in ("bm25", "vector"):
        assert "KB-PRN-0008" in top(engine, "printer added through a WSD port keeps going offline", 10, mode=mode)


def test_real_engine_filters_and_persistence(real_engine: tuple[SearchEngine, Settings]) -> None:
    engine, settings = real_engine
    hits = top(engine, "printer offline", 10, filters=Filter.of(lang="en", product="printers"))
    assert hits and all(engine.get(h).lang == "en" and engine.get(h).attrs["product"] == "printers" for h in hits)
    store.save(engine, settings.index_dir)
    from kb.search.embed import SentenceTransformerEmbedder

    loaded = store.load(settings, embedder=SentenceTransformerEmbedder(threads=2), analyzer=engine.analyzer)
    query = "SQL Server 登录失败 18456 state 38"
    assert [(h.doc_id, round(h.score, 4)) for h in loaded.search(query, k=5)] == [
        (h.doc_id, round(h.score, 4)) for h in engine.search(query, k=5)
    ]


def test_boost_identifiers_repeats_codes_only() -> None:
    assert boost_identifiers(["0x800ccc0e", "outlook", "kb5005565", "14.0.2"]) == [
        "0x800ccc0e",
        "0x800ccc0e",
        "outlook",
        "kb5005565",
        "kb5005565",
        "14.0.2",
    ]
