"""Engine, session factory and schema migrations, built once at the edge (``create_app``, the CLI) from a database URL.

SQLite
    Every new DBAPI connection gets WAL (readers do not block the writer), ``synchronous=NORMAL`` (durable at
    checkpoints, never corrupt in WAL mode), foreign keys (off by default in SQLite) and a 30 s busy timeout.

    Transactions follow SQLAlchemy's recipe "Enabling Non-Legacy SQLite Transactional Modes" (formerly
    "Serializable isolation / Savepoints / Transactional DDL"): the sqlite3 driver's legacy transaction control
    is switched off (``isolation_level = None`` on connect: it would defer BEGIN to the first INSERT/UPDATE/DELETE,
    run SELECTs and SAVEPOINTs outside the transaction and autocommit DDL) and SQLAlchemy's ``begin`` event
    emits the BEGIN itself. So reads are repeatable, SAVEPOINT works (the test fixtures' rolled-back outer
    transaction relies on it) and migrations are atomic.

    The choice: every transaction is ``BEGIN IMMEDIATE`` unless it opts out. A deferred transaction that reads
    and then writes gets SQLITE_BUSY ("database is locked") *without waiting* when another connection committed
    in between (WAL cannot upgrade a stale read snapshot), so read-then-write code (every repository function
    with ``expected_version``, and most others: they read before they write) must take the write lock at
    BEGIN; concurrent writers then queue on the busy timeout, and a lost optimistic lock shows up as
    ``ConcurrentUpdate``, never as "database is locked". Pure readers can opt into a deferred, read-only
    transaction, which does not queue behind writers: ``make_session_factory(engine, readonly=True)`` or the
    execution option ``kb_readonly=True`` on an engine / connection. Such a transaction also runs with
    ``PRAGMA query_only`` (a write in it fails at once instead of failing by chance under load), and on
    PostgreSQL as ``SET TRANSACTION READ ONLY``.

    The price: one write transaction at a time per database file. Two write sessions open at once in one
    thread can never both proceed (the second would wait for a lock only the waiting thread can release), so
    the second BEGIN raises ``RuntimeError`` at once instead of "database is locked" after 30 s.

PostgreSQL
    URLs are used as given (READ COMMITTED; optimistic locking via ``version_id`` detects lost updates).

Migrations
    Alembic scripts live in the package ``kb/migrations`` (no ``alembic.ini``: the config is built here).
    ``create_schema`` is ``upgrade(engine, "head")``, so every database the code makes is a migrated one. Each
    command runs in one transaction on one of the engine's connections (SQLite DDL is transactional with the
    recipe above), so a failed migration leaves the previous revision intact on both backends.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final

from alembic import command
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, create_engine, event, inspect
from sqlalchemy.orm import Session, sessionmaker

from kb.errors import ConfigError

SQLITE_BUSY_TIMEOUT_MS: Final = 30_000
READONLY_OPTION: Final = "kb_readonly"
"""Execution option: ``engine.execution_options(kb_readonly=True)`` runs deferred, read-only transactions."""
MIGRATIONS_DIR: Final = Path(__file__).resolve().parent / "migrations"
_PG_MIGRATION_LOCK: Final = 0x6B62_6D69  # "kbmi": pg_advisory_xact_lock key serialising concurrent upgrades
_QUERY_ONLY: Final = "kb_query_only"  # connection-record info key: the PRAGMA query_only currently set


def _sqlite_connect(dbapi_connection: Any, connection_record: Any) -> None:
    # Non-legacy transaction control (see the module docstring): the driver never emits BEGIN itself.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")  # first: switching to WAL may wait
        cursor.execute("PRAGMA journal_mode=WAL")  # ignored (stays "memory") for :memory: databases
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
    finally:
        cursor.close()
    connection_record.info[_QUERY_ONLY] = False


class _WriteTransactions(threading.local):
    """(database file, DBAPI connection) of each write (IMMEDIATE) transaction this thread began. An entry goes
    when its transaction commits or rolls back (``_end_write``), so a connection this thread used and returned
    to the pool never counts against it once another thread has it; entries whose connection was closed or
    invalidated are dropped at the next BEGIN (sqlite3 connections cannot be weakly referenced)."""

    def __init__(self) -> None:
        self.held: list[tuple[str, Any]] = []


_writes = _WriteTransactions()


def _in_transaction(dbapi_connection: Any) -> bool:
    try:
        return bool(dbapi_connection.in_transaction)
    except sqlite3.ProgrammingError:  # closed (discarded by the pool)
        return False


def _refuse_second_writer(database: str, dbapi_connection: Any) -> None:
    """Fail at once instead of after the busy timeout: a second write transaction on the same database file
    in the same thread waits for a lock only this thread could release."""
    _writes.held = [(db, c) for db, c in _writes.held if c is not dbapi_connection and _in_transaction(c)]
    if database not in ("", ":memory:") and any(db == database for db, _ in _writes.held):
        raise RuntimeError(
            f"this thread already has a write transaction open on {database}; a second one would wait for it "
            "forever (SQLite has one writer). Finish the first, or read with make_session_factory(readonly=True)"
        )
    _writes.held.append((database, dbapi_connection))


def _end_write(conn: Connection) -> None:
    try:
        driver = conn.connection.driver_connection
    except Exception:  # noqa: BLE001 - an invalidated connection: nothing of ours to forget but stale entries
        driver = None
    _writes.held = [(db, c) for db, c in _writes.held if c is not driver]


def _sqlite_begin(conn: Connection) -> None:
    options = conn.get_execution_options()
    fairy = conn.connection
    if fairy.driver_connection.isolation_level is not None:  # type: ignore[union-attr]
        # SQLAlchemy's reset after an isolation_level="AUTOCOMMIT" connection sets "" (legacy mode) again
        fairy.driver_connection.isolation_level = None  # type: ignore[union-attr]
    if options.get("isolation_level") == "AUTOCOMMIT":  # e.g. VACUUM: no transaction at all
        return
    readonly = bool(options.get(READONLY_OPTION, False))
    if fairy.info.get(_QUERY_ONLY, False) != readonly:  # outside the transaction: a flag of the connection
        conn.exec_driver_sql(f"PRAGMA query_only={int(readonly)}")
        fairy.info[_QUERY_ONLY] = readonly
    if not readonly:
        _refuse_second_writer(conn.engine.url.database or "", fairy.driver_connection)
    conn.exec_driver_sql("BEGIN DEFERRED" if readonly else "BEGIN IMMEDIATE")


def make_engine(url: str, **kwargs: Any) -> Engine:
    """Create an engine for ``url``; SQLite connections get WAL, foreign keys, a busy timeout and real BEGINs.

    See the module docstring for the SQLite transaction recipe (``BEGIN IMMEDIATE`` unless read-only).
    """
    engine = create_engine(url, **kwargs)
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_connect)
        event.listen(engine, "begin", _sqlite_begin)
        event.listen(engine, "commit", _end_write)
        event.listen(engine, "rollback", _end_write)
    return engine


def readonly_engine(engine: Engine) -> Engine:
    """``engine`` (same pool) whose transactions are read-only: deferred on SQLite, READ ONLY on PostgreSQL."""
    options: dict[str, Any] = {READONLY_OPTION: True}
    if engine.dialect.name == "postgresql":
        options["postgresql_readonly"] = True
    return engine.execution_options(**options)


def make_session_factory(engine: Engine, *, readonly: bool = False) -> sessionmaker[Session]:
    """A session factory bound to ``engine``; callers own transactions (``with factory.begin() as session``).

    ``readonly=True``: sessions for pure reads (search hydration, pages, reports). On SQLite they do not take
    the write lock, so they never wait behind writers; a write in them fails (``OperationalError``).
    Read-then-write code must use the default (write) factory.
    """
    bind = readonly_engine(engine) if readonly else engine
    return sessionmaker(bind=bind, expire_on_commit=False)


# --- migrations --------------------------------------------------------------------------------------------------


def alembic_config() -> Config:
    """The Alembic configuration of tac-kb (``script_location`` = the ``kb/migrations`` package); no ini file."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("path_separator", "os")
    return config


