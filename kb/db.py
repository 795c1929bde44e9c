"""Engine and session factory, built once at the edge (``create_app``, the CLI) from a database URL.

SQLite gets WAL (readers do not block the writer), foreign keys (off by default in SQLite) and a busy timeout
on every new DBAPI connection; PostgreSQL URLs are used as given. ``create_schema`` is for tests and first runs
until migrations (Alembic) exist.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.orm import Session, sessionmaker

from kb.models import Base

SQLITE_BUSY_TIMEOUT_MS = 5_000


def _sqlite_pragmas(dbapi_connection: Any, connection_record: Any) -> None:
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA journal_mode=WAL")  # ignored (stays "memory") for :memory: databases
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    finally:
        cursor.close()


def make_engine(url: str, **kwargs: Any) -> Engine:
    """Create an engine for ``url``; SQLite connections get WAL, foreign keys and a busy timeout."""
    engine = create_engine(url, **kwargs)
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    return engine


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    """A session factory bound to ``engine``; callers own transactions (``with factory.begin() as session``)."""
    return sessionmaker(bind=engine, expire_on_commit=False)


def create_schema(engine: Engine) -> None:
    """Create every table that does not exist yet (no migrations: those come with Alembic)."""
    Base.metadata.create_all(engine)
