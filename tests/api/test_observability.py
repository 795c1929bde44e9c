"""GET /metrics (Prometheus text) and the JSON access log (logger ``kb.access``)."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from api import observability
from api.main import create_app
from kb.config import Settings
from kb.models import Webhook, utcnow
from kb.webhooks import enqueue
from tests.api.conftest import PASSWORD, Env, seed

pytestmark = pytest.mark.integration

N_ARTICLES = 12


@pytest.fixture(scope="module")
def oenv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    tmp = tmp_path_factory.mktemp("obs")
    settings = Settings(index_dir=tmp / "index", database_url=f"sqlite:///{tmp / 'kb.db'}", cache_dir=tmp / "cache")
    user_ids, org_ids = seed(settings, n_articles=N_ARTICLES)
    app = create_app(settings, embedder=None)
    observability.install(app)  # no webhook sender: queued deliveries stay pending
    observability.install(app)  # a second install must not count or log requests twice
    with TestClient(app) as client:
        tokens = {}
        for who in ("engineer", "customer"):
            r = client.post("/api/v1/auth/token", json={"email": f"{who}@test.example", "password": PASSWORD})
            tokens[who] = r.json()["access_token"]
        client.cookies.clear()
        yield Env(app, client, settings, tokens, user_ids, org_ids)


def samples(env: Env) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    r = env.client.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    out: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for family in text_string_to_metric_families(r.text):
        for s in family.samples:
            labels = tuple(sorted((k, v) for k, v in s.labels.items() if k != "pid"))
            out[(s.name, labels)] = s.value
    return out


def request_count(snapshot: dict[tuple[str, tuple[tuple[str, str], ...]], float], route: str, status: str) -> float:
    key = ("kb_http_request_duration_seconds_count", (("method", "GET"), ("route", route), ("status", status)))
    return snapshot.get(key, 0.0)


def test_request_histogram_counts_by_route_template_and_status(oenv: Env) -> None:
    before = samples(oenv)
    h = oenv.headers("engineer")
    for _ in range(3):
        assert oenv.client.get("/api/v1/search", params={"q": "outlook"}, headers=h).status_code == 200
    assert oenv.client.get("/api/v1/webhooks/12345/deliveries", headers=h).status_code == 403
    assert oenv.client.get("/api/v1/search", params={"q": "outlook"}).status_code == 401
    assert oenv.client.get("/no/such/path/abc").status_code == 404
    after = samples(oenv)
    assert request_count(after, "/api/v1/search", "200") - request_count(before, "/api/v1/search", "200") == 3
    assert request_count(after, "/api/v1/search", "401") - request_count(before, "/api/v1/search", "401") == 1
    deliveries = "/api/v1/webhooks/{webhook_id}/deliveries"
    assert request_count(after, deliveries, "403") - request_count(before, deliveries, "403") == 1
    assert request_count(after, "unmatched", "404") - request_count(before, "unmatched", "404") == 1
    assert not any("12345" in dict(labels).get("route", "") for _, labels in after)
    search_key = ("kb_search_duration_seconds_count", (("route", "search"),))
    assert after[search_key] - before.get(search_key, 0.0) == 4  # the 401 is timed too
    bucket = ("kb_search_duration_seconds_bucket", (("le", "+Inf"), ("route", "search")))
    assert after[bucket] == after[search_key]


def test_assistant_answers_are_counted_and_timed(oenv: Env) -> None:
    before = samples(oenv)
    h = oenv.headers("customer")
    for question in ("What is the capital of France?", "How do I bake sourdough bread?"):
        r = oenv.client.post("/api/v1/assistant/answer", json={"question": question}, headers=h)
        assert r.status_code == 200 and r.json()["status"] == "abstained"
    after = samples(oenv)
    key = ("kb_assistant_answers_total", (("fallback", "no"), ("generator", "extractive"), ("status", "abstained")))
    assert after[key] - before.get(key, 0.0) == 2
    timed = ("kb_search_duration_seconds_count", (("route", "assistant_answer"),))
    assert after[timed] - before.get(timed, 0.0) == 2


def test_gauges_report_index_outbox_and_pending_webhooks(oenv: Env) -> None:
    with oenv.app.state.session_factory.begin() as session:
        session.add(Webhook(url="http://127.0.0.1:9/none", secret="x" * 20, events=[], created_at=utcnow()))
        session.flush()
        assert enqueue(session, "case.created", {"case_id": 1}) == 1
        assert enqueue(session, "case.updated", {"case_id": 1}) == 1
    snap = samples(oenv)
    assert snap[("kb_index_documents", ())] == N_ARTICLES
    assert snap[("kb_webhook_pending", ())] == 2
    assert snap[("kb_outbox_lag", ())] == oenv.app.state.live.status().outbox_lag
    assert snap[("kb_index_generation", ())] == observability.generation_number(oenv.app.state.live.status().generation)
    assert snap[("kb_index_generation", ())] >= 1


def test_generation_number() -> None:
    assert observability.generation_number("gen-000012") == 12
    assert observability.generation_number(None) == 0


def test_access_log_has_one_json_line_per_request_without_query_text(
    oenv: Env, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="kb.access")
    secret_query = "zebra-confidential-customer-words"
    r = oenv.client.get(
        "/api/v1/search",
        params={"q": secret_query},
        headers={**oenv.headers("customer"), "X-Request-ID": "trace-abc_123"},
    )
    assert r.status_code == 200 and r.headers["x-request-id"] == "trace-abc_123"
    anon = oenv.client.get("/api/v1/health", headers={"X-Request-ID": "bad id with spaces"})
    generated = anon.headers["x-request-id"]
    assert generated != "bad id with spaces" and len(generated) == 32
    lines = [rec.getMessage() for rec in caplog.records if rec.name == "kb.access"]
    assert len(lines) == 2
    first, second = (json.loads(line) for line in lines)
    assert first["method"] == "GET" and first["route"] == "/api/v1/search" and first["status"] == 200
    assert first["user"] == str(oenv.user_ids["customer"]) and first["request_id"] == "trace-abc_123"
    assert isinstance(first["duration_ms"], float) and first["duration_ms"] > 0
    assert second["route"] == "/api/v1/health" and second["user"] == "-" and second["request_id"] == generated
    assert all(secret_query not in line and "zebra" not in line for line in lines)
    assert all("zebra" not in rec.getMessage() for rec in caplog.records)
