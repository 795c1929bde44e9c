"""Cases: open, read, the staff queue by SLA risk, state changes, timeline, assignment, escalation, SLA,
suggestions, article links, and "create an article from this case".

Every read applies ``kb.access`` inside the SQL: customers see their organisation's cases only, never internal
timeline entries, and another organisation's case answers 404 exactly as a missing id. Every change writes its
search outbox row and webhook deliveries in the same transaction (``kb.casework``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query, Response
from pydantic import BaseModel, Field
from sqlalchemy import select
from sqlalchemy.orm import Session

from api.deps import EDITORS, LiveDep, PrincipalDep, ReadDB, StaffDep, UnitDep, require
from api.routes.search import ArticleHitOut, CaseHitOut
from api.schemas import MAX_ID, MAX_QUERY_CHARS, IdPath, Limit, Offset, Page, StrictIn
from ingest.clean import clean_case_text, record_names
from ingest.extract import Glosser, Sections, extract_sections, other_language_variant
from ingest.sources import stored_case_record
from kb import articles as kb_articles
from kb import casework, webhooks
from kb.access import Principal, article_clause, event_clause
from kb.errors import ArticleNotFound, PermissionDenied
from kb.lifecycle import CaseState, Channel, Confidence, EscalationLevel, Priority, Role, SlaStatus
from kb.models import Article, ArticleVersion, Case, CaseArticleLink, CaseEvent, EventKind, Org, Relation, User, utcnow
from kb.retrieval import query_lang, suggest

router = APIRouter(prefix="/cases", tags=["cases"])
DraftDep = Annotated[Principal, Depends(require(Role.ENGINEER, *EDITORS))]
MAX_TEXT = MAX_QUERY_CHARS * 20


class CaseCreate(StrictIn):
    subject: str = Field(min_length=1, max_length=500)
    description: str = Field(default="", max_length=MAX_TEXT)
    product: str = Field(min_length=1, max_length=200)
    version: str = Field(default="", max_length=100)
    channel: Channel = Channel.WEB
    priority: Priority
    severity: int = Field(default=3, ge=1, le=4)
    contact_name: str | None = Field(default=None, max_length=200)
    contact_email: str | None = Field(default=None, max_length=320, pattern=r"^[^@\s]+@[^@\s]+$")
    org_id: int | None = Field(
        default=None, ge=1, le=MAX_ID, description="staff only; a customer's case is their org's"
    )


class CaseUpdate(StrictIn):
    expected_version: int = Field(ge=1, le=MAX_ID)
    priority: Priority | None = None
    severity: int | None = Field(default=None, ge=1, le=4)
    product: str | None = Field(default=None, min_length=1, max_length=200)
    version: str | None = Field(default=None, max_length=100)
    group_name: str | None = Field(default=None, max_length=100)
    resolution: str | None = Field(default=None, max_length=MAX_TEXT)


class TransitionIn(StrictIn):
    to: CaseState
    note: str = Field(default="", max_length=MAX_TEXT)
    expected_version: int = Field(ge=1, le=MAX_ID)


class EventIn(StrictIn):
    kind: Literal["call", "email", "note"]
    body: str = Field(min_length=1, max_length=MAX_TEXT)
    internal: bool = False


class AssignIn(StrictIn):
    assignee_id: int = Field(ge=1, le=MAX_ID)
    group_name: str | None = Field(default=None, max_length=100)
    expected_version: int = Field(ge=1, le=MAX_ID)


class EscalateIn(StrictIn):
    level: EscalationLevel
    note: str = Field(min_length=1, max_length=MAX_TEXT)
    expected_version: int = Field(ge=1, le=MAX_ID)


class LinkIn(StrictIn):
    article_id: str = Field(min_length=1, max_length=32)
    relation: Relation


class SlaOut(BaseModel):
    state: str
    response_due: datetime
    response_met: bool | None
    response_breached: bool
    resolution_elapsed_seconds: float
    resolution_due_in_seconds: float

    @classmethod
    def of(cls, sla: SlaStatus) -> SlaOut:
        return cls(
            state=sla.state,
            response_due=sla.response_due,
            response_met=sla.response_met,
            response_breached=sla.response_breached,
            resolution_elapsed_seconds=sla.resolution_elapsed.total_seconds(),
            resolution_due_in_seconds=sla.resolution_due_in.total_seconds(),
        )


class CaseOut(BaseModel):
    id: int
    external_id: str | None
    org_id: int
    org_name: str
    contact_name: str
    channel: Channel
    product: str
    version: str
    subject: str
    description: str
    resolution: str
    lang: str
    priority: Priority
    severity: int
    state: CaseState
    assignee_id: int | None
    group_name: str | None = Field(description="staff only (null for customers)")
    escalation_level: EscalationLevel | None = Field(description="staff only (null for customers)")
    opened_at: datetime
    first_response_at: datetime | None
    resolved_at: datetime | None
    closed_at: datetime | None
    updated_at: datetime
    version_id: int
    sla: SlaOut
    allowed_transitions: list[CaseState]


class EventOut(BaseModel):
    id: int
    kind: EventKind
    author_id: int | None
    author_name: str | None
    at: datetime
    body: str
    internal: bool
    from_state: CaseState | None
    to_state: CaseState | None


class LinkOut(BaseModel):
    article_id: str
    article_version: int
    relation: Relation
    title: str
    created_at: datetime


class SuggestionsOut(BaseModel):
    lang: str
    articles: list[ArticleHitOut]
    cases: list[CaseHitOut]


class DraftOut(BaseModel):
    article_id: str
    version: int


def _outs(session: Session, principal: Principal, rows: list[tuple[Case, SlaStatus]]) -> list[CaseOut]:
    """``CaseOut`` of each (case, SLA) pair; organisation names in one query."""
    org_ids = sorted({c.org_id for c, _ in rows})
    names = dict(session.execute(select(Org.id, Org.name).where(Org.id.in_(org_ids))).all())
    staff = principal.is_staff
    return [
        CaseOut(
            id=c.id,
            external_id=c.external_id,
            org_id=c.org_id,
            org_name=names.get(c.org_id, ""),
            contact_name=c.contact_name,
            channel=c.channel,
            product=c.product,
            version=c.version,
            subject=c.subject,
            description=c.description,
            resolution=c.resolution,
            lang=c.lang,
            priority=c.priority,
            severity=c.severity,
            state=c.state,
            assignee_id=c.assignee_id,
            group_name=c.group_name if staff else None,
            escalation_level=c.escalation_level if staff else None,
            opened_at=c.opened_at,
            first_response_at=c.first_response_at,
            resolved_at=c.resolved_at,
            closed_at=c.closed_at,
            updated_at=c.updated_at,
            version_id=c.version_id,
            sla=SlaOut.of(sla),
            allowed_transitions=sorted(casework.allowed_moves(principal, c.state)),
        )
        for c, sla in rows
    ]


def _out(session: Session, principal: Principal, case: Case) -> CaseOut:
    sla = casework.slas(session, [case], utcnow())[case.id]
    return _outs(session, principal, [(case, sla)])[0]


@router.post("", status_code=201, response_model=CaseOut, summary="Open a case")
def create_case_route(body: CaseCreate, principal: PrincipalDep, unit: UnitDep) -> CaseOut:
    if not body.subject.strip() or not body.product.strip():
        raise ValueError("subject and product may not be blank")
    if principal.is_staff:
        if body.org_id is None:
            raise ValueError("org_id is required when support staff open a case")
        org_id = body.org_id
    elif body.org_id is not None:
        raise ValueError("org_id is set by the server: customers open cases for their own organisation")
    elif principal.org_id is None:
        raise PermissionDenied(principal.role, "open a case without an organisation")
    else:
        org_id = principal.org_id
    with unit.transaction() as session:
        if session.get(Org, org_id) is None:
            raise ValueError(f"organisation {org_id} does not exist")
        user = session.get(User, principal.user_id) if principal.user_id is not None else None
        case = casework.open_case(
            session,
            principal,
            org_id=org_id,
            contact_name=body.contact_name or (principal.name if not principal.is_staff else ""),
            contact_email=body.contact_email or (user.email if user is not None and not principal.is_staff else ""),
            channel=body.channel,
            product=body.product,
            subject=body.subject,
            lang=query_lang(f"{body.subject}\n{body.description}"),
            priority=body.priority,
            description=body.description,
            version=body.version,
            severity=body.severity,
        )
        return _out(session, principal, case)


@router.get("", response_model=Page[CaseOut], summary="Cases: customers their org's; staff the queue by SLA risk")
def list_cases_route(
    principal: PrincipalDep,
    session: ReadDB,
    state: Annotated[list[CaseState] | None, Query(max_length=7)] = None,
    priority: Annotated[list[Priority] | None, Query(max_length=4)] = None,
    assigned_to_me: bool = False,
    offset: Offset = 0,
    limit: Limit = 20,
) -> Page[CaseOut]:
    page = casework.list_cases(
        session,
        principal,
        states=state or (),
        priorities=priority or (),
        assignee_id=principal.user_id if assigned_to_me else None,
        offset=offset,
        limit=limit,
    )
    return Page(items=_outs(session, principal, page.cases), total=page.total, offset=offset, limit=limit)


@router.get("/{case_id}", response_model=CaseOut, summary="One case")
def get_case_route(case_id: IdPath, principal: PrincipalDep, session: ReadDB) -> CaseOut:
    return _out(session, principal, casework.visible_case(session, principal, case_id))


@router.patch("/{case_id}", response_model=CaseOut, summary="Edit a case's fields (staff)")
def update_case_route(case_id: IdPath, body: CaseUpdate, principal: StaffDep, unit: UnitDep) -> CaseOut:
    changes = body.model_dump(exclude_unset=True, exclude_none=True, exclude={"expected_version"})
    with unit.transaction() as session:
        case = casework.update_case(session, principal, case_id, changes, expected_version=body.expected_version)
        return _out(session, principal, case)


@router.post("/{case_id}/transitions", response_model=CaseOut, summary="Move a case to another state")
def transition_route(case_id: IdPath, body: TransitionIn, principal: PrincipalDep, unit: UnitDep) -> CaseOut:
    with unit.transaction() as session:
        case = casework.move_case(
            session, principal, case_id, body.to, expected_version=body.expected_version, note=body.note
        )
        return _out(session, principal, case)


def _event_out(event: CaseEvent, author_name: str | None) -> EventOut:
    return EventOut(
        id=event.id,
        kind=event.kind,
        author_id=event.author_id,
        author_name=author_name,
        at=event.at,
        body=event.text,
        internal=event.internal,
        from_state=event.from_state,
        to_state=event.to_state,
    )


@router.get("/{case_id}/timeline", response_model=list[EventOut], summary="The case's timeline")
def timeline_route(case_id: IdPath, principal: PrincipalDep, session: ReadDB) -> list[EventOut]:
    casework.visible_case(session, principal, case_id)
    stmt = (
        select(CaseEvent, User.name)
        .outerjoin(User, User.id == CaseEvent.author_id)
        .where(CaseEvent.case_id == case_id, event_clause(principal))
        .order_by(CaseEvent.at, CaseEvent.id)
    )
    return [_event_out(event, name) for event, name in session.execute(stmt)]


@router.post("/{case_id}/events", status_code=201, response_model=EventOut, summary="Add a call, e-mail or note")
def add_event_route(case_id: IdPath, body: EventIn, principal: PrincipalDep, unit: UnitDep) -> EventOut:
    if body.kind == "note":
        kind = EventKind.NOTE_INTERNAL if body.internal else EventKind.NOTE_PUBLIC
    else:
        kind = EventKind(body.kind)
    if not principal.is_staff and (kind != EventKind.NOTE_PUBLIC or body.internal):
        raise PermissionDenied(principal.role, "add anything but a public note")
    with unit.transaction() as session:
        casework.visible_case(session, principal, case_id)
        event = CaseEvent(
            case_id=case_id, kind=kind, author_id=principal.user_id, at=utcnow(), text=body.body, internal=body.internal
        )
        session.add(event)
        session.flush()
        return _event_out(event, principal.name or None)


@router.post("/{case_id}/assign", response_model=CaseOut, summary="Assign a case to an engineer (staff)")
def assign_route(case_id: IdPath, body: AssignIn, principal: StaffDep, unit: UnitDep) -> CaseOut:
    with unit.transaction() as session:
        case = casework.assign_case(
            session,
            principal,
            case_id,
            body.assignee_id,
            expected_version=body.expected_version,
            group_name=body.group_name,
        )
        return _out(session, principal, case)


@router.post("/{case_id}/escalate", response_model=CaseOut, summary="Raise a case's escalation level (staff)")
def escalate_route(case_id: IdPath, body: EscalateIn, principal: StaffDep, unit: UnitDep) -> CaseOut:
    with unit.transaction() as session:
        case = casework.escalate(
            session, principal, case_id, body.level, expected_version=body.expected_version, note=body.note
        )
        return _out(session, principal, case)


@router.get("/{case_id}/sla", response_model=SlaOut, summary="The case's SLA position now")
def sla_route(case_id: IdPath, principal: PrincipalDep, session: ReadDB) -> SlaOut:
    case = casework.visible_case(session, principal, case_id)
    return SlaOut.of(casework.slas(session, [case], utcnow())[case.id])


@router.get("/{case_id}/suggestions", response_model=SuggestionsOut, summary="Articles and similar solved cases")
def suggestions_route(case_id: IdPath, principal: StaffDep, session: ReadDB, live: LiveDep) -> SuggestionsOut:
    case = casework.visible_case(session, principal, case_id)
    result = suggest(live, session, principal, case.subject, case.description, k=5, exclude_case=case.id)
    return SuggestionsOut(
        lang=result.lang,
        articles=[ArticleHitOut.of(h) for h in result.articles],
        cases=[CaseHitOut.of(h) for h in result.cases],
    )


def _title(version: ArticleVersion, lang: str) -> str:
    order = ("en", "zh") if lang == "en" else ("zh", "en")
    return next((t for t in (getattr(version, f"title_{x}") for x in order) if t), version.article_id)


@router.get("/{case_id}/links", response_model=list[LinkOut], summary="Articles linked to the case")
def links_route(case_id: IdPath, principal: PrincipalDep, session: ReadDB) -> list[LinkOut]:
    case = casework.visible_case(session, principal, case_id)
    stmt = (
        select(CaseArticleLink, ArticleVersion)
        .join(Article, Article.id == CaseArticleLink.article_id)
        .join(
            ArticleVersion,
            (ArticleVersion.article_id == CaseArticleLink.article_id)
            & (ArticleVersion.version == CaseArticleLink.article_version),
        )
        .where(CaseArticleLink.case_id == case_id, article_clause(principal, include_archived=True))
        .order_by(CaseArticleLink.created_at, CaseArticleLink.id)
    )
    return [
        LinkOut(
            article_id=link.article_id,
            article_version=link.article_version,
            relation=link.relation,
            title=_title(version, case.lang),
            created_at=link.created_at,
        )
        for link, version in session.execute(stmt)
    ]


@router.post("/{case_id}/links", status_code=201, response_model=LinkOut, summary="Link an article (staff)")
def add_link_route(case_id: IdPath, body: LinkIn, principal: StaffDep, unit: UnitDep) -> LinkOut:
    with unit.transaction() as session:
        case = casework.visible_case(session, principal, case_id)
        visible = select(Article.id).where(Article.id == body.article_id, article_clause(principal))
        if session.scalars(visible).first() is None:
            raise ArticleNotFound(body.article_id)
        link = kb_articles.link_case_article(
            session, case.id, body.article_id, body.relation, actor_id=principal.user_id
        )
        version = kb_articles.get_article_version(session, link.article_id, link.article_version)
        return LinkOut(
            article_id=link.article_id,
            article_version=link.article_version,
            relation=link.relation,
            title=_title(version, case.lang),
            created_at=link.created_at,
        )


def draft_variants(
    session: Session, case: Case, glosser: Glosser
) -> tuple[dict[kb_articles.Lang, kb_articles.Variant], Sections]:
    """The article variants drafted from ``case`` as the ingest pipeline drafts them: cleaned sections from the
    customer-visible text in the case's language, and a machine-made variant in the other language."""
    org = session.get(Org, case.org_id)
    events = list(
        session.scalars(select(CaseEvent).where(CaseEvent.case_id == case.id).order_by(CaseEvent.at, CaseEvent.id))
    )
    ids = {e.author_id for e in events if e.author_id is not None}
    authors = dict(session.execute(select(User.id, User.name).where(User.id.in_(ids))).all())
    record = stored_case_record(case, org.name if org is not None else "", events, authors)
    title = clean_case_text(record.subject, record_names(record))[0] or case.subject
    sections = extract_sections(record)
    lang = record.lang or "en"
    source: kb_articles.Lang = "en" if lang == "en" else "zh"
    native = kb_articles.Variant(title, sections.symptom, sections.environment, sections.cause, sections.resolution)
    other = other_language_variant(sections, lang, glosser)
    title_other = other_language_variant(Sections(title, "", "", ""), lang, glosser).sections.symptom
    translated = kb_articles.Variant(
        title_other,
        other.sections.symptom,
        other.sections.environment,
        other.sections.cause,
        other.sections.resolution,
        machine_translated=True,
    )
    return {source: native, other.lang: translated}, sections


