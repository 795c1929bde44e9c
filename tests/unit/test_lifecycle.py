from __future__ import annotations

import itertools
import re
from datetime import UTC, datetime, timedelta

import pytest

from kb.errors import InvalidTransition, PermissionDenied
from kb.lifecycle import (
    CASE_TRANSITIONS,
    CONFIDENCE_TRANSITIONS,
    DEFAULT_POLICY,
    ESCALATION_ORDER,
    ArticleState,
    Audience,
    CaseState,
    Confidence,
    EscalationLevel,
    Governance,
    Priority,
    Role,
    SlaPolicy,
    allowed_case_targets,
    check_article_edit,
    check_article_transition,
    check_case_transition,
    check_escalation,
    is_customer_visible,
    is_searchable,
    sla_status,
)

T0 = datetime(2024, 3, 1, 9, 0, tzinfo=UTC)
H = timedelta(hours=1)
ALL_PAIRS = list(itertools.product(CaseState, CaseState))
ALL_ARTICLE_STATES = [ArticleState(c, a, g) for c, a, g in itertools.product(Confidence, Audience, Governance)]


# --- cases ---------------------------------------------------------------------------------------------------------


def test_case_transitions_cover_every_state() -> None:
    assert set(CASE_TRANSITIONS) == set(CaseState)
    assert all(target in CaseState for targets in CASE_TRANSITIONS.values() for target in targets)


@pytest.mark.parametrize(("current", "target"), ALL_PAIRS)
def test_case_transition_check_agrees_with_data(current: CaseState, target: CaseState) -> None:
    if target in CASE_TRANSITIONS[current]:
        check_case_transition(current, target)
    else:
        with pytest.raises(InvalidTransition) as info:
            check_case_transition(current, target)
        assert (info.value.kind, info.value.current, info.value.target) == ("case", current, target)
        assert set(info.value.allowed) == set(CASE_TRANSITIONS[current])


def test_case_transitions_match_the_issue_to_resolution_flow() -> None:
    allowed = {(c, t) for c, t in ALL_PAIRS if t in allowed_case_targets(c)}
    s = CaseState
    assert allowed == {
        (s.NEW, s.TRIAGED),
        (s.TRIAGED, s.IN_PROGRESS),
        (s.TRIAGED, s.ESCALATED),
        (s.IN_PROGRESS, s.WAITING_ON_CUSTOMER),
        (s.WAITING_ON_CUSTOMER, s.IN_PROGRESS),
        (s.IN_PROGRESS, s.ESCALATED),
        (s.IN_PROGRESS, s.RESOLVED),
        (s.WAITING_ON_CUSTOMER, s.RESOLVED),
        (s.ESCALATED, s.IN_PROGRESS),
        (s.ESCALATED, s.RESOLVED),
        (s.RESOLVED, s.CLOSED),
        (s.RESOLVED, s.IN_PROGRESS),
        (s.CLOSED, s.IN_PROGRESS),
    }


def test_case_invalid_transition_message_names_states_and_allowed_targets() -> None:
    with pytest.raises(InvalidTransition, match=r"case: cannot go from new to closed; allowed from new: triaged$"):
        check_case_transition(CaseState.NEW, CaseState.CLOSED)


def test_escalation_order_and_only_upwards() -> None:
    assert ESCALATION_ORDER == (EscalationLevel.L1, EscalationLevel.L2, EscalationLevel.L3, EscalationLevel.ONSITE)
    for (i, current), (j, target) in itertools.product(enumerate(ESCALATION_ORDER), repeat=2):
        if j > i:
            check_escalation(current, target)
        else:
            with pytest.raises(InvalidTransition) as info:
                check_escalation(current, target)
            assert info.value.kind == "escalation"
            assert set(info.value.allowed) == set(ESCALATION_ORDER[i + 1 :])


# --- articles ------------------------------------------------------------------------------------------------------


def _state(confidence: Confidence, audience: Audience = Audience.INTERNAL, compliance: bool = False) -> ArticleState:
    governance = Governance.COMPLIANCE if compliance else Governance.EXPERIENCE_BASED
    return ArticleState(confidence, audience, governance)


