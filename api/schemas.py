"""Shared request / response models. Route modules define their own ``XCreate`` / ``XUpdate`` / ``XOut``;
server-owned fields (organisation, audience, state, author, version) never appear in a Create or Update model,
and unknown fields are refused (``extra="forbid"``), so they cannot be smuggled in."""

from __future__ import annotations

from typing import Annotated, Final, Generic, TypeVar

from fastapi import Path, Query
from pydantic import BaseModel, ConfigDict, Field

MAX_PAGE_SIZE: Final = 100
MAX_QUERY_CHARS: Final = 1_000
MAX_K: Final = 50

MAX_ID: Final = 2**31 - 1
"""Ids and versions above this are refused with 422 (SQLite and PostgreSQL integers stop at 2**63 / 2**31)."""

T = TypeVar("T")


class StrictIn(BaseModel):
    """Base of request bodies: unknown fields are an error (422), not silently ignored."""

    model_config = ConfigDict(extra="forbid")


class Page(BaseModel, Generic[T]):
    items: list[T]
    total: int
    offset: int
    limit: int


IdPath = Annotated[int, Path(ge=1, le=MAX_ID)]
Offset = Annotated[int, Query(ge=0, le=100_000, description="rows to skip")]
Limit = Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE, description=f"page size (at most {MAX_PAGE_SIZE})")]
K = Annotated[int, Query(ge=1, le=MAX_K, description=f"results (at most {MAX_K})")]
SearchText = Annotated[str, Query(min_length=1, max_length=MAX_QUERY_CHARS, description="the query (zh, en or mixed)")]


class ErrorOut(BaseModel):
    error: str
    detail: str


class Message(BaseModel):
    status: str = Field(description="what happened")
