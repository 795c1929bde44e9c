"""Search: articles for everyone (within their permissions), cases too for staff; filters and facets."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, ConfigDict

from api.deps import LiveDep, PrincipalDep, ReadDB
from api.schemas import K, Offset, SearchText
from api.searchlog import LoggedSearch
from kb.retrieval import ArticleHit, CaseHit, SearchResult, normalise_query, search

router = APIRouter(tags=["search"])


class ArticleHitOut(BaseModel):
    article_id: str
    version: int
    title: str
    snippet: str
    lang: str
    score: float
    signals: dict[str, float]
    products: list[str]
    confidence: str
    audience: str

    model_config = ConfigDict(from_attributes=True)  # read from kb.retrieval.ArticleHit, field by field

    @classmethod
    def of(cls, hit: ArticleHit) -> ArticleHitOut:
        return cls.model_validate(hit)


class CaseHitOut(BaseModel):
    case_id: int
    subject: str
    snippet: str
    resolution: str
    state: str
    product: str
    score: float
    signals: dict[str, float]

    model_config = ConfigDict(from_attributes=True)

    @classmethod
    def of(cls, hit: CaseHit) -> CaseHitOut:
        return cls.model_validate(hit)


class SearchOut(BaseModel):
    query: str
    lang: str
    articles: list[ArticleHitOut]
    cases: list[CaseHitOut]
    facets: dict[str, dict[str, int]]

    @classmethod
    def of(cls, query: str, result: SearchResult) -> SearchOut:
        return cls(
            query=query,
            lang=result.lang,
            articles=[ArticleHitOut.of(h) for h in result.articles],
            cases=[CaseHitOut.of(h) for h in result.cases],
            facets=result.facets,
        )


def log_search(request: Request, principal: PrincipalDep, route: str, query: str, result: SearchResult) -> None:
    ids = [h.article_id for h in result.articles] + [f"case:{h.case_id}" for h in result.cases]
    request.app.state.search_log.add(
        LoggedSearch(principal, route, query, result.lang, len(result.articles) + len(result.cases), ids)
    )


@router.get("/search", response_model=SearchOut, summary="Search knowledge articles (staff: also cases)")
def search_route(
    request: Request,
    q: SearchText,
    principal: PrincipalDep,
    session: ReadDB,
    live: LiveDep,
    k: K = 10,
    offset: Offset = 0,
    mode: Literal["hybrid", "bm25", "vector"] = "hybrid",
    kind: Annotated[list[Literal["article", "case"]] | None, Query(max_length=2)] = None,
    product: Annotated[list[Annotated[str, Query(max_length=200)]] | None, Query(max_length=20)] = None,
    lang: Annotated[list[Literal["zh", "en", "mixed"]] | None, Query(max_length=3)] = None,
) -> SearchOut:
    query = normalise_query(q)
    if not query:
        raise ValueError("the query is empty")
    if offset + k > 500:
        raise ValueError("offset + k may not exceed 500")
    result = search(
        live,
        session,
        principal,
        query,
        k=k,
        offset=offset,
        mode=mode,
        kinds=kind or ["article"],
        products=product or [],
        langs=lang or [],
    )
    log_search(request, principal, "search", query, result)
    return SearchOut.of(query, result)
