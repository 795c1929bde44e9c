"""SQLAlchemy 2.0 ORM models: orgs and users, cases with their timeline, versioned bilingual articles, links,
feedback, and the search outbox.

Portable types only (String, Text, Boolean, Integer, JSON, timezone-aware DateTime) so the same models run on
SQLite and PostgreSQL. Enums are stored as their string values (no native PostgreSQL ENUM: adding a state must
not need a type migration). ``Case`` and ``Article`` carry a ``version_id`` for optimistic locking: an UPDATE of a
row someone else changed first matches nothing and SQLAlchemy raises ``StaleDataError``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum

from sqlalchemy import JSON, Boolean, DateTime, Dialect, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy import Enum as SAEnum
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

from kb.lifecycle import Audience, CaseState, Channel, Confidence, EscalationLevel, Governance, Priority, Role


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes in and out on every backend (SQLite stores naive text, so we store UTC there)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"naive datetime {value.isoformat()}: pass timezone-aware (UTC) datetimes")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _enum(cls: type[StrEnum]) -> SAEnum:
    return SAEnum(
        cls, native_enum=False, length=32, values_callable=lambda e: [m.value for m in e], validate_strings=True
    )


def utcnow() -> datetime:
    """The current time, aware UTC."""
    return datetime.now(UTC)


class EventKind(StrEnum):
    CALL = "call"
    EMAIL = "email"
    NOTE_INTERNAL = "note_internal"
    NOTE_PUBLIC = "note_public"
    STATE_CHANGE = "state_change"
    ESCALATION = "escalation"
    LINK = "link"


class Relation(StrEnum):
    SOLVED_BY = "solved_by"
    RELATED = "related"


class Base(DeclarativeBase):
    type_annotation_map = {datetime: UTCDateTime()}


class Org(Base):
    __tablename__ = "orgs"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)


class User(Base):
    __tablename__ = "users"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    org_id: Mapped[int | None] = mapped_column(ForeignKey("orgs.id"), index=True)  # None: support-center staff
    name: Mapped[str] = mapped_column(String(200))
    email: Mapped[str] = mapped_column(String(320), unique=True)
    role: Mapped[Role] = mapped_column(_enum(Role))
    password_hash: Mapped[str | None] = mapped_column(String(200))  # argon2id; None: API keys only
    active: Mapped[bool] = mapped_column(Boolean, default=True)


class ApiToken(Base):
    """A bearer credential: a login session token or a long-lived API key (CRM, phone system).

    Only the SHA-256 of the secret is stored; the secret itself is shown once, when it is issued.
    """

    __tablename__ = "api_tokens"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    kind: Mapped[str] = mapped_column(String(16))  # "session" | "api_key"
    name: Mapped[str] = mapped_column(String(100), default="")
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]


class SearchLog(Base):
    """One search, suggestion or assistant question, for analytics (searches with no result, deflection)."""

    __tablename__ = "search_log"
    __table_args__ = (Index("ix_search_log_at", "at"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[datetime]
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    org_id: Mapped[int | None] = mapped_column(ForeignKey("orgs.id"))
    role: Mapped[str] = mapped_column(String(16))
    route: Mapped[str] = mapped_column(String(16))  # "search" | "suggest" | "assistant"
    query: Mapped[str] = mapped_column(String(500))
    lang: Mapped[str] = mapped_column(String(8))
    results: Mapped[int] = mapped_column(Integer)
    top_ids: Mapped[list[str]] = mapped_column(JSON, default=list)


class IntakeSession(Base):
    """One customer case form: suggestions shown while typing, then a case opened or not (deflection)."""

    __tablename__ = "intake_sessions"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    token: Mapped[str] = mapped_column(String(64), unique=True)  # chosen by the client (one per form)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    org_id: Mapped[int | None] = mapped_column(ForeignKey("orgs.id"))
    suggested: Mapped[int] = mapped_column(Integer, default=0)  # suggestion lists shown
    opened_articles: Mapped[list[str]] = mapped_column(JSON, default=list)
    case_id: Mapped[int | None] = mapped_column(ForeignKey("cases.id"))
    abandoned: Mapped[bool] = mapped_column(Boolean, default=False)  # left the form without opening a case
    started_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class Webhook(Base):
    """A subscriber (CRM, chat tool) to case and article events, called with an HMAC-SHA256 signature."""

    __tablename__ = "webhooks"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    url: Mapped[str] = mapped_column(String(1000))
    secret: Mapped[str] = mapped_column(String(200))
    events: Mapped[list[str]] = mapped_column(JSON, default=list)  # empty: every event
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime]


class WebhookDelivery(Base):
    """One event to deliver to one webhook; written in the same transaction as the change (an outbox)."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (Index("ix_webhook_deliveries_status_next", "status", "next_at"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    webhook_id: Mapped[int] = mapped_column(ForeignKey("webhooks.id"), index=True)
    event: Mapped[str] = mapped_column(String(40))
    payload: Mapped[dict[str, object]] = mapped_column(JSON, default=dict)
    status: Mapped[str] = mapped_column(String(16), default="pending")  # pending | delivered | failed
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_at: Mapped[datetime]
    last_error: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime]
    delivered_at: Mapped[datetime | None]


