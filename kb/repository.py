"""Orgs, users and cases: query/persist functions taking the Session first. They flush, never commit: the caller
owns the transaction (``with session_factory.begin() as session``).

Every change that affects search writes an ``Outbox`` row in the same transaction as the change, so the index
builder (``pending_outbox``) sees exactly the committed changes. Cases and articles are locked optimistically:
callers pass the ``version_id`` they read as ``expected_version``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Literal

from sqlalchemy import select
from sqlalchemy.orm import Session
from sqlalchemy.orm.exc import StaleDataError

from kb.errors import CaseNotFound, ConcurrentUpdate
from kb.lifecycle import (
    DEFAULT_POLICY,
    CaseState,
    Channel,
    EscalationLevel,
    Priority,
    Role,
    SlaPolicy,
    SlaStatus,
    check_case_transition,
    check_escalation,
    sla_status,
)
from kb.models import Case, CaseEvent, EventKind, Org, Outbox, User, utcnow

OutboxOp = Literal["upsert", "delete"]
Entity = Literal["article", "case"]
_INTERNAL_ONLY = frozenset({EventKind.NOTE_INTERNAL, EventKind.ESCALATION, EventKind.LINK})
_PUBLIC_ONLY = frozenset({EventKind.NOTE_PUBLIC, EventKind.STATE_CHANGE})


def write_outbox(session: Session, entity: Entity, entity_id: int | str, op: OutboxOp, at: datetime) -> Outbox:
    """Record that search must ``op`` the ``entity``; call it in the transaction of the change."""
    row = Outbox(entity=entity, entity_id=str(entity_id), op=op, created_at=at)
    session.add(row)
    return row


def flush_locked(session: Session, entity: str, entity_id: int | str, expected_version: int) -> None:
    """Flush; a lost optimistic lock (``StaleDataError``) becomes ``ConcurrentUpdate``."""
    try:
        session.flush()
    except StaleDataError as exc:
        raise ConcurrentUpdate(entity, entity_id, expected_version, None) from exc


def pending_outbox(session: Session, after_id: int = 0, limit: int = 500) -> list[Outbox]:
    """Outbox rows with ``id > after_id`` in id order, at most ``limit``."""
    if limit < 1:
        raise ValueError(f"limit must be at least 1, got {limit}")
    stmt = select(Outbox).where(Outbox.id > after_id).order_by(Outbox.id).limit(limit)
    return list(session.scalars(stmt))


# --- orgs and users ----------------------------------------------------------------------------------------------


def create_org(session: Session, name: str) -> Org:
    """Add an organisation (a customer company)."""
    org = Org(name=name)
    session.add(org)
    session.flush()
    return org


def create_user(session: Session, name: str, email: str, role: Role, *, org_id: int | None = None) -> User:
    """Add a user; ``org_id`` None means support-center staff."""
    user = User(name=name, email=email, role=role, org_id=org_id)
    session.add(user)
    session.flush()
    return user


# --- cases -------------------------------------------------------------------------------------------------------


def create_case(
    session: Session,
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
    group_name: str | None = None,
    author_id: int | None = None,
    at: datetime | None = None,
) -> Case:
    """Open a case in state ``new``: a public timeline entry records how it came in; the outbox gets an upsert."""
    at = at or utcnow()
    case = Case(
        org_id=org_id,
        contact_name=contact_name,
        contact_email=contact_email,
        channel=channel,
        product=product,
        version=version,
        subject=subject,
        description=description,
        lang=lang,
        priority=priority,
        severity=severity,
        state=CaseState.NEW,
        group_name=group_name,
        escalation_level=EscalationLevel.L1,
        opened_at=at,
        updated_at=at,
    )
    session.add(case)
    session.flush()
    kind = EventKind.CALL if channel == Channel.PHONE else EventKind.EMAIL if channel == Channel.EMAIL else None
    session.add(
        CaseEvent(
            case_id=case.id,
            kind=kind or EventKind.NOTE_PUBLIC,
            author_id=author_id,
            at=at,
            text=description or subject,
            internal=False,
        )
    )
    write_outbox(session, "case", case.id, "upsert", at)
    session.flush()
    return case


def get_case(session: Session, case_id: int, *, org_id: int | None = None) -> Case:
    """The case ``case_id``; with ``org_id``, another org's case raises ``CaseNotFound`` exactly as a missing one."""
    stmt = select(Case).where(Case.id == case_id)
    if org_id is not None:
        stmt = stmt.where(Case.org_id == org_id)
    case = session.scalars(stmt).one_or_none()
    if case is None:
        raise CaseNotFound(case_id)
    return case


