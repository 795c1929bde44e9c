"""The assistant: cited answers (JSON or streamed as Server-Sent Events), and engineer mode for a case.

Retrieval runs with the caller's permissions inside the request (``Assistant.prepare``); generation only reads
what was prepared, so a stream never touches the database. Only the question, its language and the cited
article ids are logged (never an answer).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field

from api.deps import PrincipalDep, ReadDB, StaffDep
from api.observability import histograms
from api.schemas import MAX_QUERY_CHARS, IdPath, StrictIn
from api.searchlog import LoggedSearch
from kb.access import Principal
from kb.assistant import Answer, Assistant, Prepared, case_assist
from kb.retrieval import normalise_query

router = APIRouter(tags=["assistant"])


class AskIn(StrictIn):
    question: str = Field(min_length=1, max_length=MAX_QUERY_CHARS)
    generator: Literal["auto", "extractive"] = Field(
        default="auto", description="auto: the configured generator (falls back to extractive); extractive: quotes"
    )
    mode: Literal["hybrid", "bm25"] = "hybrid"


class CitationOut(BaseModel):
    n: int
    ref: str = Field(description="article id, case:<id> or event:<id>")
    version: int = Field(description="the article version the cited text was read from (0 for cases and events)")
    kind: str
    title: str
    lang: str
    url: str


class SentenceOut(BaseModel):
    text: str
    cites: list[int]
    section: str = ""


class SuggestionOut(BaseModel):
    ref: str
    version: int
    title: str
    url: str


class AnswerOut(BaseModel):
    question: str
    lang: str
    status: Literal["answered", "abstained"]
    text: str
    sentences: list[SentenceOut]
    citations: list[CitationOut]
    closest: list[SuggestionOut]
    actions: list[dict[str, str]]
    notes: list[str]
    support: float
    generator: str
    fallback: str
    removed_citations: int
    removed_links: int
    dropped_sentences: int


def _assistant(request: Request) -> Assistant:
    return request.app.state.assistant  # type: ignore[no-any-return]


def _prepare(request: Request, session: ReadDB, principal: Principal, question: str, mode: str) -> Prepared:
    question = normalise_query(question)
    if len(question) < 2:
        raise ValueError("ask a question first")
    return _assistant(request).prepare(session, principal, question, mode="bm25" if mode == "bm25" else "hybrid")


def _log(request: Request, principal: Principal, answer: Answer) -> None:
    metrics = histograms()
    metrics.answers.labels(answer.status, answer.generator, "yes" if answer.fallback else "no").inc()
    for kind, n in (
        ("citation", answer.removed_citations),
        ("link", answer.removed_links),
        ("sentence", answer.dropped_sentences),
    ):
        if n:
            metrics.answer_repairs.labels(kind).inc(n)
    ids = [c.ref for c in answer.citations]
    request.app.state.search_log.add(
        LoggedSearch(principal, "assistant", answer.question, answer.lang, len(answer.citations), ids)
    )


def _answer(request: Request, session: ReadDB, principal: Principal, body: AskIn) -> AnswerOut:
    prepared = _prepare(request, session, principal, body.question, body.mode)
    answer = _assistant(request).answer(prepared, generator=body.generator)
    _log(request, principal, answer)
    return AnswerOut.model_validate(answer.as_dict())


@router.post("/assistant/answer", response_model=AnswerOut, summary="Answer a question with cited sources")
def answer_post(body: AskIn, request: Request, principal: PrincipalDep, session: ReadDB) -> AnswerOut:
    return _answer(request, session, principal, body)


@router.get("/assistant/answer", response_model=AnswerOut, summary="Answer a question with cited sources")
def answer_get(
    request: Request,
    principal: PrincipalDep,
    session: ReadDB,
    q: Annotated[str, Query(min_length=1, max_length=MAX_QUERY_CHARS)],
    generator: Literal["auto", "extractive"] = "auto",
    mode: Literal["hybrid", "bm25"] = "hybrid",
) -> AnswerOut:
    return _answer(request, session, principal, AskIn(question=q, generator=generator, mode=mode))


@router.post(
    "/assistant/stream",
    summary="Answer as Server-Sent Events",
    response_class=StreamingResponse,
    responses={
        200: {
            "content": {"text/event-stream": {}},
            "description": "events `start` (sources), `sentence` (each verified sentence), `fallback` (the "
            "generator failed: drop the sentences shown so far), `answer` (the final answer, authoritative)",
        }
    },
)
def answer_stream(body: AskIn, request: Request, principal: PrincipalDep, session: ReadDB) -> StreamingResponse:
    prepared = _prepare(request, session, principal, body.question, body.mode)
    assistant = _assistant(request)

    def events() -> Iterator[str]:
        for event in assistant.events(prepared, generator=body.generator):
            if event["event"] == "answer":
                answer: Answer = event["answer"]
                _log(request, principal, answer)
                payload: dict[str, Any] = AnswerOut.model_validate(answer.as_dict()).model_dump()
            else:
                payload = {k: v for k, v in event.items() if k != "event"}
            yield f"event: {event['event']}\ndata: {json.dumps(payload, ensure_ascii=False)}\n\n"

    return StreamingResponse(
        events(), media_type="text/event-stream", headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"}
    )


class SimilarOut(BaseModel):
    case_id: int
    subject: str
    state: str
    score: float
    sentence: SentenceOut


class CaseAssistOut(BaseModel):
    case_id: int
    lang: str
    summary: list[SentenceOut]
    similar: list[SimilarOut]
    next_steps: list[SentenceOut]
    reply: list[SentenceOut]
    citations: list[CitationOut]
    notes: list[str]


@router.get(
    "/cases/{case_id}/assist",
    response_model=CaseAssistOut,
    summary="Engineer mode: case summary, similar resolved cases, next steps and a draft reply, all cited",
)
def case_assist_route(case_id: IdPath, request: Request, principal: StaffDep, session: ReadDB) -> CaseAssistOut:
    result = case_assist(_assistant(request), session, principal, case_id)
    return CaseAssistOut.model_validate(result.as_dict())