class Case(Base):
    __tablename__ = "cases"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    external_id: Mapped[str | None] = mapped_column(String(100), unique=True)  # the ticketing system's case id
    org_id: Mapped[int] = mapped_column(ForeignKey("orgs.id"), index=True)
    contact_name: Mapped[str] = mapped_column(String(200))
    contact_email: Mapped[str] = mapped_column(String(320))
    channel: Mapped[Channel] = mapped_column(_enum(Channel))
    product: Mapped[str] = mapped_column(String(200))
    version: Mapped[str] = mapped_column(String(100), default="")  # the customer's product version, not the lock
    subject: Mapped[str] = mapped_column(String(500))
    description: Mapped[str] = mapped_column(Text, default="")
    resolution: Mapped[str] = mapped_column(Text, default="")  # what solved it (similar-case search shows it)
    lang: Mapped[str] = mapped_column(String(8))
    priority: Mapped[Priority] = mapped_column(_enum(Priority))
    severity: Mapped[int] = mapped_column(Integer, default=3)
    state: Mapped[CaseState] = mapped_column(_enum(CaseState), default=CaseState.NEW, index=True)
    assignee_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    group_name: Mapped[str | None] = mapped_column(String(100))
    escalation_level: Mapped[EscalationLevel] = mapped_column(_enum(EscalationLevel), default=EscalationLevel.L1)
    opened_at: Mapped[datetime]
    first_response_at: Mapped[datetime | None]
    resolved_at: Mapped[datetime | None]
    closed_at: Mapped[datetime | None]
    updated_at: Mapped[datetime]
    meta: Mapped[dict[str, object]] = mapped_column(JSON, default=dict)  # unknown fields of an imported case
    version_id: Mapped[int] = mapped_column(Integer, nullable=False)
    __mapper_args__ = {"version_id_col": version_id}


