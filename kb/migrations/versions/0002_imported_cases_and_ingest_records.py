"""imported cases and idempotent ingest: cases.external_id / meta / resolution, table ingest_records

Revision ID: 0002
Revises: 0001
Create Date: 2024-05-02

Existing cases get ``meta = {}`` and ``resolution = ''`` through server defaults, which stay: code of the
previous revision that inserts cases without these columns keeps working during a rolling upgrade.
``external_id`` is nullable (cases opened in tac-kb have none) and unique (PostgreSQL and SQLite both allow
many NULLs under a unique constraint). SQLite cannot add a UNIQUE column with ALTER TABLE, so ``cases`` is
rebuilt there (batch mode: copy, drop, rename; kb.db switches foreign keys off around it).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("cases") as batch:
        batch.add_column(sa.Column("external_id", sa.String(length=100), nullable=True))
        batch.add_column(sa.Column("resolution", sa.Text(), nullable=False, server_default=sa.text("''")))
        batch.add_column(sa.Column("meta", sa.JSON(), nullable=False, server_default=sa.text("'{}'")))
        batch.create_unique_constraint("cases_external_id_key", ["external_id"])
    op.create_table(
        "ingest_records",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("external_id", sa.String(length=200), nullable=False),
        sa.Column("content_hash", sa.String(length=64), nullable=False),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.Column("case_id", sa.Integer(), nullable=True),
        sa.Column("article_id", sa.String(length=32), nullable=True),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["case_id"], ["cases.id"], name="ingest_records_case_id_fkey"),
        sa.ForeignKeyConstraint(["article_id"], ["articles.id"], name="ingest_records_article_id_fkey"),
        sa.PrimaryKeyConstraint("id", name="ingest_records_pkey"),
        sa.UniqueConstraint("source", "external_id", name="uq_ingest_records_source_external"),
    )


def downgrade() -> None:
    op.drop_table("ingest_records")
    with op.batch_alter_table("cases") as batch:
        batch.drop_constraint("cases_external_id_key", type_="unique")
        batch.drop_column("meta")
        batch.drop_column("resolution")
        batch.drop_column("external_id")
