"""Canary suite: unique strings planted in everything a customer must never see (internal, partner-only, draft
and archived articles, internal notes and escalations of the customer's own case, another organisation's case)
must not appear in any response, count or error of any customer-facing route.

The planted texts also carry words a customer's query matches ("Outlook 0x800CCC0E"), so a permission check
applied after ranking, or not at all, would surface them.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import pytest
from sqlalchemy import func, select

from kb.articles import Variant, create_article, set_article_state
from kb.cli_db import open_database
from kb.lifecycle import ArticleState, Audience, CaseState, Channel, Confidence, EscalationLevel, Priority, Role
from kb.models import Article, Case, EventKind
from kb.repository import add_timeline_entry, create_case, escalate_case, transition_case
from tests.api.conftest import Env, make_env
from tests.fakes import HashEmbedder

pytestmark = pytest.mark.integration

CANARIES = {
    "internal_article": "zqcanaryinternal01",
    "partner_article": "zqcanarypartner02",
    "draft_article": "zqcanarydraft03",
    "archived_article": "zqcanaryarchived04",
    "own_internal_note": "zqcanarynote05",
    "own_escalation": "zqcanaryescal06",
    "other_org_case": "zqcanaryotherorg07",
    "other_org_note": "zqcanaryothernote08",
}
BAIT = "Outlook 无法连接 Exchange 0x800CCC0E 发送接收错误"


def _variant(tag: str) -> Variant:
    return Variant(
        f"{BAIT} {tag}",
        symptom=f"Outlook 0x800CCC0E {tag} 客户端无法连接",
        cause=f"内部原因 {tag}",
        resolution=f"内部处理步骤 {tag}：重建配置文件",
    )


def plant(env: Env) -> dict[str, Any]:
    """Write every canary through the domain functions; returns the ids a customer might probe."""
    _, factory = open_database(env.settings)
    ids: dict[str, Any] = {}
    reviewer = env.user_ids["reviewer"]
    with factory.begin() as s:
        for key, state in (
            ("internal_article", ArticleState(Confidence.VALIDATED, Audience.INTERNAL)),
            ("partner_article", ArticleState(Confidence.VALIDATED, Audience.PARTNER)),
            ("draft_article", ArticleState(Confidence.WIP, Audience.INTERNAL)),
            ("archived_article", ArticleState(Confidence.VALIDATED, Audience.PUBLIC)),
        ):
            tag = CANARIES[key]
            article = create_article(s, reviewer, zh=_variant(tag), error_codes=["0x800CCC0E"], state=state)
            ids[key] = article.id
        s.flush()
        archived = s.get_one(Article, ids["archived_article"])
        set_article_state(
            s,
            archived.id,
            Role.REVIEWER,
            ArticleState(Confidence.ARCHIVED, Audience.PUBLIC),
            expected_version=archived.version_id,
        )

        def case(org_key: str, tag: str) -> Case:
            return create_case(
                s,
                org_id=env.org_ids[org_key],
                contact_name="联系人",
                contact_email=f"{org_key}@example.com",
                channel=Channel.WEB,
                product="outlook-exchange",
                subject=f"{BAIT} {tag}",
                description=f"Outlook 0x800CCC0E {tag}",
                lang="zh",
                priority=Priority.P2,
            )

        own = case("customer", "own-case-visible")
        add_timeline_entry(s, own.id, EventKind.NOTE_INTERNAL, CANARIES["own_internal_note"], reviewer, True)
        own = transition_case(s, own.id, CaseState.TRIAGED, reviewer, expected_version=own.version_id)
        escalate_case(
            s, own.id, EscalationLevel.L2, reviewer, expected_version=own.version_id, text=CANARIES["own_escalation"]
        )
        other = case("other_customer", CANARIES["other_org_case"])
        add_timeline_entry(s, other.id, EventKind.NOTE_PUBLIC, CANARIES["other_org_note"], reviewer, False)
        for state in (CaseState.TRIAGED, CaseState.IN_PROGRESS, CaseState.RESOLVED):
            other = transition_case(s, other.id, state, reviewer, expected_version=other.version_id)
        other.resolution = f"{CANARIES['other_org_case']} 解决方法"
        ids["own_case"], ids["other_case"] = own.id, other.id
    env.app.state.live.refresh(force=True)
    return ids


@pytest.fixture(scope="module")
def planted(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Env, dict[str, Any]]]:
    gen = make_env(tmp_path_factory.mktemp("canary"), embedder=HashEmbedder())
    env = next(gen)
    ids = plant(env)
    yield env, ids
    gen.close()


def customer_requests(ids: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    """Every customer-facing request to try: (method, path, kwargs)."""
    reqs: list[tuple[str, str, dict[str, Any]]] = []
    queries = [BAIT, "0x800CCC0E", *CANARIES.values()]
    for q in queries:
        for kind in (["article"], ["article", "case"]):
            for mode in ("hybrid", "bm25", "vector"):
                reqs.append(("GET", "/api/v1/search", {"params": {"q": q, "kind": kind, "mode": mode, "k": 50}}))
        reqs.append(("POST", "/api/v1/suggest", {"json": {"subject": q, "description": BAIT, "k": 20}}))
    for offset in (0, 100):
        reqs.append(("GET", "/api/v1/articles", {"params": {"offset": offset, "limit": 100}}))
    for conf in ("wip", "not_validated", "archived", "validated"):
        reqs.append(("GET", "/api/v1/articles", {"params": {"confidence": conf}}))
    for aud in ("internal", "partner"):
        reqs.append(("GET", "/api/v1/articles", {"params": {"audience": aud}}))
    for key in ("internal_article", "partner_article", "draft_article", "archived_article"):
        aid = ids[key]
        reqs += [
            ("GET", f"/api/v1/articles/{aid}", {}),
            ("GET", f"/api/v1/articles/{aid}/versions", {}),
            ("GET", f"/api/v1/articles/{aid}/versions/1", {}),
            ("GET", f"/api/v1/articles/{aid}/diff", {"params": {"from": 1, "to": 2}}),
            ("POST", f"/api/v1/articles/{aid}/feedback", {"json": {"helpful": True}}),
        ]
    for cid in (ids["own_case"], ids["other_case"]):
        for suffix in ("", "/timeline", "/sla", "/links", "/suggestions"):
            reqs.append(("GET", f"/api/v1/cases/{cid}{suffix}", {}))
    reqs += [
        ("GET", "/api/v1/cases", {"params": {"limit": 100}}),
        ("GET", "/api/v1/analytics/summary", {}),
        ("GET", "/api/v1/auth/me", {}),
    ]
    return reqs


def _sent(kwargs: dict[str, Any]) -> list[str]:
    """Strings the request itself carried (a response may echo the caller's own query back)."""
    out: list[str] = []
    for value in [*kwargs.get("params", {}).values(), *kwargs.get("json", {}).values()]:
        out += [v for v in (value if isinstance(value, list) else [value]) if isinstance(v, str)]
    return out


def _leaks(text: str, sent: list[str]) -> list[str]:
    for echoed in sorted(sent, key=len, reverse=True):
        text = text.replace(json.dumps(echoed, ensure_ascii=False)[1:-1], "").replace(json.dumps(echoed)[1:-1], "")
    return [name for name, canary in CANARIES.items() if canary in text]


@pytest.mark.parametrize("who", ["customer", "other_customer_own_view"])
def test_canary_no_planted_string_reaches_a_customer(planted: tuple[Env, dict[str, Any]], who: str) -> None:
    env, ids = planted
    user = "customer" if who == "customer" else "other_customer"
    allowed_own = {"other_org_case", "other_org_note"} if user == "other_customer" else set()
    checked = 0
    for method, path, kwargs in customer_requests(ids):
        r = env.client.request(method, path, headers=env.headers(user), **kwargs)
        if user == "other_customer" and f"/cases/{ids['other_case']}" in path:
            continue  # Globex's own case: its own text is theirs to see
        seen = _leaks(r.text + json.dumps(dict(r.headers)), _sent(kwargs))
        assert not set(seen) - allowed_own, f"{user} {method} {path} {kwargs} -> {r.status_code}: {seen}"
        assert r.status_code < 500, f"{method} {path}: {r.status_code} {r.text[:200]}"
        checked += 1
    assert checked > 100


def test_canary_hidden_case_and_article_answer_like_missing_ones(planted: tuple[Env, dict[str, Any]]) -> None:
    env, ids = planted
    h = env.headers("customer")
    missing_case = env.client.get("/api/v1/cases/999999", headers=h)
    other_case = env.client.get(f"/api/v1/cases/{ids['other_case']}", headers=h)
    assert missing_case.status_code == other_case.status_code == 404
    assert missing_case.json()["error"] == other_case.json()["error"]
    assert missing_case.json()["detail"].replace("999999", "X") == other_case.json()["detail"].replace(
        str(ids["other_case"]), "X"
    )
    missing = env.client.get("/api/v1/articles/KB-999999", headers=h)
    for key in ("internal_article", "partner_article", "draft_article", "archived_article"):
        hidden = env.client.get(f"/api/v1/articles/{ids[key]}", headers=h)
        assert hidden.status_code == missing.status_code == 404
        assert hidden.json()["detail"].replace(ids[key], "X") == missing.json()["detail"].replace("KB-999999", "X")


def test_canary_counts_match_the_visible_set(planted: tuple[Env, dict[str, Any]]) -> None:
    env, _ = planted
    _, factory = open_database(env.settings)
    with factory() as s:
        visible = s.scalar(
            select(func.count())
            .select_from(Article)
            .where(Article.confidence == Confidence.VALIDATED, Article.audience == Audience.PUBLIC)
        )
    page = env.client.get("/api/v1/articles", params={"limit": 100}, headers=env.headers("customer")).json()
    assert page["total"] == visible
    search = env.client.get("/api/v1/search", params={"q": BAIT, "k": 50}, headers=env.headers("customer")).json()
    assert sum(search["facets"]["kind"].values()) <= visible
    own_cases = env.client.get("/api/v1/cases", headers=env.headers("customer")).json()
    assert own_cases["total"] == 1


def test_canary_staff_do_see_them(planted: tuple[Env, dict[str, Any]]) -> None:
    """The suite can fail: the same queries as an engineer do surface the planted texts."""
    env, ids = planted
    r = env.client.get(
        "/api/v1/search",
        params={"q": CANARIES["internal_article"], "kind": ["article", "case"]},
        headers=env.headers("engineer"),
    )
    assert CANARIES["internal_article"] in json.dumps(r.json()["articles"], ensure_ascii=False)
    r = env.client.get(f"/api/v1/cases/{ids['own_case']}/timeline", headers=env.headers("engineer"))
    assert CANARIES["own_internal_note"] in r.text


def test_canary_assistant_never_answers_with_a_planted_string(planted: tuple[Env, dict[str, Any]]) -> None:
    """The assistant (GET, POST, stream) retrieves with the customer's permissions: no canary in any answer,
    citation, closest article, note, event or error body; engineer mode refuses a customer."""
    env, ids = planted
    h = env.headers("customer")
    questions = [BAIT, "0x800CCC0E 重建配置文件", *(f"{BAIT} {c}" for c in CANARIES.values()), *CANARIES.values()]
    checked = 0
    for q in questions:
        routes: list[tuple[str, str, dict[str, Any]]] = [
            ("GET", "/api/v1/assistant/answer", {"params": {"q": q}}),
            ("POST", "/api/v1/assistant/answer", {"json": {"question": q}}),
            ("POST", "/api/v1/assistant/answer", {"json": {"question": q, "generator": "extractive", "mode": "bm25"}}),
            ("POST", "/api/v1/assistant/stream", {"json": {"question": q}}),
        ]
        for method, path, kwargs in routes:
            r = env.client.request(method, path, headers=h, **kwargs)
            assert r.status_code == 200, r.text[:200]
            echoes = [*_sent(kwargs), quote(" ".join(q.split())[:200])]  # the open_case url carries the question
            seen = _leaks(r.text + json.dumps(dict(r.headers)), echoes)
            assert not seen, f"{method} {path} {q!r}: {seen}"
            checked += 1
    for cid in (ids["own_case"], ids["other_case"]):
        r = env.client.get(f"/api/v1/cases/{cid}/assist", headers=h)
        assert r.status_code == 403
        assert not _leaks(r.text, [])
    assert checked == 4 * len(questions)
    staff = env.client.get(f"/api/v1/cases/{ids['own_case']}/assist", headers=env.headers("engineer"))
    assert staff.status_code == 200 and CANARIES["own_internal_note"] in staff.text  # the suite can fail
