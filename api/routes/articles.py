"""Knowledge articles: list, read (any version), write (each edit a new immutable version), KCS state changes,
versions and diffs, translations, feedback.

Every read goes through ``kb.access.article_clause``: a customer asking for an internal, draft or archived article
gets the same 404 as for a missing id (also on /versions, /diff and /feedback). Staff may read archived articles
and their versions. Writes run in one transaction with the search outbox and the webhook events.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Path, Query
from pydantic import BaseModel, Field
from sqlalchemy import String, cast, func, select
from sqlalchemy.orm import Session

from api.deps import EditorDep, PrincipalDep, ReadDB, UnitDep
from api.schemas import MAX_ID, Limit, Offset, Page, StrictIn
from kb.access import Principal, article_clause
from kb.articles import (
    Lang,
    Variant,
    add_feedback,
    create_article,
    get_article_version,
    reuse_count,
    stale_translation,
    state_of,
    variant_of,
)
from kb.authoring import (
    allowed_targets,
    change_state,
    diff_versions,
    list_versions,
    notify,
    set_translation,
    update_article,
)
from kb.errors import ArticleNotFound
from kb.lifecycle import Audience, Confidence, Governance
from kb.models import Article, ArticleVersion, Feedback

router = APIRouter(prefix="/articles", tags=["articles"])

ArticleId = Annotated[str, Path(min_length=1, max_length=32, description="e.g. KB-000123")]
Tag = Annotated[str, Field(min_length=1, max_length=200)]
LangPath = Annotated[Literal["zh", "en"], Path(description="the language being set")]
_TEXT = 20_000


# --- models --------------------------------------------------------------------------------------------------------


class VariantIn(StrictIn):
    title: str = Field(min_length=1, max_length=500)
    symptom: str = Field(default="", max_length=_TEXT)
    environment: str = Field(default="", max_length=_TEXT)
    cause: str = Field(default="", max_length=_TEXT)
    resolution: str = Field(default="", max_length=_TEXT)
    machine_translated: bool = False

    def to_variant(self) -> Variant:
        return Variant(
            self.title.strip(),
            self.symptom,
            self.environment,
            self.cause,
            self.resolution,
            machine_translated=self.machine_translated,
        )


class VariantOut(BaseModel):
    title: str
    symptom: str
    environment: str
    cause: str
    resolution: str
    machine_translated: bool

    @classmethod
    def of(cls, variant: Variant | None) -> VariantOut | None:
        if variant is None:
            return None
        return cls(
            title=variant.title,
            symptom=variant.symptom,
            environment=variant.environment,
            cause=variant.cause,
            resolution=variant.resolution,
            machine_translated=variant.machine_translated,
        )


class ArticleCreate(StrictIn):
    zh: VariantIn | None = None
    en: VariantIn | None = None
    keywords: list[Tag] = Field(default_factory=list, max_length=50)
    products: list[Tag] = Field(default_factory=list, max_length=20)
    error_codes: list[Tag] = Field(default_factory=list, max_length=50)


class ArticleUpdate(StrictIn):
    expected_version: int = Field(ge=1, le=MAX_ID, description="the article's version_id as last read")
    zh: VariantIn | None = None
    en: VariantIn | None = None
    keywords: list[Tag] | None = Field(default=None, max_length=50)
    products: list[Tag] | None = Field(default=None, max_length=20)
    error_codes: list[Tag] | None = Field(default=None, max_length=50)


class TransitionIn(StrictIn):
    expected_version: int = Field(ge=1, le=MAX_ID)
    confidence: Confidence | None = None
    audience: Audience | None = None
    governance: Governance | None = None


class TranslationIn(StrictIn):
    expected_version: int = Field(ge=1, le=MAX_ID)
    variant: VariantIn


class FeedbackIn(StrictIn):
    helpful: bool
    comment: str = Field(default="", max_length=2_000)


class StaleOut(BaseModel):
    zh: bool
    en: bool


class ArticleStateOut(BaseModel):
    confidence: Confidence
    audience: Audience
    governance: Governance


class ArticleOut(BaseModel):
    article_id: str
    version: int
    confidence: Confidence
    audience: Audience
    governance: Governance
    products: list[str]
    error_codes: list[str]
    keywords: list[str]
    zh: VariantOut | None
    en: VariantOut | None
    stale: StaleOut
    reuse_count: int
    helpful: int
    not_helpful: int
    version_id: int
    updated_at: datetime
    allowed_transitions: list[ArticleStateOut] = Field(
        description="target states the caller may reach with one POST /transitions"
    )


class ArticleSummaryOut(BaseModel):
    article_id: str
    version: int
    title_zh: str | None
    title_en: str | None
    confidence: Confidence
    audience: Audience
    governance: Governance
    products: list[str]
    updated_at: datetime
    stale: StaleOut


class VersionOut(BaseModel):
    version: int
    author_id: int | None
    created_at: datetime
    title_zh: str | None
    title_en: str | None


class FieldDiffOut(BaseModel):
    field: str
    diff: str


class DiffOut(BaseModel):
    from_: int = Field(serialization_alias="from")
    to: int
    fields: list[FieldDiffOut]


class FeedbackOut(BaseModel):
    id: int
    article_id: str
    version: int
    helpful: bool
    at: datetime


# --- reads ---------------------------------------------------------------------------------------------------------


def _readable(session: Session, principal: Principal, article_id: str) -> Article:
    """The article if ``principal`` may read it (staff: archived too); else the 404 of a missing id."""
    stmt = select(Article).where(Article.id == article_id, article_clause(principal, include_archived=True))
    article = session.scalars(stmt).one_or_none()
    if article is None:
        raise ArticleNotFound(article_id)
    return article


def _stale(version: ArticleVersion) -> StaleOut:
    flags = stale_translation(version)
    return StaleOut(zh=flags.get("zh", False), en=flags.get("en", False))


def _feedback_counts(session: Session, article_id: str) -> tuple[int, int]:
    stmt = select(Feedback.helpful, func.count()).where(Feedback.article_id == article_id).group_by(Feedback.helpful)
    counts = {bool(helpful): int(n) for helpful, n in session.execute(stmt).all()}
    return counts.get(True, 0), counts.get(False, 0)


def _article_out(session: Session, principal: Principal, article: Article, version: ArticleVersion) -> ArticleOut:
    helpful, not_helpful = _feedback_counts(session, article.id)
    return ArticleOut(
        article_id=article.id,
        version=version.version,
        confidence=article.confidence,
        audience=article.audience,
        governance=article.governance,
        products=list(article.products),
        error_codes=list(article.error_codes),
        keywords=list(version.keywords or []),
        zh=VariantOut.of(variant_of(version, "zh")),
        en=VariantOut.of(variant_of(version, "en")),
        stale=_stale(version),
        reuse_count=reuse_count(session, article.id),
        helpful=helpful,
        not_helpful=not_helpful,
        version_id=article.version_id,
        updated_at=article.updated_at,
        allowed_transitions=[
            ArticleStateOut(confidence=s.confidence, audience=s.audience, governance=s.governance)
            for s in allowed_targets(principal.role, state_of(article))
        ],
    )


def _current_out(session: Session, principal: Principal, article_id: str) -> ArticleOut:
    article = _readable(session, principal, article_id)
    return _article_out(session, principal, article, get_article_version(session, article_id))


@router.get("", response_model=Page[ArticleSummaryOut], summary="List the articles the caller may read")
def list_articles(
    principal: PrincipalDep,
    session: ReadDB,
    confidence: Confidence | None = None,
    audience: Audience | None = None,
    product: Annotated[str | None, Query(min_length=1, max_length=200)] = None,
    offset: Offset = 0,
    limit: Limit = 20,
) -> Page[ArticleSummaryOut]:
    """Newest first. Archived articles are listed (for staff only) when ``confidence=archived`` is asked."""
    conditions = [article_clause(principal, include_archived=confidence == Confidence.ARCHIVED)]
    if confidence is not None:
        conditions.append(Article.confidence == confidence)
    if audience is not None:
        conditions.append(Article.audience == audience)
    if product is not None:
        # products is a JSON list: match the JSON-encoded string as stored (portable: SQLite and PostgreSQL).
        needle = json.dumps(product).replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        conditions.append(cast(Article.products, String).like(f"%{needle}%", escape="\\"))
    total = session.scalar(select(func.count()).select_from(Article).where(*conditions)) or 0
    stmt = (
        select(Article, ArticleVersion)
        .join(
            ArticleVersion,
            (ArticleVersion.article_id == Article.id) & (ArticleVersion.version == Article.current_version),
        )
        .where(*conditions)
        .order_by(Article.updated_at.desc(), Article.id)
        .offset(offset)
        .limit(limit)
    )
    items = [
        ArticleSummaryOut(
            article_id=article.id,
            version=version.version,
            title_zh=version.title_zh,
            title_en=version.title_en,
            confidence=article.confidence,
            audience=article.audience,
            governance=article.governance,
            products=list(article.products),
            updated_at=article.updated_at,
            stale=_stale(version),
        )
        for article, version in session.execute(stmt).all()
    ]
    return Page(items=items, total=total, offset=offset, limit=limit)


@router.get("/{article_id}", response_model=ArticleOut, summary="One article (current version)", responses={404: {}})
def get_article_route(article_id: ArticleId, principal: PrincipalDep, session: ReadDB) -> ArticleOut:
    return _current_out(session, principal, article_id)


@router.get("/{article_id}/versions", response_model=list[VersionOut], summary="The article's versions, oldest first")
def versions_route(article_id: ArticleId, principal: PrincipalDep, session: ReadDB) -> list[VersionOut]:
    _readable(session, principal, article_id)
    return [
        VersionOut(
            version=v.version, author_id=v.author_id, created_at=v.created_at, title_zh=v.title_zh, title_en=v.title_en
        )
        for v in list_versions(session, article_id)
    ]


@router.get("/{article_id}/versions/{version}", response_model=ArticleOut, summary="One version of the article")
def version_route(
    article_id: ArticleId, version: Annotated[int, Path(ge=1, le=MAX_ID)], principal: PrincipalDep, session: ReadDB
) -> ArticleOut:
    article = _readable(session, principal, article_id)
    return _article_out(session, principal, article, get_article_version(session, article_id, version))


@router.get("/{article_id}/diff", response_model=DiffOut, summary="Field-wise unified diff between two versions")
def diff_route(
    article_id: ArticleId,
    principal: PrincipalDep,
    session: ReadDB,
    from_: Annotated[int | None, Query(alias="from", ge=1, le=MAX_ID, description="default: to - 1")] = None,
    to: Annotated[int | None, Query(ge=1, le=MAX_ID, description="default: the current version")] = None,
) -> DiffOut:
    article = _readable(session, principal, article_id)
    to = to or article.current_version
    from_ = from_ or max(1, to - 1)
    old = get_article_version(session, article_id, from_)
    new = get_article_version(session, article_id, to)
    fields = [FieldDiffOut(field=d.field, diff=d.diff) for d in diff_versions(old, new)]
    return DiffOut(from_=from_, to=to, fields=fields)


# --- writes --------------------------------------------------------------------------------------------------------


@router.post("", response_model=ArticleOut, status_code=201, summary="New article: a WIP, internal draft")
def create_article_route(body: ArticleCreate, principal: EditorDep, unit: UnitDep) -> ArticleOut:
    with unit.transaction() as session:
        article = create_article(
            session,
            principal.user_id,
            zh=body.zh.to_variant() if body.zh else None,
            en=body.en.to_variant() if body.en else None,
            keywords=body.keywords,
            products=body.products,
            error_codes=body.error_codes,
        )
        notify(session, "article.created", article)
        return _current_out(session, principal, article.id)


@router.patch("/{article_id}", response_model=ArticleOut, summary="Edit: a new immutable version")
def update_article_route(article_id: ArticleId, body: ArticleUpdate, principal: EditorDep, unit: UnitDep) -> ArticleOut:
    changes: dict[Lang, Variant] = {}
    if body.zh is not None:
        changes["zh"] = body.zh.to_variant()
    if body.en is not None:
        changes["en"] = body.en.to_variant()
    with unit.transaction() as session:
        _readable(session, principal, article_id)
        article = update_article(
            session,
            article_id,
            principal.role,
            changes,
            expected_version=body.expected_version,
            author_id=principal.user_id,
            keywords=body.keywords,
            products=body.products,
            error_codes=body.error_codes,
        )
        notify(session, "article.updated", article)
        return _current_out(session, principal, article_id)


@router.post(
    "/{article_id}/transitions",
    response_model=ArticleOut,
    summary="Change confidence / audience / governance (publish: validated + public; archive: archived)",
    responses={403: {}, 404: {}, 409: {}},
)
def transition_route(article_id: ArticleId, body: TransitionIn, principal: EditorDep, unit: UnitDep) -> ArticleOut:
    if body.confidence is None and body.audience is None and body.governance is None:
        raise ValueError("give at least one of confidence, audience, governance")
    with unit.transaction() as session:
        _readable(session, principal, article_id)
        change_state(
            session,
            article_id,
            principal.role,
            expected_version=body.expected_version,
            confidence=body.confidence,
            audience=body.audience,
            governance=body.governance,
        )
        return _current_out(session, principal, article_id)


@router.put(
    "/{article_id}/translations/{lang}",
    response_model=ArticleOut,
    summary="Set a language as the translation of the other's current content (clears its stale flag)",
)
def translation_route(
    article_id: ArticleId, lang: LangPath, body: TranslationIn, principal: EditorDep, unit: UnitDep
) -> ArticleOut:
    with unit.transaction() as session:
        _readable(session, principal, article_id)
        set_translation(
            session,
            article_id,
            principal.role,
            lang,
            body.variant.to_variant(),
            expected_version=body.expected_version,
            author_id=principal.user_id,
        )
        article = _readable(session, principal, article_id)
        notify(session, "article.updated", article)
        return _current_out(session, principal, article_id)


@router.post("/{article_id}/feedback", response_model=FeedbackOut, status_code=201, summary="Was this article helpful?")
def feedback_route(article_id: ArticleId, body: FeedbackIn, principal: PrincipalDep, unit: UnitDep) -> FeedbackOut:
    with unit.transaction() as session:
        article = _readable(session, principal, article_id)
        row = add_feedback(
            session, article_id, article.current_version, body.helpful, user_id=principal.user_id, comment=body.comment
        )
        return FeedbackOut(id=row.id, article_id=row.article_id, version=row.version, helpful=row.helpful, at=row.at)
