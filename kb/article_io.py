"""Articles as JSON lines: ``kb articles export`` writes them, ``kb articles import`` (and the bulk importer in
``ingest``) reads them back.

The export format, one article a line (the current version, both language variants)::

    {"id": "KB-000012", "version": 3, "confidence": "validated", "audience": "public",
     "governance": "experience_based", "products": ["printers"], "error_codes": ["0x0000011B"],
     "keywords": ["打印机"], "created_at": "...", "updated_at": "...",
     "zh": {"title", "symptom", "environment", "cause", "resolution", "machine_translated", "stale"} | null,
     "en": {...} | null}

``parse_article`` also reads the flat knowledge-base format of ``data/samples/corpus.jsonl``
(``{"id", "title", "lang", "product", "symptom", "environment", "cause", "resolution", "keywords",
"error_codes"}``): one variant, in ``lang`` (``mixed`` text is stored as the zh variant).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Final, Literal, TextIO

from sqlalchemy import select
from sqlalchemy.orm import Session

from kb.articles import (
    FIELDS,
    LANGS,
    Lang,
    Variant,
    check_state,
    create_article,
    new_version,
    outbox_article,
    stale_translation,
    variant_of,
)
from kb.articles import get_article_version as _version
from kb.errors import InvalidInput
from kb.lifecycle import ArticleState, Audience, Confidence, Governance
from kb.models import Article, ArticleVersion, utcnow

Outcome = Literal["created", "updated", "unchanged"]
_ID: Final = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,31}$")


@dataclass(frozen=True, slots=True)
class ArticleRecord:
    """One article to import. ``state`` None: the importer's default state."""

    article_id: str | None
    variants: Mapping[Lang, Variant]
    keywords: tuple[str, ...] = ()
    products: tuple[str, ...] = ()
    error_codes: tuple[str, ...] = ()
    state: ArticleState | None = None
    stale: frozenset[Lang] = field(default_factory=frozenset)


def _strings(data: Mapping[str, Any], name: str) -> tuple[str, ...]:
    value = data.get(name)
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,) if value.strip() else ()
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"{name} must be a list of strings")
    return tuple(dict.fromkeys(v.strip() for v in value if v.strip()))


def _text(data: Mapping[str, Any], name: str, *, required: bool = False) -> str:
    value = data.get(name)
    if value is None or value == "":
        if required:
            raise ValueError(f"{name} is required")
        return ""
    if not isinstance(value, str):
        raise ValueError(f"{name} must be a string, got {type(value).__name__}")
    if required and not value.strip():
        raise ValueError(f"{name} is required")
    return value.strip()


def _variant(data: Any, lang: str) -> Variant | None:
    if data is None:
        return None
    if not isinstance(data, dict):
        raise ValueError(f"{lang} must be an object or null")
    symptom, environment, cause, resolution = (_text(data, name) for name in FIELDS[1:])
    return Variant(
        _text(data, "title", required=True),
        symptom,
        environment,
        cause,
        resolution,
        machine_translated=bool(data.get("machine_translated")),
    )


def _enum(data: Mapping[str, Any], name: str, cls: type[Confidence] | type[Audience] | type[Governance]) -> Any:
    value = data.get(name)
    if value is None:
        return None
    try:
        return cls(value)
    except ValueError:
        raise ValueError(f"{name} must be one of {', '.join(m.value for m in cls)}, got {value!r}") from None


def parse_article(data: Mapping[str, Any]) -> ArticleRecord:
    """An ``ArticleRecord`` from an export line or a flat knowledge-base record; ``ValueError`` names the field."""
    raw_id = data.get("id")
    if raw_id is not None and (not isinstance(raw_id, str) or not _ID.match(raw_id.strip())):
        raise ValueError(f"id must be 1-32 letters, digits, '.', '_' or '-', got {raw_id!r}")
    article_id = raw_id.strip() if isinstance(raw_id, str) else None
    variants: dict[Lang, Variant] = {}
    if "zh" in data or "en" in data:
        for lang in LANGS:
            variant = _variant(data.get(lang), lang)
            if variant is not None:
                variants[lang] = variant
        if not variants:
            raise ValueError("zh and en are both null: an article needs one of them")
    else:
        lang = data.get("lang", "en")
        if lang not in ("zh", "en", "mixed"):
            raise ValueError(f"lang must be zh, en or mixed, got {lang!r}")
        variant = _variant(data, str(lang))
        if variant is None or not any((variant.symptom, variant.environment, variant.cause, variant.resolution)):
            raise ValueError(f"no content: give at least one of {', '.join(FIELDS[1:])}")
        variants["en" if lang == "en" else "zh"] = variant
    confidence = _enum(data, "confidence", Confidence)
    audience = _enum(data, "audience", Audience)
    governance = _enum(data, "governance", Governance)
    state = None
    if confidence or audience or governance:
        state = ArticleState(
            confidence or Confidence.VALIDATED, audience or Audience.INTERNAL, governance or Governance.EXPERIENCE_BASED
        )
        check_state(state)
    products = _strings(data, "products") or _strings(data, "product")
    stale = frozenset(lang for lang in LANGS if isinstance(data.get(lang), dict) and data[lang].get("stale"))
    if len(stale) > 1:
        raise ValueError("zh and en cannot both be stale")
    return ArticleRecord(
        article_id,
        variants,
        _strings(data, "keywords"),
        products,
        _strings(data, "error_codes"),
        state,
        stale,
    )


