"""Routes behind the portal's buttons: "create article from this case" is idempotent per case (a second press
answers the case's open draft), and only an open (WIP / not validated) draft counts as the case's draft."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import func, select

from kb.models import Article, CaseArticleLink, Relation
from tests.api.conftest import Env
from tests.api.test_cases import db, open_case

pytestmark = pytest.mark.integration
API = "/api/v1/cases"


def _drafts_of(env: Env, case_id: int) -> list[str]:
    with db(env) as session:
        stmt = select(CaseArticleLink.article_id).where(
            CaseArticleLink.case_id == case_id, CaseArticleLink.relation == Relation.SOLVED_BY
        )
        return sorted(session.scalars(stmt))


def _article_count(env: Env) -> int:
    with db(env) as session:
        return int(session.scalar(select(func.count()).select_from(Article)) or 0)


def _resolved_case(env: Env, subject: str) -> dict[str, Any]:
    case = open_case(env, who="engineer", subject=subject, description=f"{subject}: fails on Windows 11.")
    patch = {"expected_version": case["version_id"], "resolution": "Resolution: reinstall the driver."}
    r = env.client.patch(f"{API}/{case['id']}", json=patch, headers=env.headers("engineer"))
    assert r.status_code == 200, r.text
    return dict(r.json())


def test_article_draft_pressed_twice_returns_the_first_draft(env: Env) -> None:
    case = _resolved_case(env, "Scanner error 0x80070005 after update")
    before = _article_count(env)
    first = env.client.post(f"{API}/{case['id']}/article-draft", headers=env.headers("engineer"))
    assert first.status_code == 201, first.text
    second = env.client.post(f"{API}/{case['id']}/article-draft", headers=env.headers("author"))
    assert second.status_code == 200, second.text
    assert second.json() == first.json()
    assert _article_count(env) == before + 1
    assert _drafts_of(env, case["id"]) == [first.json()["article_id"]]
    # Another case gets its own draft.
    other = _resolved_case(env, "Webcam not detected in Teams")
    third = env.client.post(f"{API}/{other['id']}/article-draft", headers=env.headers("engineer"))
    assert third.status_code == 201, third.text
    assert third.json()["article_id"] != first.json()["article_id"]
    assert _article_count(env) == before + 2


def test_article_draft_ignores_a_published_article_linked_as_solution(env: Env) -> None:
    case = _resolved_case(env, "VPN client disconnects every hour")
    listed = env.client.get(
        "/api/v1/articles", params={"confidence": "validated", "limit": 1}, headers=env.headers("engineer")
    )
    published = listed.json()["items"][0]["article_id"]
    link = {"article_id": published, "relation": "solved_by"}
    r = env.client.post(f"{API}/{case['id']}/links", json=link, headers=env.headers("engineer"))
    assert r.status_code == 201, r.text
    draft = env.client.post(f"{API}/{case['id']}/article-draft", headers=env.headers("engineer"))
    assert draft.status_code == 201, draft.text
    assert draft.json()["article_id"] != published
    assert _drafts_of(env, case["id"]) == sorted([published, draft.json()["article_id"]])
