"""Alembic migrations (kb/migrations) on a SQLite file and on PostgreSQL when ``KB_TEST_PG_URL`` is set.

Each PostgreSQL test gets its own schema (``search_path`` in the URL), dropped afterwards, so the tests neither
see nor disturb the tables other tests create in the shared kb_test database.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Engine, func, inspect, select
from sqlalchemy.exc import IntegrityError

from kb import db
from kb.errors import ConfigError
from kb.models import Article, ArticleVersion, Base, Case, IngestRecord, Org, Outbox, UTCDateTime

pytestmark = pytest.mark.integration

PG_URL = os.environ.get("KB_TEST_PG_URL")
T0 = datetime(2024, 5, 1, 9, 0, tzinfo=UTC)
HEAD = "0003"


@pytest.fixture(params=["sqlite", "postgresql"])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'kb.db'}"
    else:
        url = request.getfixturevalue("pg_schema_url")
    eng = db.make_engine(url)
    yield eng
    eng.dispose()


def _schema_diff(engine: Engine) -> list[Any]:
    with engine.connect() as conn:
        return list(compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), Base.metadata))


def _tables(engine: Engine) -> set[str]:
    return set(inspect(engine).get_table_names())


# Lightweight tables of the 0001 schema: the ORM models already carry 0002's columns (and defaults for them).
_T = {
    "orgs": sa.table("orgs", sa.column("id"), sa.column("name")),
    "cases": sa.table(
        "cases",
        *(sa.column(c) for c in ("id", "org_id", "contact_name", "contact_email", "channel", "product", "version")),
        *(sa.column(c) for c in ("subject", "description", "lang", "priority", "severity", "state")),
        *(sa.column(c) for c in ("escalation_level", "version_id")),
        sa.column("opened_at", UTCDateTime()),
        sa.column("updated_at", UTCDateTime()),
    ),
    "article_numbers": sa.table("article_numbers", sa.column("id")),
    "articles": sa.table(
        "articles",
        *(sa.column(c) for c in ("id", "current_version", "confidence", "audience", "governance", "version_id")),
        sa.column("products", sa.JSON()),
        sa.column("error_codes", sa.JSON()),
        sa.column("created_at", UTCDateTime()),
        sa.column("updated_at", UTCDateTime()),
    ),
    "article_versions": sa.table(
        "article_versions",
        *(sa.column(c) for c in ("id", "article_id", "version", "title_zh", "resolution_zh", "title_en")),
        *(sa.column(c) for c in ("machine_translated_zh", "machine_translated_en")),
        sa.column("keywords", sa.JSON()),
        sa.column("created_at", UTCDateTime()),
    ),
    "outbox": sa.table(
        "outbox", *(sa.column(c) for c in ("id", "entity", "entity_id", "op")), sa.column("created_at", UTCDateTime())
    ),
}


def _insert_0001_rows(engine: Engine) -> None:
    """Rows as the code of revision 0001 wrote them: an org, a case, an article with its version, outbox rows."""
    case = {
        "id": 7,
        "org_id": 1,
        "contact_name": "Li Lei",
        "contact_email": "li@example.com",
        "channel": "phone",
        "product": "ScanServer",
        "version": "3.2",
        "subject": "打印机脱机 printer offline",
        "description": "E1234 after upgrade",
        "lang": "zh",
        "priority": "p2",
        "severity": 2,
        "state": "in_progress",
        "escalation_level": "l1",
        "version_id": 4,
        "opened_at": T0,
        "updated_at": T0,
    }
    article = {
        "id": "KB-000001",
        "current_version": 1,
        "confidence": "validated",
        "audience": "public",
        "governance": "experience_based",
        "version_id": 2,
        "products": ["ScanServer"],
        "error_codes": ["E1234"],
        "created_at": T0,
        "updated_at": T0,
    }
    version = {
        "id": 1,
        "article_id": "KB-000001",
        "version": 1,
        "title_zh": "打印机脱机",
        "resolution_zh": "重启打印服务",
        "title_en": "Printer offline",
        "machine_translated_zh": False,
        "machine_translated_en": True,
        "keywords": ["E1234", "脱机"],
        "created_at": T0,
    }
    with engine.begin() as conn:
        conn.execute(sa.insert(_T["orgs"]).values(id=1, name="ACME 有限公司"))
        conn.execute(sa.insert(_T["cases"]).values(case))
        conn.execute(sa.insert(_T["article_numbers"]).values(id=1))
        conn.execute(sa.insert(_T["articles"]).values(article))
        conn.execute(sa.insert(_T["article_versions"]).values(version))
        for entity, entity_id in (("case", "7"), ("article", "KB-000001")):
            conn.execute(sa.insert(_T["outbox"]).values(entity=entity, entity_id=entity_id, op="upsert", created_at=T0))


def test_migrations_fresh_upgrade_matches_models(engine: Engine) -> None:
    assert db.current_revision(engine) is None
    assert db.head_revision() == HEAD
    db.upgrade(engine)
    assert db.current_revision(engine) == HEAD
    assert _tables(engine) == set(Base.metadata.tables) | {"alembic_version"}
    assert _schema_diff(engine) == []
    db.upgrade(engine)  # at head already: nothing happens
    db.create_schema(engine)
    with engine.connect() as conn:
        assert conn.scalar(sa.text("SELECT count(*) FROM alembic_version")) == 1
    if engine.dialect.name == "sqlite":
        with engine.connect() as conn:  # switched off for the migration only
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1


def test_migrations_upgrade_from_0001_keeps_rows(engine: Engine) -> None:
    db.upgrade(engine, "0001")
    assert db.current_revision(engine) == "0001"
    assert "ingest_records" not in _tables(engine)
    assert "external_id" not in {c["name"] for c in inspect(engine).get_columns("cases")}
    _insert_0001_rows(engine)

    db.upgrade(engine)
    assert db.current_revision(engine) == HEAD
    assert _schema_diff(engine) == []
    factory = db.make_session_factory(engine)
    with factory() as s:
        case = s.get_one(Case, 7)
        assert (case.external_id, case.meta, case.resolution) == (None, {}, "")  # the new columns' defaults
        assert (case.subject, case.state, case.version_id, case.opened_at) == (
            "打印机脱机 printer offline",
            "in_progress",
            4,
            T0,
        )
        assert s.get_one(Org, 1).name == "ACME 有限公司"
        article = s.get_one(Article, "KB-000001")
        assert (article.version_id, article.products, article.error_codes) == (2, ["ScanServer"], ["E1234"])
        v1 = s.scalars(select(ArticleVersion).where(ArticleVersion.article_id == "KB-000001")).one()
        assert (v1.title_zh, v1.keywords, v1.machine_translated_en) == ("打印机脱机", ["E1234", "脱机"], True)
        assert [(r.entity, r.entity_id) for r in s.scalars(select(Outbox).order_by(Outbox.id))] == [
            ("case", "7"),
            ("article", "KB-000001"),
        ]

    with factory.begin() as s:  # the new schema is usable: external ids, meta, ingest records
        case = s.get_one(Case, 7)
        case.external_id, case.meta = "SR-1001", {"queue": "printers", "tags": ["vip"]}
        s.add(IngestRecord(source="case", external_id="SR-1001", content_hash="0" * 64, outcome="created", at=T0))
        s.add(IngestRecord(source="case", external_id="SR-1002", content_hash="1" * 64, outcome="skipped", at=T0))
        s.flush()
        assert case.version_id == 5
    with factory() as s:
        assert s.get_one(Case, 7).meta == {"queue": "printers", "tags": ["vip"]}


def test_migrations_external_id_unique_but_many_null(engine: Engine) -> None:
    db.upgrade(engine, "0001")
    _insert_0001_rows(engine)
    db.upgrade(engine)
    factory = db.make_session_factory(engine)
    with factory.begin() as s:
        template = s.get_one(Case, 7)
        fields = {c.key: getattr(template, c.key) for c in Case.__table__.columns if c.key not in ("id", "version_id")}
        for _ in range(2):  # several cases without an external id
            s.add(Case(**fields))
        s.add(Case(**{**fields, "external_id": "SR-1"}))
    with pytest.raises(IntegrityError), factory.begin() as s:
        s.add(Case(**{**fields, "external_id": "SR-1"}))
    with factory() as s:
        assert s.scalar(select(func.count()).select_from(Case)) == 4


def test_migrations_downgrade_to_0001_and_upgrade_again(engine: Engine) -> None:
    db.upgrade(engine, "0001")
    _insert_0001_rows(engine)
    db.upgrade(engine)
    factory = db.make_session_factory(engine)
    with factory.begin() as s:
        s.get_one(Case, 7).external_id = "SR-1001"
        s.add(IngestRecord(source="case", external_id="SR-1001", content_hash="0" * 64, outcome="created", at=T0))

    db.downgrade(engine, "0001")
    assert db.current_revision(engine) == "0001"
    assert "ingest_records" not in _tables(engine)
    assert {c["name"] for c in inspect(engine).get_columns("cases")}.isdisjoint({"external_id", "meta", "resolution"})
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT subject, version_id FROM cases WHERE id = 7")).one() == (
            "打印机脱机 printer offline",
            5,
        )
        assert conn.scalar(sa.text("SELECT count(*) FROM outbox")) == 2

    db.upgrade(engine)
    assert db.current_revision(engine) == HEAD
    assert _schema_diff(engine) == []
    with factory() as s:
        assert (s.get_one(Case, 7).external_id, s.get_one(Case, 7).meta) == (None, {})

    db.downgrade(engine, "base")
    assert db.current_revision(engine) is None
    assert _tables(engine) == {"alembic_version"}


def test_migrations_failed_upgrade_changes_nothing(engine: Engine) -> None:
    db.upgrade(engine, "0001")
    _insert_0001_rows(engine)
    with engine.begin() as conn:  # makes 0002 fail at its second step, after it rebuilt / altered cases
        conn.exec_driver_sql("CREATE TABLE ingest_records (id INTEGER PRIMARY KEY)")
    with pytest.raises(sa.exc.DatabaseError):
        db.upgrade(engine)
    assert db.current_revision(engine) == "0001"  # one transaction: DDL rolled back on SQLite too
    assert "external_id" not in {c["name"] for c in inspect(engine).get_columns("cases")}
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT id, version_id FROM cases")).all() == [(7, 4)]


def test_migrations_unversioned_database_needs_stamp(engine: Engine) -> None:
    Base.metadata.create_all(engine)  # a database made before migrations existed
    with pytest.raises(ConfigError, match="stamp"):
        db.upgrade(engine)
    assert db.current_revision(engine) is None
    db.stamp(engine, HEAD)
    db.upgrade(engine)
    assert db.current_revision(engine) == HEAD


def test_migrations_sqlite_in_memory() -> None:
    engine = db.make_engine("sqlite://")
    try:
        db.create_schema(engine)
        assert db.current_revision(engine) == HEAD
        assert _schema_diff(engine) == []
    finally:
        engine.dispose()
