"""Who may see what: one place that turns a principal into search filters and SQL clauses.

Every read path (search, suggestions, article and case pages, analytics, the assistant) asks this module, so
access control is applied inside retrieval and inside the database queries, before any ranking cuts the list:

- articles: the role's ``SEARCH_SCOPES`` (customers: validated and public only; archived: nobody searches it);
- cases: customers and partners only their own organisation's; staff every case;
- timeline: internal entries only for staff.

A hidden row and a missing row give the same answer (``NotFound``), so an id cannot be probed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from sqlalchemy import ColumnElement, and_, false, true

from kb.lifecycle import SEARCH_SCOPES, Confidence, Role
from kb.models import Article, Case, CaseEvent
from kb.search.types import Filter

CUSTOMER_ROLES: Final = frozenset({Role.CUSTOMER, Role.PARTNER})
STAFF_ROLES: Final = frozenset(Role) - CUSTOMER_ROLES


@dataclass(frozen=True, slots=True)
class Principal:
    """The caller of a request: a user id, a role and, for customers and partners, their organisation."""

    user_id: int | None
    role: Role
    org_id: int | None = None
    name: str = ""

    def __post_init__(self) -> None:
        if self.role in CUSTOMER_ROLES and self.org_id is None:
            raise ValueError(f"a {self.role} principal needs an organisation")

    @property
    def is_staff(self) -> bool:
        return self.role in STAFF_ROLES


def article_filter(principal: Principal) -> Filter:
    """Search filter for the articles ``principal`` may find (the index holds no archived article)."""
    scope = SEARCH_SCOPES[principal.role]
    return Filter.of(
        kind="article",
        confidence=sorted(str(c) for c in scope.confidences),
        audience=sorted(str(a) for a in scope.audiences),
    )


def case_filter(principal: Principal, *, states: frozenset[str] | None = None) -> Filter:
    """Search filter for the cases ``principal`` may find: staff all (optionally by state), customers none.

    Customers find their own cases through "my cases" (SQL), never through similar-case search: another
    case of their own organisation may hold what a colleague wrote to support, and similar-case hits are
    snippets of other people's problems.
    """
    if not principal.is_staff:
        return Filter.of(kind="case", org="-none-")  # matches no document
    allowed: dict[str, list[str]] = {"kind": ["case"]}
    if states:
        allowed["state"] = sorted(states)
    return Filter.of(**allowed)


def article_clause(principal: Principal, *, include_archived: bool = False) -> ColumnElement[bool]:
    """SQL condition on ``Article`` for the articles ``principal`` may read.

    Staff may read archived articles when asked (cases cite their versions); customers never.
    """
    scope = SEARCH_SCOPES[principal.role]
    confidences = set(scope.confidences)
    if include_archived and principal.is_staff:
        confidences.add(Confidence.ARCHIVED)
    return and_(Article.confidence.in_(sorted(confidences)), Article.audience.in_(sorted(scope.audiences)))


def case_clause(principal: Principal) -> ColumnElement[bool]:
    """SQL condition on ``Case``: staff every case, customers their own organisation's."""
    if principal.is_staff:
        return true()
    if principal.org_id is None:
        return false()
    return Case.org_id == principal.org_id


def event_clause(principal: Principal) -> ColumnElement[bool]:
    """SQL condition on ``CaseEvent``: internal entries for staff only."""
    return true() if principal.is_staff else CaseEvent.internal.is_(False)
