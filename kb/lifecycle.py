"""Case and knowledge-article lifecycles as data, one pure check per lifecycle, and the SLA clock.

Pure domain core: no database, no I/O, no clock reads (callers pass ``now``). The repository layer calls the checks
before it writes a state change, and stores the results of ``sla_status`` nowhere: it is recomputed from events.

- Cases follow the TAC "issue to resolution" flow: new -> triaged -> in progress (<-> waiting on customer) ->
  escalated -> resolved -> closed, with reopen from resolved and closed.
- Articles follow KCS v6: confidence (wip, not validated, validated, archived), audience (internal, partner, public)
  and governance (experience based, compliance) are three independent fields; who may change which is data per role.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from types import MappingProxyType
from typing import Final, Literal

from kb.errors import InvalidTransition, PermissionDenied

# --- cases -------------------------------------------------------------------------------------------------------


class CaseState(StrEnum):
    NEW = "new"
    TRIAGED = "triaged"
    IN_PROGRESS = "in_progress"
    WAITING_ON_CUSTOMER = "waiting_on_customer"
    ESCALATED = "escalated"
    RESOLVED = "resolved"
    CLOSED = "closed"


class Priority(StrEnum):
    P1 = "p1"  # production down, no workaround
    P2 = "p2"  # severe impact, degraded service
    P3 = "p3"  # moderate impact, workaround exists
    P4 = "p4"  # question, minimal impact


class Channel(StrEnum):
    PHONE = "phone"
    EMAIL = "email"
    WEB = "web"
    CHAT = "chat"


class EscalationLevel(StrEnum):
    L1 = "l1"  # remote support engineer
    L2 = "l2"  # product expert
    L3 = "l3"  # product group / development lab
    ONSITE = "onsite"  # field engineer dispatched to the customer


_S = CaseState
CASE_TRANSITIONS: Final[Mapping[CaseState, frozenset[CaseState]]] = MappingProxyType(
    {
        _S.NEW: frozenset({_S.TRIAGED}),
        _S.TRIAGED: frozenset({_S.IN_PROGRESS, _S.ESCALATED}),
        _S.IN_PROGRESS: frozenset({_S.WAITING_ON_CUSTOMER, _S.ESCALATED, _S.RESOLVED}),
        _S.WAITING_ON_CUSTOMER: frozenset({_S.IN_PROGRESS, _S.RESOLVED}),  # resolved: the customer confirmed a fix
        _S.ESCALATED: frozenset({_S.IN_PROGRESS, _S.RESOLVED}),
        _S.RESOLVED: frozenset({_S.CLOSED, _S.IN_PROGRESS}),  # in_progress: reopen
        _S.CLOSED: frozenset({_S.IN_PROGRESS}),  # reopen
    }
)
ESCALATION_ORDER: Final[tuple[EscalationLevel, ...]] = (
    EscalationLevel.L1,
    EscalationLevel.L2,
    EscalationLevel.L3,
    EscalationLevel.ONSITE,
)


def allowed_case_targets(state: CaseState) -> frozenset[CaseState]:
    """The states a case in ``state`` may move to."""
    return CASE_TRANSITIONS[state]


def check_case_transition(current: CaseState, target: CaseState) -> None:
    """Raise ``InvalidTransition`` unless ``current -> target`` is in ``CASE_TRANSITIONS``."""
    allowed = CASE_TRANSITIONS[current]
    if target not in allowed:
        raise InvalidTransition(current, target, kind="case", allowed=allowed)


def check_escalation(current: EscalationLevel, target: EscalationLevel) -> None:
    """Escalation only goes up ``ESCALATION_ORDER``; staying or going down raises ``InvalidTransition``."""
    rank = ESCALATION_ORDER.index(current)
    if ESCALATION_ORDER.index(target) <= rank:
        raise InvalidTransition(current, target, kind="escalation", allowed=ESCALATION_ORDER[rank + 1 :])


# --- knowledge articles (KCS) ----------------------------------------------------------------------------------------


class Confidence(StrEnum):
    WIP = "wip"
    NOT_VALIDATED = "not_validated"
    VALIDATED = "validated"
    ARCHIVED = "archived"


class Audience(StrEnum):
    INTERNAL = "internal"
    PARTNER = "partner"
    PUBLIC = "public"


class Governance(StrEnum):
    EXPERIENCE_BASED = "experience_based"
    COMPLIANCE = "compliance"  # legal / regulatory wording: changed only by reviewers and admins


class Role(StrEnum):
    CUSTOMER = "customer"
    PARTNER = "partner"  # a reseller / service partner: sees partner and public articles
    ENGINEER = "engineer"
    AUTHOR = "author"  # KCS contributor
    REVIEWER = "reviewer"  # KCS publisher
    COACH = "coach"
    ADMIN = "admin"


@dataclass(frozen=True, slots=True)
class ArticleState:
    """The three KCS state fields of an article; the defaults are the state of a new draft."""

    confidence: Confidence = Confidence.WIP
    audience: Audience = Audience.INTERNAL
    governance: Governance = Governance.EXPERIENCE_BASED


@dataclass(frozen=True, slots=True)
class SearchScope:
    """Which articles a role may find: confidence in ``confidences`` and audience in ``audiences``."""

    confidences: frozenset[Confidence]
    audiences: frozenset[Audience]


_C, _A = Confidence, Audience
_AUTHOR_CONFIDENCE: Final = {_C.WIP: frozenset({_C.NOT_VALIDATED}), _C.NOT_VALIDATED: frozenset({_C.WIP})}
_PUBLISHER_CONFIDENCE: Final = {
    _C.WIP: frozenset({_C.NOT_VALIDATED, _C.ARCHIVED}),
    _C.NOT_VALIDATED: frozenset({_C.WIP, _C.VALIDATED, _C.ARCHIVED}),
    _C.VALIDATED: frozenset({_C.NOT_VALIDATED, _C.ARCHIVED}),
    _C.ARCHIVED: frozenset({_C.NOT_VALIDATED}),  # restore
}
CONFIDENCE_TRANSITIONS: Final[Mapping[Role, Mapping[Confidence, frozenset[Confidence]]]] = MappingProxyType(
    {
        Role.CUSTOMER: {},
        Role.PARTNER: {},
        Role.ENGINEER: {},
        Role.AUTHOR: _AUTHOR_CONFIDENCE,
        Role.REVIEWER: _PUBLISHER_CONFIDENCE,
        Role.COACH: _PUBLISHER_CONFIDENCE,
        Role.ADMIN: _PUBLISHER_CONFIDENCE,
    }
)
AUDIENCE_SETTERS: Final[Mapping[Role, frozenset[Audience]]] = MappingProxyType(
    {
        Role.CUSTOMER: frozenset(),
        Role.PARTNER: frozenset(),
        Role.ENGINEER: frozenset(),
        Role.AUTHOR: frozenset({_A.INTERNAL, _A.PARTNER}),
        Role.REVIEWER: frozenset(_A),
        Role.COACH: frozenset(_A),
        Role.ADMIN: frozenset(_A),
    }
)
ARTICLE_EDITORS: Final = frozenset({Role.AUTHOR, Role.REVIEWER, Role.COACH, Role.ADMIN})
COMPLIANCE_EDITORS: Final = frozenset({Role.REVIEWER, Role.ADMIN})
GOVERNANCE_SETTERS: Final = frozenset({Role.REVIEWER, Role.COACH, Role.ADMIN})
_STAFF_SCOPE: Final = SearchScope(frozenset({_C.WIP, _C.NOT_VALIDATED, _C.VALIDATED}), frozenset(_A))
SEARCH_SCOPES: Final[Mapping[Role, SearchScope]] = MappingProxyType(
    {
        Role.CUSTOMER: SearchScope(frozenset({_C.VALIDATED}), frozenset({_A.PUBLIC})),
        # Partners also see complete but not yet validated articles marked for them; never work in progress.
        Role.PARTNER: SearchScope(frozenset({_C.NOT_VALIDATED, _C.VALIDATED}), frozenset({_A.PARTNER, _A.PUBLIC})),
        Role.ENGINEER: _STAFF_SCOPE,
        Role.AUTHOR: _STAFF_SCOPE,
        Role.REVIEWER: _STAFF_SCOPE,
        Role.COACH: _STAFF_SCOPE,
        Role.ADMIN: _STAFF_SCOPE,
    }
)


def check_article_edit(role: Role, state: ArticleState) -> None:
    """Raise ``PermissionDenied`` unless ``role`` may edit an article in ``state`` (content or state)."""
    if role not in ARTICLE_EDITORS:
        raise PermissionDenied(role, "edit articles")
    if state.governance == Governance.COMPLIANCE and role not in COMPLIANCE_EDITORS:
        raise PermissionDenied(role, "edit compliance articles")


def check_article_transition(role: Role, current: ArticleState, target: ArticleState) -> None:
    """Check each changed field of an article's state against the role's rights.

    Raises ``PermissionDenied`` when the role may not do what another role could, and ``InvalidTransition`` when
    no role could (a confidence step that does not exist, or a public audience without validated confidence).
    An unchanged state only checks the right to edit the article.
    """
    check_article_edit(role, current)
    if target.confidence != current.confidence:
        allowed = CONFIDENCE_TRANSITIONS[role].get(current.confidence, frozenset())
        if target.confidence not in allowed:
            if any(target.confidence in m.get(current.confidence, ()) for m in CONFIDENCE_TRANSITIONS.values()):
                raise PermissionDenied(role, f"move confidence from {current.confidence} to {target.confidence}")
            raise InvalidTransition(current.confidence, target.confidence, kind="confidence", allowed=allowed)
    if target.audience != current.audience:
        if target.audience not in AUDIENCE_SETTERS[role]:
            raise PermissionDenied(role, f"set audience {target.audience}")
        # KCS: content for an external audience must be validated first.
        if target.audience == Audience.PUBLIC and target.confidence != Confidence.VALIDATED:
            raise InvalidTransition(
                current.audience,
                target.audience,
                kind="audience",
                allowed=AUDIENCE_SETTERS[role] - {Audience.PUBLIC, current.audience},
                reason=f"public needs validated confidence, not {target.confidence}",
            )
    if target.governance != current.governance and role not in GOVERNANCE_SETTERS:
        raise PermissionDenied(role, "change governance")


def is_customer_visible(state: ArticleState) -> bool:
    """Public and validated (archived articles are never validated, so never visible)."""
    return state.audience == Audience.PUBLIC and state.confidence == Confidence.VALIDATED


def is_searchable(state: ArticleState, role: Role) -> bool:
    """Whether ``role`` may find the article: ``SEARCH_SCOPES[role]``; archived articles are found by nobody."""
    scope = SEARCH_SCOPES[role]
    return state.confidence in scope.confidences and state.audience in scope.audiences


# --- SLA clock -----------------------------------------------------------------------------------------------------

SlaState = Literal["ok", "at_risk", "breached", "met", "paused"]
StateChange = tuple[datetime, CaseState]
PAUSED_STATES: Final = frozenset({CaseState.WAITING_ON_CUSTOMER})
STOPPED_STATES: Final = frozenset({CaseState.RESOLVED, CaseState.CLOSED})
_CLOCK_OFF: Final = PAUSED_STATES | STOPPED_STATES


@dataclass(frozen=True)
class SlaPolicy:
    """Targets per priority on a 24x7 wall clock (no business hours, no holidays)."""

    name: str
    first_response: Mapping[Priority, timedelta]
    resolution: Mapping[Priority, timedelta]
    at_risk_ratio: float = 0.75

    def __post_init__(self) -> None:
        for label, targets in (("first_response", self.first_response), ("resolution", self.resolution)):
            missing = [p.value for p in Priority if p not in targets]
            if missing:
                raise ValueError(f"SlaPolicy {self.name!r}: {label} has no target for {', '.join(missing)}")
            if any(t <= timedelta(0) for t in targets.values()):
                raise ValueError(f"SlaPolicy {self.name!r}: {label} targets must be positive")
        if not 0.0 < self.at_risk_ratio <= 1.0:
            raise ValueError(f"SlaPolicy {self.name!r}: at_risk_ratio must be in (0, 1], got {self.at_risk_ratio}")


_h = timedelta(hours=1)
DEFAULT_POLICY: Final = SlaPolicy(
    name="default-24x7",
    first_response=MappingProxyType(
        {Priority.P1: timedelta(minutes=15), Priority.P2: _h, Priority.P3: 4 * _h, Priority.P4: 8 * _h}
    ),
    resolution=MappingProxyType(
        {Priority.P1: 4 * _h, Priority.P2: 8 * _h, Priority.P3: timedelta(days=3), Priority.P4: timedelta(days=10)}
    ),
)


@dataclass(frozen=True, slots=True)
class SlaStatus:
    """The SLA position of one case at ``now``.

    ``response_met`` is None until a first response exists; ``response_breached`` is also true for an overdue case
    nobody has answered yet. ``resolution_elapsed`` excludes time waiting on the customer and time after resolution.
    ``state`` is "met"/"breached" once resolved or closed, "breached" once over target, "paused" while waiting on
    the customer, else "at_risk" from ``at_risk_ratio`` of the target on, else "ok".
    """

    response_due: datetime
    response_met: bool | None
    response_breached: bool
    resolution_elapsed: timedelta
    resolution_due_in: timedelta
    state: SlaState


def _require_aware(value: datetime, name: str) -> None:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware (UTC), got naive {value.isoformat()}")


def sla_status(
    policy: SlaPolicy,
    priority: Priority,
    opened_at: datetime,
    events: Sequence[StateChange],
    now: datetime,
    first_response_at: datetime | None = None,
) -> SlaStatus:
    """Replay ``events`` (state changes in time order, the case being ``new`` at ``opened_at``) up to ``now``.

    The resolution clock runs in every state except waiting_on_customer (paused) and resolved/closed (stopped);
    a reopen starts it again from the time already used. Events after ``now`` are not yet in effect and ignored.
    Raises ``ValueError`` for naive datetimes, events before ``opened_at`` or out of order, and ``now`` before
    ``opened_at``.
    """
    _require_aware(opened_at, "opened_at")
    _require_aware(now, "now")
    if now < opened_at:
        raise ValueError(f"now ({now.isoformat()}) is before opened_at ({opened_at.isoformat()})")
    if first_response_at is not None:
        _require_aware(first_response_at, "first_response_at")
        if first_response_at < opened_at:
            raise ValueError(f"first_response_at ({first_response_at.isoformat()}) is before opened_at")
    previous = opened_at
    for i, (at, _) in enumerate(events):
        _require_aware(at, f"events[{i}] timestamp")
        if at < previous:
            raise ValueError(f"events[{i}] at {at.isoformat()} is out of order (before {previous.isoformat()})")
        previous = at
    state, since, elapsed = CaseState.NEW, opened_at, timedelta(0)
    for at, new_state in events:
        if at > now:
            break
        if state not in _CLOCK_OFF:
            elapsed += at - since
        state, since = new_state, at
    if state not in _CLOCK_OFF:
        elapsed += now - since

    response_due = opened_at + policy.first_response[priority]
    response_met: bool | None = None
    if first_response_at is not None and first_response_at <= now:
        response_met = first_response_at <= response_due
    response_breached = response_met is False or (response_met is None and now > response_due)

    target = policy.resolution[priority]
    sla: SlaState
    if state in STOPPED_STATES:
        sla = "met" if elapsed <= target else "breached"
    elif elapsed > target:
        sla = "breached"
    elif state in PAUSED_STATES:
        sla = "paused"
    elif elapsed >= target * policy.at_risk_ratio:
        sla = "at_risk"
    else:
        sla = "ok"
    return SlaStatus(response_due, response_met, response_breached, elapsed, target - elapsed, sla)
