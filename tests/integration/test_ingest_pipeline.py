"""The ingest pipeline and the outbox indexer against real databases (SQLite file, PostgreSQL in a fresh schema
when ``KB_TEST_PG_URL`` is set), with the fake embedder; ``test_pipeline_real_model`` uses the bundled model."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from ingest.articles import read_article_files
from ingest.pipeline import DupRule, Pipeline
from ingest.sources import read_cases
from kb import articles as arts
from kb import db
from kb.article_io import export_articles, import_article, parse_article
from kb.config import Settings
from kb.indexer import IndexSync, rebuild, searchable_documents
from kb.lifecycle import ArticleState, Audience, Confidence, Role
from kb.models import Article, CaseArticleLink, IngestRecord, Outbox, Relation
from kb.search import store
from kb.search.types import Embedder
from kb.text import Analyzer
from tests.conftest import DATA
from tests.fakes import HashEmbedder

pytestmark = pytest.mark.integration
PUBLIC = ArticleState(Confidence.VALIDATED, Audience.PUBLIC)
T0 = datetime(2025, 3, 1, 9, 0, tzinfo=UTC)


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'kb.db'}"
        return
    yield request.getfixturevalue("pg_schema_url")


@pytest.fixture
def factory(database_url: str) -> Iterator[sessionmaker[Session]]:
    engine = db.make_engine(database_url)
    db.create_schema(engine)
    yield db.make_session_factory(engine)
    engine.dispose()


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(index_dir=tmp_path / "index", data_dir=DATA, embed_model="hash-embedder")


def _pipeline(factory: sessionmaker[Session], settings: Settings, analyzer: Analyzer, **kw: Any) -> Pipeline:
    sync = IndexSync.open(factory, settings, embedder=HashEmbedder(), progress=False)
    return Pipeline(factory, sync, analyzer, save_every=kw.pop("save_every", 5), **kw)


def _sample_articles(n: int) -> list[dict[str, Any]]:
    lines = (DATA / "samples" / "corpus.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines[:n]]


def _sample_cases(n: int, product: str | None = None) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for path in sorted((DATA / "samples").glob("cases*.jsonl")):
        for line in path.read_text(encoding="utf-8").splitlines():
            case = json.loads(line)
            if product is None or case["product"] == product:
                out.append(case)
    return out[:n]


def _write_jsonl(path: Path, rows: list[Any]) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r, ensure_ascii=False)) + "\n" for r in rows))
    return path


def _index_ids(settings: Settings, embedder: Embedder | None = None) -> list[str]:
    engine = store.load(replace(settings), embedder=embedder or HashEmbedder())
    return [d.doc_id for row, d in enumerate(engine.docs) if engine.alive[row]]


def _db_ids(factory: sessionmaker[Session]) -> set[str]:
    with factory() as session:
        return {d.doc_id for d in searchable_documents(session)}


def _assert_index_matches_db(
    factory: sessionmaker[Session], settings: Settings, embedder: Embedder | None = None
) -> None:
    live = _index_ids(settings, embedder)
    assert len(live) == len(set(live)), "a document is live twice"
    assert set(live) == _db_ids(factory)
    with factory() as session:
        assert session.scalar(select(func.count()).select_from(Outbox)) == 0


def test_pipeline_ingests_cases_and_index_matches_db(
    factory: sessionmaker[Session], settings: Settings, analyzer: Analyzer, tmp_path: Path
) -> None:
    pipeline = _pipeline(factory, settings, analyzer)
    articles = [parse_article(a) for a in _sample_articles(25)]
    report = pipeline.ingest_articles([(i, a) for i, a in enumerate(articles, 1)], default_state=PUBLIC)
    assert (report.read, report.created, report.failed) == (25, 25, [])
    cases = _sample_cases(12, "windows-client")
    unresolved = {**cases[0], "id": "X-OPEN", "state": "in_progress"}
    no_resolution = {**cases[1], "id": "X-NORES", "resolution": ""}
    bad_date = {**cases[2], "id": "X-BADDATE", "created_at": "yesterday"}
    rows: list[Any] = [*cases, unresolved, no_resolution, "{not json", bad_date]
    source = _write_jsonl(tmp_path / "cases.jsonl", rows)
    report = pipeline.ingest_cases(read_cases(source))
    assert report.read == len(rows)
    assert [(f.line, f.record) for f in report.failed] == [(len(cases) + 3, None), (len(cases) + 4, "X-BADDATE")]
    assert "created_at" in report.failed[1].error
    assert report.skipped == 2 and set(report.skips) == {"not resolved (state 'in_progress')", "no resolution"}
    assert report.created + report.merged + report.linked == len(cases)
    assert report.created >= 1
    _assert_index_matches_db(factory, settings)
    with factory() as session:
        records = list(session.scalars(select(IngestRecord)))
        assert {r.external_id for r in records} == {c["id"] for c in cases}
        for record in records:
            relation = Relation.RELATED if record.outcome == "linked" else Relation.SOLVED_BY
            link = session.scalars(
                select(CaseArticleLink).where(
                    CaseArticleLink.case_id == record.case_id, CaseArticleLink.article_id == record.article_id
                )
            ).one()
            assert link.relation == relation
        drafts = [r.article_id for r in records if r.outcome == "created"]
        for article_id in drafts:
            article = arts.get_article(session, str(article_id))
            assert (article.confidence, article.audience) == (Confidence.WIP, Audience.INTERNAL)
            version = arts.get_article_version(session, article.id)
            flags = {version.machine_translated_zh, version.machine_translated_en}
            assert flags == {True, False}, "one variant human, the other machine-made"
        texts = " ".join(d.text for d in searchable_documents(session) if d.doc_id in set(map(str, drafts)))
        emails = {m for c in cases for m in re.findall(r"[\w.+-]+@[\w-]+\.[\w.]+", c["description"])}
        assert emails, "the sample cases should carry e-mail addresses for this check to mean anything"
        for case in cases:  # personal data never reaches an article
            assert case["contact"] not in texts
        assert not {e for e in emails if e in texts}


def test_pipeline_rerun_creates_nothing(
    factory: sessionmaker[Session], settings: Settings, analyzer: Analyzer, tmp_path: Path
) -> None:
    source = _write_jsonl(tmp_path / "cases.jsonl", _sample_cases(8, "printers"))
    first = _pipeline(factory, settings, analyzer).ingest_cases(read_cases(source))
    with factory() as session:
        counts = (session.scalar(select(func.count()).select_from(Article)), len(_index_ids(settings)))
    second = _pipeline(factory, settings, analyzer).ingest_cases(read_cases(source))
    assert first.created + first.merged + first.linked == 8
    assert (second.skipped, second.created, second.merged, second.linked) == (8, 0, 0, 0)
    assert set(second.skips) == {"already ingested"}
    with factory() as session:
        assert (session.scalar(select(func.count()).select_from(Article)), len(_index_ids(settings))) == counts
    _assert_index_matches_db(factory, settings)


def test_pipeline_merges_a_repeated_new_problem_and_links_a_known_one(
    factory: sessionmaker[Session], settings: Settings, analyzer: Analyzer, tmp_path: Path
) -> None:
    pipeline = _pipeline(factory, settings, analyzer, dup_rule=DupRule(lexical=0.4, vector=0.3))
    corpus = _sample_articles(30)  # enough documents for BM25's idf to mean something
    known = corpus[0]
    pipeline.ingest_articles([(i, parse_article(a)) for i, a in enumerate(corpus, 1)], default_state=PUBLIC)
    base = _sample_cases(1, "networking-vpn")[0]
    twin = {**base, "id": "TWIN-2", "contact": "Someone Else"}
    copy_of_known = {
        **base,
        "id": "KNOWN-1",
        "subject": known["title"],
        "description": known["symptom"],
        "resolution": known["resolution"],
        "product": known["product"],
    }
    source = _write_jsonl(tmp_path / "cases.jsonl", [base, twin, copy_of_known])
    report = pipeline.ingest_cases(read_cases(source))
    assert (report.created, report.merged, report.linked) == (1, 1, 1)
    with factory() as session:
        outcome = {r.external_id: r for r in session.scalars(select(IngestRecord))}
        assert outcome["TWIN-2"].article_id == outcome[base["id"]].article_id
        assert outcome["KNOWN-1"].article_id == known["id"]
        assert "near-duplicate of" in outcome["KNOWN-1"].detail
        assert arts.reuse_count(session, str(outcome[base["id"]].article_id), [Relation.SOLVED_BY]) == 2
    _assert_index_matches_db(factory, settings)


def test_indexer_archive_and_rollback(factory: sessionmaker[Session], settings: Settings) -> None:
    sync = IndexSync.open(factory, settings, embedder=HashEmbedder())
    with factory.begin() as session:
        article = arts.create_article(session, None, en=arts.Variant("Printer offline", "spooler stops"), at=T0)
        article_id, version_id = article.id, article.version_id
    with factory() as session, session.begin():  # a change that rolls back leaves no outbox row behind
        arts.create_article(session, None, en=arts.Variant("Never committed", "gone"), at=T0)
        session.rollback()
    sync.catch_up()
    assert article_id in _index_ids(settings) and len(_index_ids(settings)) == 1
    with factory.begin() as session:
        arts.set_article_state(
            session,
            article_id,
            Role.REVIEWER,
            ArticleState(Confidence.ARCHIVED),
            expected_version=version_id,
        )
    report = sync.catch_up()
    assert (report.applied, report.deleted) == (1, 1)
    assert article_id not in _index_ids(settings)
    assert sync.engine.search("printer offline", mode="bm25") == []
    with factory() as session:  # archived: out of search, versions still readable for the cases citing them
        assert arts.get_article_version(session, article_id, 1).title_en == "Printer offline"
    _assert_index_matches_db(factory, settings)


def test_indexer_catches_up_after_a_crash_before_save(factory: sessionmaker[Session], settings: Settings) -> None:
    sync = IndexSync.open(factory, settings, embedder=HashEmbedder())
    with factory.begin() as session:
        for i in range(3):
            arts.create_article(session, None, en=arts.Variant(f"Disk {i} full", f"volume {i} is full"), at=T0)
    assert sync.apply_pending() == 3  # applied in memory, never saved: the process "dies" here
    assert _index_ids(settings) == []
    again = IndexSync.open(factory, settings, embedder=HashEmbedder())
    assert len(again.engine) == 3
    _assert_index_matches_db(factory, settings)


def test_indexer_second_consumer_reloads_instead_of_overwriting(
    factory: sessionmaker[Session], settings: Settings
) -> None:
    first = IndexSync.open(factory, settings, embedder=HashEmbedder())
    second = IndexSync.open(factory, settings, embedder=HashEmbedder())
    with factory.begin() as session:
        arts.create_article(session, None, en=arts.Variant("VPN drops", "tunnel resets hourly"), at=T0)
    second.catch_up()
    with factory.begin() as session:
        arts.create_article(session, None, en=arts.Variant("Mail stuck", "queue grows"), at=T0)
    first.catch_up()  # its generation is stale: it must reload second's work, not save over it
    assert len(first.engine) == 2
    _assert_index_matches_db(factory, settings)


def test_rebuild_from_database(factory: sessionmaker[Session], settings: Settings) -> None:
    with factory.begin() as session:
        arts.create_article(session, None, zh=arts.Variant("打印机脱机", "后台打印程序停止"), at=T0)
        for data in _sample_articles(9)[1:]:
            import_article(session, parse_article(data), default_state=PUBLIC)
    engine = rebuild(factory, settings, embedder=HashEmbedder())
    assert len(engine) == 9
    assert engine.search("打印机脱机", mode="bm25")[0].doc_id == "KB-000001"
    _assert_index_matches_db(factory, settings)


def test_articles_export_import_round_trip(factory: sessionmaker[Session], tmp_path: Path) -> None:
    with factory.begin() as session:
        for data in _sample_articles(5):
            import_article(session, parse_article(data), default_state=PUBLIC)
        article = arts.create_article(
            session,
            None,
            zh=arts.Variant("邮件卡在发件箱", "重启后正常"),
            en=arts.Variant("Mail stuck in outbox", "fine after restart"),
            keywords=["outbox"],
            at=T0,
        )
        arts.edit_article(  # a lone zh edit makes the en variant stale
            session,
            article.id,
            Role.AUTHOR,
            {"zh": arts.Variant("邮件卡在发件箱", "清空发件箱后正常")},
            expected_version=article.version_id,
        )
    with factory() as session:
        exported = list(export_articles(session))
    by_id = {line["id"]: line for line in exported}
    assert len(exported) == 6 and by_id[article.id]["en"]["stale"] is True and by_id[article.id]["version"] == 2
    assert by_id[article.id]["zh"]["stale"] is False
    other_engine = db.make_engine(f"sqlite:///{tmp_path / 'other.db'}")
    db.create_schema(other_engine)
    other = db.make_session_factory(other_engine)
    with other.begin() as session:
        outcomes = [import_article(session, parse_article(line), default_state=PUBLIC)[0] for line in exported]
    assert outcomes == ["created"] * 6
    with other.begin() as session:  # the same lines again change nothing
        assert {import_article(session, parse_article(line), default_state=PUBLIC)[0] for line in exported} == {
            "unchanged"
        }

    def comparable(line: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in line.items() if k not in ("version", "created_at", "updated_at")}

    with other() as session:
        assert [comparable(x) for x in export_articles(session)] == [comparable(x) for x in exported]
    other_engine.dispose()


def test_article_parse_errors() -> None:
    with pytest.raises(ValueError, match="id must be"):
        parse_article({"id": "has space", "title": "t", "symptom": "s"})
    with pytest.raises(ValueError, match="both null"):
        parse_article({"id": "A-1", "zh": None, "en": None})
    with pytest.raises(ValueError, match="title is required"):
        parse_article({"id": "A-1", "en": {"symptom": "x"}})
    with pytest.raises(Exception, match="public needs validated"):
        parse_article({"id": "A-1", "title": "t", "symptom": "s", "confidence": "wip", "audience": "public"})
    with pytest.raises(ValueError, match="no content"):
        parse_article({"id": "A-1", "title": "only a title"})


def test_bulk_import_markdown_and_html(
    factory: sessionmaker[Session], settings: Settings, analyzer: Analyzer, tmp_path: Path
) -> None:
    kb_dir = tmp_path / "kb"
    kb_dir.mkdir()
    (kb_dir / "vpn-mtu.md").write_text(
        "---\nid: MD-1\nproducts: [networking-vpn]\nerror_codes: 809\n---\n# VPN 连接后网页打不开\n\n"
        "## 现象\n连接 VPN 后内网网页加载一半卡住。\n\n## 原因\n隧道 MTU 过大导致分片丢失。\n\n"
        "## 解决方法\n1. 将虚拟网卡 MTU 调整为 1400。\n",
        encoding="utf-8",
    )
    (kb_dir / "printer.html").write_text(
        '<html><head><title>x</title><meta name="kb:product" content="printers"><script>evil()</script></head>'
        "<body><h1>Printer prints blank pages</h1><h2>Symptom</h2><p>Pages come out blank.</p>"
        "<h2>Resolution</h2><ol><li>Replace the toner.</li><li>Run a cleaning page.</li></ol></body></html>",
        encoding="utf-8",
    )
    (kb_dir / "broken.md").write_text("---\nid: X\nno closing fence\n", encoding="utf-8")
    items = list(read_article_files(kb_dir))
    report = _pipeline(factory, settings, analyzer).ingest_articles(items, default_state=PUBLIC)
    assert (report.read, report.created, len(report.failed)) == (3, 2, 1)
    assert "never closed" in report.failed[0].error
    with factory() as session:
        md = arts.get_article_version(session, "MD-1")
        assert md.title_zh == "VPN 连接后网页打不开" and "MTU 过大" in str(md.cause_zh)
        assert "1400" in str(md.resolution_zh)
        html = arts.get_article_version(session, "printer")
        assert html.title_en == "Printer prints blank pages"
        assert "Replace the toner." in str(html.resolution_en) and "evil" not in str(html.symptom_en)
        assert arts.get_article(session, "printer").products == ["printers"]
    _assert_index_matches_db(factory, settings)


@pytest.mark.slow
def test_pipeline_real_model(tmp_path: Path, analyzer: Analyzer) -> None:
    """The bundled sentence-transformers model end to end: articles in, cases in, duplicates found."""
    from kb.search.embed import SentenceTransformerEmbedder

    settings = Settings(index_dir=tmp_path / "index", data_dir=DATA)
    engine = db.make_engine(f"sqlite:///{tmp_path / 'kb.db'}")
    db.create_schema(engine)
    factory = db.make_session_factory(engine)
    sync = IndexSync.open(factory, settings, embedder=SentenceTransformerEmbedder(settings.embed_model, threads=2))
    pipeline = Pipeline(factory, sync, analyzer)
    corpus = [parse_article(a) for a in _sample_articles(210) if a["product"] == "outlook-exchange"]
    pipeline.ingest_articles(list(enumerate(corpus, 1)), default_state=PUBLIC)
    truth = dict(
        line.split("\t") for line in (DATA / "samples" / "case-truth.tsv").read_text().splitlines()[1:] if line
    )
    cases = _sample_cases(400, "outlook-exchange")[:20]
    source = _write_jsonl(tmp_path / "cases.jsonl", cases)
    report = pipeline.ingest_cases(read_cases(source))
    assert report.failed == [] and report.created + report.merged + report.linked == len(cases)
    with factory() as session:
        linked = {r.external_id: r.article_id for r in session.scalars(select(IngestRecord)) if r.outcome == "linked"}
    assert linked, "no duplicate of a known article was found"
    right = sum(truth[case_id] == article_id for case_id, article_id in linked.items())
    assert right / len(linked) >= 0.7, (right, linked)
    _assert_index_matches_db(factory, settings, sync.engine.embedder)
    hits = sync.engine.search(cases[0]["subject"], k=3)
    assert hits and hits[0].score > 0
    engine.dispose()
