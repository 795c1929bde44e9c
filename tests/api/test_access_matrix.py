"""Route x role matrix: every operation of the OpenAPI document has an entry saying who may call it, and each
role gets exactly that: 401 without credentials, 403 for a role the route refuses, neither for one it admits.

A new route without an entry fails ``test_matrix_covers_every_route`` (so access is decided, not defaulted).
Object-level rules (another organisation's case answers 404) are in ``test_canary.py``.
"""

from __future__ import annotations

from typing import Any, Final

import pytest

from kb.articles import Variant, create_article
from kb.cli_db import open_database
from kb.lifecycle import Channel, Priority
from kb.repository import create_case
from tests.api.conftest import PASSWORD, USERS, Env

pytestmark = pytest.mark.integration

ROLES: Final = ("customer", "partner", "engineer", "author", "reviewer", "coach", "admin")
PUBLIC: Final = frozenset({"anonymous", *ROLES})
ANYONE: Final = frozenset(ROLES)
STAFF: Final = frozenset({"engineer", "author", "reviewer", "coach", "admin"})
EDITORS: Final = frozenset({"author", "reviewer", "coach", "admin"})
ADMIN: Final = frozenset({"admin"})

MATRIX: Final[dict[tuple[str, str], frozenset[str]]] = {
    ("GET", "/api/v1/health"): PUBLIC,
    ("GET", "/api/v1/ready"): PUBLIC,
    ("POST", "/api/v1/auth/token"): PUBLIC,
    ("POST", "/api/v1/auth/logout"): ANYONE,
    ("GET", "/api/v1/auth/me"): ANYONE,
    ("POST", "/api/v1/auth/users"): ADMIN,
    ("POST", "/api/v1/auth/api-keys"): ADMIN,
    ("GET", "/api/v1/articles"): ANYONE,
    ("POST", "/api/v1/articles"): EDITORS,
    ("GET", "/api/v1/articles/{article_id}"): ANYONE,
    ("PATCH", "/api/v1/articles/{article_id}"): EDITORS,
    ("GET", "/api/v1/articles/{article_id}/versions"): ANYONE,
    ("GET", "/api/v1/articles/{article_id}/versions/{version}"): ANYONE,
    ("GET", "/api/v1/articles/{article_id}/diff"): ANYONE,
    ("POST", "/api/v1/articles/{article_id}/transitions"): EDITORS,
    ("PUT", "/api/v1/articles/{article_id}/translations/{lang}"): EDITORS,
    ("POST", "/api/v1/articles/{article_id}/feedback"): ANYONE,
    ("POST", "/api/v1/cases"): ANYONE,
    ("GET", "/api/v1/cases"): ANYONE,
    ("GET", "/api/v1/cases/{case_id}"): ANYONE,
    ("PATCH", "/api/v1/cases/{case_id}"): STAFF,
    ("POST", "/api/v1/cases/{case_id}/transitions"): ANYONE,  # customers: close / reopen their own only
    ("GET", "/api/v1/cases/{case_id}/timeline"): ANYONE,
    ("POST", "/api/v1/cases/{case_id}/events"): ANYONE,  # customers: public notes only
    ("POST", "/api/v1/cases/{case_id}/assign"): STAFF,
    ("POST", "/api/v1/cases/{case_id}/escalate"): STAFF,
    ("GET", "/api/v1/cases/{case_id}/sla"): ANYONE,
    ("GET", "/api/v1/cases/{case_id}/suggestions"): STAFF,
    ("GET", "/api/v1/cases/{case_id}/links"): ANYONE,
    ("POST", "/api/v1/cases/{case_id}/links"): STAFF,
    ("POST", "/api/v1/cases/{case_id}/article-draft"): STAFF,
    ("GET", "/api/v1/search"): ANYONE,
    ("POST", "/api/v1/suggest"): ANYONE,
    ("POST", "/api/v1/intake/events"): ANYONE,
    ("GET", "/api/v1/analytics/summary"): ANYONE,  # customers: scoped to their organisation
    ("GET", "/api/v1/webhooks"): ADMIN,
    ("POST", "/api/v1/webhooks"): ADMIN,
    ("DELETE", "/api/v1/webhooks/{webhook_id}"): ADMIN,
    ("GET", "/api/v1/webhooks/{webhook_id}/deliveries"): ADMIN,
    ("GET", "/api/v1/assistant/answer"): ANYONE,
    ("POST", "/api/v1/assistant/answer"): ANYONE,
    ("POST", "/api/v1/assistant/stream"): ANYONE,
    ("GET", "/api/v1/cases/{case_id}/assist"): STAFF,
}


def operations(env: Env) -> list[tuple[str, str]]:
    doc = env.app.openapi()
    return sorted((m.upper(), p) for p, ops in doc["paths"].items() for m in ops)


def test_matrix_covers_every_route(env: Env) -> None:
    missing = [op for op in operations(env) if op not in MATRIX]
    assert not missing, f"routes without an access-matrix entry: {missing}"
    assert len(operations(env)) >= 38


@pytest.fixture(scope="module")
def ids(env: Env) -> dict[str, Any]:
    """Objects the path parameters point at: a case of the customer's org and a public article."""
    _, factory = open_database(env.settings)
    with factory.begin() as s:
        case = create_case(
            s,
            org_id=env.org_ids["customer"],
            contact_name="c",
            contact_email="c@example.com",
            channel=Channel.WEB,
            product="outlook-exchange",
            subject="Outlook 无法启动",
            lang="zh",
            priority=Priority.P3,
        )
        article = create_article(s, env.user_ids["author"], en=Variant("matrix article", resolution="restart"))
        case_id, article_id = case.id, article.id
    r = env.client.post(
        "/api/v1/webhooks", json={"url": "http://127.0.0.1:9/hook", "events": []}, headers=env.headers("admin")
    )
    webhook_id = r.json().get("id", 1) if r.status_code == 201 else 1
    return {"case_id": case_id, "article_id": article_id, "version": 1, "lang": "en", "webhook_id": webhook_id}


def _headers(env: Env, who: str) -> dict[str, str]:
    if who == "anonymous":
        return {}
    return env.headers(who)


def _fresh_token(env: Env, who: str) -> dict[str, str]:
    r = env.client.post("/api/v1/auth/token", json={"email": f"{who}@test.example", "password": PASSWORD})
    env.client.cookies.clear()
    return {"Authorization": f"Bearer {r.json()['access_token']}"}


@pytest.mark.parametrize("who", ["anonymous", *ROLES])
def test_matrix_each_role_gets_what_the_table_says(env: Env, ids: dict[str, Any], who: str) -> None:
    assert set(ROLES) <= set(USERS)
    wrong: list[str] = []
    for method, path in operations(env):
        allowed = MATRIX[(method, path)]
        url = path.format(**ids)
        headers = _headers(env, who)
        if path == "/api/v1/auth/logout" and who != "anonymous":
            headers = _fresh_token(env, who)
        body = {} if method in ("POST", "PUT", "PATCH") else None
        r = env.client.request(method, url, json=body, headers=headers)
        env.client.cookies.clear()
        if who in allowed:
            ok = r.status_code not in (401, 403)
        elif who == "anonymous":
            ok = r.status_code == 401
        else:
            ok = r.status_code == 403
        if not ok:
            wrong.append(f"{method} {path}: {r.status_code} {r.text[:120]}")
    assert not wrong, f"{who}: " + "\n".join(wrong)
