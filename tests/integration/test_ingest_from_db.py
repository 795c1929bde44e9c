"""``kb ingest cases --from-db``: the resolved and closed cases already in the database become knowledge drafts
attached to those cases (no second case row), idempotently; ``--translator`` chooses how a draft's other language
is made. In process through ``kb.cli.main``, BM25 only (``--no-embed``), on a temporary SQLite database."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from ingest.pipeline import read_stored_cases, stored_case_ids
from ingest.sources import RecordError
from kb.cli import main
from kb.cli_db import open_database
from kb.config import Settings
from kb.lifecycle import CaseState, Channel, Priority, Role
from kb.models import ArticleVersion, Case, CaseArticleLink, IngestRecord, Relation
from kb.repository import create_case, create_org, create_user, transition_case

pytestmark = pytest.mark.integration
T0 = datetime(2026, 10, 1, 9, 0, tzinfo=UTC)
MT_MARK = "[test-mt]"


class PrefixTranslator:
    """The test translator ``--translator tests.integration.test_ingest_from_db:make_translator`` loads."""

    name = "test-mt"

    def translate(self, text: str, source: str, target: str) -> str:
        return f"{MT_MARK} {source}->{target}: {text}"


def make_translator() -> PrefixTranslator:
    return PrefixTranslator()


def make_nothing() -> object:
    """A factory whose result is no translator (no ``translate``)."""
    return object()


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("KB_INDEX_DIR", str(tmp_path / "index"))
    monkeypatch.setenv("KB_DATABASE_URL", f"sqlite:///{tmp_path / 'kb.db'}")
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture
def factory(home: Path) -> Iterator[sessionmaker[Session]]:
    engine, factory = open_database(Settings.from_env())  # creates the schema at head, as the CLI expects
    yield factory
    engine.dispose()


def _case(session: Session, org_id: int, subject: str, description: str, **kw: Any) -> Case:
    return create_case(
        session,
        org_id=org_id,
        contact_name="Li Wei",
        contact_email="li.wei@example.com",
        channel=Channel.EMAIL,
        product="Outlook",
        subject=subject,
        description=description,
        lang="en",
        priority=Priority.P3,
        at=kw.pop("at", T0),
        **kw,
    )


def _move(session: Session, case: Case, states: list[CaseState], actor: int, at: datetime, text: str = "") -> None:
    for i, state in enumerate(states):
        last = i == len(states) - 1
        step_at = at + timedelta(hours=i)
        transition_case(
            session, case.id, state, actor, expected_version=case.version_id, text=text if last else "", at=step_at
        )


def _seed(factory: sessionmaker[Session]) -> dict[str, int]:
    """Three cases worked in this system: resolved (no external id), closed (synced: has one), in progress."""
    working = [CaseState.TRIAGED, CaseState.IN_PROGRESS]
    with factory.begin() as session:
        org = create_org(session, "Contoso Ltd")
        agent = create_user(session, "Engineer Zhang", "zhang@support.example", Role.ENGINEER).id
        resolved = _case(
            session,
            org.id,
            "Outlook cannot send mail: error 0x800CCC0E",
            "Since this morning Outlook 2016 shows 0x800CCC0E when sending. Receiving works.",
        )
        _move(
            session,
            resolved,
            [*working, CaseState.RESOLVED],
            agent,
            T0 + timedelta(days=19),
            "Cause: the SMTP port was blocked by the new firewall rule.\n"
            "Resolution: allow outbound port 587 and set Outlook to use STARTTLS on port 587.",
        )
        closed = _case(
            session,
            org.id,
            "Printer queue stuck after the Windows update",
            "Jobs stay in the print queue on Windows 11 23H2; restarting the PC does not help.",
        )
        closed.external_id = "CRM-77"
        closed.resolution = "Resolution: restart the Print Spooler service and clear C:\\Windows\\System32\\spool."
        session.flush()  # before the transitions read version_id
        _move(session, closed, [*working, CaseState.RESOLVED, CaseState.CLOSED], agent, T0 + timedelta(days=4))
        open_case = _case(
            session,
            org.id,
            "VPN drops every 10 minutes",
            "The VPN client disconnects every ten minutes on the office network.",
        )
        _move(session, open_case, working, agent, T0 + timedelta(days=2))
        return {"resolved": resolved.id, "closed": closed.id, "open": open_case.id}


def kb(*args: str, capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    """Run ``kb ingest cases ... --no-embed -q --json`` in process; the JSON report."""
    capsys.readouterr()
    assert main(["ingest", "cases", *args, "--no-embed", "-q", "--json"]) == 0
    return dict(json.loads(capsys.readouterr().out))


def usage_error(*args: str, capsys: pytest.CaptureFixture[str]) -> str:
    """Run ``kb ingest cases ...``, expecting argparse's usage error; its stderr."""
    capsys.readouterr()
    with pytest.raises(SystemExit) as exited:
        main(["ingest", "cases", *args, "--no-embed", "-q"])
    assert exited.value.code == 2
    return capsys.readouterr().err