def export_article(article: Article, version: ArticleVersion) -> dict[str, Any]:
    """The export line of an article's current ``version``."""
    stale = stale_translation(version)
    out: dict[str, Any] = {
        "id": article.id,
        "version": version.version,
        "confidence": str(article.confidence),
        "audience": str(article.audience),
        "governance": str(article.governance),
        "products": list(article.products),
        "error_codes": list(article.error_codes),
        "keywords": list(version.keywords),
        "created_at": article.created_at.isoformat(),
        "updated_at": article.updated_at.isoformat(),
    }
    for lang in LANGS:
        variant = variant_of(version, lang)
        out[lang] = (
            None
            if variant is None
            else {
                **{name: getattr(variant, name) for name in FIELDS},
                "machine_translated": variant.machine_translated,
                "stale": stale.get(lang, False),
            }
        )
    return out


def export_articles(session: Session, confidence: Confidence | None = None) -> Iterator[dict[str, Any]]:
    """Every article (or those with ``confidence``), in id order, as export lines."""
    stmt = select(Article, ArticleVersion).join(
        ArticleVersion,
        (ArticleVersion.article_id == Article.id) & (ArticleVersion.version == Article.current_version),
    )
    if confidence is not None:
        stmt = stmt.where(Article.confidence == confidence)
    for article, version in session.execute(stmt.order_by(Article.id)):
        yield export_article(article, version)


def _marks(record: ArticleRecord, number: int) -> dict[Lang, int | None]:
    if len(record.variants) < 2:
        return {"zh": None, "en": None}
    return {lang: number - 1 if lang in record.stale else number for lang in LANGS}


def import_article(
    session: Session, record: ArticleRecord, *, default_state: ArticleState, at: datetime | None = None
) -> tuple[Outcome, Article]:
    """Create the article, or bring an existing one (same id) to the record's content and state as a new version.

    Importing the same record twice changes nothing the second time (``unchanged``). Flushes, never commits.
    """
    at = at or utcnow()
    state = record.state or default_state
    existing = session.get(Article, record.article_id) if record.article_id else None
    if existing is None:
        article = create_article(
            session,
            None,
            zh=record.variants.get("zh"),
            en=record.variants.get("en"),
            keywords=record.keywords,
            products=record.products,
            error_codes=record.error_codes,
            article_id=record.article_id,
            state=state,
            at=at,
        )
        if record.stale:
            version = _version(session, article.id, 1)
            for lang, mark in _marks(record, 1).items():
                setattr(version, f"translated_from_version_{lang}", mark)
        return "created", article
    return _update(session, existing, record, state, at), existing


def _update(session: Session, article: Article, record: ArticleRecord, state: ArticleState, at: datetime) -> Outcome:
    current = _version(session, article.id, article.current_version)
    old = {lang: variant_of(current, lang) for lang in LANGS}
    new = {lang: record.variants.get(lang) for lang in LANGS}

    def content(v: Variant | None) -> tuple[Any, ...] | None:
        return None if v is None else (*(getattr(v, n) for n in FIELDS), v.machine_translated)

    same_content = all(content(old[lang]) == content(new[lang]) for lang in LANGS) and list(current.keywords) == list(
        record.keywords
    )
    same_stale = {lang for lang, s in stale_translation(current).items() if s} == set(record.stale)
    same_meta = (list(article.products), list(article.error_codes)) == (list(record.products), list(record.error_codes))
    same_state = (article.confidence, article.audience, article.governance) == (
        state.confidence,
        state.audience,
        state.governance,
    )
    if same_content and same_stale and same_meta and same_state:
        return "unchanged"
    check_state(state)
    if not (same_content and same_stale):
        number = article.current_version + 1
        session.add(new_version(article.id, number, new, _marks(record, number), record.keywords, None, at))
        article.current_version = number
    article.products, article.error_codes = list(record.products), list(record.error_codes)
    article.confidence, article.audience, article.governance = state.confidence, state.audience, state.governance
    article.updated_at = at
    outbox_article(session, article, at)
    session.flush()
    return "updated"


def read_articles(path: Path) -> Iterator[tuple[int, ArticleRecord | tuple[str | None, str]]]:
    """``(line, record)``, or ``(line, (id or None, error))`` for a bad line, for each non-blank line of a JSONL
    file. A file that cannot be opened raises ``InvalidInput`` at once."""
    try:
        handle = path.open(encoding="utf-8")
    except OSError as exc:
        raise InvalidInput(path, 0, f"cannot read: {exc.strerror or exc}") from exc
    return _read(handle)


def _read(handle: TextIO) -> Iterator[tuple[int, ArticleRecord | tuple[str | None, str]]]:
    with handle:
        for number, text in enumerate(handle, start=1):
            if not text.strip():
                continue
            try:
                data: Any = json.loads(text)
            except json.JSONDecodeError as exc:
                yield number, (None, f"invalid JSON: {exc.msg} at column {exc.colno}")
                continue
            if not isinstance(data, dict):
                yield number, (None, f"expected a JSON object, got {type(data).__name__}")
                continue
            try:
                yield number, parse_article(data)
            except ValueError as exc:
                raw_id = data.get("id")
                yield number, (raw_id if isinstance(raw_id, str) else None, str(exc))
