"""Intake suggestions while a case is being typed, and the customer form's deflection events."""

from __future__ import annotations

import time
from typing import Literal

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field
from sqlalchemy import select

from api.deps import LiveDep, PrincipalDep, ReadDB, UnitDep
from api.routes.search import ArticleHitOut, CaseHitOut, log_search
from api.schemas import MAX_ID, MAX_QUERY_CHARS, Message, StrictIn
from kb.models import IntakeSession, utcnow
from kb.retrieval import normalise_query, suggest

router = APIRouter(tags=["intake"])


class SuggestIn(StrictIn):
    subject: str = Field(default="", max_length=500)
    description: str = Field(default="", max_length=MAX_QUERY_CHARS * 4)
    k: int = Field(default=5, ge=1, le=20)
    mode: Literal["hybrid", "bm25"] = "hybrid"


class SuggestOut(BaseModel):
    lang: str
    articles: list[ArticleHitOut]
    cases: list[CaseHitOut]
    took_ms: float


@router.post("/suggest", response_model=SuggestOut, summary="Articles and similar resolved cases for an unsaved case")
def suggest_route(
    body: SuggestIn, request: Request, principal: PrincipalDep, session: ReadDB, live: LiveDep
) -> SuggestOut:
    start = time.perf_counter()
    text = normalise_query(f"{body.subject} {body.description}")
    if len(text) < 2:
        raise ValueError("type a subject or a description first")
    result = suggest(live, session, principal, body.subject, body.description, k=body.k, mode=body.mode)
    log_search(request, principal, "suggest", text, result)
    return SuggestOut(
        lang=result.lang,
        articles=[ArticleHitOut.of(h) for h in result.articles],
        cases=[CaseHitOut.of(h) for h in result.cases],
        took_ms=round((time.perf_counter() - start) * 1000, 2),
    )


class IntakeEventIn(StrictIn):
    token: str = Field(min_length=8, max_length=64, pattern=r"^[A-Za-z0-9_-]+$", description="one per case form")
    event: Literal["shown", "article_opened", "abandoned", "case_opened"]
    article_id: str | None = Field(default=None, max_length=32)
    case_id: int | None = Field(default=None, ge=1, le=MAX_ID)


@router.post("/intake/events", response_model=Message, summary="Record what a case form did (deflection analytics)")
def intake_event(body: IntakeEventIn, principal: PrincipalDep, unit: UnitDep) -> Message:
    now = utcnow()
    with unit.transaction() as session:
        row = session.scalars(select(IntakeSession).where(IntakeSession.token == body.token)).one_or_none()
        if row is None:
            row = IntakeSession(
                token=body.token,
                user_id=principal.user_id,
                org_id=principal.org_id,
                suggested=0,
                opened_articles=[],
                abandoned=False,
                started_at=now,
                updated_at=now,
            )
            session.add(row)
        elif row.user_id != principal.user_id:
            raise ValueError("this intake token belongs to another form")
        if body.event == "shown":
            row.suggested += 1
        elif body.event == "article_opened" and body.article_id:
            row.opened_articles = [*row.opened_articles, body.article_id][:50]
        elif body.event == "abandoned" and row.case_id is None:
            row.abandoned = True
        elif body.event == "case_opened" and body.case_id:
            row.case_id, row.abandoned = body.case_id, False
        row.updated_at = now
    return Message(status="recorded")
