"""Knowledge articles: immutable bilingual versions, KCS state changes, case links, reuse and feedback.

Functions take the Session first and flush, never commit. Content edits append a new ``ArticleVersion``; a version
row is never updated. Each language variant records which article version of the other language it matches
(``translated_from_version_*``), from which ``stale_translation`` tells whether it needs re-translating.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Final, Literal

from sqlalchemy import distinct, func, select
from sqlalchemy.orm import Session

from kb.errors import ArticleNotFound, ConcurrentUpdate, InvalidTransition
from kb.lifecycle import ArticleState, Audience, Confidence, Role, check_article_edit, check_article_transition
from kb.models import (
    Article,
    ArticleNumber,
    ArticleVersion,
    CaseArticleLink,
    CaseEvent,
    EventKind,
    Feedback,
    Relation,
    utcnow,
)
from kb.repository import flush_locked, get_case, write_outbox

Lang = Literal["zh", "en"]
LANGS: Final[tuple[Lang, Lang]] = ("zh", "en")
FIELDS: Final = ("title", "symptom", "environment", "cause", "resolution")
_OTHER: Final[Mapping[Lang, Lang]] = {"zh": "en", "en": "zh"}


@dataclass(frozen=True, slots=True)
class Variant:
    """One language's content. ``translated``: a translation of the other language's content in the same version."""

    title: str
    symptom: str = ""
    environment: str = ""
    cause: str = ""
    resolution: str = ""
    translated: bool = False
    machine_translated: bool = False


def variant_of(version: ArticleVersion, lang: Lang) -> Variant | None:
    """The ``lang`` content of ``version`` (None when that language does not exist)."""
    title = getattr(version, f"title_{lang}")
    if title is None:
        return None

    def text(name: str) -> str:
        return str(getattr(version, f"{name}_{lang}") or "")

    return Variant(
        str(title),
        text("symptom"),
        text("environment"),
        text("cause"),
        text("resolution"),
        machine_translated=bool(getattr(version, f"machine_translated_{lang}")),
    )


def _content(variant: Variant | None) -> tuple[str, ...] | None:
    return None if variant is None else tuple(getattr(variant, name) for name in FIELDS)


def stale_translation(version: ArticleVersion) -> dict[Lang, bool]:
    """Per existing language: True when the other language changed after this variant was last brought in line.

    Both variants match at version N when both changed at N, or one changed at N as a translation. A lone edit of
    one language at N moves only its own mark to N, so the other variant (still at an older mark) is stale.
    """
    marks = {lang: getattr(version, f"translated_from_version_{lang}") for lang in LANGS}
    present = [lang for lang in LANGS if getattr(version, f"title_{lang}") is not None]
    result: dict[Lang, bool] = {}
    for lang in present:
        mine, theirs = marks[lang], marks[_OTHER[lang]]
        result[lang] = mine is not None and theirs is not None and mine < theirs
    return result


def new_version(
    article_id: str,
    number: int,
    variants: Mapping[Lang, Variant | None],
    marks: Mapping[Lang, int | None],
    keywords: Sequence[str],
    author_id: int | None,
    at: datetime,
) -> ArticleVersion:
    """An unsaved version row holding ``variants`` (None: that language is absent) and translation ``marks``."""
    row = ArticleVersion(
        article_id=article_id, version=number, keywords=list(keywords), author_id=author_id, created_at=at
    )
    for lang in LANGS:
        variant = variants.get(lang)
        for name in FIELDS:
            setattr(row, f"{name}_{lang}", None if variant is None else getattr(variant, name))
        setattr(row, f"machine_translated_{lang}", variant is not None and variant.machine_translated)
        setattr(row, f"translated_from_version_{lang}", marks.get(lang))
    return row


def outbox_article(session: Session, article: Article, at: datetime) -> None:
    """The article's outbox row: delete when archived (it leaves search), else upsert."""
    op: Literal["upsert", "delete"] = "delete" if article.confidence == Confidence.ARCHIVED else "upsert"
    write_outbox(session, "article", article.id, op, at)


def get_article(session: Session, article_id: str) -> Article:
    """The article ``article_id`` or ``ArticleNotFound``."""
    article = session.get(Article, article_id)
    if article is None:
        raise ArticleNotFound(article_id)
    return article


