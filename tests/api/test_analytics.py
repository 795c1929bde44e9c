"""GET /analytics/summary: figures for staff, the same shape scoped to their own organisation for customers."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select

from kb.articles import Variant, add_feedback, create_article, link_case_article
from kb.lifecycle import CaseState, Channel, Priority
from kb.models import Article, IntakeSession, Relation, SearchLog, utcnow
from kb.repository import create_case, transition_case
from tests.api.conftest import Env

pytestmark = pytest.mark.integration


@dataclass
class Data:
    public: list[str]
    internal: str


def _case(session: Any, org_id: int, subject: str, priority: Priority, opened_ago: timedelta, resolve: bool) -> int:
    opened = utcnow() - opened_ago
    case = create_case(
        session,
        org_id=org_id,
        contact_name="c",
        contact_email="c@example.com",
        channel=Channel.WEB,
        product="Outlook",
        subject=subject,
        lang="en",
        priority=priority,
        at=opened,
    )
    if resolve:
        for i, state in enumerate((CaseState.TRIAGED, CaseState.IN_PROGRESS, CaseState.RESOLVED), start=1):
            transition_case(
                session, case.id, state, None, expected_version=case.version_id, at=opened + timedelta(minutes=i)
            )
    return case.id


@pytest.fixture(scope="module")
def data(env: Env) -> Data:
    now = utcnow()
    acme, globex = env.org_ids["customer"], env.org_ids["other_customer"]
    with env.app.state.session_factory.begin() as session:
        public = list(session.scalars(select(Article.id).order_by(Article.id).limit(4)))
        a1, a2, a3, b = public
        internal = create_article(session, env.user_ids["author"], en=Variant(title="Internal only workaround")).id

        def log(who: str, query: str, results: int, top: list[str], route: str = "search", ago: int = 1) -> None:
            session.add(
                SearchLog(
                    at=now - timedelta(days=ago),
                    user_id=env.user_ids[who],
                    org_id=env.org_ids.get(who),
                    role="customer" if "customer" in who else "engineer",
                    route=route,
                    query=query,
                    lang="en",
                    results=results,
                    top_ids=top,
                )
            )

        log("customer", "outlook crash", 5, [a1, a2])
        log("customer", "zebra nothing", 0, [])
        log("customer", "zebra nothing", 0, [])
        log("customer", "suggest text", 0, [], route="suggest")
        log("other_customer", "globex private words", 0, [])
        log("other_customer", "vpn", 3, [b])
        log("engineer", "engineer miss", 0, [])
        log("engineer", "similar cases", 2, ["case:1", a3])
        log("engineer", "old miss", 0, [], ago=40)
        log("customer", "how to apply for leave", 0, [], route="assistant")  # abstained: a knowledge gap
        log("customer", "printer offline", 1, [], route="assistant")
        log("other_customer", "globex unanswered words", 0, [], route="assistant")

        c1 = _case(session, acme, "acme solved", Priority.P3, timedelta(hours=2), resolve=True)
        _case(session, acme, "acme solved without link", Priority.P3, timedelta(hours=2), resolve=True)
        _case(session, acme, "acme down", Priority.P1, timedelta(hours=5), resolve=False)  # breached
        g1 = _case(session, globex, "globex solved", Priority.P3, timedelta(hours=2), resolve=True)
        _case(session, globex, "globex down", Priority.P1, timedelta(hours=5), resolve=False)  # breached
        link_case_article(session, c1, a1, Relation.SOLVED_BY)
        link_case_article(session, g1, internal, Relation.SOLVED_BY)
        add_feedback(session, a2, 1, True, user_id=env.user_ids["customer"])
        add_feedback(session, a3, 1, False, user_id=env.user_ids["other_customer"])
        for i, (org, suggested, abandoned, case_id) in enumerate(
            ((acme, 2, True, None), (acme, 1, False, c1), (globex, 1, True, None), (globex, 0, True, None))
        ):
            session.add(
                IntakeSession(
                    token=f"form-{i}",
                    user_id=None,
                    org_id=org,
                    suggested=suggested,
                    opened_articles=[],
                    case_id=case_id,
                    abandoned=abandoned,
                    started_at=now - timedelta(hours=1),
                    updated_at=now,
                )
            )
    return Data(public, internal)


def _summary(env: Env, who: str, **params: Any) -> dict[str, Any]:
    r = env.client.get("/api/v1/analytics/summary", params=params, headers=env.headers(who))
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def test_staff_summary_counts_the_whole_center(env: Env, data: Data) -> None:
    s = _summary(env, "reviewer")
    assert s["days"] == 30
    assert s["searches"] == 7 and s["searches_no_result"] == 4
    assert s["top_no_result_queries"][0] == {"query": "zebra nothing", "count": 2}
    assert {q["query"] for q in s["top_no_result_queries"]} == {
        "zebra nothing",
        "globex private words",
        "engineer miss",
    }
    assert s["resolved_cases"] == 3 and s["link_rate"] == pytest.approx(2 / 3)
    assert s["sla_breaches"] == 2
    assert s["deflection"] == {"forms": 4, "abandoned_after_suggestion": 2, "opened_case": 1, "rate": 0.5}
    a1, a2, a3, b = data.public
    top = {t["article_id"]: t for t in s["top_articles"]}
    assert top[a1]["score"] == 2 and top[a1]["links"] == 1 and top[a1]["top1"] == 1
    assert top[data.internal]["links"] == 1  # staff may read the internal draft
    assert set(top) == {a1, a2, a3, b, data.internal}
    assert s["top_articles"][0]["article_id"] == a1
    assert s["assistant"]["questions"] == 3 and s["assistant"]["abstained"] == 2
    assert {q["query"] for q in s["assistant"]["top_unanswered"]} == {
        "how to apply for leave",
        "globex unanswered words",
    }


def test_window_widens_with_days(env: Env, data: Data) -> None:
    s = _summary(env, "engineer", days=60)
    assert s["searches"] == 8 and s["searches_no_result"] == 5
    assert "old miss" in {q["query"] for q in s["top_no_result_queries"]}


def test_customer_summary_is_scoped_to_their_org_and_readable_articles(env: Env, data: Data) -> None:
    a1, a2, a3, b = data.public
    s = _summary(env, "customer")
    assert s["searches"] == 3 and s["searches_no_result"] == 2
    assert s["top_no_result_queries"] is None
    assert [(t["article_id"], t["score"]) for t in s["top_articles"]] == [(a1, 2), (a2, 1)]
    assert s["resolved_cases"] == 2 and s["link_rate"] == 0.5
    assert s["sla_breaches"] == 1
    assert s["deflection"] == {"forms": 2, "abandoned_after_suggestion": 1, "opened_case": 1, "rate": 0.5}
    assert s["assistant"] == {"questions": 2, "abstained": 1, "top_unanswered": None}


def test_customer_never_sees_internal_articles_or_other_orgs_words(env: Env, data: Data) -> None:
    a1, a2, a3, b = data.public
    s = _summary(env, "other_customer")
    ids = {t["article_id"] for t in s["top_articles"]}
    assert data.internal not in ids  # linked to their own case, but internal
    assert ids == {a3, b}
    assert s["link_rate"] == 0.0  # their only link points at an article they may not read
    text = str(s)
    assert "zebra" not in text and "Internal only" not in text and "engineer miss" not in text
    assert "apply for leave" not in text and s["assistant"]["questions"] == 1


def test_summary_needs_login_and_a_sane_window(env: Env) -> None:
    assert env.client.get("/api/v1/analytics/summary").status_code == 401
    h = env.headers("engineer")
    assert env.client.get("/api/v1/analytics/summary", params={"days": 0}, headers=h).status_code == 422
    assert env.client.get("/api/v1/analytics/summary", params={"days": 366}, headers=h).status_code == 422
