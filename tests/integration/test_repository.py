"""Repository and article functions against real databases: SQLite (a tmp file) and PostgreSQL when
``KB_TEST_PG_URL`` is set. Most tests run in a rolled-back outer transaction (STYLE.md example 8); the
concurrency and outbox-rollback tests need real commits and use separate sessions on the engine."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select, text
from sqlalchemy.orm import Session

from kb import articles as arts
from kb import repository as repo
from kb.db import create_schema, make_engine, make_session_factory
from kb.errors import CaseNotFound, ConcurrentUpdate, InvalidTransition, PermissionDenied
from kb.lifecycle import ArticleState, Audience, CaseState, Channel, Confidence, EscalationLevel, Priority, Role
from kb.models import ArticleVersion, Case, CaseEvent, EventKind, Outbox, Relation

pytestmark = pytest.mark.integration

T0 = datetime(2024, 5, 1, 9, 0, tzinfo=UTC)
PG_URL = os.environ.get("KB_TEST_PG_URL")
S = CaseState


@pytest.fixture(
    params=[
        "sqlite",
        pytest.param(
            "postgresql",
            marks=pytest.mark.skipif(
                not PG_URL, reason="KB_TEST_PG_URL not set (e.g. postgresql+psycopg://kb:kb@localhost/kb_test)"
            ),
        ),
    ]
)
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    url = f"sqlite:///{tmp_path / 'kb.db'}" if request.param == "sqlite" else str(PG_URL)
    eng = make_engine(url)
    create_schema(eng)
    yield eng
    eng.dispose()


@pytest.fixture
def session(engine: Engine) -> Iterator[Session]:
    with engine.connect() as conn:
        outer = conn.begin()
        with Session(bind=conn, join_transaction_mode="create_savepoint") as s:
            yield s
        outer.rollback()


def _unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def _case(session: Session, org_id: int | None = None, priority: Priority = Priority.P3, at: datetime = T0) -> Case:
    if org_id is None:
        org_id = repo.create_org(session, _unique("acme")).id
    return repo.create_case(
        session,
        org_id=org_id,
        contact_name="Li Lei",
        contact_email="li@example.com",
        channel=Channel.PHONE,
        product="ScanServer",
        subject="打印机脱机 printer offline",
        lang="zh",
        priority=priority,
        description="E1234 after upgrade",
        at=at,
    )


def _move(session: Session, case: Case, target: CaseState, minutes: int) -> Case:
    return repo.transition_case(
        session, case.id, target, None, expected_version=case.version_id, at=T0 + timedelta(minutes=minutes)
    )


def _outbox(session: Session, entity_id: str) -> list[tuple[str, str]]:
    return [(r.entity, r.op) for r in repo.pending_outbox(session, 0, 1000) if r.entity_id == entity_id]


def test_case_happy_path_with_reopen(session: Session) -> None:
    case = _case(session)
    assert case.state == S.NEW and case.version_id == 1
    path = [S.TRIAGED, S.IN_PROGRESS, S.WAITING_ON_CUSTOMER, S.IN_PROGRESS, S.RESOLVED, S.CLOSED, S.IN_PROGRESS]
    for minute, target in enumerate(path, start=1):
        case = _move(session, case, target, minute)
        if target == S.RESOLVED:
            assert case.resolved_at == T0 + timedelta(minutes=minute)
        if target == S.CLOSED:
            assert case.closed_at == T0 + timedelta(minutes=minute)
    assert case.state == S.IN_PROGRESS
    assert case.first_response_at == T0 + timedelta(minutes=1)
    assert case.resolved_at is None and case.closed_at is None  # reopen clears them
    events = repo.timeline(session, case.id, include_internal=True)
    assert [e.kind for e in events] == [EventKind.CALL] + [EventKind.STATE_CHANGE] * len(path)
    assert [e.to_state for e in events[1:]] == path
    assert events[1].from_state == S.NEW and events[-1].from_state == S.CLOSED
    assert _outbox(session, str(case.id)) == [("case", "upsert")] * (1 + len(path))


def test_case_illegal_transition_writes_nothing(session: Session) -> None:
    case = _case(session)
    before = session.scalar(select(func.count()).select_from(CaseEvent))
    outbox_before = len(repo.pending_outbox(session, 0, 1000))
    with pytest.raises(InvalidTransition) as info:
        _move(session, case, S.RESOLVED, 1)
    assert info.value.current == S.NEW and info.value.target == S.RESOLVED
    session.expire_all()
    assert repo.get_case(session, case.id).state == S.NEW
    assert repo.get_case(session, case.id).version_id == 1
    assert session.scalar(select(func.count()).select_from(CaseEvent)) == before
    assert len(repo.pending_outbox(session, 0, 1000)) == outbox_before


def test_case_stale_expected_version_raises(session: Session) -> None:
    case = _case(session)
    _move(session, case, S.TRIAGED, 1)
    with pytest.raises(ConcurrentUpdate) as info:
        repo.transition_case(session, case.id, S.IN_PROGRESS, None, expected_version=1)
    assert (info.value.entity, info.value.expected_version, info.value.actual_version) == ("case", 1, 2)


def test_case_concurrent_update_second_session_loses(engine: Engine) -> None:
    factory = make_session_factory(engine)
    with factory.begin() as s:
        case_id = _case(s).id
    # Two users load the case form. Each request is its own transaction: on SQLite a write transaction holds
    # the database's one write lock (BEGIN IMMEDIATE, see kb.db), so two open at once in one thread would wait
    # for each other; kb.db refuses that at once.
    first, second = factory(), factory()
    try:
        with first.begin():
            a = repo.get_case(first, case_id)
        with second.begin():
            b = repo.get_case(second, case_id)  # second keeps b (expire_on_commit=False): version 1
        assert a.version_id == b.version_id == 1
        with first.begin():
            repo.transition_case(first, case_id, S.TRIAGED, None, expected_version=1)
        with pytest.raises(ConcurrentUpdate) as info, second.begin():  # b still says 1: the UPDATE matches no row
            repo.transition_case(second, case_id, S.TRIAGED, None, expected_version=1)
        assert info.value.id == case_id and info.value.expected_version == 1
        assert info.value.actual_version is None  # caught at flush (StaleDataError), not by the version check
        with second.begin():
            assert repo.get_case(second, case_id).version_id == 2  # the rollback expired b
        with pytest.raises(ConcurrentUpdate) as info, second.begin():  # a fresh read, but the form still says 1
            repo.transition_case(second, case_id, S.IN_PROGRESS, None, expected_version=1)
        assert info.value.actual_version == 2
    finally:
        first.close()
        second.close()


def test_customer_timeline_hides_internal_notes(session: Session) -> None:
    case = _case(session)
    repo.add_timeline_entry(session, case.id, EventKind.NOTE_INTERNAL, "driver bug, see JIRA-1", None, True)
    repo.add_timeline_entry(session, case.id, EventKind.NOTE_PUBLIC, "please send the logs", None, False)
    customer = repo.timeline(session, case.id, include_internal=False)
    staff = repo.timeline(session, case.id, include_internal=True)
    assert [e.text for e in customer] == ["E1234 after upgrade", "please send the logs"]
    assert len(staff) == 3 and any(e.internal for e in staff)
    with pytest.raises(ValueError):
        repo.add_timeline_entry(session, case.id, EventKind.NOTE_INTERNAL, "oops", None, False)


def test_other_org_case_looks_missing(session: Session) -> None:
    case = _case(session)
    other = repo.create_org(session, _unique("other"))
    with pytest.raises(CaseNotFound) as foreign:
        repo.get_case(session, case.id, org_id=other.id)
    with pytest.raises(CaseNotFound) as missing:
        repo.get_case(session, case.id + 10_000, org_id=case.org_id)
    assert str(foreign.value) == f"case {case.id} not found"
    assert str(missing.value).replace(str(case.id + 10_000), "ID") == str(foreign.value).replace(str(case.id), "ID")
    assert repo.get_case(session, case.id, org_id=case.org_id).id == case.id


def test_sla_of_p1_case(session: Session) -> None:
    case = _case(session, priority=Priority.P1)
    case = _move(session, case, S.TRIAGED, 10)  # first response after 10 min: within 15
    case = _move(session, case, S.IN_PROGRESS, 20)
    case = _move(session, case, S.WAITING_ON_CUSTOMER, 60)  # clock paused from here
    status = repo.case_sla(session, case.id, T0 + timedelta(hours=5))
    assert status.response_met is True and not status.response_breached
    assert status.resolution_elapsed == timedelta(minutes=60)
    assert status.state == "paused"
    case = _move(session, case, S.IN_PROGRESS, 300)
    late = repo.case_sla(session, case.id, T0 + timedelta(minutes=300 + 181))
    assert late.resolution_elapsed == timedelta(minutes=241) and late.state == "breached"


def _article(session: Session, author_id: int | None = None) -> str:
    zh = arts.Variant("打印机脱机", symptom="显示脱机", resolution="重启打印服务")
    en = arts.Variant("Printer offline", symptom="Shows offline", resolution="Restart the spooler", translated=True)
    return arts.create_article(session, author_id, zh=zh, en=en, keywords=["E1234"], products=["ScanServer"]).id


def test_article_versions_immutable_and_stale_translation(session: Session) -> None:
    article_id = _article(session)
    assert article_id.startswith("KB-") and len(article_id) == 9
    article = arts.get_article(session, article_id)
    assert (article.current_version, article.confidence) == (1, Confidence.WIP)
    assert arts.stale_translation(arts.get_article_version(session, article_id)) == {"zh": False, "en": False}
    v1_title = arts.get_article_version(session, article_id, 1).title_zh
    zh2 = arts.Variant("打印机脱机（驱动 3.2）", symptom="显示脱机", resolution="升级驱动到 3.3")
    v2 = arts.edit_article(session, article_id, Role.AUTHOR, {"zh": zh2}, expected_version=article.version_id)
    assert v2.version == 2 and article.current_version == 2
    assert arts.stale_translation(v2) == {"zh": False, "en": True}
    assert v2.title_en == "Printer offline"  # copied forward
    session.expire_all()
    assert arts.get_article_version(session, article_id, 1).title_zh == v1_title  # v1 untouched
    en3 = arts.Variant("Printer offline (driver 3.2)", resolution="Upgrade the driver to 3.3", translated=True)
    article = arts.get_article(session, article_id)
    v3 = arts.edit_article(session, article_id, Role.AUTHOR, {"en": en3}, expected_version=article.version_id)
    assert arts.stale_translation(v3) == {"zh": False, "en": False}
    versions = session.scalars(select(ArticleVersion.version).where(ArticleVersion.article_id == article_id))
    assert sorted(versions) == [1, 2, 3]
    with pytest.raises(ConcurrentUpdate):
        arts.edit_article(session, article_id, Role.AUTHOR, {"en": en3}, expected_version=1)
    with pytest.raises(PermissionDenied):
        arts.edit_article(session, article_id, Role.ENGINEER, {"zh": zh2}, expected_version=article.version_id)


def _set(session: Session, article_id: str, role: Role, state: ArticleState) -> None:
    article = arts.get_article(session, article_id)
    arts.set_article_state(session, article_id, role, state, expected_version=article.version_id)


def test_archived_article_leaves_search_but_stays_readable(session: Session) -> None:
    article_id = _article(session)
    _set(session, article_id, Role.AUTHOR, ArticleState(Confidence.NOT_VALIDATED))
    _set(session, article_id, Role.REVIEWER, ArticleState(Confidence.ARCHIVED))
    assert _outbox(session, article_id) == [("article", "upsert")] * 2 + [("article", "delete")]
    assert arts.get_article_version(session, article_id, 1).title_en == "Printer offline"


def test_author_cannot_publish_public(session: Session) -> None:
    article_id = _article(session)
    _set(session, article_id, Role.AUTHOR, ArticleState(Confidence.NOT_VALIDATED))
    with pytest.raises(PermissionDenied):
        _set(session, article_id, Role.AUTHOR, ArticleState(Confidence.VALIDATED, Audience.PUBLIC))
    _set(session, article_id, Role.REVIEWER, ArticleState(Confidence.VALIDATED, Audience.PUBLIC))
    assert arts.get_article(session, article_id).audience == Audience.PUBLIC


def test_link_records_version_and_reuse(session: Session) -> None:
    article_id = _article(session)
    article = arts.get_article(session, article_id)
    arts.edit_article(
        session, article_id, Role.AUTHOR, {"zh": arts.Variant("新标题")}, expected_version=article.version_id
    )
    first, second = _case(session), _case(session)
    link = arts.link_case_article(session, first.id, article_id, Relation.SOLVED_BY)
    assert link.article_version == 2
    assert arts.link_case_article(session, first.id, article_id, Relation.SOLVED_BY).id == link.id  # idempotent
    arts.link_case_article(session, first.id, article_id, Relation.RELATED)
    arts.link_case_article(session, second.id, article_id, Relation.RELATED)
    assert arts.reuse_count(session, article_id) == 2
    assert arts.reuse_count(session, article_id, [Relation.SOLVED_BY]) == 1
    events = repo.timeline(session, first.id, include_internal=True)
    assert [e.kind for e in events].count(EventKind.LINK) == 2
    assert all(e.kind != EventKind.LINK for e in repo.timeline(session, first.id, include_internal=False))
    fb = arts.add_feedback(session, article_id, 2, True, comment="worked")
    assert fb.id is not None


def test_outbox_is_written_with_the_change_and_rolled_back_with_it(engine: Engine) -> None:
    factory = make_session_factory(engine)
    with factory() as s:
        start = max((r.id for r in repo.pending_outbox(s, 0, 100_000)), default=0)
    with pytest.raises(RuntimeError), factory.begin() as s:
        _case(s)
        _article(s)
        assert {r.entity for r in repo.pending_outbox(s, start)} == {"case", "article"}
        raise RuntimeError("request failed")
    with factory() as s:
        assert repo.pending_outbox(s, start) == []
    with factory.begin() as s:
        case_id = _case(s).id
        article_id = _article(s)
    with factory() as s:
        rows = repo.pending_outbox(s, start)
        assert [(r.entity, r.entity_id, r.op) for r in rows] == [
            ("case", str(case_id), "upsert"),
            ("article", article_id, "upsert"),
        ]
        assert s.scalar(select(func.count()).select_from(Outbox).where(Outbox.id > start)) == 2


def test_escalation_moves_case_and_is_internal(session: Session) -> None:
    case = _move(session, _case(session), S.TRIAGED, 1)
    case = repo.escalate_case(session, case.id, EscalationLevel.L2, None, expected_version=case.version_id)
    assert (case.state, case.escalation_level) == (S.ESCALATED, EscalationLevel.L2)
    with pytest.raises(InvalidTransition):
        repo.escalate_case(session, case.id, EscalationLevel.L1, None, expected_version=case.version_id)
    kinds = [e.kind for e in repo.timeline(session, case.id, include_internal=False)]
    assert EventKind.ESCALATION not in kinds and kinds.count(EventKind.STATE_CHANGE) == 2


def test_sqlite_pragmas(engine: Engine) -> None:
    if engine.dialect.name != "sqlite":
        pytest.skip("SQLite only")
    with engine.connect() as conn:
        assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert conn.execute(text("PRAGMA foreign_keys")).scalar() == 1
        assert conn.execute(text("PRAGMA busy_timeout")).scalar() == 30_000
