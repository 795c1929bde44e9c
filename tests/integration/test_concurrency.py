"""Transactions under concurrency, on a SQLite file and on PostgreSQL when ``KB_TEST_PG_URL`` is set.

The main test runs 8 worker processes ("spawn") that move one case back and forth between in_progress and
waiting_on_customer: read the case in one (read-only) transaction, wait a moment so that others get in between,
then call ``transition_case`` with the version read in a second (write) transaction, retrying on
``ConcurrentUpdate``. No update may be lost and no other error may surface (on SQLite in particular no
"database is locked": writers queue on BEGIN IMMEDIATE). Each PostgreSQL test uses its own schema.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import queue
import random
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, event, func, insert, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError

from kb import repository as repo
from kb.db import create_schema, make_engine, make_session_factory
from kb.errors import ConcurrentUpdate
from kb.lifecycle import CaseState, Channel, Priority
from kb.models import Case, CaseEvent, EventKind, Org, Outbox

pytestmark = pytest.mark.integration

PG_URL = os.environ.get("KB_TEST_PG_URL")
T0 = datetime(2024, 5, 1, 9, 0, tzinfo=UTC)
WORKERS = 8
UPDATES = 25  # successful updates each worker makes
MAX_ATTEMPTS = 500  # per update; a worker that loses this often gives up (counted, and asserted to be zero)
WINDOW_S = 0.004  # the most a worker waits between its read and its write: others commit meanwhile
S = CaseState


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database URL with the schema created: a SQLite file, or a fresh PostgreSQL schema (dropped after)."""
    if request.param == "sqlite":
        sqlite_url = f"sqlite:///{tmp_path / 'kb.db'}"
        _create(sqlite_url)
        yield sqlite_url
        return
    if not PG_URL:
        pytest.skip("KB_TEST_PG_URL not set (e.g. postgresql+psycopg://kb:kb@localhost/kb_test)")
    schema = f"kbtest_{uuid.uuid4().hex[:10]}"
    admin = make_engine(PG_URL)
    with admin.begin() as conn:
        conn.exec_driver_sql(f"CREATE SCHEMA {schema}")
    try:
        pg_url = make_url(PG_URL).update_query_dict({"options": f"-csearch_path={schema}"})
        rendered = pg_url.render_as_string(hide_password=False)
        _create(rendered)
        yield rendered
    finally:
        with admin.begin() as conn:
            conn.exec_driver_sql(f"DROP SCHEMA {schema} CASCADE")
        admin.dispose()


def _create(url: str) -> None:
    engine = make_engine(url)
    try:
        create_schema(engine)
    finally:
        engine.dispose()


@pytest.fixture
def engine(url: str) -> Iterator[Engine]:
    eng = make_engine(url)
    yield eng
    eng.dispose()


def _open_case(engine: Engine) -> int:
    """A committed case in state in_progress (new -> triaged -> in_progress: version 3)."""
    factory = make_session_factory(engine)
    with factory.begin() as s:
        org = repo.create_org(s, f"acme-{uuid.uuid4().hex[:8]}")
        case = repo.create_case(
            s,
            org_id=org.id,
            contact_name="Li Lei",
            contact_email="li@example.com",
            channel=Channel.PHONE,
            product="ScanServer",
            subject="打印机脱机 printer offline",
            lang="zh",
            priority=Priority.P2,
            at=T0,
        )
        for target in (S.TRIAGED, S.IN_PROGRESS):
            repo.transition_case(s, case.id, target, None, expected_version=case.version_id)
        return case.id


@dataclass
class WorkerResult:
    worker: int
    done: int = 0
    conflicts: int = 0  # ConcurrentUpdate seen (and retried)
    stale_at_flush: int = 0  # of which the UPDATE matched no row (StaleDataError), not the version check
    gave_up: int = 0
    errors: list[str] = field(default_factory=list)
    seconds: float = 0.0


def _worker(url: str, case_id: int, worker: int, updates: int, barrier: Any, results: Any) -> None:
    """One process: ``updates`` successful read-then-write transitions of the case, retrying lost races."""
    result = WorkerResult(worker)
    rng = random.Random(worker)
    engine = make_engine(url)
    try:
        read = make_session_factory(engine, readonly=True)
        write = make_session_factory(engine)
        barrier.wait(timeout=120)
        start = time.perf_counter()
        for _ in range(updates):
            for _attempt in range(MAX_ATTEMPTS):
                with read() as s:
                    case = repo.get_case(s, case_id)
                    state, version = case.state, case.version_id
                time.sleep(rng.uniform(0, WINDOW_S))
                target = S.WAITING_ON_CUSTOMER if state == S.IN_PROGRESS else S.IN_PROGRESS
                try:
                    with write.begin() as s:
                        repo.transition_case(s, case_id, target, None, expected_version=version, text=f"w{worker}")
                except ConcurrentUpdate as exc:
                    result.conflicts += 1
                    result.stale_at_flush += exc.actual_version is None
                    continue
                result.done += 1
                break
            else:
                result.gave_up += 1
        result.seconds = time.perf_counter() - start
    except BaseException as exc:  # everything else is a failure the parent reports
        result.errors.append(f"{type(exc).__name__}: {exc}")
    finally:
        engine.dispose()
        results.put(result)


