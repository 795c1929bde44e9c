"""Alembic environment: runs on the connection ``kb.db`` puts in ``config.attributes["connection"]``.

``kb.db`` owns the transaction (one per command) and, on SQLite, the foreign-key switch; here Alembic only
joins that transaction. SQLite gets ``render_as_batch`` (ALTER via copy-and-move) and ``transactional_ddl``
(true with kb.db's BEGIN recipe). Offline (``--sql``) mode is not supported.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

from kb.errors import ConfigError
from kb.models import Base

connection = context.config.attributes.get("connection")
if context.is_offline_mode() or not isinstance(connection, Connection):
    raise ConfigError("run tac-kb migrations through kb.db.upgrade / kb.db.downgrade (they pass a connection)")
sqlite = connection.dialect.name == "sqlite"
context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=sqlite,
    transactional_ddl=True if sqlite else None,
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