def _allowed(role: Role, current: ArticleState, target: ArticleState) -> bool:
    try:
        check_article_transition(role, current, target)
    except (InvalidTransition, PermissionDenied):
        return False
    return True


def test_article_new_draft_defaults() -> None:
    assert ArticleState() == ArticleState(Confidence.WIP, Audience.INTERNAL, Governance.EXPERIENCE_BASED)


@pytest.mark.parametrize("role", list(Role))
def test_article_confidence_matrix(role: Role) -> None:
    author = {(Confidence.WIP, Confidence.NOT_VALIDATED), (Confidence.NOT_VALIDATED, Confidence.WIP)}
    publisher = author | {
        (Confidence.NOT_VALIDATED, Confidence.VALIDATED),
        (Confidence.VALIDATED, Confidence.NOT_VALIDATED),
        (Confidence.WIP, Confidence.ARCHIVED),
        (Confidence.NOT_VALIDATED, Confidence.ARCHIVED),
        (Confidence.VALIDATED, Confidence.ARCHIVED),
        (Confidence.ARCHIVED, Confidence.NOT_VALIDATED),
    }
    expected = {Role.AUTHOR: author, Role.REVIEWER: publisher, Role.COACH: publisher, Role.ADMIN: publisher}
    got = {
        (c, t) for c, t in itertools.product(Confidence, Confidence) if c != t and _allowed(role, _state(c), _state(t))
    }
    assert got == expected.get(role, set())


def test_article_errors_distinguish_permission_from_impossible() -> None:
    with pytest.raises(PermissionDenied) as denied:  # a reviewer could do this
        check_article_transition(Role.AUTHOR, _state(Confidence.NOT_VALIDATED), _state(Confidence.VALIDATED))
    assert (denied.value.role, denied.value.action) == (Role.AUTHOR, "move confidence from not_validated to validated")
    with pytest.raises(InvalidTransition) as invalid:  # nobody could do this
        check_article_transition(Role.ADMIN, _state(Confidence.WIP), _state(Confidence.VALIDATED))
    assert invalid.value.kind == "confidence"
    assert set(invalid.value.allowed) == CONFIDENCE_TRANSITIONS[Role.ADMIN][Confidence.WIP]


@pytest.mark.parametrize("role", [Role.CUSTOMER, Role.PARTNER, Role.ENGINEER])
def test_article_readers_cannot_edit(role: Role) -> None:
    with pytest.raises(PermissionDenied, match="edit articles"):
        check_article_edit(role, ArticleState())
    with pytest.raises(PermissionDenied):
        check_article_transition(role, ArticleState(), ArticleState())


def test_article_author_cannot_publish_public() -> None:
    validated = _state(Confidence.VALIDATED)
    with pytest.raises(PermissionDenied, match="set audience public"):
        check_article_transition(Role.AUTHOR, validated, _state(Confidence.VALIDATED, Audience.PUBLIC))
    check_article_transition(Role.AUTHOR, _state(Confidence.WIP), _state(Confidence.WIP, Audience.PARTNER))
    check_article_transition(Role.AUTHOR, _state(Confidence.VALIDATED, Audience.PUBLIC), validated)


@pytest.mark.parametrize("role", [Role.REVIEWER, Role.COACH, Role.ADMIN])
def test_article_publisher_makes_public_only_validated(role: Role) -> None:
    for confidence in Confidence:
        current, target = _state(confidence), _state(confidence, Audience.PUBLIC)
        if confidence == Confidence.VALIDATED:
            check_article_transition(role, current, target)
        else:
            with pytest.raises(InvalidTransition, match="public needs validated") as info:
                check_article_transition(role, current, target)
            assert info.value.kind == "audience"
    # validating and publishing in one step is fine
    check_article_transition(role, _state(Confidence.NOT_VALIDATED), _state(Confidence.VALIDATED, Audience.PUBLIC))