def _run_workers(url: str, case_id: int) -> list[WorkerResult]:
    ctx = mp.get_context("spawn")
    barrier = ctx.Barrier(WORKERS)
    results = ctx.Queue()
    procs = [
        ctx.Process(target=_worker, args=(url, case_id, n, UPDATES, barrier, results), daemon=True)
        for n in range(WORKERS)
    ]
    for p in procs:
        p.start()
    collected: list[WorkerResult] = []
    try:
        deadline = time.monotonic() + 120
        while len(collected) < WORKERS:
            try:
                collected.append(results.get(timeout=max(0.1, deadline - time.monotonic())))
            except queue.Empty:
                pytest.fail(f"only {len(collected)} of {WORKERS} workers reported within 120 s")
    finally:
        for p in procs:
            p.join(timeout=10)
            if p.is_alive():
                p.terminate()
                p.join()
    return sorted(collected, key=lambda r: r.worker)


def test_concurrent_transitions_lose_no_update(engine: Engine, url: str) -> None:
    case_id = _open_case(engine)
    factory = make_session_factory(engine)
    with factory() as s:
        version_before = repo.get_case(s, case_id).version_id
        events_before = s.scalar(select(func.max(CaseEvent.id))) or 0
        outbox_before = s.scalars(
            select(func.count()).select_from(Outbox).where(Outbox.entity_id == str(case_id))
        ).one()

    results = _run_workers(url, case_id)

    assert [r.errors for r in results] == [[]] * WORKERS  # no "database is locked", nothing but ConcurrentUpdate
    done = sum(r.done for r in results)
    assert [r.gave_up for r in results] == [0] * WORKERS
    assert done == WORKERS * UPDATES
    assert sum(r.conflicts for r in results) > 0, "no race happened: the test proves nothing"
    with factory() as s:
        case = repo.get_case(s, case_id)
        events = list(
            s.scalars(
                select(CaseEvent).where(CaseEvent.case_id == case_id, CaseEvent.id > events_before).order_by("id")
            )
        )
        outbox_after = s.scalars(select(func.count()).select_from(Outbox).where(Outbox.entity_id == str(case_id))).one()
    assert case.version_id - version_before == done  # one version per successful update: none lost
    assert len(events) == done and all(e.kind == EventKind.STATE_CHANGE for e in events)
    assert outbox_after - outbox_before == done
    for r in results:  # each worker's successes are in the timeline, written by it
        assert sum(e.text == f"w{r.worker}" for e in events) == r.done
    # A lost update would show as two entries leaving the same state: each must start where the last one ended.
    other = {S.IN_PROGRESS: S.WAITING_ON_CUSTOMER, S.WAITING_ON_CUSTOMER: S.IN_PROGRESS}
    previous = S.IN_PROGRESS
    for e in events:
        assert (e.from_state, e.to_state) == (previous, other[previous])
        previous = other[previous]
    assert case.state == previous == (S.IN_PROGRESS if done % 2 == 0 else S.WAITING_ON_CUSTOMER)


def test_stale_expected_version_raises_concurrent_update(engine: Engine) -> None:
    case_id = _open_case(engine)
    factory = make_session_factory(engine)
    with factory() as s:
        assert repo.get_case(s, case_id).version_id == 3
    holder = factory()  # keeps the case it loaded (expire_on_commit=False) across transactions
    try:
        with holder.begin():
            held = repo.get_case(holder, case_id)  # the reference keeps it in the (weak) identity map
            assert held.version_id == 3
        with factory.begin() as s:  # someone else moves the case first
            repo.transition_case(s, case_id, S.WAITING_ON_CUSTOMER, None, expected_version=3)

        with pytest.raises(ConcurrentUpdate) as fresh, factory.begin() as s:  # fresh read, stale form
            repo.transition_case(s, case_id, S.RESOLVED, None, expected_version=3)
        assert (fresh.value.entity, fresh.value.id, fresh.value.expected_version) == ("case", case_id, 3)
        assert fresh.value.actual_version == 4

        with pytest.raises(ConcurrentUpdate) as stale, holder.begin():  # stale object: the UPDATE matches nothing
            repo.transition_case(holder, case_id, S.WAITING_ON_CUSTOMER, None, expected_version=3)
        assert (stale.value.expected_version, stale.value.actual_version) == (3, None)
    finally:
        holder.close()
    with factory() as s:  # neither loser wrote anything
        case = repo.get_case(s, case_id)
        assert (case.state, case.version_id) == (S.WAITING_ON_CUSTOMER, 4)
        kinds = [e.kind for e in repo.timeline(s, case_id, include_internal=True)]
        assert kinds.count(EventKind.STATE_CHANGE) == 3


