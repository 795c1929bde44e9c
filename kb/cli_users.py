"""``kb users add`` and ``kb users import FILE``: service accounts for the API and the portal.

``users.jsonl``: one JSON object per line: ``name``, ``email``, ``role`` (customer, partner, engineer, author,
reviewer, coach, admin), ``org`` (customers and partners: the organisation's name, created if new) and
``password`` (optional; users without one log in with API keys only). Importing is idempotent: a known e-mail
is updated (role, organisation, password), never duplicated.
"""

from __future__ import annotations

import argparse
import getpass
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from kb.auth import hash_password, issue_token
from kb.cli import settings_from_args
from kb.cli_db import open_database
from kb.errors import InvalidInput
from kb.lifecycle import Role
from kb.models import Org, User


def upsert_user(session: Session, spec: dict[str, Any], *, where: str = "user") -> tuple[User, bool]:
    """Create or update the user ``spec`` describes; returns (user, created). ``ValueError`` on a bad spec."""
    unknown = set(spec) - {"name", "email", "role", "org", "password"}
    if unknown:
        raise ValueError(f"{where}: unknown field(s) {', '.join(sorted(unknown))}")
    try:
        email = str(spec["email"]).strip().lower()
        role = Role(spec["role"])
    except KeyError as exc:
        raise ValueError(f"{where}: missing field {exc.args[0]!r}") from None
    except ValueError:
        raise ValueError(f"{where}: role must be one of {', '.join(r.value for r in Role)}") from None
    if "@" not in email:
        raise ValueError(f"{where}: {email!r} is not an e-mail address")
    org_name = spec.get("org")
    if (role in (Role.CUSTOMER, Role.PARTNER)) != bool(org_name):
        raise ValueError(f"{where}: customers and partners need an org; staff have none")
    org_id = None
    if org_name:
        org = session.scalars(select(Org).where(Org.name == str(org_name))).one_or_none()
        if org is None:
            org = Org(name=str(org_name))
            session.add(org)
            session.flush()
        org_id = org.id
    password = spec.get("password")
    hashed = hash_password(str(password)) if password else None
    user = session.scalars(select(User).where(User.email == email)).one_or_none()
    created = user is None
    if user is None:
        user = User(email=email, active=True, name="", role=role)
        session.add(user)
    user.name = str(spec.get("name") or email.split("@")[0])
    user.role = role
    user.org_id = org_id
    if hashed:
        user.password_hash = hashed
    session.flush()
    return user, created


def cmd_users_import(args: argparse.Namespace) -> int:
    path = Path(args.source)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise InvalidInput(path, 0, f"cannot read: {exc.strerror}") from exc
    specs: list[tuple[int, dict[str, Any]]] = []
    for n, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            spec = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InvalidInput(path, n, f"not JSON: {exc.msg}") from exc
        if not isinstance(spec, dict):
            raise InvalidInput(path, n, "each line must be a JSON object")
        specs.append((n, spec))
    _, factory = open_database(settings_from_args(args))
    created = updated = 0
    with factory.begin() as session:  # all or nothing: a bad line leaves the database as it was
        for n, spec in specs:
            try:
                _, new = upsert_user(session, spec, where=f"{path}:{n}")
            except ValueError as exc:
                raise InvalidInput(path, n, str(exc).split(": ", 1)[-1]) from exc
            created += new
            updated += not new
    print(f"users: {created} created, {updated} updated")
    return 0


def cmd_users_add(args: argparse.Namespace) -> int:
    password = None
    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    elif args.password:
        password = getpass.getpass("password: ")
    spec = {"name": args.name, "email": args.email, "role": args.role, "org": args.org, "password": password}
    _, factory = open_database(settings_from_args(args))
    with factory.begin() as session:
        try:
            user, created = upsert_user(session, {k: v for k, v in spec.items() if v is not None})
        except ValueError as exc:
            print(f"kb: error: {exc}", file=sys.stderr)
            return 2
        key = issue_token(session, user, "api_key", name=args.api_key, ttl=None) if args.api_key else None
        print(f"user {user.email} ({user.role}) {'created' if created else 'updated'}, id {user.id}")
    if key:
        print(f"api key (shown once): {key}")
    return 0


def register(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], common: Callable[[argparse.ArgumentParser], None]
) -> None:
    up = sub.add_parser("users", help="service accounts: add one, or import a users.jsonl")
    usub = up.add_subparsers(dest="users_command", required=True, metavar="ACTION")
    imp = usub.add_parser("import", help="create or update the users of a JSONL file (all or nothing)")
    imp.add_argument("source", help="users.jsonl: name, email, role, org, password")
    imp.add_argument("--db", help="database URL (default: $KB_DATABASE_URL or sqlite:///.kb/kb.db)")
    common(imp)
    imp.set_defaults(func=cmd_users_import)
    add = usub.add_parser("add", help="create or update one user")
    add.add_argument("email")
    add.add_argument("--role", required=True, choices=[r.value for r in Role])
    add.add_argument("--name")
    add.add_argument("--org", help="organisation (customers and partners)")
    add.add_argument("--password", action="store_true", help="ask for a password")
    add.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    add.add_argument("--api-key", metavar="NAME", help="also issue an API key with this name (printed once)")
    add.add_argument("--db", help="database URL (default: $KB_DATABASE_URL or sqlite:///.kb/kb.db)")
    common(add)
    add.set_defaults(func=cmd_users_add)