def _check_version(case: Case, expected_version: int) -> None:
    if case.version_id != expected_version:
        raise ConcurrentUpdate("case", case.id, expected_version, case.version_id)


def transition_case(
    session: Session,
    case_id: int,
    target: CaseState,
    actor_id: int | None,
    *,
    expected_version: int,
    text: str = "",
    at: datetime | None = None,
) -> Case:
    """Move the case to ``target`` if the lifecycle allows it, with a public ``state_change`` timeline entry.

    Sets ``first_response_at`` on the first move out of ``new``, ``resolved_at`` / ``closed_at`` on those states,
    and clears ``resolved_at`` / ``closed_at`` on reopen. Raises ``InvalidTransition`` (nothing written) or
    ``ConcurrentUpdate`` when ``expected_version`` is not the case's ``version_id`` or the row changed meanwhile.
    """
    at = at or utcnow()
    case = get_case(session, case_id)
    _check_version(case, expected_version)
    current = case.state
    check_case_transition(current, target)
    if current == CaseState.NEW and case.first_response_at is None:
        case.first_response_at = at
    if target == CaseState.RESOLVED:
        case.resolved_at = at
    elif target == CaseState.CLOSED:
        case.closed_at = at
    elif current in (CaseState.RESOLVED, CaseState.CLOSED):  # reopen
        case.resolved_at = None
        case.closed_at = None
    case.state = target
    case.updated_at = at
    event = CaseEvent(
        case_id=case.id,
        kind=EventKind.STATE_CHANGE,
        author_id=actor_id,
        at=at,
        text=text,
        internal=False,
        from_state=current,
        to_state=target,
    )
    return _record_case_change(session, case, event, expected_version)


def _record_case_change(session: Session, case: Case, event: CaseEvent, expected_version: int) -> Case:
    """The common tail of every case change: its timeline event, the outbox row for the search index
    (same transaction), and the optimistic-lock flush."""
    session.add(event)
    write_outbox(session, "case", case.id, "upsert", event.at)
    flush_locked(session, "case", case.id, expected_version)
    return case


def escalate_case(
    session: Session,
    case_id: int,
    level: EscalationLevel,
    actor_id: int | None,
    *,
    expected_version: int,
    text: str = "",
    at: datetime | None = None,
) -> Case:
    """Raise the escalation level (only upwards), with an internal ``escalation`` timeline entry.

    A case in triaged or in_progress also moves to state ``escalated`` (with its own state_change entry).
    """
    at = at or utcnow()
    case = get_case(session, case_id)
    _check_version(case, expected_version)
    check_escalation(case.escalation_level, level)
    previous = case.escalation_level
    if case.state in (CaseState.TRIAGED, CaseState.IN_PROGRESS):
        transition_case(session, case_id, CaseState.ESCALATED, actor_id, expected_version=expected_version, at=at)
        expected_version = case.version_id
    case.escalation_level = level
    case.updated_at = at
    event = CaseEvent(
        case_id=case.id,
        kind=EventKind.ESCALATION,
        author_id=actor_id,
        at=at,
        text=text or f"{previous} -> {level}",
        internal=True,
    )
    return _record_case_change(session, case, event, expected_version)


def add_timeline_entry(
    session: Session,
    case_id: int,
    kind: EventKind,
    text: str,
    author_id: int | None,
    internal: bool,
    *,
    at: datetime | None = None,
) -> CaseEvent:
    """Append a call, email or note to the timeline; ``note_internal`` must be internal, ``note_public`` not.

    State changes, escalations and links are written by their own functions, not here.
    """
    if kind in (EventKind.STATE_CHANGE, EventKind.ESCALATION, EventKind.LINK):
        raise ValueError(f"timeline kind {kind} is written by its own repository function")
    if (kind in _INTERNAL_ONLY and not internal) or (kind in _PUBLIC_ONLY and internal):
        raise ValueError(f"timeline kind {kind} cannot have internal={internal}")
    get_case(session, case_id)
    event = CaseEvent(case_id=case_id, kind=kind, author_id=author_id, at=at or utcnow(), text=text, internal=internal)
    session.add(event)
    session.flush()
    return event