def test_article_governance_and_compliance_editors() -> None:
    plain, compliance = _state(Confidence.VALIDATED), _state(Confidence.VALIDATED, compliance=True)
    assert [r for r in Role if _allowed(r, plain, compliance)] == [Role.REVIEWER, Role.COACH, Role.ADMIN]
    assert [r for r in Role if _allowed(r, compliance, plain)] == [Role.REVIEWER, Role.ADMIN]
    to_nv = _state(Confidence.NOT_VALIDATED, compliance=True)
    assert [r for r in Role if _allowed(r, compliance, to_nv)] == [Role.REVIEWER, Role.ADMIN]
    with pytest.raises(PermissionDenied, match="edit compliance articles"):
        check_article_edit(Role.COACH, compliance)


def test_article_archived_is_searchable_by_nobody() -> None:
    archived = [s for s in ALL_ARTICLE_STATES if s.confidence == Confidence.ARCHIVED]
    assert archived and not any(is_searchable(s, role) for s in archived for role in Role)
    assert not any(is_customer_visible(s) for s in archived)


def test_article_customer_visibility() -> None:
    visible = {s for s in ALL_ARTICLE_STATES if is_customer_visible(s)}
    assert visible == {
        _state(Confidence.VALIDATED, Audience.PUBLIC),
        _state(Confidence.VALIDATED, Audience.PUBLIC, True),
    }
    assert {s for s in ALL_ARTICLE_STATES if is_searchable(s, Role.CUSTOMER)} == visible


def test_article_search_scope_per_role() -> None:
    def found(role: Role) -> set[tuple[Confidence, Audience]]:
        return {(s.confidence, s.audience) for s in ALL_ARTICLE_STATES if is_searchable(s, role)}

    live = [Confidence.WIP, Confidence.NOT_VALIDATED, Confidence.VALIDATED]
    assert found(Role.PARTNER) == set(
        itertools.product([Confidence.NOT_VALIDATED, Confidence.VALIDATED], [Audience.PARTNER, Audience.PUBLIC])
    )
    for staff in (Role.ENGINEER, Role.AUTHOR, Role.REVIEWER, Role.COACH, Role.ADMIN):
        assert found(staff) == set(itertools.product(live, Audience))


# --- SLA -----------------------------------------------------------------------------------------------------------


def test_sla_p1_without_events_goes_at_risk_then_breached() -> None:
    def at(delta: timedelta) -> str:
        return sla_status(DEFAULT_POLICY, Priority.P1, T0, [], T0 + delta).state

    assert at(2 * H + timedelta(minutes=59)) == "ok"
    assert at(3 * H) == "at_risk"
    assert at(4 * H) == "at_risk"  # exactly on target is not yet a breach
    late = sla_status(DEFAULT_POLICY, Priority.P1, T0, [], T0 + 4 * H + timedelta(minutes=1))
    assert late.state == "breached"
    assert late.resolution_elapsed == 4 * H + timedelta(minutes=1)
    assert late.resolution_due_in == -timedelta(minutes=1)


def test_sla_waiting_on_customer_pause_shifts_breach() -> None:
    events = [
        (T0 + H, CaseState.TRIAGED),
        (T0 + 2 * H, CaseState.WAITING_ON_CUSTOMER),
        (T0 + 4 * H, CaseState.IN_PROGRESS),
    ]
    paused = sla_status(DEFAULT_POLICY, Priority.P1, T0, events[:2], T0 + 3 * H)
    assert (paused.state, paused.resolution_elapsed) == ("paused", 2 * H)
    on_target = sla_status(DEFAULT_POLICY, Priority.P1, T0, events, T0 + 6 * H)
    assert (on_target.state, on_target.resolution_elapsed, on_target.resolution_due_in) == ("at_risk", 4 * H, 0 * H)
    late = sla_status(DEFAULT_POLICY, Priority.P1, T0, events, T0 + 6 * H + timedelta(minutes=1))
    assert late.state == "breached"


def test_sla_reopen_restarts_clock_with_elapsed_kept() -> None:
    events = [
        (T0, CaseState.TRIAGED),
        (T0 + H, CaseState.IN_PROGRESS),
        (T0 + 2 * H, CaseState.RESOLVED),
        (T0 + 10 * H, CaseState.IN_PROGRESS),  # reopen
    ]
    resolved = sla_status(DEFAULT_POLICY, Priority.P1, T0, events[:3], T0 + 9 * H)
    assert (resolved.state, resolved.resolution_elapsed) == ("met", 2 * H)
    reopened = sla_status(DEFAULT_POLICY, Priority.P1, T0, events, T0 + 11 * H)
    assert (reopened.state, reopened.resolution_elapsed, reopened.resolution_due_in) == ("at_risk", 3 * H, H)
    closed_late = events + [(T0 + 13 * H, CaseState.RESOLVED), (T0 + 14 * H, CaseState.CLOSED)]
    assert sla_status(DEFAULT_POLICY, Priority.P1, T0, closed_late, T0 + 20 * H).state == "breached"


