"""Webhook events, written in the same transaction as the change they report (an outbox per subscriber).

``enqueue(session, "case.state_changed", {...})`` adds one ``WebhookDelivery`` row for every active webhook
that subscribed to the event (an empty subscription list means every event). The sender (``api.webhooks``)
delivers pending rows with an HMAC-SHA256 signature and retries failures with backoff; a rolled-back change
leaves no event behind, and a committed one is delivered even if the process dies before sending it.

Events: ``case.created``, ``case.state_changed``, ``case.escalated``, ``case.assigned``, ``case.updated``,
``article.created``, ``article.updated``, ``article.state_changed``, ``article.published``, ``article.archived``.
Payloads carry ids, states and versions, not case text: a subscriber fetches details through the API.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Final

from sqlalchemy import select
from sqlalchemy.orm import Session

from kb.models import Webhook, WebhookDelivery, utcnow

EVENTS: Final = frozenset(
    {
        "case.created",
        "case.state_changed",
        "case.escalated",
        "case.assigned",
        "case.updated",
        "article.created",
        "article.updated",
        "article.state_changed",
        "article.published",
        "article.archived",
    }
)


def enqueue(session: Session, event: str, payload: Mapping[str, object], *, at: datetime | None = None) -> int:
    """Queue ``event`` for every subscribed active webhook (flushes, does not commit); returns how many."""
    if event not in EVENTS:
        raise ValueError(f"unknown webhook event {event!r}")
    at = at or utcnow()
    body = {"event": event, "at": at.isoformat(), "data": dict(payload)}
    count = 0
    for hook in session.scalars(select(Webhook).where(Webhook.active.is_(True))):
        if hook.events and event not in hook.events:
            continue
        session.add(
            WebhookDelivery(
                webhook_id=hook.id,
                event=event,
                payload=body,
                status="pending",
                attempts=0,
                next_at=at,
                last_error="",
                created_at=at,
            )
        )
        count += 1
    if count:
        session.flush()
    return count
