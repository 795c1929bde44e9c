"""``GET /analytics/summary?days=30``: search use, knowledge reuse, SLA and self-service deflection over a window.

Staff see the whole support center. Customers and partners get the same shape scoped to what is theirs: their
own searches, their organisation's cases and intake forms, links and feedback from those, and only articles they
may read; ``top_no_result_queries`` is ``null`` for them (other people's words never reach a customer).

Definitions (window = the last ``days`` days):
- ``searches`` / ``searches_no_result``: logged ``/search`` requests, and those that found nothing;
- ``top_articles``: articles ranked by ``links`` (case links made in the window) + ``feedback`` (feedback given)
  + ``top1`` (searches where the article ranked first);
- ``link_rate``: share of the cases resolved in the window that have a ``solved_by`` link (null: none resolved;
  for customers only links to articles they may read count);
- ``sla_breaches``: cases opened, resolved or still open in the window whose SLA is breached now (resolution
  over target, or first response late);
- ``deflection``: intake forms started in the window; abandoned after suggestions were shown; turned into a
  case; ``rate`` = abandoned_after_suggestion / forms (null: no forms).
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field
from sqlalchemy import ColumnElement, and_, func, or_, select, true
from sqlalchemy.orm import Session

from api.deps import PrincipalDep, ReadDB
from kb.access import Principal, article_clause, case_clause
from kb.lifecycle import DEFAULT_POLICY, CaseState, StateChange, sla_status
from kb.models import (
    Article,
    ArticleVersion,
    Case,
    CaseArticleLink,
    CaseEvent,
    EventKind,
    Feedback,
    IntakeSession,
    Relation,
    SearchLog,
    User,
    utcnow,
)

router = APIRouter(prefix="/analytics", tags=["analytics"])

TOP_N = 10


class QueryCount(BaseModel):
    query: str
    count: int


class TopArticle(BaseModel):
    article_id: str
    title_zh: str | None
    title_en: str | None
    links: int
    feedback: int
    top1: int
    score: int


class DeflectionOut(BaseModel):
    forms: int
    abandoned_after_suggestion: int
    opened_case: int
    rate: float | None


class AssistantOut(BaseModel):
    questions: int
    abstained: int = Field(description="questions the knowledge base could not answer (knowledge gaps)")
    top_unanswered: list[QueryCount] | None = Field(description="staff only (null for customers)")


class SummaryOut(BaseModel):
    days: int
    since: datetime
    searches: int
    searches_no_result: int
    top_no_result_queries: list[QueryCount] | None = Field(description="staff only (null for customers)")
    top_articles: list[TopArticle]
    resolved_cases: int
    link_rate: float | None
    sla_breaches: int
    deflection: DeflectionOut
    assistant: AssistantOut


def _search_scope(principal: Principal) -> ColumnElement[bool]:
    return true() if principal.is_staff else SearchLog.user_id == principal.user_id


def _top_queries(session: Session, where: ColumnElement[bool]) -> list[QueryCount]:
    """The ``TOP_N`` most frequent logged texts matching ``where`` (staff only: they are other people's words)."""
    q = (
        select(SearchLog.query, func.count().label("n"))
        .where(where)
        .group_by(SearchLog.query)
        .order_by(func.count().desc(), SearchLog.query)
        .limit(TOP_N)
    )
    return [QueryCount(query=text, count=int(n)) for text, n in session.execute(q)]


def _count(session: Session, *where: ColumnElement[bool]) -> int:
    return int(session.scalar(select(func.count()).select_from(SearchLog).where(*where)) or 0)


def _top_articles(session: Session, principal: Principal, since: datetime) -> list[TopArticle]:
    links: dict[str, int] = defaultdict(int)
    feedback: dict[str, int] = defaultdict(int)
    top1: dict[str, int] = defaultdict(int)
    link_q = (
        select(CaseArticleLink.article_id, func.count())
        .join(Case, Case.id == CaseArticleLink.case_id)
        .where(CaseArticleLink.created_at >= since, case_clause(principal))
        .group_by(CaseArticleLink.article_id)
    )
    links.update({a: int(n) for a, n in session.execute(link_q)})
    feedback_q = select(Feedback.article_id, func.count()).where(Feedback.at >= since).group_by(Feedback.article_id)
    if not principal.is_staff:
        feedback_q = feedback_q.join(User, User.id == Feedback.user_id).where(User.org_id == principal.org_id)
    feedback.update({a: int(n) for a, n in session.execute(feedback_q)})
    first = SearchLog.top_ids[0].as_string()
    top1_q = (
        select(first, func.count())
        .where(SearchLog.at >= since, SearchLog.results > 0, _search_scope(principal))
        .group_by(first)
    )
    top1.update({str(a): int(n) for a, n in session.execute(top1_q) if a and not str(a).startswith("case:")})
    scores = {a: links[a] + feedback[a] + top1[a] for a in set(links) | set(feedback) | set(top1)}
    if not scores:
        return []
    # Only articles the caller may read, checked in SQL; rank among those (a hidden article takes no slot).
    rows = session.execute(
        select(Article.id, ArticleVersion.title_zh, ArticleVersion.title_en)
        .join(
            ArticleVersion,
            and_(ArticleVersion.article_id == Article.id, ArticleVersion.version == Article.current_version),
        )
        .where(Article.id.in_(sorted(scores)), article_clause(principal))
    ).all()
    ranked = sorted(rows, key=lambda r: (-scores[r[0]], r[0]))[:TOP_N]
    return [
        TopArticle(
            article_id=a,
            title_zh=zh,
            title_en=en,
            links=links[a],
            feedback=feedback[a],
            top1=top1[a],
            score=scores[a],
        )
        for a, zh, en in ranked
    ]


def _link_rate(session: Session, principal: Principal, since: datetime) -> tuple[int, float | None]:
    resolved = select(Case.id).where(Case.resolved_at >= since, case_clause(principal))
    total = int(session.scalar(select(func.count()).select_from(resolved.subquery())) or 0)
    if not total:
        return 0, None
    linked_q = select(func.count(func.distinct(CaseArticleLink.case_id))).where(
        CaseArticleLink.relation == Relation.SOLVED_BY, CaseArticleLink.case_id.in_(resolved)
    )
    if not principal.is_staff:  # a link to an article the customer may not read does not count for them
        linked_q = linked_q.join(Article, Article.id == CaseArticleLink.article_id).where(article_clause(principal))
    linked = int(session.scalar(linked_q) or 0)
    return total, linked / total


def _sla_breaches(session: Session, principal: Principal, since: datetime, now: datetime) -> int:
    open_states = [s for s in CaseState if s not in (CaseState.RESOLVED, CaseState.CLOSED)]
    cases = session.execute(
        select(Case.id, Case.priority, Case.opened_at, Case.first_response_at).where(
            case_clause(principal),
            or_(Case.opened_at >= since, Case.resolved_at >= since, Case.state.in_(open_states)),
        )
    ).all()
    if not cases:
        return 0
    events: dict[int, list[StateChange]] = defaultdict(list)
    ids = [c[0] for c in cases]
    for start in range(0, len(ids), 500):  # one IN query per 500 cases, not one query per case
        rows = session.execute(
            select(CaseEvent.case_id, CaseEvent.at, CaseEvent.to_state)
            .where(CaseEvent.case_id.in_(ids[start : start + 500]), CaseEvent.kind == EventKind.STATE_CHANGE)
            .order_by(CaseEvent.case_id, CaseEvent.at, CaseEvent.id)
        )
        for case_id, at, state in rows:
            if state is not None:
                events[case_id].append((at, state))
    breaches = 0
    for case_id, priority, opened_at, first_response_at in cases:
        status = sla_status(
            DEFAULT_POLICY, priority, opened_at, events[case_id], max(now, opened_at), first_response_at
        )
        breaches += status.state == "breached" or status.response_breached
    return breaches


def _deflection(session: Session, principal: Principal, since: datetime) -> DeflectionOut:
    scope = true() if principal.is_staff else IntakeSession.org_id == principal.org_id
    row = session.execute(
        select(
            func.count(),
            func.count().filter(and_(IntakeSession.abandoned.is_(True), IntakeSession.suggested > 0)),
            func.count(IntakeSession.case_id),
        ).where(IntakeSession.started_at >= since, scope)
    ).one()
    forms, abandoned, opened = (int(x or 0) for x in row)
    return DeflectionOut(
        forms=forms,
        abandoned_after_suggestion=abandoned,
        opened_case=opened,
        rate=abandoned / forms if forms else None,
    )


@router.get("/summary", response_model=SummaryOut, summary="Search, reuse, SLA and deflection figures over a window")
def summary(
    principal: PrincipalDep,
    session: ReadDB,
    days: Annotated[int, Query(ge=1, le=365, description="window in days (1-365)")] = 30,
) -> SummaryOut:
    now = utcnow()
    since = now - timedelta(days=days)
    scope = _search_scope(principal)
    in_window = and_(SearchLog.at >= since, SearchLog.route == "search", scope)
    no_result = and_(in_window, SearchLog.results == 0)
    top_no_result = _top_queries(session, no_result) if principal.is_staff else None
    resolved, rate = _link_rate(session, principal, since)
    asked = and_(SearchLog.at >= since, SearchLog.route == "assistant", scope)
    abstained = and_(asked, SearchLog.results == 0)
    top_unanswered = _top_queries(session, abstained) if principal.is_staff else None
    return SummaryOut(
        days=days,
        since=since,
        searches=_count(session, in_window),
        searches_no_result=_count(session, no_result),
        top_no_result_queries=top_no_result,
        top_articles=_top_articles(session, principal, since),
        resolved_cases=resolved,
        link_rate=rate,
        sla_breaches=_sla_breaches(session, principal, since, now),
        deflection=_deflection(session, principal, since),
        assistant=AssistantOut(
            questions=_count(session, asked), abstained=_count(session, abstained), top_unanswered=top_unanswered
        ),
    )
