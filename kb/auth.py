"""Users' credentials: argon2id password hashes, login tokens and API keys (stored as SHA-256 digests).

argon2-cffi does the hashing (memory-hard, salted, with parameters in the hash string) because a password hash
written by hand is how breaches happen. Tokens are 32 random bytes; only their digest is stored, so a copy of
the database gives no usable credential.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime, timedelta
from typing import Final, Literal

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from kb.access import Principal
from kb.errors import AuthError
from kb.lifecycle import Role
from kb.models import ApiToken, User, utcnow

TokenKind = Literal["session", "api_key"]
SESSION_TTL: Final = timedelta(hours=12)
_HASHER: Final = PasswordHasher()
_DUMMY_HASH: Final = _HASHER.hash("not a password of anyone")


def hash_password(password: str) -> str:
    """The argon2id hash of ``password`` (at least 8 characters)."""
    if len(password) < 8:
        raise ValueError("a password needs at least 8 characters")
    return _HASHER.hash(password)


def set_password(session: Session, user: User, password: str) -> None:
    """Store a new password hash for ``user`` (flushes, does not commit)."""
    user.password_hash = hash_password(password)
    session.flush()


def authenticate(session: Session, email: str, password: str) -> User:
    """The active user with this e-mail and password; ``AuthError`` otherwise.

    A missing user still costs one hash verification, so timing does not tell which e-mails exist.
    """
    user = session.scalars(select(User).where(User.email == email.strip().lower())).one_or_none()
    stored = user.password_hash if user is not None and user.active and user.password_hash else _DUMMY_HASH
    try:
        _HASHER.verify(stored, password)
    except (VerificationError, InvalidHashError):
        raise AuthError() from None
    if user is None or not user.active or not user.password_hash:
        raise AuthError()
    if _HASHER.check_needs_rehash(stored):
        user.password_hash = _HASHER.hash(password)
    return user


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def issue_token(
    session: Session,
    user: User,
    kind: TokenKind = "session",
    *,
    name: str = "",
    ttl: timedelta | None = SESSION_TTL,
    now: datetime | None = None,
) -> str:
    """A new bearer secret for ``user``: ``kbs_...`` (login session, expires) or ``kbk_...`` (API key).

    The secret is returned once; only its digest is stored.
    """
    now = now or utcnow()
    prefix = "kbs_" if kind == "session" else "kbk_"
    token = prefix + secrets.token_urlsafe(32)
    expires = None if ttl is None else now + ttl
    session.add(
        ApiToken(user_id=user.id, token_hash=_digest(token), kind=kind, name=name, created_at=now, expires_at=expires)
    )
    session.flush()
    return token


def revoke_token(session: Session, token: str, *, now: datetime | None = None) -> bool:
    """Revoke the credential ``token``; False when it is unknown or already revoked."""
    row = session.scalars(select(ApiToken).where(ApiToken.token_hash == _digest(token))).one_or_none()
    if row is None or row.revoked_at is not None:
        return False
    row.revoked_at = now or utcnow()
    session.flush()
    return True


def principal_for_token(session: Session, token: str, *, now: datetime | None = None) -> Principal:
    """The principal a bearer secret stands for; ``AuthError`` if it is unknown, expired, revoked or its user
    is inactive."""
    now = now or utcnow()
    if not token or len(token) > 200:
        raise AuthError()
    row = session.execute(
        select(ApiToken, User).join(User, User.id == ApiToken.user_id).where(ApiToken.token_hash == _digest(token))
    ).one_or_none()
    if row is None:
        raise AuthError()
    tok, user = row
    if tok.revoked_at is not None or (tok.expires_at is not None and tok.expires_at <= now) or not user.active:
        raise AuthError()
    return principal_of(user)


def principal_of(user: User) -> Principal:
    """The principal of a user row (customers and partners carry their organisation)."""
    return Principal(user.id, Role(user.role), user.org_id, user.name)
