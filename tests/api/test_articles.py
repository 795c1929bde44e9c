"""Article routes: drafts, versions, diffs, translations, KCS state changes by role, visibility, search, webhooks."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from sqlalchemy import select

from kb.access import Principal, article_filter
from kb.lifecycle import Role
from kb.models import Webhook, WebhookDelivery, utcnow
from tests.api.conftest import Env

pytestmark = pytest.mark.integration

API = "/api/v1"
_counter = itertools.count(1)


def unique_word() -> str:
    """A token no sample article contains, so a search for it finds only the article under test."""
    return f"zorblax{next(_counter)}quen"


def draft_body(word: str) -> dict[str, Any]:
    return {
        "zh": {
            "title": f"打印机脱机 {word}",
            "symptom": "打印队列卡住，打印机显示脱机。",
            "cause": "后台处理程序服务停止。",
            "resolution": "重启 Print Spooler 服务。",
        },
        "en": {
            "title": f"Printer offline {word}",
            "symptom": "The print queue is stuck and the printer shows offline.",
            "cause": "The spooler service stopped.",
            "resolution": "Restart the Print Spooler service.",
        },
        "keywords": ["spooler", word],
        "products": ["printers"],
        "error_codes": ["0x00000709"],
    }


def create(env: Env, word: str, who: str = "author") -> dict[str, Any]:
    r = env.client.post(f"{API}/articles", json=draft_body(word), headers=env.headers(who))
    assert r.status_code == 201, r.text
    body: dict[str, Any] = r.json()
    return body


def get(env: Env, article_id: str, who: str, suffix: str = "") -> Any:
    return env.client.get(f"{API}/articles/{article_id}{suffix}", headers=env.headers(who))


def found(env: Env, word: str, who: str) -> list[str]:
    r = env.client.get(f"{API}/search", params={"q": word, "mode": "bm25"}, headers=env.headers(who))
    assert r.status_code == 200, r.text
    return [hit["article_id"] for hit in r.json()["articles"]]


def transition(env: Env, article_id: str, who: str, **fields: Any) -> Any:
    version = get(env, article_id, "admin").json()["version_id"]
    body = {"expected_version": version, **fields}
    return env.client.post(f"{API}/articles/{article_id}/transitions", json=body, headers=env.headers(who))


def publish(env: Env, article_id: str) -> dict[str, Any]:
    r = transition(env, article_id, "author", confidence="not_validated")
    assert r.status_code == 200, r.text
    r = transition(env, article_id, "reviewer", confidence="validated", audience="public")
    assert r.status_code == 200, r.text
    out: dict[str, Any] = r.json()
    return out


def test_articles_draft_is_internal_and_hidden_from_customers(env: Env) -> None:
    word = unique_word()
    art = create(env, word)
    assert (art["confidence"], art["audience"], art["governance"]) == ("wip", "internal", "experience_based")
    assert art["version"] == 1 and art["zh"]["title"].startswith("打印机") and art["en"]["title"].startswith("Printer")
    assert art["stale"] == {"zh": False, "en": False}
    assert art["reuse_count"] == 0 and (art["helpful"], art["not_helpful"]) == (0, 0)
    targets = {(t["confidence"], t["audience"]) for t in art["allowed_transitions"]}
    assert ("not_validated", "internal") in targets and ("validated", "public") not in targets  # author's rights

    hidden = get(env, art["article_id"], "customer")
    missing = get(env, "KB-999999", "customer")
    assert hidden.status_code == missing.status_code == 404
    assert hidden.json()["error"] == missing.json()["error"] == "ArticleNotFound"
    for suffix in ("/versions", "/versions/1", "/diff"):
        assert get(env, art["article_id"], "customer", suffix).status_code == 404
    fb = env.client.post(
        f"{API}/articles/{art['article_id']}/feedback", json={"helpful": True}, headers=env.headers("customer")
    )
    assert fb.status_code == 404
    assert art["article_id"] not in found(env, word, "customer")
    assert art["article_id"] in found(env, word, "engineer")
    assert get(env, art["article_id"], "engineer").status_code == 200
    listed = env.client.get(f"{API}/articles", params={"limit": 100}, headers=env.headers("customer")).json()
    assert all(item["audience"] == "public" and item["confidence"] == "validated" for item in listed["items"])


def test_articles_edit_makes_a_new_version_and_a_diff(env: Env) -> None:
    art = create(env, unique_word())
    aid = art["article_id"]
    zh = dict(draft_body("x")["zh"], resolution="重启 Print Spooler 服务，然后清空队列。")
    en = dict(art["en"], resolution="Restart the Print Spooler service, then clear the queue.")
    r = env.client.patch(
        f"{API}/articles/{aid}",
        json={"expected_version": art["version_id"], "zh": {**zh, "title": art["zh"]["title"]}, "en": en},
        headers=env.headers("author"),
    )
    assert r.status_code == 200, r.text
    assert r.json()["version"] == 2 and r.json()["stale"] == {"zh": False, "en": False}

    v1 = get(env, aid, "author", "/versions/1").json()
    assert v1["version"] == 1 and v1["en"]["resolution"] == "Restart the Print Spooler service."
    versions = get(env, aid, "author", "/versions").json()
    assert [v["version"] for v in versions] == [1, 2]
    assert versions[1]["author_id"] == env.user_ids["author"]

    diff = env.client.get(f"{API}/articles/{aid}/diff", params={"from": 1, "to": 2}, headers=env.headers("author"))
    assert diff.status_code == 200, diff.text
    body = diff.json()
    assert (body["from"], body["to"]) == (1, 2)
    by_field = {f["field"]: f["diff"] for f in body["fields"]}
    assert set(by_field) == {"resolution_zh", "resolution_en"}
    assert "-Restart the Print Spooler service." in by_field["resolution_en"]
    assert "+Restart the Print Spooler service, then clear the queue." in by_field["resolution_en"]
    assert get(env, aid, "author", "/versions/3").status_code == 404


def test_articles_lone_zh_edit_makes_en_stale_until_translated(env: Env) -> None:
    art = create(env, unique_word())
    aid = art["article_id"]
    zh = dict(art["zh"], cause="打印后台处理程序服务因内存不足而停止。")
    r = env.client.patch(
        f"{API}/articles/{aid}", json={"expected_version": art["version_id"], "zh": zh}, headers=env.headers("author")
    )
    assert r.status_code == 200, r.text
    edited = r.json()
    assert edited["stale"] == {"zh": False, "en": True}
    listed = env.client.get(f"{API}/articles", params={"limit": 100}, headers=env.headers("author")).json()
    assert next(i for i in listed["items"] if i["article_id"] == aid)["stale"]["en"] is True

    en = dict(art["en"], cause="The spooler service stopped because memory ran out.", machine_translated=True)
    r = env.client.put(
        f"{API}/articles/{aid}/translations/en",
        json={"expected_version": edited["version_id"], "variant": en},
        headers=env.headers("author"),
    )
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["version"] == 3 and out["stale"] == {"zh": False, "en": False}
    assert out["en"]["cause"].endswith("memory ran out.") and out["en"]["machine_translated"] is True
    assert out["zh"]["cause"] == zh["cause"]


def test_articles_publish_needs_a_reviewer_then_customers_find_it(env: Env) -> None:
    word = unique_word()
    art = create(env, word)
    aid = art["article_id"]
    skipped = transition(env, aid, "reviewer", confidence="validated")  # wip -> validated: no role may
    assert skipped.status_code == 409 and skipped.json()["error"] == "InvalidTransition"
    assert transition(env, aid, "engineer", confidence="not_validated").status_code == 403
    assert transition(env, aid, "author", confidence="not_validated").status_code == 200
    denied = transition(env, aid, "author", confidence="validated", audience="public")
    assert denied.status_code == 403, denied.text
    assert get(env, aid, "author").json()["confidence"] == "not_validated"
    impossible = transition(env, aid, "reviewer", audience="public")  # public needs validated confidence
    assert impossible.status_code == 409
    reviewer_view = get(env, aid, "reviewer").json()
    assert {"confidence": "validated", "audience": "public", "governance": "experience_based"} in reviewer_view[
        "allowed_transitions"
    ]

    r = transition(env, aid, "reviewer", confidence="validated", audience="public")
    assert r.status_code == 200, r.text
    out = r.json()
    assert (out["confidence"], out["audience"]) == ("validated", "public")
    assert get(env, aid, "customer").status_code == 200
    assert aid in found(env, word, "customer")
    listed = env.client.get(
        f"{API}/articles", params={"product": "printers", "limit": 100}, headers=env.headers("customer")
    ).json()
    assert aid in [i["article_id"] for i in listed["items"]] and listed["total"] >= 1


def test_articles_archive_leaves_search_at_once(env: Env) -> None:
    word = unique_word()
    aid = create(env, word)["article_id"]
    publish(env, aid)
    live = env.app.state.live
    staff_filter = article_filter(Principal(env.user_ids["admin"], Role.ADMIN))
    assert aid in [h.doc_id for h in live.search(word, 10, "bm25", staff_filter)]
    assert aid in found(env, word, "customer")

    r = transition(env, aid, "reviewer", confidence="archived")
    assert r.status_code == 200, r.text
    assert r.json()["confidence"] == "archived"
    # right after the response, for every caller: the after-commit hook has already refreshed the index
    assert aid not in [h.doc_id for h in live.search(word, 10, "bm25", staff_filter)]
    for who in ("customer", "engineer", "admin"):
        assert aid not in found(env, word, who)
    assert get(env, aid, "customer").status_code == 404
    assert get(env, aid, "customer", "/versions").status_code == 404
    assert get(env, aid, "engineer").json()["confidence"] == "archived"
    assert [v["version"] for v in get(env, aid, "engineer", "/versions").json()] == [1]
    assert get(env, aid, "engineer", "/versions/1").status_code == 200
    archived = env.client.get(
        f"{API}/articles", params={"confidence": "archived", "limit": 100}, headers=env.headers("engineer")
    ).json()
    assert aid in [i["article_id"] for i in archived["items"]]
    for_customer = env.client.get(
        f"{API}/articles", params={"confidence": "archived"}, headers=env.headers("customer")
    ).json()
    assert for_customer["total"] == 0 and for_customer["items"] == []


def test_articles_role_rules(env: Env) -> None:
    art = create(env, unique_word())
    body = {"expected_version": art["version_id"], "keywords": ["changed"]}
    r = env.client.patch(f"{API}/articles/{art['article_id']}", json=body, headers=env.headers("engineer"))
    assert r.status_code == 403
    r = env.client.post(f"{API}/articles", json=draft_body(unique_word()), headers=env.headers("customer"))
    assert r.status_code == 403
    assert env.client.post(f"{API}/articles", json=draft_body("x")).status_code == 401
    # still version 1: the refused edit changed nothing
    assert get(env, art["article_id"], "author").json()["version"] == 1


def test_articles_stale_expected_version_is_409(env: Env) -> None:
    art = create(env, unique_word())
    aid, lock = art["article_id"], art["version_id"]
    first = env.client.patch(
        f"{API}/articles/{aid}", json={"expected_version": lock, "keywords": ["a"]}, headers=env.headers("author")
    )
    assert first.status_code == 200, first.text
    second = env.client.patch(
        f"{API}/articles/{aid}", json={"expected_version": lock, "keywords": ["b"]}, headers=env.headers("author")
    )
    assert second.status_code == 409 and second.json()["error"] == "ConcurrentUpdate"
    late = env.client.post(
        f"{API}/articles/{aid}/transitions",
        json={"expected_version": lock, "confidence": "not_validated"},
        headers=env.headers("author"),
    )
    assert late.status_code == 409
    assert get(env, aid, "author").json()["keywords"] == ["a"]


def test_articles_server_owned_fields_and_bad_input_are_422(env: Env) -> None:
    h = env.headers("author")
    for field, value in (("audience", "public"), ("confidence", "validated"), ("author_id", 1), ("version", 9)):
        r = env.client.post(f"{API}/articles", json={**draft_body(unique_word()), field: value}, headers=h)
        assert r.status_code == 422, (field, r.text)
    assert env.client.post(f"{API}/articles", json={"keywords": ["x"]}, headers=h).status_code == 422  # no variant
    assert env.client.get(f"{API}/articles", params={"limit": 101}, headers=h).status_code == 422
    art = create(env, unique_word())
    same = env.client.patch(
        f"{API}/articles/{art['article_id']}",
        json={"expected_version": art["version_id"], "keywords": art["keywords"]},
        headers=h,
    )
    assert same.status_code == 422 and "changes nothing" in same.json()["detail"]


def test_articles_feedback_counts(env: Env) -> None:
    aid = create(env, unique_word())["article_id"]
    publish(env, aid)
    for who, helpful in (("customer", True), ("other_customer", True), ("engineer", False)):
        r = env.client.post(
            f"{API}/articles/{aid}/feedback", json={"helpful": helpful, "comment": "ok"}, headers=env.headers(who)
        )
        assert r.status_code == 201, r.text
        assert r.json()["version"] == 1 and r.json()["helpful"] is helpful  # state changes add no content version
    out = get(env, aid, "customer").json()
    assert (out["helpful"], out["not_helpful"]) == (2, 1)
    assert out["allowed_transitions"] == []  # customers change nothing


def test_articles_webhook_deliveries_for_created_published_archived(env: Env) -> None:
    factory = env.app.state.session_factory
    with factory.begin() as session:
        hook = Webhook(url="http://127.0.0.1:9/hook", secret="s" * 32, events=[], active=True, created_at=utcnow())
        session.add(hook)
        session.flush()
        hook_id = hook.id
    try:
        aid = create(env, unique_word())["article_id"]
        publish(env, aid)
        assert transition(env, aid, "admin", confidence="archived").status_code == 200
        with factory() as session:
            rows = session.scalars(
                select(WebhookDelivery).where(WebhookDelivery.webhook_id == hook_id).order_by(WebhookDelivery.id)
            ).all()
            events = [r.event for r in rows if r.payload["data"]["article_id"] == aid]
        assert events == [
            "article.created",
            "article.state_changed",
            "article.state_changed",
            "article.published",
            "article.state_changed",
            "article.archived",
        ]
    finally:
        with factory.begin() as session:
            session.get_one(Webhook, hook_id).active = False


def test_articles_metadata_edit_and_unicode_product_filter(env: Env) -> None:
    art = create(env, unique_word())
    aid = art["article_id"]
    r = env.client.patch(
        f"{API}/articles/{aid}",
        json={"expected_version": art["version_id"], "products": ["打印机_100%"], "error_codes": ["0x0000011B"]},
        headers=env.headers("author"),
    )
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["products"] == ["打印机_100%"] and out["error_codes"] == ["0x0000011B"]
    assert out["version"] == 1 and out["version_id"] > art["version_id"]  # metadata lives on the article row
    h = env.headers("author")
    hits = env.client.get(f"{API}/articles", params={"product": "打印机_100%"}, headers=h).json()
    assert [i["article_id"] for i in hits["items"]] == [aid] and hits["total"] == 1
    assert env.client.get(f"{API}/articles", params={"product": "打印机"}, headers=h).json()["total"] == 0
    assert env.client.get(f"{API}/articles", params={"product": "打印机_1"}, headers=h).json()["total"] == 0


def test_articles_translation_rules(env: Env) -> None:
    h = env.headers("author")
    only_zh = {k: v for k, v in draft_body(unique_word()).items() if k != "en"}
    art = env.client.post(f"{API}/articles", json=only_zh, headers=h).json()
    assert art["en"] is None and art["stale"] == {"zh": False, "en": False}
    no_source = env.client.put(
        f"{API}/articles/{art['article_id']}/translations/zh",
        json={"expected_version": art["version_id"], "variant": {"title": "x"}},
        headers=h,
    )
    assert no_source.status_code == 422 and "no en content" in no_source.json()["detail"]
    added = env.client.put(
        f"{API}/articles/{art['article_id']}/translations/en",
        json={"expected_version": art["version_id"], "variant": {"title": "Printer offline", "resolution": "Restart"}},
        headers=h,
    )
    assert added.status_code == 200, added.text
    assert added.json()["en"]["title"] == "Printer offline" and added.json()["version"] == 2

    # a lone zh edit makes en stale; confirming the unchanged en text as current clears it with a new version
    cur = added.json()
    zh = dict(cur["zh"], resolution="重启服务。")
    edited = env.client.patch(
        f"{API}/articles/{art['article_id']}", json={"expected_version": cur["version_id"], "zh": zh}, headers=h
    ).json()
    assert edited["stale"]["en"] is True
    confirmed = env.client.put(
        f"{API}/articles/{art['article_id']}/translations/en",
        json={"expected_version": edited["version_id"], "variant": edited["en"]},
        headers=h,
    )
    assert confirmed.status_code == 200, confirmed.text
    assert confirmed.json()["version"] == 4 and confirmed.json()["stale"] == {"zh": False, "en": False}
    again = env.client.put(
        f"{API}/articles/{art['article_id']}/translations/en",
        json={"expected_version": confirmed.json()["version_id"], "variant": edited["en"]},
        headers=h,
    )
    assert again.status_code == 422
    assert (
        env.client.put(
            f"{API}/articles/{art['article_id']}/translations/fr",
            json={"expected_version": 1, "variant": {"title": "x"}},
            headers=h,
        ).status_code
        == 422
    )


def test_articles_partner_sees_partner_audience_not_drafts(env: Env) -> None:
    aid = create(env, unique_word())["article_id"]
    assert get(env, aid, "partner").status_code == 404
    assert transition(env, aid, "author", audience="partner").status_code == 200
    assert get(env, aid, "partner").status_code == 404  # still wip: partners never see work in progress
    assert transition(env, aid, "author", confidence="not_validated").status_code == 200
    assert get(env, aid, "partner").json()["audience"] == "partner"
    assert get(env, aid, "customer").status_code == 404
