"""Log in (bearer token + portal cookie), log out, who am I; admins add users and issue API keys."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, Field
from sqlalchemy import select
from sqlalchemy.orm import Session

from api.deps import SESSION_COOKIE, AdminDep, PrincipalDep, ReadDB, UnitDep
from api.schemas import Message, StrictIn
from kb.auth import SESSION_TTL, authenticate, hash_password, issue_token, revoke_token
from kb.errors import NotFound
from kb.lifecycle import Role
from kb.models import Org, User

router = APIRouter(prefix="/auth", tags=["auth"])


class LoginIn(StrictIn):
    email: str = Field(min_length=3, max_length=320)
    password: str = Field(min_length=1, max_length=200)


class UserOut(BaseModel):
    id: int
    name: str
    email: str
    role: Role
    org_id: int | None
    org_name: str | None = None


class TokenOut(BaseModel):
    access_token: str
    token_type: str = "bearer"
    expires_in: int
    user: UserOut


class UserCreate(StrictIn):
    name: str = Field(min_length=1, max_length=200)
    email: str = Field(min_length=3, max_length=320, pattern=r"^[^@\s]+@[^@\s]+$")
    role: Role
    org: str | None = Field(default=None, max_length=200, description="organisation name (customers, partners)")
    password: str | None = Field(default=None, min_length=8, max_length=200)


class ApiKeyCreate(StrictIn):
    user_id: int = Field(ge=1, le=2**31 - 1)
    name: str = Field(min_length=1, max_length=100)


class ApiKeyOut(BaseModel):
    api_key: str
    user_id: int
    name: str


def _user_out(session: Session, user: User) -> UserOut:
    org = session.get(Org, user.org_id) if user.org_id else None
    return UserOut(
        id=user.id,
        name=user.name,
        email=user.email,
        role=user.role,
        org_id=user.org_id,
        org_name=org.name if org else None,
    )


@router.post("/token", response_model=TokenOut, summary="Log in with e-mail and password", responses={401: {}})
def login(body: LoginIn, response: Response, unit: UnitDep) -> TokenOut:
    with unit.transaction() as session:
        user = authenticate(session, body.email, body.password)
        token = issue_token(session, user, "session")
        out = TokenOut(access_token=token, expires_in=int(SESSION_TTL.total_seconds()), user=_user_out(session, user))
    response.set_cookie(SESSION_COOKIE, token, max_age=out.expires_in, httponly=True, samesite="strict", path="/")
    return out


@router.post("/logout", response_model=Message, summary="Revoke the current login token")
def logout(request: Request, response: Response, principal: PrincipalDep, unit: UnitDep) -> Message:
    header = request.headers.get("authorization", "")
    token = header[7:] if header.lower().startswith("bearer ") else request.cookies.get(SESSION_COOKIE, "")
    with unit.transaction() as session:
        revoke_token(session, token)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return Message(status="logged out")


@router.get("/me", response_model=UserOut, summary="The current user")
def me(principal: PrincipalDep, session: ReadDB) -> UserOut:
    user = session.get(User, principal.user_id)
    if user is None:
        raise NotFound("user not found")
    return _user_out(session, user)


@router.post("/users", response_model=UserOut, status_code=201, summary="Add a user (admin)")
def create_user(body: UserCreate, admin: AdminDep, unit: UnitDep) -> UserOut:
    customer = body.role in (Role.CUSTOMER, Role.PARTNER)
    if customer != (body.org is not None):
        raise ValueError("customers and partners need an organisation; staff have none")
    with unit.transaction() as session:
        if session.scalars(select(User).where(User.email == body.email.lower())).first() is not None:
            raise ValueError("a user with this e-mail exists")
        org_id = None
        if body.org is not None:
            org = session.scalars(select(Org).where(Org.name == body.org)).first()
            if org is None:
                org = Org(name=body.org)
                session.add(org)
                session.flush()
            org_id = org.id
        user = User(
            name=body.name,
            email=body.email.lower(),
            role=body.role,
            org_id=org_id,
            password_hash=hash_password(body.password) if body.password else None,
            active=True,
        )
        session.add(user)
        session.flush()
        return _user_out(session, user)


@router.post("/api-keys", response_model=ApiKeyOut, status_code=201, summary="Issue an API key for a user (admin)")
def create_api_key(body: ApiKeyCreate, admin: AdminDep, unit: UnitDep) -> ApiKeyOut:
    with unit.transaction() as session:
        user = session.get(User, body.user_id)
        if user is None:
            raise NotFound(f"user {body.user_id} not found")
        key = issue_token(session, user, "api_key", name=body.name, ttl=None)
    return ApiKeyOut(api_key=key, user_id=body.user_id, name=body.name)
