"""Authoring on top of ``kb.articles``: version lists, field-wise diffs, translations, metadata edits, the state
changes a role may make, and the webhook events of article changes.

Like ``kb.articles``, every function takes the Session first and flushes, never commits. Content changes always
append a new immutable ``ArticleVersion`` (through ``kb.articles.edit_article`` where it fits); products and error
codes live on the article row, so a change of those alone updates the row (and the search outbox) without a
content version.
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Final

from sqlalchemy import select
from sqlalchemy.orm import Session

from kb.articles import (
    FIELDS,
    LANGS,
    Lang,
    Variant,
    edit_article,
    get_article,
    get_article_version,
    locked_article,
    new_version,
    outbox_article,
    set_article_state,
    stale_translation,
    state_of,
    variant_of,
)
from kb.errors import KBError
from kb.lifecycle import (
    ArticleState,
    Audience,
    Confidence,
    Governance,
    Role,
    check_article_edit,
    check_article_transition,
    is_customer_visible,
)
from kb.models import Article, ArticleVersion, utcnow
from kb.repository import flush_locked
from kb.webhooks import enqueue

CONTENT_FIELDS: Final = tuple(f"{name}_{lang}" for lang in LANGS for name in FIELDS)
DIFF_FIELDS: Final = (*CONTENT_FIELDS, "keywords")
_OTHER: Final[dict[Lang, Lang]] = {"zh": "en", "en": "zh"}


@dataclass(frozen=True, slots=True)
class FieldDiff:
    """One changed field between two versions, as a unified diff of its lines."""

    field: str
    diff: str


def list_versions(session: Session, article_id: str) -> list[ArticleVersion]:
    """Every version of the article, oldest first (``ArticleNotFound`` for an unknown article)."""
    get_article(session, article_id)
    stmt = select(ArticleVersion).where(ArticleVersion.article_id == article_id).order_by(ArticleVersion.version)
    return list(session.scalars(stmt))


def _field_text(version: ArticleVersion, field: str) -> str:
    if field == "keywords":
        return "\n".join(version.keywords or [])
    return str(getattr(version, field) or "")


def diff_versions(old: ArticleVersion, new: ArticleVersion) -> list[FieldDiff]:
    """Field-wise unified diffs from ``old`` to ``new`` (only fields that differ, in ``DIFF_FIELDS`` order)."""
    out: list[FieldDiff] = []
    for field in DIFF_FIELDS:
        before, after = _field_text(old, field), _field_text(new, field)
        if before == after:
            continue
        lines = difflib.unified_diff(
            before.splitlines(),
            after.splitlines(),
            fromfile=f"v{old.version}/{field}",
            tofile=f"v{new.version}/{field}",
            lineterm="",
        )
        out.append(FieldDiff(field, "\n".join(lines)))
    return out


def _locked(session: Session, article_id: str, expected_version: int, role: Role) -> Article:
    article = locked_article(session, article_id, expected_version)
    check_article_edit(role, state_of(article))
    return article


def _same_content(a: Variant | None, b: Variant | None) -> bool:
    if a is None or b is None:
        return a is b
    return all(getattr(a, name) == getattr(b, name) for name in FIELDS)


def update_article(
    session: Session,
    article_id: str,
    role: Role,
    changes: dict[Lang, Variant],
    *,
    expected_version: int,
    author_id: int | None = None,
    keywords: Sequence[str] | None = None,
    products: Sequence[str] | None = None,
    error_codes: Sequence[str] | None = None,
    at: datetime | None = None,
) -> Article:
    """Apply an edit: changed content or keywords append a version (``edit_article``); products and error codes
    are set on the article row in the same flush. ``ValueError`` when nothing would change."""
    at = at or utcnow()
    article = _locked(session, article_id, expected_version, role)
    current = get_article_version(session, article_id, article.current_version)
    content_changed = any(not _same_content(v, variant_of(current, lang)) for lang, v in changes.items())
    keywords_changed = keywords is not None and list(keywords) != list(current.keywords)
    meta_changed = False
    if products is not None and list(products) != list(article.products):
        article.products = list(products)
        meta_changed = True
    if error_codes is not None and list(error_codes) != list(article.error_codes):
        article.error_codes = list(error_codes)
        meta_changed = True
    if content_changed or keywords_changed:
        edit_article(
            session,
            article_id,
            role,
            changes,
            expected_version=expected_version,
            author_id=author_id,
            keywords=keywords,
            at=at,
        )
    elif meta_changed:
        article.updated_at = at
        outbox_article(session, article, at)
        flush_locked(session, "article", article_id, expected_version)
    else:
        raise ValueError(f"edit of {article_id} changes nothing")
    return article


def set_translation(
    session: Session,
    article_id: str,
    role: Role,
    lang: Lang,
    variant: Variant,
    *,
    expected_version: int,
    author_id: int | None = None,
    at: datetime | None = None,
) -> ArticleVersion:
    """Append a version whose ``lang`` variant is a translation of the other language's current content, so
    neither is stale. Identical content confirms a stale translation as current (a new version all the same).
    ``ValueError`` when the other language does not exist or nothing would change."""
    at = at or utcnow()
    article = _locked(session, article_id, expected_version, role)
    current = get_article_version(session, article_id, article.current_version)
    other = _OTHER[lang]
    if variant_of(current, other) is None:
        raise ValueError(f"{article_id} has no {other} content to translate from")
    translated = replace(variant, translated=True)
    if not _same_content(translated, variant_of(current, lang)):
        return edit_article(
            session,
            article_id,
            role,
            {lang: translated},
            expected_version=expected_version,
            author_id=author_id,
            at=at,
        )
    if not stale_translation(current).get(lang, False):
        raise ValueError(f"the {lang} translation of {article_id} is already current; nothing changes")
    number = article.current_version + 1
    variants: dict[Lang, Variant | None] = {code: variant_of(current, code) for code in LANGS}
    variants[lang] = translated
    row = new_version(article_id, number, variants, {"zh": number, "en": number}, current.keywords, author_id, at)
    setattr(row, f"machine_translated_{other}", getattr(current, f"machine_translated_{other}"))
    session.add(row)
    article.current_version = number
    article.updated_at = at
    outbox_article(session, article, at)
    flush_locked(session, "article", article_id, expected_version)
    return row


def allowed_targets(role: Role, current: ArticleState) -> list[ArticleState]:
    """The states ``role`` may move an article in ``current`` to with one request: every single-field change
    ``check_article_transition`` allows, plus "publish" (validated and public together)."""
    candidates: list[ArticleState] = []
    candidates += [replace(current, confidence=c) for c in Confidence if c != current.confidence]
    candidates += [replace(current, audience=a) for a in Audience if a != current.audience]
    candidates += [replace(current, governance=g) for g in Governance if g != current.governance]
    publish = replace(current, confidence=Confidence.VALIDATED, audience=Audience.PUBLIC)
    if publish not in candidates and publish != current:
        candidates.append(publish)
    allowed: list[ArticleState] = []
    for target in candidates:
        try:
            check_article_transition(role, current, target)
        except KBError:  # PermissionDenied or InvalidTransition: not reachable for this role
            continue
        allowed.append(target)
    return allowed


def state_events(before: ArticleState, after: ArticleState) -> list[str]:
    """The webhook events of a state change: ``article.state_changed``, plus ``article.published`` when it
    becomes validated and public, plus ``article.archived`` when it becomes archived."""
    if before == after:
        return []
    events = ["article.state_changed"]
    if is_customer_visible(after) and not is_customer_visible(before):
        events.append("article.published")
    if after.confidence == Confidence.ARCHIVED and before.confidence != Confidence.ARCHIVED:
        events.append("article.archived")
    return events


def change_state(
    session: Session,
    article_id: str,
    role: Role,
    *,
    expected_version: int,
    confidence: Confidence | None = None,
    audience: Audience | None = None,
    governance: Governance | None = None,
    at: datetime | None = None,
) -> tuple[Article, list[str]]:
    """Set the given state fields (the others stay) through ``kb.articles.set_article_state`` and queue the
    webhook events in the same transaction; returns the article and the events queued."""
    at = at or utcnow()
    article = get_article(session, article_id)
    before = state_of(article)
    target = ArticleState(confidence or before.confidence, audience or before.audience, governance or before.governance)
    if target == before:
        raise ValueError(f"{article_id} is already {target.confidence}/{target.audience}/{target.governance}")
    set_article_state(session, article_id, role, target, expected_version=expected_version, at=at)
    events = state_events(before, target)
    for event in events:
        notify(session, event, article, at=at)
    return article, events


def notify(session: Session, event: str, article: Article, *, at: datetime | None = None) -> int:
    """Queue webhook ``event`` for ``article`` (ids, state and version only, never content)."""
    payload = {
        "article_id": article.id,
        "version": article.current_version,
        "confidence": str(article.confidence),
        "audience": str(article.audience),
        "governance": str(article.governance),
    }
    return enqueue(session, event, payload, at=at)
