"""Webhooks against a real receiver: an HTTP server on 127.0.0.1 that records requests and can fail the first N."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api import webhooks
from api.main import create_app
from kb.cli_db import open_database
from kb.config import Settings
from kb.models import Webhook, WebhookDelivery, utcnow
from kb.webhooks import enqueue
from tests.api.conftest import PASSWORD, Env, seed

pytestmark = pytest.mark.integration


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    """A tiny webhook receiver: answers 500 to the first ``fail_first`` requests, then 204."""

    server: ThreadingHTTPServer
    fail_first: int = 0
    requests: list[Received] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hook"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    holder: dict[str, Receiver] = {}

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's naming
            rec = holder["r"]
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            with rec.lock:
                rec.requests.append(Received({k.lower(): v for k, v in self.headers.items()}, body))
                fail = len(rec.requests) <= rec.fail_first
            self.send_response(500 if fail else 204)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    holder["r"] = Receiver(server)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield holder["r"]
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def wenv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    """An app with the webhook sender installed (fast polling, millisecond backoff so retries finish quickly)."""
    tmp = tmp_path_factory.mktemp("webhooks")
    settings = Settings(
        index_dir=tmp / "index",
        database_url=f"sqlite:///{tmp / 'kb.db'}",
        cache_dir=tmp / "cache",
        embed_in_service="off",
    )
    user_ids, org_ids = seed(settings, n_articles=3)
    app = create_app(settings, embedder=None)
    webhooks.install(app, interval=0.05, backoff_scale=0.002)
    webhooks.install(app)  # no second sender (each delivery would then be tried by two threads of one worker)
    with TestClient(app) as client:
        tokens = {}
        for who in ("admin", "engineer", "customer"):
            r = client.post("/api/v1/auth/token", json={"email": f"{who}@test.example", "password": PASSWORD})
            tokens[who] = r.json()["access_token"]
        client.cookies.clear()
        yield Env(app, client, settings, tokens, user_ids, org_ids)


def _subscribe(env: Env, url: str, **extra: Any) -> dict[str, Any]:
    r = env.client.post("/api/v1/webhooks", json={"url": url, **extra}, headers=env.headers("admin"))
    assert r.status_code == 201, r.text
    body: dict[str, Any] = r.json()
    return body


def _emit(env: Env, event: str = "case.created", **data: object) -> None:
    with env.app.state.session_factory.begin() as session:
        enqueue(session, event, data or {"case_id": 1})
    env.app.state.webhook_sender.wake()


def _wait_deliveries(env: Env, hook_id: int, status: str, timeout: float = 10.0) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while True:
        r = env.client.get(f"/api/v1/webhooks/{hook_id}/deliveries", headers=env.headers("admin"))
        assert r.status_code == 200, r.text
        items: list[dict[str, Any]] = r.json()["items"]
        if items and all(d["status"] == status for d in items):
            return items
        if time.monotonic() > deadline:
            raise AssertionError(f"deliveries did not reach {status}: {items}")
        time.sleep(0.05)


def test_delivery_is_signed_with_the_secret_shown_once(wenv: Env, receiver: Receiver) -> None:
    hook = _subscribe(wenv, receiver.url, events=["case.created"])
    try:
        secret = hook["secret"]
        assert len(secret) >= 32
        listed = wenv.client.get("/api/v1/webhooks", headers=wenv.headers("admin")).json()
        assert [h for h in listed if h["id"] == hook["id"]] and all("secret" not in h for h in listed)
        _emit(wenv, "case.created", case_id=42)
        [delivery] = _wait_deliveries(wenv, hook["id"], "delivered")
        assert delivery["attempts"] == 1 and delivery["delivered_at"]
        [req] = receiver.requests
        expected = "sha256=" + hmac.new(secret.encode(), req.body, hashlib.sha256).hexdigest()
        assert hmac.compare_digest(req.headers["x-tackb-signature"], expected)
        forged = "sha256=" + hmac.new(b"another-secret-0000", req.body, hashlib.sha256).hexdigest()
        assert req.headers["x-tackb-signature"] != forged
        assert req.headers["x-tackb-event"] == "case.created"
        assert req.headers["x-tackb-delivery"] == str(delivery["id"])
        assert abs(int(req.headers["x-tackb-timestamp"]) - time.time()) < 60
        body = json.loads(req.body)
        assert body["event"] == "case.created" and body["data"] == {"case_id": 42}
    finally:
        wenv.client.delete(f"/api/v1/webhooks/{hook['id']}", headers=wenv.headers("admin"))


def test_unsubscribed_events_are_not_sent(wenv: Env, receiver: Receiver) -> None:
    hook = _subscribe(wenv, receiver.url, events=["article.published"], secret="s" * 20)
    try:
        assert hook["secret"] == "s" * 20
        _emit(wenv, "case.created")
        _emit(wenv, "article.published", article_id="KB-1")
        [delivery] = _wait_deliveries(wenv, hook["id"], "delivered")
        assert delivery["event"] == "article.published"
        assert [r.headers["x-tackb-event"] for r in receiver.requests] == ["article.published"]
    finally:
        wenv.client.delete(f"/api/v1/webhooks/{hook['id']}", headers=wenv.headers("admin"))


def test_retry_after_a_500_succeeds(wenv: Env, receiver: Receiver) -> None:
    receiver.fail_first = 1
    hook = _subscribe(wenv, receiver.url)
    try:
        _emit(wenv, "case.updated", case_id=7)
        [delivery] = _wait_deliveries(wenv, hook["id"], "delivered")
        assert delivery["attempts"] == 2 and delivery["last_error"].startswith("HTTP 500")
        assert len(receiver.requests) == 2
        assert {r.headers["x-tackb-delivery"] for r in receiver.requests} == {str(delivery["id"])}
        assert receiver.requests[0].body == receiver.requests[1].body
    finally:
        wenv.client.delete(f"/api/v1/webhooks/{hook['id']}", headers=wenv.headers("admin"))


def test_permanent_failure_ends_failed_with_the_last_error(wenv: Env, receiver: Receiver) -> None:
    receiver.fail_first = 1_000
    hook = _subscribe(wenv, receiver.url)
    try:
        _emit(wenv, "case.escalated", case_id=9)
        [delivery] = _wait_deliveries(wenv, hook["id"], "failed", timeout=20)
        assert delivery["attempts"] == webhooks.MAX_ATTEMPTS
        assert delivery["last_error"].startswith("HTTP 500") and delivery["delivered_at"] is None
        assert len(receiver.requests) == webhooks.MAX_ATTEMPTS
        failed = wenv.client.get(
            f"/api/v1/webhooks/{hook['id']}/deliveries", params={"status": "failed"}, headers=wenv.headers("admin")
        ).json()
        assert failed["total"] == 1
    finally:
        wenv.client.delete(f"/api/v1/webhooks/{hook['id']}", headers=wenv.headers("admin"))


def test_unreachable_receiver_counts_as_a_failed_attempt(wenv: Env, receiver: Receiver) -> None:
    url = receiver.url
    receiver.server.shutdown()
    receiver.server.server_close()
    hook = _subscribe(wenv, url)
    try:
        _emit(wenv, "case.assigned", case_id=3)
        [delivery] = _wait_deliveries(wenv, hook["id"], "failed", timeout=20)
        assert delivery["attempts"] == webhooks.MAX_ATTEMPTS and "ConnectError" in delivery["last_error"]
    finally:
        wenv.client.delete(f"/api/v1/webhooks/{hook['id']}", headers=wenv.headers("admin"))


def test_webhook_routes_are_admin_only(wenv: Env) -> None:
    for who in ("engineer", "customer"):
        h = wenv.headers(who)
        assert wenv.client.get("/api/v1/webhooks", headers=h).status_code == 403
        assert wenv.client.post("/api/v1/webhooks", json={"url": "http://127.0.0.1:1/x"}, headers=h).status_code == 403
    assert wenv.client.get("/api/v1/webhooks").status_code == 401


def test_bad_subscriptions_are_422_and_delete_is_final(wenv: Env) -> None:
    h = wenv.headers("admin")
    bad_scheme = wenv.client.post("/api/v1/webhooks", json={"url": "ftp://example.com/x"}, headers=h)
    assert bad_scheme.status_code == 422 and "http" in bad_scheme.json()["detail"]
    bad_event = wenv.client.post(
        "/api/v1/webhooks", json={"url": "https://example.com/x", "events": ["case.eaten"]}, headers=h
    )
    assert bad_event.status_code == 422 and "case.eaten" in bad_event.json()["detail"]
    short = wenv.client.post("/api/v1/webhooks", json={"url": "https://example.com/x", "secret": "short"}, headers=h)
    assert short.status_code == 422
    hook = _subscribe(wenv, "https://example.com/x")
    assert wenv.client.delete(f"/api/v1/webhooks/{hook['id']}", headers=h).status_code == 200
    assert wenv.client.delete(f"/api/v1/webhooks/{hook['id']}", headers=h).status_code == 404
    assert wenv.client.get(f"/api/v1/webhooks/{hook['id']}/deliveries", headers=h).status_code == 404
    assert all(x["id"] != hook["id"] for x in wenv.client.get("/api/v1/webhooks", headers=h).json())


def test_two_senders_never_claim_the_same_row(tmp_path: Path) -> None:
    settings = Settings(index_dir=tmp_path / "i", database_url=f"sqlite:///{tmp_path / 'kb.db'}")
    engine, factory = open_database(settings)
    try:
        with factory.begin() as session:
            session.add(Webhook(url="http://127.0.0.1:9/none", secret="x" * 20, events=[], created_at=utcnow()))
            session.flush()
            assert enqueue(session, "case.created", {"case_id": 1}) == 1
        first, second = webhooks.WebhookSender(factory), webhooks.WebhookSender(factory)
        try:
            assert len(first._claim()) == 1
            assert second._claim() == []  # leased by the first
            with factory() as session:
                [row] = session.query(WebhookDelivery).all()
                assert row.status == "pending" and row.next_at > utcnow()
        finally:
            first.client.close()
            second.client.close()
    finally:
        engine.dispose()


def test_backoff_grows_is_capped_and_jittered() -> None:
    assert 1.5 <= webhooks.backoff(1) <= 2.5
    assert 96 <= webhooks.backoff(7) <= 160
    assert webhooks.backoff(40) <= webhooks.MAX_BACKOFF
    assert len({round(webhooks.backoff(3), 6) for _ in range(20)}) > 1
    with pytest.raises(ValueError):
        webhooks.backoff(0)