def _counts(factory: sessionmaker[Session]) -> tuple[int, int, int]:
    with factory() as session:
        return (
            session.scalar(select(func.count()).select_from(Case)) or 0,
            session.scalar(select(func.count()).select_from(ArticleVersion)) or 0,
            session.scalar(select(func.count()).select_from(CaseArticleLink)) or 0,
        )


def test_ingest_from_db_attaches_drafts_to_the_resolved_cases_once(
    factory: sessionmaker[Session], capsys: pytest.CaptureFixture[str]
) -> None:
    ids = _seed(factory)
    assert _counts(factory) == (3, 0, 0)

    recent = kb("--from-db", "--since", "2026-10-15", capsys=capsys)  # only the case resolved on 10-20
    assert recent == {"read": 1, "created": 1, "merged": 0, "linked": 0, "skipped": 0, "failed": []}
    report = kb("--from-db", capsys=capsys)
    assert report == {"read": 2, "created": 1, "merged": 0, "linked": 0, "skipped": 1, "failed": []}
    again = kb("--from-db", "--state", "resolved,closed", capsys=capsys)
    assert again == {"read": 2, "created": 0, "merged": 0, "linked": 0, "skipped": 2, "failed": []}

    assert _counts(factory) == (3, 2, 2)  # no second Case row; one draft and one link per resolved case
    with factory() as session:
        records = {r.external_id: r for r in session.scalars(select(IngestRecord))}
        assert set(records) == {f"db:{ids['resolved']}", "CRM-77"}
        assert records[f"db:{ids['resolved']}"].case_id == ids["resolved"]
        assert records["CRM-77"].case_id == ids["closed"]
        links = {(link.case_id, link.article_id, link.relation) for link in session.scalars(select(CaseArticleLink))}
        assert links == {(r.case_id, r.article_id, Relation.SOLVED_BY) for r in records.values()}
        assert ids["open"] not in {r.case_id for r in records.values()}  # in progress: not ingested
        draft = session.scalars(
            select(ArticleVersion).where(ArticleVersion.article_id == records[f"db:{ids['resolved']}"].article_id)
        ).one()
        assert "587" in (draft.resolution_en or "")  # the fix came from the resolving state change's text
        assert draft.title_zh and draft.machine_translated_zh  # default --translator gloss: marked machine-made