def timeline(session: Session, case_id: int, *, include_internal: bool) -> list[CaseEvent]:
    """The case's timeline in time order; the customer view (``include_internal=False``) filters in SQL."""
    get_case(session, case_id)
    stmt = select(CaseEvent).where(CaseEvent.case_id == case_id)
    if not include_internal:
        stmt = stmt.where(CaseEvent.internal.is_(False))
    return list(session.scalars(stmt.order_by(CaseEvent.at, CaseEvent.id)))


def case_sla(session: Session, case_id: int, now: datetime, policy: SlaPolicy = DEFAULT_POLICY) -> SlaStatus:
    """The case's SLA position at ``now``, replayed from its state_change timeline entries."""
    case = get_case(session, case_id)
    stmt = (
        select(CaseEvent.at, CaseEvent.to_state)
        .where(CaseEvent.case_id == case_id, CaseEvent.kind == EventKind.STATE_CHANGE)
        .order_by(CaseEvent.at, CaseEvent.id)
    )
    events = [(at, state) for at, state in session.execute(stmt) if state is not None]
    return sla_status(policy, case.priority, case.opened_at, events, now, case.first_response_at)


# --- imported cases ------------------------------------------------------------------------------------------------


def org_by_name(session: Session, name: str) -> Org:
    """The organisation called ``name``, created when it does not exist yet."""
    org = session.scalars(select(Org).where(Org.name == name)).one_or_none()
    return org if org is not None else create_org(session, name)


def case_by_external_id(session: Session, external_id: str) -> Case | None:
    """The case imported under the ticketing system's id ``external_id``, if any."""
    return session.scalars(select(Case).where(Case.external_id == external_id)).one_or_none()


def import_case(
    session: Session,
    *,
    external_id: str,
    org_id: int,
    contact_name: str,
    contact_email: str,
    channel: Channel,
    product: str,
    subject: str,
    lang: str,
    priority: Priority,
    state: CaseState,
    opened_at: datetime,
    events: Sequence[CaseEvent],
    description: str = "",
    resolution: str = "",
    version: str = "",
    resolved_at: datetime | None = None,
    meta: Mapping[str, object] | None = None,
) -> Case:
    """Record a case exported by another ticketing system as it is, with its timeline (history, so no transition
    checks); unsaved ``events`` get the new case's id. An outbox upsert makes it searchable for similar-case search.
    Raises ``ValueError`` when ``external_id`` was imported before."""
    if case_by_external_id(session, external_id) is not None:
        raise ValueError(f"case {external_id!r} was imported before")
    last = max([opened_at, *(e.at for e in events), *([resolved_at] if resolved_at else [])])
    first_response = min((e.at for e in events if not e.internal and e.at > opened_at), default=None)
    case = Case(
        external_id=external_id,
        org_id=org_id,
        contact_name=contact_name,
        contact_email=contact_email,
        channel=channel,
        product=product,
        version=version,
        subject=subject,
        description=description,
        resolution=resolution,
        lang=lang,
        priority=priority,
        severity=3,
        state=state,
        escalation_level=EscalationLevel.L1,
        opened_at=opened_at,
        first_response_at=first_response or (resolved_at if state in (CaseState.RESOLVED, CaseState.CLOSED) else None),
        resolved_at=resolved_at if state in (CaseState.RESOLVED, CaseState.CLOSED) else None,
        closed_at=(resolved_at or last) if state == CaseState.CLOSED else None,
        updated_at=last,
        meta=dict(meta or {}),
    )
    session.add(case)
    session.flush()
    for event in events:
        event.case_id = case.id
        session.add(event)
    write_outbox(session, "case", case.id, "upsert", last)
    session.flush()
    return case
