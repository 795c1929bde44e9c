"""The same-thread second-writer guard of kb.db must not outlive a transaction: a connection this thread
committed on and returned to the pool may be taken by another thread, and this thread's next write (on another
connection) must still run (it raised "already has a write transaction open" before the fix)."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from sqlalchemy import text

from kb.db import make_engine, make_session_factory

pytestmark = pytest.mark.integration


def test_sqlite_writer_guard_forgets_committed_transactions(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'x.db'}")
    factory = make_session_factory(engine)
    with factory.begin() as s:
        s.execute(text("create table t (x int)"))
    with factory.begin() as s:  # this thread writes once; its connection goes back to the pool
        s.execute(text("insert into t values (1)"))
    inside, release = threading.Event(), threading.Event()

    def other_thread() -> None:
        with factory.begin() as s:  # takes that pooled connection and holds a write transaction on it
            s.execute(text("insert into t values (2)"))
            inside.set()
            release.wait(10)

    t = threading.Thread(target=other_thread)
    t.start()
    assert inside.wait(10)
    timer = threading.Timer(0.5, release.set)  # the other thread commits a little later
    timer.start()
    with factory.begin() as s:  # this thread again, on another connection: waits for SQLite's lock, then writes
        s.execute(text("insert into t values (3)"))
    t.join(10)
    timer.join()
    with factory() as s:
        assert sorted(s.scalars(text("select x from t"))) == [1, 2, 3]
    engine.dispose()


def test_sqlite_writer_guard_still_refuses_a_nested_writer(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'y.db'}")
    factory = make_session_factory(engine)
    with factory.begin() as outer:
        outer.execute(text("create table t (x int)"))
        with pytest.raises(RuntimeError, match="already has a write transaction"), factory.begin() as inner:
            inner.execute(text("insert into t values (1)"))
    engine.dispose()