def test_stored_cases_become_case_records(factory: sessionmaker[Session]) -> None:
    ids = _seed(factory)
    assert stored_case_ids(factory) == [ids["closed"], ids["resolved"]]  # oldest resolution first
    assert stored_case_ids(factory, states=["closed"]) == [ids["closed"]]
    assert stored_case_ids(factory, since=datetime(2026, 10, 15, tzinfo=UTC)) == [ids["resolved"]]
    with pytest.raises(ValueError, match="states"):
        stored_case_ids(factory, states=["in_progress"])
    (line, record), (_, closed) = read_stored_cases(factory, [ids["resolved"], ids["closed"]])
    assert line is None
    assert (record.case_id, record.db_case_id, record.state) == (f"db:{ids['resolved']}", ids["resolved"], "resolved")
    assert (record.channel, record.priority, record.customer_org) == ("email", "P3", "Contoso Ltd")
    assert record.resolution.startswith("Cause: the SMTP port")
    assert [e.kind for e in record.timeline] == ["email", "state", "state", "state"]
    assert record.timeline[-1].author == "Engineer Zhang" and record.timeline[0].visibility == "customer"
    assert (closed.case_id, closed.state, closed.resolution[:11]) == ("CRM-77", "closed", "Resolution:")
    ((_, gone),) = read_stored_cases(factory, [999])
    assert isinstance(gone, RecordError) and (gone.record, gone.line) == ("db:999", None)


def test_from_db_bad_case_is_reported_with_line_null(
    factory: sessionmaker[Session], capsys: pytest.CaptureFixture[str]
) -> None:
    with factory.begin() as session:
        org = create_org(session, "Fabrikam")
        case = _case(session, org.id, "", "")  # a row with no subject cannot make a record
        _move(session, case, [CaseState.TRIAGED, CaseState.IN_PROGRESS, CaseState.RESOLVED], None, T0, "fixed")
        case_id = case.id
    report = kb("--from-db", capsys=capsys)
    assert report["read"] == 1
    assert report["failed"] == [{"record": f"db:{case_id}", "line": None, "error": "subject is required"}]


@pytest.mark.parametrize(
    ("translator", "zh_title"),
    [("tests.integration.test_ingest_from_db:make_translator", f"{MT_MARK} en->zh: "), ("none", None)],
)
def test_translator_option_makes_or_leaves_the_other_language(
    translator: str, zh_title: str | None, factory: sessionmaker[Session], capsys: pytest.CaptureFixture[str]
) -> None:
    ids = _seed(factory)
    report = kb("--from-db", "--state", "resolved", "--translator", translator, capsys=capsys)
    assert report["created"] == 1
    with factory() as session:
        record = session.scalars(select(IngestRecord).where(IngestRecord.case_id == ids["resolved"])).one()
        draft = session.scalars(select(ArticleVersion).where(ArticleVersion.article_id == record.article_id)).one()
    assert draft.title_en == "Outlook cannot send mail: error 0x800CCC0E" and not draft.machine_translated_en
    if zh_title is None:
        assert (draft.title_zh, draft.symptom_zh, draft.resolution_zh, draft.machine_translated_zh) == (
            None,
            None,
            None,
            False,
        )
    else:
        assert draft.title_zh == zh_title + draft.title_en and draft.machine_translated_zh
        assert draft.resolution_zh == f"{zh_title}{draft.resolution_en}" and "587" in draft.resolution_zh


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["cases.jsonl", "--from-db"], "FILE and --from-db exclude each other"),
        ([], "give the FILE to read, or --from-db"),
        (["cases.jsonl", "--state", "resolved"], "--state and --since go with --from-db"),
        (["--from-db", "--state", "in_progress"], "argument --state: states are resolved and/or closed"),
        (["--from-db", "--since", "yesterday"], "argument --since: not an ISO 8601 date or time"),
        (["--from-db", "--translator", "no_such_module_kb:make"], "cannot import 'no_such_module_kb'"),
        (["--from-db", "--translator", "tests.integration.test_ingest_from_db:nope"], "has no attribute 'nope'"),
        (["--from-db", "--translator", "tests.integration.test_ingest_from_db:make_nothing"], "has no translate"),
        (["--from-db", "--translator", "gloss-please"], "expected module:attr"),
    ],
)
def test_ingest_cases_option_mistakes_are_usage_errors(
    args: list[str], message: str, home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (home / "cases.jsonl").write_text("", encoding="utf-8")
    err = usage_error(*args, capsys=capsys)
    assert "usage: kb ingest cases" in err and message in err, err
