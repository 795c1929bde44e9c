"""Webhook subscriptions (admins): register a URL for events, list, delete, and read its delivery log.

The secret signs every delivery (``X-TacKB-Signature``, see ``api.webhooks``); it is shown once, in the answer
to the POST that created the webhook (generated when none is given), and never again.
"""

from __future__ import annotations

import secrets
from datetime import datetime
from typing import Literal
from urllib.parse import urlsplit

from fastapi import APIRouter
from pydantic import BaseModel, Field
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from api.deps import AdminDep, ReadDB, UnitDep
from api.schemas import IdPath, Limit, Message, Offset, Page, StrictIn
from kb.errors import NotFound
from kb.models import Webhook, WebhookDelivery, utcnow
from kb.webhooks import EVENTS

router = APIRouter(prefix="/webhooks", tags=["webhooks"])


class WebhookCreate(StrictIn):
    url: str = Field(min_length=8, max_length=1000, description="http:// or https:// URL that receives POSTs")
    events: list[str] = Field(default_factory=list, max_length=len(EVENTS), description="empty: every event")
    secret: str | None = Field(default=None, min_length=16, max_length=200, description="generated when absent")


class WebhookOut(BaseModel):
    id: int
    url: str
    events: list[str]
    active: bool
    created_at: datetime


class WebhookCreatedOut(WebhookOut):
    secret: str = Field(description="shown only in this answer")


class DeliveryOut(BaseModel):
    id: int
    event: str
    status: str
    attempts: int
    next_at: datetime
    last_error: str
    created_at: datetime
    delivered_at: datetime | None
    payload: dict[str, object]


class WebhookNotFound(NotFound):
    def __init__(self, webhook_id: int) -> None:
        super().__init__(f"webhook {webhook_id} not found")
        self.webhook_id = webhook_id


def _check_url(url: str) -> str:
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"webhook url must be an http:// or https:// URL with a host, not {url!r}")
    return url.strip()


def _check_events(events: list[str]) -> list[str]:
    unknown = sorted(set(events) - EVENTS)
    if unknown:
        raise ValueError(f"unknown events {unknown}; known: {sorted(EVENTS)}")
    return sorted(set(events))


def _out(hook: Webhook) -> WebhookOut:
    return WebhookOut(
        id=hook.id, url=hook.url, events=list(hook.events), active=hook.active, created_at=hook.created_at
    )


def _active(session: Session, webhook_id: int) -> Webhook:
    hook = session.get(Webhook, webhook_id)
    if hook is None or not hook.active:
        raise WebhookNotFound(webhook_id)
    return hook


@router.post("", response_model=WebhookCreatedOut, status_code=201, summary="Subscribe a URL to events")
def create_webhook(body: WebhookCreate, admin: AdminDep, unit: UnitDep) -> WebhookCreatedOut:
    url = _check_url(body.url)
    events = _check_events(body.events)
    secret = body.secret or secrets.token_urlsafe(32)
    with unit.transaction() as session:
        hook = Webhook(url=url, secret=secret, events=events, active=True, created_at=utcnow())
        session.add(hook)
        session.flush()
        out = _out(hook)
    return WebhookCreatedOut(**out.model_dump(), secret=secret)


@router.get("", response_model=list[WebhookOut], summary="Active webhooks (secrets are not shown)")
def list_webhooks(admin: AdminDep, session: ReadDB) -> list[WebhookOut]:
    hooks = session.scalars(select(Webhook).where(Webhook.active.is_(True)).order_by(Webhook.id))
    return [_out(h) for h in hooks]


@router.delete("/{webhook_id}", response_model=Message, summary="Unsubscribe; pending deliveries are dropped")
def delete_webhook(webhook_id: IdPath, admin: AdminDep, unit: UnitDep) -> Message:
    with unit.transaction() as session:
        hook = _active(session, webhook_id)
        hook.active = False
        session.execute(
            update(WebhookDelivery)
            .where(WebhookDelivery.webhook_id == webhook_id, WebhookDelivery.status == "pending")
            .values(status="failed", last_error="webhook deleted")
            .execution_options(synchronize_session=False)
        )
    return Message(status="deleted")


@router.get("/{webhook_id}/deliveries", response_model=Page[DeliveryOut], summary="Delivery log, newest first")
def list_deliveries(
    webhook_id: IdPath,
    admin: AdminDep,
    session: ReadDB,
    status: Literal["pending", "delivered", "failed"] | None = None,
    offset: Offset = 0,
    limit: Limit = 20,
) -> Page[DeliveryOut]:
    _active(session, webhook_id)
    where = [WebhookDelivery.webhook_id == webhook_id]
    if status is not None:
        where.append(WebhookDelivery.status == status)
    total = int(session.scalar(select(func.count()).select_from(WebhookDelivery).where(*where)) or 0)
    rows = session.scalars(
        select(WebhookDelivery).where(*where).order_by(WebhookDelivery.id.desc()).offset(offset).limit(limit)
    )
    items = [
        DeliveryOut(
            id=d.id,
            event=d.event,
            status=d.status,
            attempts=d.attempts,
            next_at=d.next_at,
            last_error=d.last_error,
            created_at=d.created_at,
            delivered_at=d.delivered_at,
            payload=dict(d.payload),
        )
        for d in rows
    ]
    return Page[DeliveryOut](items=items, total=total, offset=offset, limit=limit)
