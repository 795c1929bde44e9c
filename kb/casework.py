"""Case work above the repository: opening, moving, assigning and editing cases with their webhook events, the
staff queue ordered by SLA risk, and every read through the caller's access clause.

Functions take the Session first and flush, never commit. Each change writes its timeline entry, the search
outbox row and the webhook deliveries (``kb.webhooks.enqueue``) in the caller's transaction, so a rolled-back
change leaves no event behind. Reads apply ``kb.access.case_clause`` inside the SQL: another organisation's case
raises ``CaseNotFound`` exactly as a missing one.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Final

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from kb import webhooks
from kb.access import Principal, case_clause
from kb.errors import CaseNotFound, ConcurrentUpdate, InvalidTransition, PermissionDenied
from kb.lifecycle import (
    CASE_TRANSITIONS,
    DEFAULT_POLICY,
    CaseState,
    Channel,
    EscalationLevel,
    Priority,
    SlaPolicy,
    SlaStatus,
    sla_status,
)
from kb.models import Case, CaseEvent, EventKind, User, utcnow
from kb.repository import create_case, escalate_case, flush_locked, transition_case, write_outbox

OPEN_STATES: Final = frozenset(CaseState) - {CaseState.RESOLVED, CaseState.CLOSED}
QUEUE_SCAN: Final = 5_000  # the staff queue sorts at most this many rows by SLA risk (oldest first beyond it)
SLA_RANK: Final[Mapping[str, int]] = {"breached": 0, "at_risk": 1, "ok": 2, "paused": 3, "met": 4}
PRIORITY_RANK: Final[Mapping[Priority, int]] = {p: i for i, p in enumerate(Priority)}
EDITABLE: Final = ("priority", "severity", "product", "version", "group_name", "resolution")
# Customers may only confirm a fix (close) or say it did not work (reopen).
_CUSTOMER_MOVES: Final[Mapping[CaseState, frozenset[CaseState]]] = {
    CaseState.RESOLVED: frozenset({CaseState.CLOSED, CaseState.IN_PROGRESS}),
    CaseState.CLOSED: frozenset({CaseState.IN_PROGRESS}),
}


def _payload(case: Case, **extra: object) -> dict[str, object]:
    """Webhook payload: ids, state and lock version, no case text (a subscriber fetches details)."""
    return {"case_id": case.id, "org_id": case.org_id, "state": str(case.state), "version_id": case.version_id, **extra}


def visible_case(session: Session, principal: Principal, case_id: int) -> Case:
    """The case ``case_id`` if ``principal`` may see it (access clause in the SQL), else ``CaseNotFound``."""
    case = session.scalars(select(Case).where(Case.id == case_id, case_clause(principal))).one_or_none()
    if case is None:
        raise CaseNotFound(case_id)
    return case


def allowed_moves(principal: Principal, state: CaseState) -> frozenset[CaseState]:
    """The states ``principal`` may move a case in ``state`` to (customers: close or reopen only)."""
    if principal.is_staff:
        return CASE_TRANSITIONS[state]
    return _CUSTOMER_MOVES.get(state, frozenset())


def open_case(
    session: Session,
    principal: Principal,
    *,
    org_id: int,
    contact_name: str,
    contact_email: str,
    channel: Channel,
    product: str,
    subject: str,
    lang: str,
    priority: Priority,
    description: str = "",
    version: str = "",
    severity: int = 3,
    at: datetime | None = None,
) -> Case:
    """Open a case (``kb.repository.create_case``) and queue ``case.created``; customers only for their org."""
    if not principal.is_staff and org_id != principal.org_id:
        raise PermissionDenied(principal.role, "open a case for another organisation")
    at = at or utcnow()
    case = create_case(
        session,
        org_id=org_id,
        contact_name=contact_name,
        contact_email=contact_email,
        channel=channel,
        product=product,
        subject=subject,
        lang=lang,
        priority=priority,
        description=description,
        version=version,
        severity=severity,
        author_id=principal.user_id,
        at=at,
    )
    webhooks.enqueue(session, "case.created", _payload(case, priority=str(case.priority)), at=at)
    return case


def move_case(
    session: Session,
    principal: Principal,
    case_id: int,
    target: CaseState,
    *,
    expected_version: int,
    note: str = "",
    at: datetime | None = None,
) -> Case:
    """Move the case to ``target`` as ``principal`` may (``allowed_moves``); queue ``case.state_changed``.

    Raises ``InvalidTransition`` listing the allowed targets, ``ConcurrentUpdate`` on a stale version.
    """
    at = at or utcnow()
    case = visible_case(session, principal, case_id)
    if case.version_id != expected_version:
        raise ConcurrentUpdate("case", case.id, expected_version, case.version_id)
    current = case.state
    allowed = allowed_moves(principal, current)
    if target not in allowed:
        raise InvalidTransition(current, target, kind="case", allowed=allowed)
    transition_case(session, case.id, target, principal.user_id, expected_version=expected_version, text=note, at=at)
    webhooks.enqueue(session, "case.state_changed", _payload(case, from_state=str(current)), at=at)
    return case


def escalate(
    session: Session,
    principal: Principal,
    case_id: int,
    level: EscalationLevel,
    *,
    expected_version: int,
    note: str,
    at: datetime | None = None,
) -> Case:
    """Raise the escalation level (staff); queue ``case.escalated`` (and ``case.state_changed`` when the case
    moved to ``escalated`` with it)."""
    at = at or utcnow()
    case = visible_case(session, principal, case_id)
    before = case.state
    escalate_case(session, case.id, level, principal.user_id, expected_version=expected_version, text=note, at=at)
    if case.state != before:
        webhooks.enqueue(session, "case.state_changed", _payload(case, from_state=str(before)), at=at)
    webhooks.enqueue(session, "case.escalated", _payload(case, level=str(level)), at=at)
    return case


def _tail(session: Session, case: Case, text: str, actor_id: int | None, expected_version: int, at: datetime) -> None:
    """Internal timeline entry, outbox row and the optimistic-lock flush of a field change."""
    case.updated_at = at
    session.add(CaseEvent(case_id=case.id, kind=EventKind.NOTE_INTERNAL, author_id=actor_id, at=at, text=text,
                          internal=True))  # fmt: skip
    write_outbox(session, "case", case.id, "upsert", at)
    flush_locked(session, "case", case.id, expected_version)


def assign_case(
    session: Session,
    principal: Principal,
    case_id: int,
    assignee_id: int,
    *,
    expected_version: int,
    group_name: str | None = None,
    at: datetime | None = None,
) -> Case:
    """Assign the case to an active staff user (and optionally a group); queue ``case.assigned``.

    Raises ``ValueError`` when the assignee is unknown, inactive or not staff.
    """
    at = at or utcnow()
    case = visible_case(session, principal, case_id)
    if case.version_id != expected_version:
        raise ConcurrentUpdate("case", case.id, expected_version, case.version_id)
    assignee = session.get(User, assignee_id)
    if assignee is None or not assignee.active or assignee.org_id is not None:
        raise ValueError(f"user {assignee_id} is not an active support engineer")
    case.assignee_id = assignee.id
    if group_name is not None:
        case.group_name = group_name
    text = f"assigned to {assignee.name}" + (f" ({group_name})" if group_name else "")
    _tail(session, case, text, principal.user_id, expected_version, at)
    payload = _payload(case, assignee_id=assignee.id, group_name=case.group_name)
    webhooks.enqueue(session, "case.assigned", payload, at=at)
    return case


def update_case(
    session: Session,
    principal: Principal,
    case_id: int,
    changes: Mapping[str, object],
    *,
    expected_version: int,
    at: datetime | None = None,
) -> Case:
    """Change the ``EDITABLE`` fields in ``changes`` (staff); an internal timeline entry names what changed, the
    outbox gets an upsert, ``case.updated`` is queued. Raises ``ValueError`` for other fields or no change."""
    at = at or utcnow()
    unknown = sorted(set(changes) - set(EDITABLE))
    if unknown:
        raise ValueError(f"these case fields cannot be edited: {', '.join(unknown)}")
    case = visible_case(session, principal, case_id)
    if case.version_id != expected_version:
        raise ConcurrentUpdate("case", case.id, expected_version, case.version_id)
    changed = [name for name, value in changes.items() if getattr(case, name) != value]
    if not changed:
        raise ValueError(f"the update of case {case_id} changes nothing")
    parts = []
    for name in changed:
        old, new = getattr(case, name), changes[name]
        setattr(case, name, new)
        short = name in ("priority", "severity", "product", "version", "group_name")
        parts.append(f"{name}: {old} -> {new}" if short else f"{name} changed")
    _tail(session, case, "; ".join(parts), principal.user_id, expected_version, at)
    webhooks.enqueue(session, "case.updated", _payload(case, fields=changed), at=at)
    return case


# --- SLA and the queue -------------------------------------------------------------------------------------------


def slas(
    session: Session, cases: Sequence[Case], now: datetime, policy: SlaPolicy = DEFAULT_POLICY
) -> dict[int, SlaStatus]:
    """The SLA position of each case at ``now``, replayed from its state changes (one query for all cases).

    Imported histories may carry a state change stamped before the case was opened; it counts from opening.
    """
    by_case: dict[int, list[tuple[datetime, CaseState]]] = defaultdict(list)
    ids = [c.id for c in cases]
    for start in range(0, len(ids), 900):  # stay under SQLite's bound-parameter limit
        stmt = (
            select(CaseEvent.case_id, CaseEvent.at, CaseEvent.to_state)
            .where(CaseEvent.case_id.in_(ids[start : start + 900]), CaseEvent.kind == EventKind.STATE_CHANGE)
            .order_by(CaseEvent.case_id, CaseEvent.at, CaseEvent.id)
        )
        for case_id, at, state in session.execute(stmt):
            if state is not None:
                by_case[case_id].append((at, state))
    out: dict[int, SlaStatus] = {}
    for case in cases:
        opened = case.opened_at
        events = [(max(at, opened), state) for at, state in by_case.get(case.id, [])]
        first = case.first_response_at if case.first_response_at and case.first_response_at >= opened else None
        out[case.id] = sla_status(policy, case.priority, opened, events, max(now, opened), first)
    return out


@dataclass(frozen=True, slots=True)
class QueuePage:
    """One page of cases with their SLA positions; ``total`` counts every match of the filters."""

    cases: list[tuple[Case, SlaStatus]]
    total: int


def list_cases(
    session: Session,
    principal: Principal,
    *,
    states: Collection[CaseState] = (),
    priorities: Collection[Priority] = (),
    assignee_id: int | None = None,
    offset: int = 0,
    limit: int = 20,
    now: datetime | None = None,
) -> QueuePage:
    """Cases ``principal`` may see, filtered.

    Customers: their organisation's cases, newest first, paged in SQL. Staff: the queue, open cases unless
    ``states`` says otherwise, ordered by SLA risk (breached, at_risk, ok, paused, met), then priority, then
    opening time; sorted in Python over at most ``QUEUE_SCAN`` rows (oldest first) and paged after sorting.
    """
    if offset < 0 or limit < 1:
        raise ValueError(f"offset must be >= 0 and limit >= 1, got {offset} and {limit}")
    now = now or utcnow()
    conditions = [case_clause(principal)]
    if states:
        conditions.append(Case.state.in_(sorted(states)))
    elif principal.is_staff:
        conditions.append(Case.state.in_(sorted(OPEN_STATES)))
    if priorities:
        conditions.append(Case.priority.in_(sorted(priorities)))
    if assignee_id is not None:
        conditions.append(Case.assignee_id == assignee_id)
    total = session.scalar(select(func.count()).select_from(Case).where(*conditions)) or 0
    if not principal.is_staff:
        stmt = select(Case).where(*conditions).order_by(Case.opened_at.desc(), Case.id.desc())
        rows = list(session.scalars(stmt.offset(offset).limit(limit)))
        status = slas(session, rows, now)
        return QueuePage([(c, status[c.id]) for c in rows], total)
    stmt = select(Case).where(*conditions).order_by(Case.opened_at, Case.id).limit(QUEUE_SCAN)
    rows = list(session.scalars(stmt))
    status = slas(session, rows, now)
    rows.sort(key=lambda c: (SLA_RANK[status[c.id].state], PRIORITY_RANK[c.priority], c.opened_at, c.id))
    return QueuePage([(c, status[c.id]) for c in rows[offset : offset + limit]], total)