def get_article_version(session: Session, article_id: str, version: int | None = None) -> ArticleVersion:
    """One version of an article (the current one when ``version`` is None); archived articles stay readable."""
    if version is None:
        version = get_article(session, article_id).current_version
    stmt = select(ArticleVersion).where(ArticleVersion.article_id == article_id, ArticleVersion.version == version)
    row = session.scalars(stmt).one_or_none()
    if row is None:
        raise ArticleNotFound(article_id, version)
    return row


def create_article(
    session: Session,
    author_id: int | None,
    *,
    zh: Variant | None = None,
    en: Variant | None = None,
    keywords: Sequence[str] = (),
    products: Sequence[str] = (),
    error_codes: Sequence[str] = (),
    audience: Audience = Audience.INTERNAL,
    at: datetime | None = None,
    article_id: str | None = None,
    state: ArticleState | None = None,
) -> Article:
    """A new article at version 1 with an outbox upsert. Needs zh or en (or both).

    Its id is ``article_id`` (an imported article keeps its own) or the next free ``KB-000123``; its state is
    ``state`` (imports; checked by ``check_state``) or a wip draft for ``audience``.
    """
    if zh is None and en is None:
        raise ValueError("an article needs a zh or an en variant")
    at = at or utcnow()
    if article_id is None:
        article_id = _allocate_id(session)
    elif session.get(Article, article_id) is not None:
        raise ValueError(f"article {article_id} exists already")
    state = state or ArticleState(audience=audience)
    check_state(state)
    article = Article(
        id=article_id,
        current_version=1,
        confidence=state.confidence,
        audience=state.audience,
        governance=state.governance,
        products=list(products),
        error_codes=list(error_codes),
        created_at=at,
        updated_at=at,
    )
    session.add(article)
    both = zh is not None and en is not None
    marks: dict[Lang, int | None] = {"zh": 1 if both else None, "en": 1 if both else None}
    session.add(new_version(article_id, 1, {"zh": zh, "en": en}, marks, keywords, author_id, at))
    outbox_article(session, article, at)
    session.flush()
    return article


def _allocate_id(session: Session) -> str:
    while True:  # skip numbers an import took with its own id
        number = ArticleNumber()
        session.add(number)
        session.flush()
        article_id = f"KB-{number.id:06d}"
        if session.get(Article, article_id) is None:
            return article_id


def check_state(state: ArticleState) -> None:
    """Raise ``InvalidTransition`` for a state no workflow can reach: public content must be validated."""
    if state.audience == Audience.PUBLIC and state.confidence != Confidence.VALIDATED:
        raise InvalidTransition(
            Audience.INTERNAL,
            Audience.PUBLIC,
            kind="audience",
            reason=f"public needs validated confidence, not {state.confidence}",
        )


def locked_article(session: Session, article_id: str, expected_version: int) -> Article:
    """The article, or ``ConcurrentUpdate`` when its ``version_id`` is not ``expected_version``."""
    article = get_article(session, article_id)
    if article.version_id != expected_version:
        raise ConcurrentUpdate("article", article_id, expected_version, article.version_id)
    return article


def state_of(article: Article) -> ArticleState:
    """The KCS state fields of ``article``."""
    return ArticleState(article.confidence, article.audience, article.governance)


