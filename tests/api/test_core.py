"""The service's core: login, tokens and API keys, search and suggestions with permissions, limits."""

from __future__ import annotations

from pathlib import Path

import pytest

from api.main import create_app
from tests.api.conftest import PASSWORD, Env, make_env

pytestmark = pytest.mark.integration


def test_health_and_ready_need_no_login(env: Env) -> None:
    assert env.client.get("/api/v1/health").json() == {"status": "ok"}
    ready = env.client.get("/api/v1/ready").json()
    assert ready["status"] == "ready" and ready["documents"] == 60 and ready["index_generation"]


def test_login_wrong_password_and_unknown_user_answer_alike(env: Env) -> None:
    wrong = env.client.post("/api/v1/auth/token", json={"email": "engineer@test.example", "password": "nope-nope"})
    unknown = env.client.post("/api/v1/auth/token", json={"email": "ghost@test.example", "password": "nope-nope"})
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.json() == unknown.json()


def test_routes_refuse_missing_and_bad_tokens(env: Env) -> None:
    assert env.client.get("/api/v1/search", params={"q": "outlook"}).status_code == 401
    bad = env.client.get("/api/v1/search", params={"q": "outlook"}, headers={"Authorization": "Bearer kbs_forged"})
    assert bad.status_code == 401 and bad.headers["www-authenticate"] == "Bearer"


def test_logout_revokes_the_token(env: Env) -> None:
    r = env.client.post("/api/v1/auth/token", json={"email": "engineer@test.example", "password": PASSWORD})
    token = r.json()["access_token"]
    env.client.cookies.clear()
    h = {"Authorization": f"Bearer {token}"}
    assert env.client.get("/api/v1/auth/me", headers=h).json()["role"] == "engineer"
    assert env.client.post("/api/v1/auth/logout", headers=h).status_code == 200
    assert env.client.get("/api/v1/auth/me", headers=h).status_code == 401


def test_api_key_issued_by_admin_works_as_header(env: Env) -> None:
    r = env.client.post(
        "/api/v1/auth/api-keys", json={"user_id": env.user_ids["engineer"], "name": "crm"}, headers=env.headers("admin")
    )
    assert r.status_code == 201
    key = r.json()["api_key"]
    me = env.client.get("/api/v1/auth/me", headers={"X-API-Key": key})
    assert me.status_code == 200 and me.json()["role"] == "engineer"
    denied = env.client.post(
        "/api/v1/auth/api-keys",
        json={"user_id": env.user_ids["engineer"], "name": "x"},
        headers=env.headers("engineer"),
    )
    assert denied.status_code == 403


def test_search_finds_error_code_article_first(env: Env) -> None:
    r = env.client.get("/api/v1/search", params={"q": "0x80070005 Windows Update"}, headers=env.headers("customer"))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["articles"][0]["article_id"] == "KB-WINC-0002"
    assert body["lang"] == "en" and body["cases"] == []
    assert sum(body["facets"]["kind"].values()) == body["facets"]["kind"]["article"]


def test_search_bounds_are_422_before_work(env: Env) -> None:
    h = env.headers("engineer")
    assert env.client.get("/api/v1/search", params={"q": "x" * 1001}, headers=h).status_code == 422
    assert env.client.get("/api/v1/search", params={"q": "outlook", "k": 51}, headers=h).status_code == 422
    assert env.client.get("/api/v1/search", params={"q": ""}, headers=h).status_code == 422


def test_body_over_limit_is_413(env: Env) -> None:
    big = {"subject": "a", "description": "x" * 70_000}
    r = env.client.post("/api/v1/suggest", json=big, headers=env.headers("engineer"))
    assert r.status_code == 413 and "bytes" in r.json()["detail"]


def test_suggest_answers_in_the_language_of_the_text(env: Env) -> None:
    r = env.client.post(
        "/api/v1/suggest",
        json={"subject": "网卡驱动导致蓝屏", "description": "rt640x64.sys DRIVER_IRQL_NOT_LESS_OR_EQUAL"},
        headers=env.headers("customer"),
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["lang"] == "zh"
    assert body["articles"][0]["article_id"] == "KB-WINC-0001"
    assert body["cases"] == []  # customers get articles only


def test_unknown_body_fields_are_refused(env: Env) -> None:
    r = env.client.post("/api/v1/suggest", json={"subject": "outlook", "org_id": 3}, headers=env.headers("customer"))
    assert r.status_code == 422


def test_rate_limit_answers_429_with_retry_after(tmp_path: Path) -> None:
    gen = make_env(tmp_path, rate_limit_per_minute=30)
    env = next(gen)
    h = env.headers("engineer")
    codes = [env.client.get("/api/v1/auth/me", headers=h).status_code for _ in range(40)]
    assert codes.count(429) >= 5 and 200 in codes
    r = env.client.get("/api/v1/auth/me", headers=h)
    assert r.status_code == 429 and int(r.headers["retry-after"]) >= 1
    assert env.client.get("/api/v1/health").status_code == 200  # operators' probes are exempt
    gen.close()


def test_app_factory_takes_settings(tmp_path: Path) -> None:
    from kb.config import Settings

    app = create_app(Settings(index_dir=tmp_path / "i", database_url=f"sqlite:///{tmp_path / 'x.db'}"))
    assert app.openapi()["info"]["title"] == "tac-kb"