def _open_draft(session: Session, case_id: int) -> Article | None:
    """The oldest not-yet-validated article (WIP or not validated) linked to the case as solving it, if any."""
    stmt = (
        select(Article)
        .join(CaseArticleLink, CaseArticleLink.article_id == Article.id)
        .where(
            CaseArticleLink.case_id == case_id,
            CaseArticleLink.relation == Relation.SOLVED_BY,
            Article.confidence.in_([Confidence.WIP, Confidence.NOT_VALIDATED]),
        )
        .order_by(CaseArticleLink.created_at, CaseArticleLink.id)
        .limit(1)
    )
    return session.scalars(stmt).first()


@router.post(
    "/{case_id}/article-draft",
    status_code=201,
    response_model=DraftOut,
    summary="Draft an article from the case (201), or the case's open draft if it has one (200)",
)
def article_draft_route(
    case_id: IdPath, principal: DraftDep, unit: UnitDep, live: LiveDep, response: Response
) -> DraftOut:
    glosser = live.sync.engine.analyzer
    with unit.transaction() as session:
        case = casework.visible_case(session, principal, case_id)
        # Idempotent: pressing "create article" twice (or two engineers on one case) must not make two drafts.
        existing = _open_draft(session, case.id)
        if existing is not None:
            response.status_code = 200
            return DraftOut(article_id=existing.id, version=existing.current_version)
        variants, sections = draft_variants(session, case, glosser)
        article = kb_articles.create_article(
            session,
            principal.user_id,
            zh=variants.get("zh"),
            en=variants.get("en"),
            keywords=sections.keywords,
            products=[case.product] if case.product else [],
            error_codes=list(sections.error_codes),
        )
        kb_articles.link_case_article(session, case.id, article.id, Relation.SOLVED_BY, actor_id=principal.user_id)
        payload = {"article_id": article.id, "version": article.current_version, "case_id": case.id}
        webhooks.enqueue(session, "article.created", payload)
        return DraftOut(article_id=article.id, version=article.current_version)
