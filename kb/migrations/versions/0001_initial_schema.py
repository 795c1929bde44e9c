"""initial schema: the models of commit 1ddd61a (orgs, users, cases, timeline, articles, links, feedback, outbox)

Revision ID: 0001
Revises:
Create Date: 2024-05-01

Enum columns are VARCHAR(32) holding the enum's value (the models use non-native enums without CHECK
constraints: adding a state needs no migration). Timestamps are ``TIMESTAMP WITH TIME ZONE`` (UTC text on SQLite).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_ENUM = sa.String(length=32)


def _ts(name: str, nullable: bool = False) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def _fk(table: str, column: str, target: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint([column], [target], name=f"{table}_{column}_fkey")


def upgrade() -> None:
    op.create_table(
        "orgs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.PrimaryKeyConstraint("id", name="orgs_pkey"),
        sa.UniqueConstraint("name", name="orgs_name_key"),
    )
    op.create_table(
        "users",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("org_id", sa.Integer(), nullable=True),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("email", sa.String(length=320), nullable=False),
        sa.Column("role", _ENUM, nullable=False),
        _fk("users", "org_id", "orgs.id"),
        sa.PrimaryKeyConstraint("id", name="users_pkey"),
        sa.UniqueConstraint("email", name="users_email_key"),
    )
    op.create_index("ix_users_org_id", "users", ["org_id"])
    op.create_table(
        "cases",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("org_id", sa.Integer(), nullable=False),
        sa.Column("contact_name", sa.String(length=200), nullable=False),
        sa.Column("contact_email", sa.String(length=320), nullable=False),
        sa.Column("channel", _ENUM, nullable=False),
        sa.Column("product", sa.String(length=200), nullable=False),
        sa.Column("version", sa.String(length=100), nullable=False),
        sa.Column("subject", sa.String(length=500), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("lang", sa.String(length=8), nullable=False),
        sa.Column("priority", _ENUM, nullable=False),
        sa.Column("severity", sa.Integer(), nullable=False),
        sa.Column("state", _ENUM, nullable=False),
        sa.Column("assignee_id", sa.Integer(), nullable=True),
        sa.Column("group_name", sa.String(length=100), nullable=True),
        sa.Column("escalation_level", _ENUM, nullable=False),
        _ts("opened_at"),
        _ts("first_response_at", nullable=True),
        _ts("resolved_at", nullable=True),
        _ts("closed_at", nullable=True),
        _ts("updated_at"),
        sa.Column("version_id", sa.Integer(), nullable=False),
        _fk("cases", "org_id", "orgs.id"),
        _fk("cases", "assignee_id", "users.id"),
        sa.PrimaryKeyConstraint("id", name="cases_pkey"),
    )
    op.create_index("ix_cases_org_id", "cases", ["org_id"])
    op.create_index("ix_cases_state", "cases", ["state"])
    op.create_table(
        "case_events",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("case_id", sa.Integer(), nullable=False),
        sa.Column("kind", _ENUM, nullable=False),
        sa.Column("author_id", sa.Integer(), nullable=True),
        _ts("at"),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("internal", sa.Boolean(), nullable=False),
        sa.Column("from_state", _ENUM, nullable=True),
        sa.Column("to_state", _ENUM, nullable=True),
        _fk("case_events", "case_id", "cases.id"),
        _fk("case_events", "author_id", "users.id"),
        sa.PrimaryKeyConstraint("id", name="case_events_pkey"),
    )
    op.create_index("ix_case_events_case_at", "case_events", ["case_id", "at"])
    op.create_table(
        "article_numbers",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="article_numbers_pkey"),
    )
    op.create_table(
        "articles",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("current_version", sa.Integer(), nullable=False),
        sa.Column("confidence", _ENUM, nullable=False),
        sa.Column("audience", _ENUM, nullable=False),
        sa.Column("governance", _ENUM, nullable=False),
        sa.Column("products", sa.JSON(), nullable=False),
        sa.Column("error_codes", sa.JSON(), nullable=False),
        _ts("created_at"),
        _ts("updated_at"),
        sa.Column("version_id", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="articles_pkey"),
    )
    op.create_index("ix_articles_confidence", "articles", ["confidence"])
    op.create_table(
        "article_versions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("article_id", sa.String(length=32), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("title_zh", sa.String(length=500), nullable=True),
        sa.Column("symptom_zh", sa.Text(), nullable=True),
        sa.Column("environment_zh", sa.Text(), nullable=True),
        sa.Column("cause_zh", sa.Text(), nullable=True),
        sa.Column("resolution_zh", sa.Text(), nullable=True),
        sa.Column("title_en", sa.String(length=500), nullable=True),
        sa.Column("symptom_en", sa.Text(), nullable=True),
        sa.Column("environment_en", sa.Text(), nullable=True),
        sa.Column("cause_en", sa.Text(), nullable=True),
        sa.Column("resolution_en", sa.Text(), nullable=True),
        sa.Column("keywords", sa.JSON(), nullable=False),
        sa.Column("translated_from_version_zh", sa.Integer(), nullable=True),
        sa.Column("translated_from_version_en", sa.Integer(), nullable=True),
        sa.Column("machine_translated_zh", sa.Boolean(), nullable=False),
        sa.Column("machine_translated_en", sa.Boolean(), nullable=False),
        sa.Column("author_id", sa.Integer(), nullable=True),
        _ts("created_at"),
        _fk("article_versions", "article_id", "articles.id"),
        _fk("article_versions", "author_id", "users.id"),
        sa.PrimaryKeyConstraint("id", name="article_versions_pkey"),
        sa.UniqueConstraint("article_id", "version", name="uq_article_versions_article_version"),
    )
    op.create_index("ix_article_versions_article_id", "article_versions", ["article_id"])
    op.create_table(
        "case_article_links",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("case_id", sa.Integer(), nullable=False),
        sa.Column("article_id", sa.String(length=32), nullable=False),
        sa.Column("article_version", sa.Integer(), nullable=False),
        sa.Column("relation", _ENUM, nullable=False),
        _ts("created_at"),
        _fk("case_article_links", "case_id", "cases.id"),
        _fk("case_article_links", "article_id", "articles.id"),
        sa.PrimaryKeyConstraint("id", name="case_article_links_pkey"),
        sa.UniqueConstraint("case_id", "article_id", "relation", name="uq_case_article_relation"),
    )
    op.create_index("ix_case_article_links_case_id", "case_article_links", ["case_id"])
    op.create_index("ix_case_article_links_article_id", "case_article_links", ["article_id"])
    op.create_table(
        "feedback",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("article_id", sa.String(length=32), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=True),
        sa.Column("helpful", sa.Boolean(), nullable=False),
        sa.Column("comment", sa.Text(), nullable=False),
        _ts("at"),
        _fk("feedback", "article_id", "articles.id"),
        _fk("feedback", "user_id", "users.id"),
        sa.PrimaryKeyConstraint("id", name="feedback_pkey"),
    )
    op.create_index("ix_feedback_article_id", "feedback", ["article_id"])
    op.create_table(
        "outbox",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("entity", sa.String(length=16), nullable=False),
        sa.Column("entity_id", sa.String(length=32), nullable=False),
        sa.Column("op", sa.String(length=16), nullable=False),
        _ts("created_at"),
        sa.PrimaryKeyConstraint("id", name="outbox_pkey"),
    )


def downgrade() -> None:
    for table in (
        "outbox",
        "feedback",
        "case_article_links",
        "article_versions",
        "articles",
        "article_numbers",
        "case_events",
        "cases",
        "users",
        "orgs",
    ):
        op.drop_table(table)  # their indexes go with them