def edit_article(
    session: Session,
    article_id: str,
    role: Role,
    changes: Mapping[Lang, Variant],
    *,
    expected_version: int,
    author_id: int | None = None,
    keywords: Sequence[str] | None = None,
    at: datetime | None = None,
) -> ArticleVersion:
    """Append version ``current + 1`` with ``changes`` applied (a whole variant per language) and an outbox row.

    ``expected_version`` is the article's ``version_id``. Unchanged content is copied forward. When only one
    language's content changed (and not as a translation), the other variant becomes stale.
    Raises ``PermissionDenied`` for roles that may not edit, ``ValueError`` when nothing changed.
    """
    at = at or utcnow()
    article = locked_article(session, article_id, expected_version)
    check_article_edit(role, state_of(article))
    previous = get_article_version(session, article_id, article.current_version)
    number = article.current_version + 1
    variants: dict[Lang, Variant | None] = {lang: variant_of(previous, lang) for lang in LANGS}
    changed: list[Lang] = []
    for lang, variant in changes.items():
        if _content(variant) != _content(variants[lang]):
            changed.append(lang)
        variants[lang] = variant
    new_keywords = list(previous.keywords) if keywords is None else list(keywords)
    if not changed and new_keywords == list(previous.keywords):
        raise ValueError(f"edit of {article_id} changes nothing")
    marks: dict[Lang, int | None] = {lang: getattr(previous, f"translated_from_version_{lang}") for lang in LANGS}
    if variants["zh"] is None or variants["en"] is None:
        marks = {"zh": None, "en": None}
    elif len(changed) == 2 or any(changes[lang].translated for lang in changed) or None in marks.values():
        marks = {"zh": number, "en": number}  # in line with each other at this version
    elif changed:
        marks[changed[0]] = number  # a lone edit: the other language is now behind
    row = new_version(article_id, number, variants, marks, new_keywords, author_id, at)
    for lang in LANGS:  # a carried-forward variant keeps its machine-translated flag
        if lang not in changed and variants[lang] is not None:
            setattr(row, f"machine_translated_{lang}", getattr(previous, f"machine_translated_{lang}"))
    session.add(row)
    article.current_version = number
    article.updated_at = at
    outbox_article(session, article, at)
    flush_locked(session, "article", article_id, expected_version)
    return row


def set_article_state(
    session: Session,
    article_id: str,
    role: Role,
    target: ArticleState,
    *,
    expected_version: int,
    at: datetime | None = None,
) -> Article:
    """Change confidence / audience / governance per ``check_article_transition``; outbox upsert, or delete when
    the article becomes archived (it leaves search at once; its versions stay readable)."""
    at = at or utcnow()
    article = locked_article(session, article_id, expected_version)
    check_article_transition(role, state_of(article), target)
    article.confidence, article.audience, article.governance = target.confidence, target.audience, target.governance
    article.updated_at = at
    outbox_article(session, article, at)
    flush_locked(session, "article", article_id, expected_version)
    return article


def link_case_article(
    session: Session,
    case_id: int,
    article_id: str,
    relation: Relation,
    *,
    actor_id: int | None = None,
    at: datetime | None = None,
) -> CaseArticleLink:
    """Link a case to the article's current version (idempotent per relation), with an internal timeline entry."""
    at = at or utcnow()
    get_case(session, case_id)
    article = get_article(session, article_id)
    stmt = select(CaseArticleLink).where(
        CaseArticleLink.case_id == case_id,
        CaseArticleLink.article_id == article_id,
        CaseArticleLink.relation == relation,
    )
    existing = session.scalars(stmt).one_or_none()
    if existing is not None:
        return existing
    link = CaseArticleLink(
        case_id=case_id,
        article_id=article_id,
        article_version=article.current_version,
        relation=relation,
        created_at=at,
    )
    session.add(link)
    text = f"{relation} {article_id} v{article.current_version}"
    session.add(CaseEvent(case_id=case_id, kind=EventKind.LINK, author_id=actor_id, at=at, text=text, internal=True))
    session.flush()
    return link


def reuse_count(session: Session, article_id: str, relations: Collection[Relation] = tuple(Relation)) -> int:
    """How many distinct cases link the article (KCS reuse), counting only ``relations``."""
    stmt = select(func.count(distinct(CaseArticleLink.case_id))).where(
        CaseArticleLink.article_id == article_id, CaseArticleLink.relation.in_(list(relations))
    )
    return session.scalar(stmt) or 0


def add_feedback(
    session: Session,
    article_id: str,
    version: int,
    helpful: bool,
    *,
    user_id: int | None = None,
    comment: str = "",
    at: datetime | None = None,
) -> Feedback:
    """Record whether ``version`` of the article helped; the version must exist."""
    get_article_version(session, article_id, version)
    row = Feedback(
        article_id=article_id, version=version, user_id=user_id, helpful=helpful, comment=comment, at=at or utcnow()
    )
    session.add(row)
    session.flush()
    return row