def head_revision() -> str:
    """The newest migration revision id (what ``upgrade(engine)`` brings a database to)."""
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    if head is None:  # only when kb/migrations/versions is empty: a broken install
        raise ConfigError(f"no migration scripts found in {MIGRATIONS_DIR}")
    return head


def current_revision(engine: Engine) -> str | None:
    """The revision the database is at; None for a database never migrated (empty or made without Alembic)."""
    with readonly_engine(engine).connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def _migrate(engine: Engine, run: Callable[[Config], None]) -> None:
    """Run an Alembic command in ONE transaction on one of ``engine``'s connections (``env.py`` picks it up).

    SQLite: foreign keys are switched off around the transaction (the PRAGMA is a no-op inside one) because
    batch ALTERs copy and drop tables that others reference; ``PRAGMA foreign_key_check`` must then come back
    empty before the commit (the procedure of https://www.sqlite.org/lang_altertable.html#otheralter).
    PostgreSQL: a transaction-scoped advisory lock serialises concurrent upgrades (two first starts at once).
    """
    config = alembic_config()
    with engine.connect() as conn:
        sqlite = conn.dialect.name == "sqlite"
        if sqlite:
            conn.connection.driver_connection.execute("PRAGMA foreign_keys=OFF")  # type: ignore[union-attr]
        try:
            with conn.begin():
                if conn.dialect.name == "postgresql":
                    conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_PG_MIGRATION_LOCK})")
                config.attributes["connection"] = conn
                run(config)
                if sqlite:
                    broken = conn.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
                    if broken:
                        raise ConfigError(f"migration left rows violating foreign keys: {broken[:5]}")
        finally:
            if sqlite:
                conn.connection.driver_connection.execute("PRAGMA foreign_keys=ON")  # type: ignore[union-attr]


def _refuse_unversioned(conn: Connection) -> None:
    tables = set(inspect(conn).get_table_names())
    if "alembic_version" not in tables and "orgs" in tables:
        raise ConfigError(
            "the database has tac-kb tables but no alembic_version (made by create_all before migrations): "
            "mark its schema with kb.db.stamp(engine, '0001') (no ingest_records table) or '0002', then upgrade"
        )


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Migrate the database up to ``revision`` in one transaction; at or past it already: nothing happens.

    Raises ``ConfigError`` for a database holding tac-kb tables without Alembic's version table (see ``stamp``).
    """

    def run(config: Config) -> None:
        _refuse_unversioned(config.attributes["connection"])
        command.upgrade(config, revision)

    _migrate(engine, run)


def downgrade(engine: Engine, revision: str) -> None:
    """Migrate the database down to ``revision`` (``"base"``: drop every table) in one transaction."""
    _migrate(engine, lambda config: command.downgrade(config, revision))


def stamp(engine: Engine, revision: str) -> None:
    """Record ``revision`` as the database's revision without running migrations.

    Only for a database whose schema already is ``revision`` (one made by ``create_all`` before migrations).
    """
    _migrate(engine, lambda config: command.stamp(config, revision))


def create_schema(engine: Engine) -> None:
    """Bring the database to the newest schema (``upgrade(engine, "head")``); for tests and first runs."""
    upgrade(engine, "head")
