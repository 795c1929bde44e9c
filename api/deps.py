"""Typed dependencies: the app's services, database sessions, the caller (principal) and role checks."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import APIKeyCookie, APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session, sessionmaker

from kb.access import Principal
from kb.auth import principal_for_token
from kb.config import Settings
from kb.errors import AuthError, PermissionDenied
from kb.lifecycle import Role
from kb.live import LiveIndex

SESSION_COOKIE = "kb_session"

_bearer = HTTPBearer(auto_error=False, description="A login token (POST /api/v1/auth/token) or an API key")
_api_key = APIKeyHeader(name="X-API-Key", auto_error=False, description="An API key for integrations")
_cookie = APIKeyCookie(name=SESSION_COOKIE, auto_error=False, description="The web portal's session")


def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def get_live(request: Request) -> LiveIndex:
    live: LiveIndex = request.app.state.live
    return live


def read_session(request: Request) -> Iterator[Session]:
    """A read-only session (SQLite: deferred, query_only) for the request."""
    factory: sessionmaker[Session] = request.app.state.read_factory
    with factory() as session:
        yield session


class Unit:
    """Write transactions for one request: ``with unit.transaction() as session:`` commits on exit, then lets
    this worker's search index and the webhook sender catch up at once (the others poll)."""

    def __init__(self, request: Request) -> None:
        self._factory: sessionmaker[Session] = request.app.state.session_factory
        self._after_commit: list[Callable[[], object]] = request.app.state.after_commit

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        with self._factory.begin() as session:
            yield session
        for hook in self._after_commit:
            hook()


def get_unit(request: Request) -> Unit:
    return Unit(request)


def get_principal(
    request: Request,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    api_key: Annotated[str | None, Depends(_api_key)],
    cookie: Annotated[str | None, Depends(_cookie)],
) -> Principal:
    """The authenticated caller; 401 when no valid credential is given."""
    token = bearer.credentials if bearer is not None else api_key or cookie
    if not token:
        raise AuthError()
    factory: sessionmaker[Session] = request.app.state.read_factory
    with factory() as session:
        principal = principal_for_token(session, token)
    request.state.principal = principal
    return principal


def require(*roles: Role) -> Callable[[Principal], Principal]:
    """A dependency that admits only ``roles`` (403 for other authenticated callers)."""
    allowed = frozenset(roles)

    def check(principal: Annotated[Principal, Depends(get_principal)]) -> Principal:
        if principal.role not in allowed:
            raise PermissionDenied(principal.role, "use this route")
        return principal

    return check


STAFF: tuple[Role, ...] = (Role.ENGINEER, Role.AUTHOR, Role.REVIEWER, Role.COACH, Role.ADMIN)
EDITORS: tuple[Role, ...] = (Role.AUTHOR, Role.REVIEWER, Role.COACH, Role.ADMIN)

ReadDB = Annotated[Session, Depends(read_session)]
UnitDep = Annotated[Unit, Depends(get_unit)]
LiveDep = Annotated[LiveIndex, Depends(get_live)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
PrincipalDep = Annotated[Principal, Depends(get_principal)]
StaffDep = Annotated[Principal, Depends(require(*STAFF))]
EditorDep = Annotated[Principal, Depends(require(*EDITORS))]
AdminDep = Annotated[Principal, Depends(require(Role.ADMIN))]