class CaseEvent(Base):
    """One timeline entry; ``internal`` entries are never shown to the customer."""

    __tablename__ = "case_events"
    __table_args__ = (Index("ix_case_events_case_at", "case_id", "at"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id"))
    kind: Mapped[EventKind] = mapped_column(_enum(EventKind))
    author_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    at: Mapped[datetime]
    text: Mapped[str] = mapped_column(Text, default="")
    internal: Mapped[bool] = mapped_column(Boolean, default=False)
    from_state: Mapped[CaseState | None] = mapped_column(_enum(CaseState))
    to_state: Mapped[CaseState | None] = mapped_column(_enum(CaseState))


class ArticleNumber(Base):
    """Allocates article numbers portably (autoincrement): ``KB-{id:06d}``."""

    __tablename__ = "article_numbers"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)


class Article(Base):
    __tablename__ = "articles"
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    current_version: Mapped[int] = mapped_column(Integer)
    confidence: Mapped[Confidence] = mapped_column(_enum(Confidence), index=True)
    audience: Mapped[Audience] = mapped_column(_enum(Audience))
    governance: Mapped[Governance] = mapped_column(_enum(Governance))
    products: Mapped[list[str]] = mapped_column(JSON, default=list)
    error_codes: Mapped[list[str]] = mapped_column(JSON, default=list)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    version_id: Mapped[int] = mapped_column(Integer, nullable=False)
    __mapper_args__ = {"version_id_col": version_id}


class ArticleVersion(Base):
    """One immutable version of an article's content, both languages side by side.

    ``translated_from_version_en`` is the article version whose zh content the en variant matches (and the other
    way round); None while the other language does not exist. See ``kb.articles.stale_translation``.
    """

    __tablename__ = "article_versions"
    __table_args__ = (UniqueConstraint("article_id", "version", name="uq_article_versions_article_version"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    article_id: Mapped[str] = mapped_column(ForeignKey("articles.id"), index=True)
    version: Mapped[int] = mapped_column(Integer)
    title_zh: Mapped[str | None] = mapped_column(String(500))
    symptom_zh: Mapped[str | None] = mapped_column(Text)
    environment_zh: Mapped[str | None] = mapped_column(Text)
    cause_zh: Mapped[str | None] = mapped_column(Text)
    resolution_zh: Mapped[str | None] = mapped_column(Text)
    title_en: Mapped[str | None] = mapped_column(String(500))
    symptom_en: Mapped[str | None] = mapped_column(Text)
    environment_en: Mapped[str | None] = mapped_column(Text)
    cause_en: Mapped[str | None] = mapped_column(Text)
    resolution_en: Mapped[str | None] = mapped_column(Text)
    keywords: Mapped[list[str]] = mapped_column(JSON, default=list)
    translated_from_version_zh: Mapped[int | None] = mapped_column(Integer)
    translated_from_version_en: Mapped[int | None] = mapped_column(Integer)
    machine_translated_zh: Mapped[bool] = mapped_column(Boolean, default=False)
    machine_translated_en: Mapped[bool] = mapped_column(Boolean, default=False)
    author_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime]


class CaseArticleLink(Base):
    __tablename__ = "case_article_links"
    __table_args__ = (UniqueConstraint("case_id", "article_id", "relation", name="uq_case_article_relation"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id"), index=True)
    article_id: Mapped[str] = mapped_column(ForeignKey("articles.id"), index=True)
    article_version: Mapped[int] = mapped_column(Integer)
    relation: Mapped[Relation] = mapped_column(_enum(Relation))
    created_at: Mapped[datetime]


class Feedback(Base):
    __tablename__ = "feedback"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    article_id: Mapped[str] = mapped_column(ForeignKey("articles.id"), index=True)
    version: Mapped[int] = mapped_column(Integer)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    helpful: Mapped[bool] = mapped_column(Boolean)
    comment: Mapped[str] = mapped_column(Text, default="")
    at: Mapped[datetime]


class Outbox(Base):
    """A change the search index must apply; written in the same transaction as the change itself."""

    __tablename__ = "outbox"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    entity: Mapped[str] = mapped_column(String(16))  # "article" | "case"
    entity_id: Mapped[str] = mapped_column(String(32))
    op: Mapped[str] = mapped_column(String(16))  # "upsert" | "delete"
    created_at: Mapped[datetime]


class IngestRecord(Base):
    """What the ingest pipeline did with one source record: the key of idempotent, resumable runs.

    Written in the same transaction as the case / article it produced, so a record is either fully ingested
    (and has a row here) or not at all. ``source`` is "case" or "article"; ``outcome`` is created, merged,
    linked or skipped; ``content_hash`` tells a re-run whether the record changed since.
    """

    __tablename__ = "ingest_records"
    __table_args__ = (UniqueConstraint("source", "external_id", name="uq_ingest_records_source_external"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    source: Mapped[str] = mapped_column(String(16))
    external_id: Mapped[str] = mapped_column(String(200))
    content_hash: Mapped[str] = mapped_column(String(64))
    outcome: Mapped[str] = mapped_column(String(16))
    case_id: Mapped[int | None] = mapped_column(ForeignKey("cases.id"))
    article_id: Mapped[str | None] = mapped_column(ForeignKey("articles.id"))
    detail: Mapped[str] = mapped_column(Text, default="")
    at: Mapped[datetime]
