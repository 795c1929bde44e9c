"""Metrics and access logs: ``install(app)`` adds ``GET /metrics`` (Prometheus text format) and one JSON log line
per request on the logger ``kb.access``.

Metrics:
- ``kb_http_request_duration_seconds{method, route, status}``: histogram by route *template* (``/api/v1/cases/
  {case_id}``, never the concrete path; unmatched paths share the label ``unmatched``, so labels stay bounded);
- ``kb_search_duration_seconds{route}``: histogram of the search and suggestion requests;
- ``kb_index_generation``, ``kb_index_documents``, ``kb_outbox_lag`` (rows committed but not yet in a saved
  generation, from ``app.state.live.status()``), ``kb_webhook_pending``: gauges read when scraped.

With several worker processes (``kb serve --workers N``) the histograms go through prometheus_client's
multiprocess mode when ``PROMETHEUS_MULTIPROC_DIR`` is set (before the workers import prometheus_client, which
``kb serve`` does), so a scrape answered by any worker reports the sum over all of them; the gauges are read at
scrape time by the answering worker.

The access log line holds the method, route template, status, duration, user id (or ``-``) and a request id
(``X-Request-ID`` from the client when it is a short token, else generated; echoed in the response). It never
holds the query string, the concrete path or a body: customers' search text stays out of the logs.
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
import uuid
from collections.abc import Iterable
from typing import Final

from fastapi import FastAPI, Request
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.webhooks import pending_count

access_log = logging.getLogger("kb.access")

SEARCH_ROUTES: Final = frozenset(
    {"/api/v1/search", "/api/v1/suggest", "/api/v1/assistant/answer", "/api/v1/assistant/stream"}
)
BUCKETS: Final = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 10.0)
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


class _Histograms:
    """Process-wide histograms (created once: prometheus_client refuses a name registered twice)."""

    def __init__(self) -> None:
        # In multiprocess mode values go to files in PROMETHEUS_MULTIPROC_DIR and are collected from there; the
        # registry below is then unused for them. Single-process: this private registry is what /metrics reads.
        self.registry = CollectorRegistry()
        self.requests = Histogram(
            "kb_http_request_duration_seconds",
            "HTTP request latency by route template and status",
            ["method", "route", "status"],
            buckets=BUCKETS,
            registry=self.registry,
        )
        self.search = Histogram(
            "kb_search_duration_seconds",
            "Latency of search, suggestion and assistant requests",
            ["route"],
            buckets=BUCKETS,
            registry=self.registry,
        )
        self.answers = Counter(
            "kb_assistant_answers_total",
            "Assistant answers by outcome (answered / abstained), generator, and whether it fell back",
            ["status", "generator", "fallback"],
            registry=self.registry,
        )
        self.answer_repairs = Counter(
            "kb_assistant_repairs_total",
            "Citations removed, links removed and sentences dropped by the assistant's verification",
            ["kind"],
            registry=self.registry,
        )


_histograms: _Histograms | None = None


def histograms() -> _Histograms:
    global _histograms
    if _histograms is None:
        _histograms = _Histograms()
    return _histograms


def generation_number(name: str | None) -> int:
    """``gen-000012`` -> 12 (0 before the first generation)."""
    digits = re.sub(r"\D", "", name or "")
    return int(digits) if digits else 0


class _LiveGauges(Collector):
    """Gauges read from this worker's app when scraped."""

    def __init__(self, app: FastAPI) -> None:
        self.app = app

    def collect(self) -> Iterable[Metric]:
        status = self.app.state.live.status()
        with self.app.state.read_factory() as session:
            pending = pending_count(session)
        pid = str(os.getpid())
        values = (
            (
                "kb_index_generation",
                "Index generation loaded by the worker answering",
                generation_number(status.generation),
            ),
            ("kb_index_documents", "Documents in the worker's search index", status.documents),
            ("kb_outbox_lag", "Outbox rows committed but not yet in a saved index generation", status.outbox_lag),
            ("kb_webhook_pending", "Webhook deliveries waiting to be sent or retried", pending),
        )
        for name, doc, value in values:
            family = GaugeMetricFamily(name, doc, labels=["pid"])
            family.add_metric([pid], float(value))
            yield family


def render_metrics(app: FastAPI) -> bytes:
    """The exposition text: histograms (merged over workers in multiprocess mode) and this worker's gauges."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        merged = CollectorRegistry()
        MultiProcessCollector(merged)  # type: ignore[no-untyped-call]
        text = generate_latest(merged)
    else:
        text = generate_latest(histograms().registry)
    live = CollectorRegistry()
    live.register(_LiveGauges(app))
    return text + generate_latest(live)


def _route_template(scope: Scope) -> str:
    # Recent FastAPI keeps the prefixed template of an included router's route in scope["fastapi"]
    # ["effective_route_context"] (scope["route"] then holds the router-relative path); older versions put the
    # full template on scope["route"].
    fastapi_scope = scope.get("fastapi")
    context = fastapi_scope.get("effective_route_context") if isinstance(fastapi_scope, dict) else None
    for holder in (context, scope.get("route")):
        path = getattr(holder, "path_format", None)
        if path:
            return str(path)
    return "unmatched"


def _user(scope: Scope) -> str:
    state = scope.get("state")
    principal = state.get("principal") if isinstance(state, dict) else None
    user_id = getattr(principal, "user_id", None)
    return str(user_id) if user_id is not None else "-"


def _request_id(scope: Scope) -> str:
    for name, value in scope.get("headers", []):
        if name == b"x-request-id":
            candidate = value.decode("latin-1")
            if _REQUEST_ID.match(candidate):
                return str(candidate)
    return uuid.uuid4().hex


class AccessMiddleware:
    """Times every HTTP request, observes the histograms and writes the access line (pure ASGI: no body buffering)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        request_id = _request_id(scope)
        status = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
                message["headers"] = [*message.get("headers", []), (b"x-request-id", request_id.encode())]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            elapsed = time.perf_counter() - start
            route = _route_template(scope)
            h = histograms()
            h.requests.labels(scope.get("method", ""), route, str(status)).observe(elapsed)
            if route in SEARCH_ROUTES:
                h.search.labels(route.removeprefix("/api/v1/").replace("/", "_")).observe(elapsed)
            if access_log.isEnabledFor(logging.INFO):
                access_log.info(
                    json.dumps(
                        {
                            "method": scope.get("method", ""),
                            "route": route,
                            "status": status,
                            "duration_ms": round(elapsed * 1000, 2),
                            "user": _user(scope),
                            "request_id": request_id,
                            "pid": os.getpid(),
                        },
                        separators=(",", ":"),
                    )
                )


def install(app: FastAPI) -> None:
    """Add ``GET /metrics`` (at the root, not under /api/v1: for the operator's scraper) and the access middleware.
    Installing twice is a no-op (requests would otherwise be counted and logged twice)."""
    if getattr(app.state, "observability_installed", False):
        return
    app.state.observability_installed = True
    histograms()

    def metrics(request: Request) -> Response:
        return Response(render_metrics(request.app), media_type=CONTENT_TYPE_LATEST)

    app.add_api_route("/metrics", metrics, methods=["GET"], include_in_schema=False)
    app.add_middleware(AccessMiddleware)
