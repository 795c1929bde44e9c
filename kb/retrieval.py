"""Permission-aware retrieval for the service and the assistant: search, intake suggestions, similar cases.

The index ranks with the caller's filter applied inside retrieval (``kb.access``), then the final ``k`` rows are
hydrated from the database with one ``IN (...)`` query that applies the same access clause again: a document the
index still holds for a moment after the database hid it (an archive in another worker) is dropped, never shown.
Titles and snippets come from the variant in the query's language when one exists.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Final

from sqlalchemy import select
from sqlalchemy.orm import Session

from kb.access import Principal, article_clause, article_filter, case_clause, case_filter
from kb.articles import variant_of
from kb.indexer import CASE_PREFIX
from kb.live import LiveIndex
from kb.models import Article, ArticleVersion, Case
from kb.search.passages import split_passages
from kb.search.types import Filter, Hit, Mode
from kb.text import Analyzer, detect_lang

SNIPPET_CHARS: Final = 240
FACET_POOL: Final = 100  # facets count the permitted candidates among the top FACET_POOL, not the whole corpus
RESOLVED_STATES: Final = frozenset({"resolved", "closed"})
SUGGEST_EMBED_CHARS: Final = 300
"""Intake suggestions embed only the first 300 characters of subject + description (BM25 reads it all): the
subject and the start of the description state the problem, and the model's cost grows with length (13 ms at 14
tokens, 90 ms at its 256-token limit on this machine: ``eval/BENCH.md``, intake suggestion latency)."""


@dataclass(frozen=True, slots=True)
class ArticleHit:
    article_id: str
    version: int
    title: str
    snippet: str
    lang: str  # the language of the shown title and snippet
    score: float
    signals: dict[str, float]
    products: list[str]
    confidence: str
    audience: str
    resolution: str = ""


@dataclass(frozen=True, slots=True)
class CaseHit:
    case_id: int
    subject: str
    snippet: str
    resolution: str
    state: str
    product: str
    score: float
    signals: dict[str, float]


@dataclass(frozen=True, slots=True)
class SearchResult:
    lang: str
    articles: list[ArticleHit] = field(default_factory=list)
    cases: list[CaseHit] = field(default_factory=list)
    facets: dict[str, dict[str, int]] = field(default_factory=dict)


def query_lang(text: str) -> str:
    """``zh`` or ``en``: the language to answer in (mixed text with any Chinese counts as Chinese)."""
    return "en" if detect_lang(text) == "en" else "zh"


def _merge(base: Filter, extra: dict[str, Sequence[str]]) -> Filter:
    allowed = dict(base.allowed)
    for key, values in extra.items():
        if not values:
            continue
        wanted = frozenset(values)
        allowed[key] = allowed[key] & wanted if key in allowed else wanted
    return Filter(allowed)


def snippet(analyzer: Analyzer, query: str, text: str, limit: int = SNIPPET_CHARS) -> str:
    """The passage of ``text`` that shares most query terms, cut to ``limit`` characters."""
    text = text.strip()
    if len(text) <= limit:
        return text
    terms = set(analyzer.analyze_query(query, max_chars=500, max_terms=64).native)
    best, best_score = "", -1
    for passage in split_passages(text, max_chars=limit, overlap_sentences=0):
        score = len(terms & _token_set(analyzer, passage)) if terms else 0
        if score > best_score:
            best, best_score = passage, score
    return best[:limit].strip()


@lru_cache(maxsize=16_384)
def _token_set(analyzer: Analyzer, passage: str) -> frozenset[str]:
    """The native tokens of an article passage: the same passages are snippeted for many queries."""
    return frozenset(analyzer.tokens(passage))


def _article_text(version: ArticleVersion, lang: str) -> tuple[str, str, str, str]:
    """(shown language, title, body text, resolution) in ``lang`` when that variant exists, else the other."""
    for candidate in (lang, "en" if lang == "zh" else "zh"):
        variant = variant_of(version, candidate)  # type: ignore[arg-type]
        if variant is not None:
            body = "\n".join(p for p in (variant.symptom, variant.cause, variant.resolution) if p)
            return candidate, variant.title, body, variant.resolution
    return lang, version.article_id, "", ""


def current_versions(
    session: Session, principal: Principal, ids: Sequence[str]
) -> dict[str, tuple[Article, ArticleVersion]]:
    """The articles ``ids`` that ``principal`` may read, with their current versions: one ``IN (...)`` query with
    the access clause (a row the index still holds but the database hides is simply missing)."""
    if not ids:
        return {}
    rows = session.execute(
        select(Article, ArticleVersion)
        .join(
            ArticleVersion,
            (ArticleVersion.article_id == Article.id) & (ArticleVersion.version == Article.current_version),
        )
        .where(Article.id.in_(list(ids)), article_clause(principal))
    ).all()
    return {a.id: (a, v) for a, v in rows}


def hydrate_articles(
    session: Session, principal: Principal, hits: Sequence[Hit], query: str, analyzer: Analyzer, lang: str
) -> list[ArticleHit]:
    """Article rows for ``hits`` (in hit order) that ``principal`` may read, with title and snippet."""
    by_id = current_versions(session, principal, [h.doc_id for h in hits])
    out: list[ArticleHit] = []
    for hit in hits:
        if hit.doc_id not in by_id:
            continue
        article, version = by_id[hit.doc_id]
        shown, title, body, resolution = _article_text(version, lang)
        out.append(
            ArticleHit(
                article.id,
                article.current_version,
                title,
                snippet(analyzer, query, body),
                shown,
                round(float(hit.score), 6),
                {k: round(float(v), 6) for k, v in hit.signals.items()},
                list(article.products),
                str(article.confidence),
                str(article.audience),
                resolution,
            )
        )
    return out


def hydrate_cases(
    session: Session, principal: Principal, hits: Sequence[Hit], query: str, analyzer: Analyzer
) -> list[CaseHit]:
    ids = [int(h.doc_id[len(CASE_PREFIX) :]) for h in hits if h.doc_id.startswith(CASE_PREFIX)]
    if not ids:
        return []
    cases = {c.id: c for c in session.scalars(select(Case).where(Case.id.in_(ids), case_clause(principal)))}
    out: list[CaseHit] = []
    for hit in hits:
        case = cases.get(int(hit.doc_id[len(CASE_PREFIX) :]))
        if case is None:
            continue
        out.append(
            CaseHit(
                case.id,
                case.subject,
                snippet(analyzer, query, case.description),
                case.resolution,
                str(case.state),
                case.product,
                round(float(hit.score), 6),
                {k: round(float(v), 6) for k, v in hit.signals.items()},
            )
        )
    return out


def _facets(live: LiveIndex, hits: Sequence[Hit]) -> dict[str, dict[str, int]]:
    docs = live.documents([h.doc_id for h in hits])
    facets: dict[str, Counter[str]] = {"kind": Counter(), "lang": Counter(), "product": Counter()}
    for d in docs.values():
        facets["kind"][d.attrs.get("kind", "")] += 1
        facets["lang"][d.lang] += 1
        if d.attrs.get("product"):
            facets["product"][d.attrs["product"]] += 1
    return {name: dict(counter.most_common(20)) for name, counter in facets.items()}


def search(
    live: LiveIndex,
    session: Session,
    principal: Principal,
    query: str,
    *,
    k: int = 10,
    offset: int = 0,
    mode: Mode = "hybrid",
    kinds: Sequence[str] = ("article",),
    products: Sequence[str] = (),
    langs: Sequence[str] = (),
    facets: bool = True,
) -> SearchResult:
    """Ranked articles (and, for staff who ask, cases) for ``query``; filters and permissions inside retrieval."""
    if mode != "bm25" and not live.has_vectors:
        mode = "bm25"
    lang = query_lang(query)
    analyzer = live.sync.engine.analyzer
    extra: dict[str, Sequence[str]] = {"product": products, "lang": langs}
    result = SearchResult(lang)
    pool = max(offset + k, FACET_POOL if facets else 0)
    if "article" in kinds:
        hits = live.search(query, pool, mode, _merge(article_filter(principal), extra))
        result.articles.extend(hydrate_articles(session, principal, hits[offset : offset + k], query, analyzer, lang))
        if facets:
            result.facets.update(_facets(live, hits))
    if "case" in kinds and principal.is_staff:
        hits = live.search(query, offset + k, mode, _merge(case_filter(principal), extra))
        result.cases.extend(hydrate_cases(session, principal, hits[offset : offset + k], query, analyzer))
    return result


def suggest(
    live: LiveIndex,
    session: Session,
    principal: Principal,
    subject: str,
    description: str,
    *,
    k: int = 5,
    mode: Mode = "hybrid",
    exclude_case: int | None = None,
    embed_chars: int | None = SUGGEST_EMBED_CHARS,
) -> SearchResult:
    """Articles and similar resolved cases for an unsaved (or open) case, in the language of its text.

    Customers get articles only (``case_filter``); staff also resolved cases with what solved them.
    """
    text = f"{subject}\n{description}".strip()
    if mode != "bm25" and not live.has_vectors:
        mode = "bm25"
    lang = query_lang(text)
    analyzer = live.sync.engine.analyzer
    result = SearchResult(lang)
    hits = live.search(text, k, mode, article_filter(principal), embed_chars=embed_chars)
    result.articles.extend(hydrate_articles(session, principal, hits, text, analyzer, lang))
    if principal.is_staff:
        flt = case_filter(principal, states=RESOLVED_STATES)
        hits = live.search(text, k + 1, mode, flt, embed_chars=embed_chars)
        if exclude_case is not None:
            hits = [h for h in hits if h.doc_id != f"{CASE_PREFIX}{exclude_case}"]
        result.cases.extend(hydrate_cases(session, principal, hits[:k], text, analyzer))
    return result


_WS: Final = re.compile(r"\s+")


def normalise_query(query: str) -> str:
    """Collapse whitespace (the logged and searched form of a query)."""
    return _WS.sub(" ", query).strip()
