"""Case routes: opening, the SLA-ordered queue, transitions and locking, customer isolation, timeline privacy,
assignment and escalation, SLA, suggestions, article links, drafts from cases, webhook events."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from kb.articles import reuse_count
from kb.casework import PRIORITY_RANK, SLA_RANK
from kb.cli_db import open_database
from kb.lifecycle import Audience, Channel, Confidence, Priority
from kb.models import Article, CaseArticleLink, Relation, Webhook, WebhookDelivery, utcnow
from kb.repository import create_case
from tests.api.conftest import Env

pytestmark = pytest.mark.integration
API = "/api/v1/cases"


@contextmanager
def db(env: Env) -> Iterator[Session]:
    engine, factory = open_database(env.settings)
    try:
        with factory.begin() as session:
            yield session
    finally:
        engine.dispose()


def open_case(env: Env, who: str = "customer", **fields: Any) -> dict[str, Any]:
    body = {"subject": "Outlook 无法启动", "description": "Outlook crashes at start.", "product": "Outlook",
            "priority": "p3", **fields}  # fmt: skip
    if who != "customer" and who != "other_customer" and "org_id" not in body:
        body["org_id"] = env.org_ids["customer"]
    r = env.client.post(API, json=body, headers=env.headers(who))
    assert r.status_code == 201, r.text
    return dict(r.json())


def move(env: Env, case: dict[str, Any], to: str, who: str = "engineer", note: str = "") -> dict[str, Any]:
    r = env.client.post(
        f"{API}/{case['id']}/transitions",
        json={"to": to, "expected_version": case["version_id"], "note": note},
        headers=env.headers(who),
    )
    assert r.status_code == 200, r.text
    return dict(r.json())


def test_customer_opens_case_for_own_org_only(env: Env) -> None:
    case = open_case(env, subject="VPN drops every hour", description="The VPN disconnects hourly.")
    assert case["org_id"] == env.org_ids["customer"] and case["org_name"] == "ACME 有限公司"
    assert case["state"] == "new" and case["lang"] == "en" and case["contact_name"] == "customer"
    assert case["allowed_transitions"] == [] and case["escalation_level"] is None
    assert case["sla"]["state"] == "ok"
    smuggled = {"subject": "x", "product": "VPN", "priority": "p2", "org_id": env.org_ids["other_customer"]}
    r = env.client.post(API, json=smuggled, headers=env.headers("customer"))
    assert r.status_code == 422 and "org_id" in r.json()["detail"]
    for field, value in (("state", "resolved"), ("assignee_id", env.user_ids["engineer"]), ("internal", True)):
        r = env.client.post(API, json={**smuggled, "org_id": None, field: value}, headers=env.headers("customer"))
        assert r.status_code == 422, field
    r = env.client.post(API, json={"subject": "x", "product": "VPN", "priority": "p2"}, headers=env.headers("engineer"))
    assert r.status_code == 422 and "org_id" in r.json()["detail"]
    blank = {"subject": "   ", "product": "VPN", "priority": "p2"}
    assert env.client.post(API, json=blank, headers=env.headers("customer")).status_code == 422


def test_engineer_sees_new_case_in_queue(env: Env) -> None:
    case = open_case(env, subject="打印机 脱机 无法打印", description="打印机一直显示脱机。", priority="p2")
    assert case["lang"] == "zh"
    r = env.client.get(API, params={"priority": "p2", "limit": 100}, headers=env.headers("engineer"))
    assert r.status_code == 200, r.text
    ids = [c["id"] for c in r.json()["items"]]
    assert case["id"] in ids and r.json()["total"] >= 1
    assert all(c["priority"] == "p2" for c in r.json()["items"])
    assert env.client.get(API, params={"limit": 101}, headers=env.headers("engineer")).status_code == 422


def test_queue_orders_by_sla_risk_then_priority_then_age(env: Env) -> None:
    with db(env) as session:
        old = create_case(
            session, org_id=env.org_ids["customer"], contact_name="c", contact_email="c@x.example",
            channel=Channel.PHONE, product="Exchange", subject="Mail flow down", lang="en", priority=Priority.P1,
            at=utcnow() - timedelta(hours=6),
        )  # fmt: skip
        old_id = old.id
    fresh_p4 = open_case(env, priority="p4", subject="How do I change my signature")
    fresh_p1 = open_case(env, priority="p1", subject="Site down")
    r = env.client.get(API, params={"limit": 100}, headers=env.headers("engineer"))
    items = r.json()["items"]
    ids = [c["id"] for c in items]
    assert ids.index(old_id) < ids.index(fresh_p1["id"]) < ids.index(fresh_p4["id"])
    assert items[ids.index(old_id)]["sla"]["state"] == "breached"
    keys = [(SLA_RANK[c["sla"]["state"]], PRIORITY_RANK[Priority(c["priority"])], c["opened_at"]) for c in items]
    assert keys == sorted(keys)
    page = env.client.get(API, params={"limit": 1, "offset": 1}, headers=env.headers("engineer")).json()
    assert [c["id"] for c in page["items"]] == ids[1:2] and page["total"] == r.json()["total"]


def test_transitions_legal_illegal_and_stale_version(env: Env) -> None:
    case = open_case(env)
    bad = env.client.post(
        f"{API}/{case['id']}/transitions",
        json={"to": "resolved", "expected_version": case["version_id"]},
        headers=env.headers("engineer"),
    )
    assert bad.status_code == 409 and "allowed from new: triaged" in bad.json()["detail"]
    triaged = move(env, case, "triaged")
    assert triaged["state"] == "triaged" and triaged["version_id"] > case["version_id"]
    assert triaged["first_response_at"] is not None
    assert triaged["allowed_transitions"] == ["escalated", "in_progress"]
    stale = env.client.post(
        f"{API}/{case['id']}/transitions",
        json={"to": "in_progress", "expected_version": case["version_id"]},
        headers=env.headers("engineer"),
    )
    assert stale.status_code == 409 and stale.json()["error"] == "ConcurrentUpdate"
    # customers may only close a resolved case or reopen it
    denied = env.client.post(
        f"{API}/{case['id']}/transitions",
        json={"to": "in_progress", "expected_version": triaged["version_id"]},
        headers=env.headers("customer"),
    )
    assert denied.status_code == 409 and "allowed from triaged: none" in denied.json()["detail"]
    resolved = move(env, move(env, triaged, "in_progress"), "resolved", note="Rebuilt the profile.")
    assert resolved["resolved_at"] is not None
    mine = env.client.get(f"{API}/{case['id']}", headers=env.headers("customer")).json()
    assert mine["allowed_transitions"] == ["closed", "in_progress"]
    closed = move(env, mine, "closed", who="customer")
    assert closed["state"] == "closed" and closed["closed_at"] is not None
    reopened = move(env, closed, "in_progress", who="customer")
    assert reopened["state"] == "in_progress" and reopened["closed_at"] is None


def test_other_org_case_is_404_like_a_missing_one(env: Env) -> None:
    case = open_case(env)
    assert env.client.get(f"{API}/{case['id']}", headers=env.headers("customer")).status_code == 200
    theirs = env.client.get(f"{API}/{case['id']}", headers=env.headers("other_customer"))
    missing = env.client.get(f"{API}/99999999", headers=env.headers("other_customer"))
    assert theirs.status_code == missing.status_code == 404
    assert theirs.json()["detail"].replace(str(case["id"]), "N") == missing.json()["detail"].replace("99999999", "N")
    for sub in ("timeline", "sla", "links"):
        assert env.client.get(f"{API}/{case['id']}/{sub}", headers=env.headers("other_customer")).status_code == 404
    note = {"kind": "note", "body": "hello"}
    r = env.client.post(f"{API}/{case['id']}/events", json=note, headers=env.headers("other_customer"))
    assert r.status_code == 404
    listed = env.client.get(API, params={"limit": 100}, headers=env.headers("other_customer")).json()
    assert case["id"] not in [c["id"] for c in listed["items"]]
    own = env.client.get(API, params={"limit": 100}, headers=env.headers("customer")).json()
    assert case["id"] in [c["id"] for c in own["items"]]
    assert {c["org_id"] for c in own["items"]} == {env.org_ids["customer"]}


def test_internal_note_invisible_to_customer(env: Env) -> None:
    case = open_case(env)
    secret = {"kind": "note", "body": "customer runs a pirated build", "internal": True}
    r = env.client.post(f"{API}/{case['id']}/events", json=secret, headers=env.headers("engineer"))
    assert r.status_code == 201 and r.json()["kind"] == "note_internal" and r.json()["author_name"] == "engineer"
    public = {"kind": "note", "body": "Tried safe mode, same crash."}
    r = env.client.post(f"{API}/{case['id']}/events", json=public, headers=env.headers("customer"))
    assert r.status_code == 201 and r.json()["kind"] == "note_public"
    for forbidden in ({**public, "internal": True}, {"kind": "call", "body": "x"}):
        r = env.client.post(f"{API}/{case['id']}/events", json=forbidden, headers=env.headers("customer"))
        assert r.status_code == 403
    staff = env.client.get(f"{API}/{case['id']}/timeline", headers=env.headers("engineer")).json()
    mine = env.client.get(f"{API}/{case['id']}/timeline", headers=env.headers("customer")).json()
    assert any(e["body"] == secret["body"] for e in staff)
    assert not any(e["internal"] for e in mine) and "pirated" not in str(mine)
    assert [e["body"] for e in mine][-1] == public["body"]
    assert "pirated" not in env.client.get(f"{API}/{case['id']}", headers=env.headers("customer")).text


def test_assign_escalate_update_with_events(env: Env) -> None:
    case = move(env, open_case(env, who="engineer"), "triaged")
    r = env.client.post(
        f"{API}/{case['id']}/assign",
        json={"assignee_id": env.user_ids["customer"], "expected_version": case["version_id"]},
        headers=env.headers("engineer"),
    )
    assert r.status_code == 422  # customers cannot own cases
    r = env.client.post(
        f"{API}/{case['id']}/assign",
        json={
            "assignee_id": env.user_ids["engineer"],
            "group_name": "messaging",
            "expected_version": case["version_id"],
        },
        headers=env.headers("engineer"),
    )
    assert r.status_code == 200, r.text
    case = r.json()
    assert case["assignee_id"] == env.user_ids["engineer"] and case["group_name"] == "messaging"
    mine = env.client.get(API, params={"assigned_to_me": True, "limit": 100}, headers=env.headers("engineer")).json()
    assert case["id"] in [c["id"] for c in mine["items"]]
    assert all(c["assignee_id"] == env.user_ids["engineer"] for c in mine["items"])
    r = env.client.post(
        f"{API}/{case['id']}/escalate",
        json={"level": "l2", "note": "needs the Exchange team", "expected_version": case["version_id"]},
        headers=env.headers("engineer"),
    )
    assert r.status_code == 200, r.text
    case = r.json()
    assert case["escalation_level"] == "l2" and case["state"] == "escalated"
    r = env.client.post(
        f"{API}/{case['id']}/escalate",
        json={"level": "l1", "note": "down", "expected_version": case["version_id"]},
        headers=env.headers("engineer"),
    )
    assert r.status_code == 409 and "allowed from l2: l3, onsite" in r.json()["detail"]
    patch = {"expected_version": case["version_id"], "priority": "p1", "resolution": "Restarted transport."}
    r = env.client.patch(f"{API}/{case['id']}", json=patch, headers=env.headers("engineer"))
    assert r.status_code == 200 and r.json()["priority"] == "p1" and r.json()["resolution"] == "Restarted transport."
    assert env.client.patch(f"{API}/{case['id']}", json=patch, headers=env.headers("engineer")).status_code == 409
    assert env.client.patch(f"{API}/{case['id']}", json=patch, headers=env.headers("customer")).status_code == 403
    kinds = [e["kind"] for e in env.client.get(f"{API}/{case['id']}/timeline", headers=env.headers("engineer")).json()]
    assert kinds.count("escalation") == 1 and kinds.count("note_internal") == 2 and kinds.count("state_change") == 2
    customer_view = env.client.get(f"{API}/{case['id']}", headers=env.headers("customer")).json()
    assert customer_view["group_name"] is None and customer_view["escalation_level"] is None


def test_sla_endpoint(env: Env) -> None:
    case = open_case(env, priority="p1")
    sla = env.client.get(f"{API}/{case['id']}/sla", headers=env.headers("customer")).json()
    assert sla["state"] == "ok" and sla["response_met"] is None and not sla["response_breached"]
    assert 4 * 3600 - 60 < sla["resolution_due_in_seconds"] <= 4 * 3600
    waiting = move(env, move(env, move(env, case, "triaged"), "in_progress"), "waiting_on_customer")
    sla = env.client.get(f"{API}/{case['id']}/sla", headers=env.headers("engineer")).json()
    assert sla["state"] == "paused" and sla["response_met"] is True and waiting["sla"]["state"] == "paused"


def test_suggestions_find_article_and_similar_resolved_case(env: Env) -> None:
    subject = "Windows Update error 0x80070005"
    solved = open_case(env, who="engineer", subject=subject, description="Updates fail with access denied.")
    solved = move(env, move(env, move(env, solved, "triaged"), "in_progress"), "resolved")
    case = open_case(env, subject=subject, description="Windows Update fails with 0x80070005 access denied.")
    r = env.client.get(f"{API}/{case['id']}/suggestions", headers=env.headers("engineer"))
    assert r.status_code == 200, r.text
    body = r.json()
    assert "KB-WINC-0002" in [a["article_id"] for a in body["articles"]] and body["lang"] == "en"
    case_ids = [c["case_id"] for c in body["cases"]]
    assert solved["id"] in case_ids and case["id"] not in case_ids
    done = env.client.get(API, params={"state": "resolved", "limit": 100}, headers=env.headers("engineer")).json()
    assert {c["state"] for c in done["items"]} == {"resolved"} and solved["id"] in [c["id"] for c in done["items"]]
    assert [c["sla"]["state"] for c in done["items"] if c["id"] == solved["id"]] == ["met"]
    open_queue = env.client.get(API, params={"limit": 100}, headers=env.headers("engineer")).json()
    assert solved["id"] not in [c["id"] for c in open_queue["items"]]  # the default queue: open cases
    own = env.client.get(f"{API}/{solved['id']}/suggestions", headers=env.headers("engineer")).json()
    assert solved["id"] not in [c["case_id"] for c in own["cases"]]
    assert env.client.get(f"{API}/{case['id']}/suggestions", headers=env.headers("customer")).status_code == 403


def test_link_article_records_current_version_and_reuse(env: Env) -> None:
    case = open_case(env)
    with db(env) as session:
        before = reuse_count(session, "KB-WINC-0002")
    r = env.client.post(
        f"{API}/{case['id']}/links", json={"article_id": "KB-WINC-0002", "relation": "solved_by"},
        headers=env.headers("engineer"),
    )  # fmt: skip
    assert r.status_code == 201, r.text
    link = r.json()
    assert link["article_version"] == 1 and link["relation"] == "solved_by" and link["title"]
    with db(env) as session:
        assert reuse_count(session, "KB-WINC-0002") == before + 1
    links = env.client.get(f"{API}/{case['id']}/links", headers=env.headers("customer")).json()
    assert [x["article_id"] for x in links] == ["KB-WINC-0002"]  # a public article: the customer sees the link
    missing = env.client.post(
        f"{API}/{case['id']}/links", json={"article_id": "KB-NOPE", "relation": "related"},
        headers=env.headers("engineer"),
    )  # fmt: skip
    assert missing.status_code == 404
    denied = env.client.post(
        f"{API}/{case['id']}/links", json={"article_id": "KB-WINC-0002", "relation": "related"},
        headers=env.headers("customer"),
    )  # fmt: skip
    assert denied.status_code == 403
    timeline = env.client.get(f"{API}/{case['id']}/timeline", headers=env.headers("customer")).json()
    assert "link" not in [e["kind"] for e in timeline]


def test_article_draft_is_internal_wip_linked_solved_by(env: Env) -> None:
    case = open_case(
        env, who="engineer", subject="Outlook error 0x800CCC0E when sending",
        description="Sending mail fails with 0x800CCC0E on Windows 11.",
    )  # fmt: skip
    patch = {"expected_version": case["version_id"], "resolution": "Cause: the SMTP port was blocked.\n"
             "Resolution: allow port 587 in the firewall."}  # fmt: skip
    assert env.client.patch(f"{API}/{case['id']}", json=patch, headers=env.headers("engineer")).status_code == 200
    assert env.client.post(f"{API}/{case['id']}/article-draft", headers=env.headers("customer")).status_code == 403
    r = env.client.post(f"{API}/{case['id']}/article-draft", headers=env.headers("author"))
    assert r.status_code == 201, r.text
    draft = r.json()
    assert draft["version"] == 1
    with db(env) as session:
        article = session.get(Article, draft["article_id"])
        assert article is not None
        assert article.confidence == Confidence.WIP and article.audience == Audience.INTERNAL
        assert "0x800CCC0E" in article.error_codes and article.products == ["Outlook"]
        link = session.scalars(select(CaseArticleLink).where(CaseArticleLink.case_id == case["id"])).one()
        assert link.article_id == draft["article_id"] and link.relation == Relation.SOLVED_BY
    staff_links = env.client.get(f"{API}/{case['id']}/links", headers=env.headers("engineer")).json()
    assert [x["article_id"] for x in staff_links] == [draft["article_id"]]
    assert env.client.get(f"{API}/{case['id']}/links", headers=env.headers("customer")).json() == []
    found = env.client.get("/api/v1/search", params={"q": "0x800CCC0E SMTP 587"}, headers=env.headers("customer"))
    assert draft["article_id"] not in [a["article_id"] for a in found.json()["articles"]]


def test_case_events_write_webhook_deliveries(env: Env) -> None:
    with db(env) as session:
        hook = Webhook(url="http://127.0.0.1:9/hook", secret="s3cret-s3cret", events=[], active=True,
                       created_at=utcnow())  # fmt: skip
        session.add(hook)
        session.flush()
        hook_id = hook.id
    try:
        case = open_case(env)
        case = move(env, case, "triaged")
        r = env.client.post(
            f"{API}/{case['id']}/assign",
            json={"assignee_id": env.user_ids["engineer"], "expected_version": case["version_id"]},
            headers=env.headers("engineer"),
        )
        case = r.json()
        r = env.client.post(
            f"{API}/{case['id']}/escalate",
            json={"level": "l3", "note": "lab", "expected_version": case["version_id"]},
            headers=env.headers("engineer"),
        )
        case = r.json()
        patch = {"expected_version": case["version_id"], "severity": 1}
        assert env.client.patch(f"{API}/{case['id']}", json=patch, headers=env.headers("engineer")).status_code == 200
        # a refused change leaves no event behind
        stale = {"to": "resolved", "expected_version": case["version_id"]}
        assert (
            env.client.post(f"{API}/{case['id']}/transitions", json=stale, headers=env.headers("engineer")).status_code
            == 409
        )
        with db(env) as session:
            rows = session.scalars(select(WebhookDelivery).where(WebhookDelivery.webhook_id == hook_id)).all()
            events = [row.event for row in rows if row.payload["data"]["case_id"] == case["id"]]  # type: ignore[index]
        assert sorted(events) == sorted(
            ["case.created", "case.state_changed", "case.assigned", "case.state_changed", "case.escalated",
             "case.updated"]
        )  # fmt: skip
    finally:
        with db(env) as session:
            hook_row = session.get(Webhook, hook_id)
            assert hook_row is not None
            hook_row.active = False
