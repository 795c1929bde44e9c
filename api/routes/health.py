"""Liveness and readiness for operators and load balancers (no authentication, no rate limit)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy import text

router = APIRouter(tags=["operations"])


class HealthOut(BaseModel):
    status: str


class ReadyOut(BaseModel):
    status: str
    database: bool
    index_generation: str | None
    documents: int
    outbox_lag: int


@router.get("/health", response_model=HealthOut, summary="The process is up")
def health() -> HealthOut:
    return HealthOut(status="ok")


@router.get(
    "/ready",
    response_model=ReadyOut,
    summary="The database answers and the search index is loaded",
    responses={503: {"model": ReadyOut}},
)
def ready(request: Request) -> JSONResponse:
    database = True
    try:
        with request.app.state.read_factory() as session:
            session.execute(text("SELECT 1"))
    except Exception:  # noqa: BLE001 - any database failure means not ready
        database = False
    status = request.app.state.live.status() if database else None
    body = ReadyOut(
        status="ready" if database else "unavailable",
        database=database,
        index_generation=status.generation if status else None,
        documents=status.documents if status else 0,
        outbox_lag=status.outbox_lag if status else 0,
    )
    return JSONResponse(body.model_dump(), status_code=200 if database else 503)