def test_sla_events_after_now_are_not_yet_in_effect() -> None:
    events = [(T0 + H, CaseState.WAITING_ON_CUSTOMER)]
    assert sla_status(DEFAULT_POLICY, Priority.P1, T0, events, T0 + H / 2).resolution_elapsed == H / 2


def test_sla_first_response_met_pending_and_breached() -> None:
    due = T0 + timedelta(minutes=15)
    met = sla_status(DEFAULT_POLICY, Priority.P1, T0, [], T0 + H, first_response_at=due)
    assert (met.response_due, met.response_met, met.response_breached) == (due, True, False)
    late = sla_status(DEFAULT_POLICY, Priority.P1, T0, [], T0 + H, first_response_at=due + timedelta(seconds=1))
    assert (late.response_met, late.response_breached) == (False, True)
    pending = sla_status(DEFAULT_POLICY, Priority.P1, T0, [], due)
    assert (pending.response_met, pending.response_breached) == (None, False)
    overdue = sla_status(DEFAULT_POLICY, Priority.P1, T0, [], due + timedelta(seconds=1))
    assert (overdue.response_met, overdue.response_breached) == (None, True)


def test_sla_default_policy_targets() -> None:
    response = {p: DEFAULT_POLICY.first_response[p] for p in Priority}
    resolution = {p: DEFAULT_POLICY.resolution[p] for p in Priority}
    assert response == {Priority.P1: H / 4, Priority.P2: H, Priority.P3: 4 * H, Priority.P4: 8 * H}
    assert resolution == {Priority.P1: 4 * H, Priority.P2: 8 * H, Priority.P3: 72 * H, Priority.P4: 240 * H}


@pytest.mark.parametrize("argument", ["opened_at", "now", "first_response_at", "events[1] timestamp"])
def test_sla_rejects_naive_datetimes(argument: str) -> None:
    naive = datetime(2024, 3, 1, 10, 0)
    kwargs = {"opened_at": T0, "now": T0 + 2 * H, "first_response_at": T0 + H}
    events = [(T0, CaseState.TRIAGED), (T0 + H, CaseState.IN_PROGRESS)]
    if argument.startswith("events"):
        events[1] = (naive, CaseState.IN_PROGRESS)
    else:
        kwargs[argument] = naive
    with pytest.raises(ValueError, match="^" + re.escape(argument) + " must be timezone-aware"):
        sla_status(DEFAULT_POLICY, Priority.P2, events=events, **kwargs)


def test_sla_rejects_events_out_of_order() -> None:
    events = [(T0 + 2 * H, CaseState.TRIAGED), (T0 + H, CaseState.IN_PROGRESS)]
    with pytest.raises(ValueError, match=r"events\[1\] .* out of order"):
        sla_status(DEFAULT_POLICY, Priority.P1, T0, events, T0 + 3 * H)
    with pytest.raises(ValueError, match=r"events\[0\] .* out of order"):
        sla_status(DEFAULT_POLICY, Priority.P1, T0, [(T0 - H, CaseState.TRIAGED)], T0 + 3 * H)
    with pytest.raises(ValueError, match="before opened_at"):
        sla_status(DEFAULT_POLICY, Priority.P1, T0, [], T0 - H)


def test_sla_policy_validates_targets() -> None:
    with pytest.raises(ValueError, match="resolution has no target for p4"):
        SlaPolicy("x", dict(DEFAULT_POLICY.first_response), {p: H for p in Priority if p != Priority.P4})
    with pytest.raises(ValueError, match="at_risk_ratio"):
        SlaPolicy("x", dict(DEFAULT_POLICY.first_response), dict(DEFAULT_POLICY.resolution), at_risk_ratio=0)
