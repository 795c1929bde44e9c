"""The webhook sender: a background thread per worker that delivers ``kb.models.WebhookDelivery`` rows.

Rows are written by ``kb.webhooks.enqueue`` in the transaction of the change they report. Each worker polls for
due rows (``status = 'pending' AND next_at <= now``) and claims one with a conditional UPDATE that moves
``next_at`` forward by a lease: ``UPDATE ... SET next_at = now + lease WHERE id = ? AND next_at = <old>``. Only
the worker whose UPDATE matched a row (rowcount 1) sends it, so several workers never send the same row at
once; a worker that dies mid-send leaves the row to be retried when the lease runs out (at-least-once).

A request is a POST of the JSON payload (timeout 5 s) with the headers ``X-TacKB-Event``, ``X-TacKB-Delivery``
(the row id), ``X-TacKB-Timestamp`` (Unix seconds) and ``X-TacKB-Signature: sha256=<hex>``, the HMAC-SHA256 of
the raw body with the webhook's secret. A 2xx answer marks the row delivered; anything else (or a timeout)
counts an attempt and schedules a retry after ``scale * 2**attempts`` seconds (capped at one hour, +-25 %
jitter); after ``MAX_ATTEMPTS`` the row is ``failed`` and keeps its last error.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import random
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

import httpx
from fastapi import FastAPI
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session, sessionmaker

from kb.models import Webhook, WebhookDelivery, utcnow

MAX_ATTEMPTS: Final = 8
MAX_BACKOFF: Final = 3600.0
TIMEOUT: Final = 5.0
LEASE: Final = 60.0
"""Seconds a claimed row stays invisible to other workers (well above the request timeout)."""

log = logging.getLogger("kb.webhooks")


def sign(secret: str, body: bytes) -> str:
    """The ``X-TacKB-Signature`` value of ``body``."""
    return "sha256=" + hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


def encode_payload(payload: dict[str, object]) -> bytes:
    """The raw body sent (and signed): compact JSON, UTF-8."""
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":"), sort_keys=True).encode("utf-8")


def backoff(attempts: int, scale: float = 1.0, rng: random.Random | None = None) -> float:
    """Seconds before the next try after ``attempts`` failed ones: ``scale * 2**attempts``, capped, with jitter."""
    if attempts < 1:
        raise ValueError(f"attempts must be at least 1, not {attempts}")
    base = min(MAX_BACKOFF, scale * 2.0 ** min(attempts, 30))
    return min(MAX_BACKOFF, base * (rng or random).uniform(0.75, 1.25))


def pending_count(session: Session) -> int:
    """Deliveries not yet delivered or given up (the ``/metrics`` gauge)."""
    q = select(func.count()).select_from(WebhookDelivery).where(WebhookDelivery.status == "pending")
    return int(session.scalar(q) or 0)


@dataclass(frozen=True, slots=True)
class _Claimed:
    id: int
    event: str
    payload: dict[str, object]
    attempts: int
    url: str
    secret: str
    active: bool
    lease_until: datetime


class WebhookSender:
    """Delivers due rows; ``run_once()`` does one pass (tests call it), ``start()`` runs passes in a thread."""

    def __init__(
        self,
        factory: sessionmaker[Session],
        *,
        interval: float = 1.0,
        backoff_scale: float = 1.0,
        batch: int = 20,
        client: httpx.Client | None = None,
    ) -> None:
        self.factory = factory
        self.interval = interval
        self.backoff_scale = backoff_scale
        self.batch = batch
        self.client = client or httpx.Client(timeout=TIMEOUT, follow_redirects=False)
        self.errors = 0
        self.sent = 0
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # ---- one pass ---------------------------------------------------------------------------------
    def _claim(self) -> list[_Claimed]:
        now = utcnow()
        lease_until = now + timedelta(seconds=LEASE)
        claimed: list[_Claimed] = []
        with self.factory() as session:
            rows = session.execute(
                select(WebhookDelivery.id, WebhookDelivery.next_at)
                .where(WebhookDelivery.status == "pending", WebhookDelivery.next_at <= now)
                .order_by(WebhookDelivery.next_at, WebhookDelivery.id)
                .limit(self.batch)
            ).all()
        for delivery_id, old_next_at in rows:
            with self.factory.begin() as session:
                result = session.execute(
                    update(WebhookDelivery)
                    .where(
                        WebhookDelivery.id == delivery_id,
                        WebhookDelivery.next_at == old_next_at,
                        WebhookDelivery.status == "pending",
                    )
                    .values(next_at=lease_until)
                    .execution_options(synchronize_session=False)
                )
                if getattr(result, "rowcount", 0) != 1:
                    continue  # another worker claimed it first
                row = session.execute(
                    select(WebhookDelivery, Webhook)
                    .join(Webhook, Webhook.id == WebhookDelivery.webhook_id)
                    .where(WebhookDelivery.id == delivery_id)
                ).one()
                d, hook = row
                claimed.append(
                    _Claimed(
                        d.id, d.event, dict(d.payload), d.attempts, hook.url, hook.secret, hook.active, lease_until
                    )
                )
        return claimed

    def _send(self, item: _Claimed) -> str | None:
        """POST one delivery; None on a 2xx, else the error kept in ``last_error``."""
        if not item.active:
            return "webhook deleted"
        body = encode_payload(item.payload)
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "tac-kb-webhooks/1",
            "X-TacKB-Event": item.event,
            "X-TacKB-Delivery": str(item.id),
            "X-TacKB-Timestamp": str(int(time.time())),
            "X-TacKB-Signature": sign(item.secret, body),
        }
        try:
            response = self.client.post(item.url, content=body, headers=headers)
        except httpx.HTTPError as exc:
            return f"{type(exc).__name__}: {exc}"[:1000]
        if 200 <= response.status_code < 300:
            return None
        return f"HTTP {response.status_code}: {response.text[:200]}"

    def _record(self, item: _Claimed, error: str | None) -> None:
        now = utcnow()
        attempts = item.attempts + 1
        if error is None:
            values: dict[str, object] = {"status": "delivered", "attempts": attempts, "delivered_at": now}
        elif item.active and attempts < MAX_ATTEMPTS:
            delay = backoff(attempts, self.backoff_scale)
            values = {"attempts": attempts, "last_error": error, "next_at": now + timedelta(seconds=delay)}
        else:
            values = {"status": "failed", "attempts": attempts, "last_error": error}
        with self.factory.begin() as session:
            # Only while we still hold the lease: a row re-claimed after an expired lease belongs to that worker.
            session.execute(
                update(WebhookDelivery)
                .where(WebhookDelivery.id == item.id, WebhookDelivery.next_at == item.lease_until)
                .values(**values)
                .execution_options(synchronize_session=False)
            )

    def run_once(self) -> int:
        """Claim and send the due rows of one batch; returns how many were attempted."""
        claimed = self._claim()
        for item in claimed:
            error = self._send(item)
            self._record(item, error)
            if error is None:
                self.sent += 1
            else:
                log.info("webhook delivery %s failed: %s", item.id, error)
        return len(claimed)

    # ---- the thread -------------------------------------------------------------------------------
    def wake(self) -> None:
        """Look for due rows now (called after a commit that may have queued events)."""
        self._wake.set()

    def start(self) -> None:
        if self._thread is not None:
            return

        def loop() -> None:
            while not self._stop.is_set():
                self._wake.clear()
                try:
                    full = self.run_once() >= self.batch
                except Exception:  # noqa: BLE001 - a database hiccup: counted, retried next pass
                    self.errors += 1
                    log.exception("webhook sender pass failed")
                    full = False
                if not full:
                    self._wake.wait(self.interval)

        self._thread = threading.Thread(target=loop, name="kb-webhooks", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=TIMEOUT + 5)
            self._thread = None
        self.client.close()


def install(app: FastAPI, *, interval: float = 1.0, backoff_scale: float = 1.0) -> None:
    """Run a ``WebhookSender`` in every worker of ``app`` (started and stopped by the lifespan); it is also
    woken after each request's commit. The running sender is ``app.state.webhook_sender``. Installing twice
    is a no-op (``create_app`` and ``kb serve``'s factory may both call it)."""
    if getattr(app.state, "webhooks_installed", False):
        return
    app.state.webhooks_installed = True

    def start(app: FastAPI) -> None:
        sender = WebhookSender(app.state.session_factory, interval=interval, backoff_scale=backoff_scale)
        app.state.webhook_sender = sender
        app.state.after_commit.append(sender.wake)
        sender.start()

    def stop(app: FastAPI) -> None:
        sender: WebhookSender | None = getattr(app.state, "webhook_sender", None)
        if sender is not None:
            sender.stop()

    app.state.on_start.append(start)
    app.state.on_stop.append(stop)