def test_readonly_session_reads_beside_a_writer_and_cannot_write(engine: Engine) -> None:
    case_id = _open_case(engine)
    write = make_session_factory(engine)
    read = make_session_factory(engine, readonly=True)
    with write.begin() as w:
        repo.transition_case(w, case_id, S.WAITING_ON_CUSTOMER, None, expected_version=3)
        started = time.perf_counter()
        with read() as r:  # the writer holds its lock; a reader neither waits nor sees the uncommitted change
            assert repo.get_case(r, case_id).version_id == 3
        assert time.perf_counter() - started < 1.0
    with read() as r:
        case = repo.get_case(r, case_id)
        assert case.version_id == 4
        with pytest.raises(DBAPIError):  # SQLite: query_only; PostgreSQL: READ ONLY transaction
            r.add(Org(name=f"sneaky-{uuid.uuid4().hex[:8]}"))
            r.flush()
    with write.begin() as w:  # the pooled connection is writable again for the next write transaction
        repo.create_org(w, f"acme-{uuid.uuid4().hex[:8]}")


def test_sqlite_transactions_begin_immediate_unless_readonly(engine: Engine) -> None:
    if engine.dialect.name != "sqlite":
        pytest.skip("SQLite only")
    with engine.connect() as conn:
        assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert conn.execute(text("PRAGMA synchronous")).scalar() == 1  # NORMAL
        assert conn.execute(text("PRAGMA foreign_keys")).scalar() == 1
        assert conn.execute(text("PRAGMA busy_timeout")).scalar() == 30_000
    seen: list[str] = []

    def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if statement.startswith(("BEGIN", "SAVEPOINT", "PRAGMA query_only", "VACUUM")):
            seen.append(statement)

    event.listen(engine, "before_cursor_execute", record)
    try:
        with make_session_factory(engine).begin() as s:
            s.scalar(select(func.count()).select_from(Case))
        with make_session_factory(engine, readonly=True)() as s:
            s.scalar(select(func.count()).select_from(Case))
        with make_session_factory(engine).begin() as s:
            s.scalar(select(func.count()).select_from(Case))
        with engine.connect() as conn:  # SQLAlchemy's AUTOCOMMIT: no BEGIN (VACUUM refuses to run in one)
            conn.execution_options(isolation_level="AUTOCOMMIT").exec_driver_sql("VACUUM")
        with engine.connect() as conn:  # ... and the pooled connection is back to real transactions after it
            with conn.begin_nested():
                conn.execute(select(func.count()).select_from(Case))
            assert conn.connection.driver_connection.in_transaction  # type: ignore[union-attr]
    finally:
        event.remove(engine, "before_cursor_execute", record)
    assert seen == [
        "BEGIN IMMEDIATE",
        "PRAGMA query_only=1",
        "BEGIN DEFERRED",
        "PRAGMA query_only=0",
        "BEGIN IMMEDIATE",
        "VACUUM",
        "BEGIN IMMEDIATE",
        "SAVEPOINT sa_savepoint_1",
    ]


def test_savepoint_before_any_write_belongs_to_the_transaction(engine: Engine) -> None:
    """The legacy sqlite3 bug: a SAVEPOINT issued before BEGIN ran on its own, so an outer ROLLBACK kept its rows."""
    name = f"acme-{uuid.uuid4().hex[:8]}"
    with engine.connect() as conn:
        outer = conn.begin()
        with conn.begin_nested():
            conn.execute(insert(Org).values(name=name))
        outer.rollback()
    with make_session_factory(engine)() as s:
        assert s.scalar(select(func.count()).select_from(Org).where(Org.name == name)) == 0


def test_sqlite_second_write_transaction_in_one_thread_fails_fast(engine: Engine) -> None:
    if engine.dialect.name != "sqlite":
        pytest.skip("SQLite only: PostgreSQL has row locks, not one writer per database")
    factory = make_session_factory(engine)
    with factory.begin() as first:
        repo.create_org(first, f"acme-{uuid.uuid4().hex[:8]}")
        started = time.perf_counter()
        with pytest.raises(RuntimeError, match="already has a write transaction"), factory.begin() as second:
            repo.create_org(second, f"acme-{uuid.uuid4().hex[:8]}")
        assert time.perf_counter() - started < 1.0
    errors: list[BaseException] = []

    def other_thread() -> None:  # another thread is not refused: it queues on the busy timeout
        try:
            with factory.begin() as s:
                repo.create_org(s, f"acme-{uuid.uuid4().hex[:8]}")
        except BaseException as exc:
            errors.append(exc)

    with factory.begin() as first:
        repo.create_org(first, f"acme-{uuid.uuid4().hex[:8]}")
        thread = threading.Thread(target=other_thread)
        thread.start()
        time.sleep(0.2)  # the other thread now waits for our lock
        assert thread.is_alive()
    thread.join(timeout=10)
    assert errors == []
