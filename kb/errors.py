"""Errors raised by tac-kb.

The tree::

    KBError
    ├── ConfigError            a setting is missing or invalid
    ├── NotFound
    │   ├── DocumentNotFound   doc_id
    │   ├── CaseNotFound       case_id (also another org's case: same message)
    │   └── ArticleNotFound    article_id, version (None: the article itself)
    ├── DuplicateDocument      doc_id
    ├── IndexNotReady          path, reason: no index, or a corrupt / mismatched one
    ├── QueryError             a query that cannot be run as given
    ├── InvalidInput           a malformed input record: path, line
    ├── InvalidTransition      a state change no lifecycle rule allows: kind, current, target, allowed
    ├── PermissionDenied       a role may not do this action: role, action
    ├── AuthError              missing, wrong, expired or revoked credentials (never says which)
    ├── ConcurrentUpdate       optimistic lock lost: entity, id, expected_version, actual_version
    └── IngestError            an ingest source that cannot be read: record, line, reason

Caller mistakes in library calls (bad ``k``, mismatched lengths) raise ``ValueError`` / ``TypeError``.
"""

from __future__ import annotations

from pathlib import Path


class KBError(Exception):
    """Base of every error tac-kb raises on purpose."""


class ConfigError(KBError):
    """A setting is missing or invalid."""


class NotFound(KBError):
    """Something asked for does not exist (or is not visible to the caller)."""


class DocumentNotFound(NotFound):
    def __init__(self, doc_id: str) -> None:
        super().__init__(f"document {doc_id!r} not found")
        self.doc_id = doc_id


class DuplicateDocument(KBError):
    def __init__(self, doc_id: str) -> None:
        super().__init__(f"document {doc_id!r} appears more than once")
        self.doc_id = doc_id


class IndexNotReady(KBError):
    """No usable index at ``path``: missing, corrupt, or built with other parameters."""

    def __init__(self, path: Path | str, reason: str) -> None:
        super().__init__(f"index at {path} is not usable: {reason}")
        self.path = Path(path)
        self.reason = reason


class QueryError(KBError):
    """A query that cannot be run as given."""


class InvalidInput(KBError):
    """A malformed input record (``line`` is 1-based)."""

    def __init__(self, path: Path | str, line: int, reason: str) -> None:
        super().__init__(f"{path}:{line}: {reason}")
        self.path = Path(path)
        self.line = line
        self.reason = reason


class InvalidTransition(KBError):
    """``current -> target`` is not an allowed change of ``kind`` ("case", "escalation", "confidence", "audience").

    ``allowed`` lists the targets that are allowed from ``current`` (empty when unknown or none).
    """

    def __init__(
        self,
        current: str,
        target: str,
        *,
        kind: str = "state",
        allowed: frozenset[str] | tuple[str, ...] = (),
        reason: str = "",
    ) -> None:
        self.kind = kind
        self.current = current
        self.target = target
        self.allowed = tuple(sorted(str(a) for a in allowed))
        listed = ", ".join(self.allowed) or "none"
        why = f" ({reason})" if reason else ""
        super().__init__(f"{kind}: cannot go from {current!s} to {target!s}{why}; allowed from {current!s}: {listed}")


class PermissionDenied(KBError):
    """The role may not perform ``action`` (the transition itself exists for some other role)."""

    def __init__(self, role: str, action: str) -> None:
        super().__init__(f"role {role!s} may not {action}")
        self.role = role
        self.action = action


class IngestError(KBError):
    """The ingest run cannot proceed with this source: unreadable file, no header, unknown format.

    ``record`` is the case id when one record is meant, else the source (a path) or None; ``line`` is
    1-based or None. A single malformed record does not raise: the readers report it and go on.
    """

    def __init__(self, record: str | None, line: int | None, reason: str) -> None:
        where = ":".join(str(part) for part in (record, line) if part is not None)
        super().__init__(f"{where}: {reason}" if where else reason)
        self.record = record
        self.line = line
        self.reason = reason


class CaseNotFound(NotFound):
    """No case ``case_id`` (or one the caller's org may not see: the message is the same on purpose)."""

    def __init__(self, case_id: int) -> None:
        super().__init__(f"case {case_id} not found")
        self.case_id = case_id


class ArticleNotFound(NotFound):
    """No article ``article_id``, or no ``version`` of it when a version was asked for."""

    def __init__(self, article_id: str, version: int | None = None) -> None:
        what = f"article {article_id!r}" if version is None else f"article {article_id!r} version {version}"
        super().__init__(f"{what} not found")
        self.article_id = article_id
        self.version = version


class ConcurrentUpdate(KBError):
    """Someone changed ``entity`` ``id`` first: it is at ``actual_version`` (None: unknown), not the expected one."""

    def __init__(self, entity: str, id: int | str, expected_version: int, actual_version: int | None) -> None:
        now = "unknown" if actual_version is None else str(actual_version)
        super().__init__(f"{entity} {id!s} changed concurrently: expected version {expected_version}, found {now}")
        self.entity = entity
        self.id = id
        self.expected_version = expected_version
        self.actual_version = actual_version


class AuthError(KBError):
    """Missing, wrong, expired or revoked credentials. The message never says which."""

    def __init__(self, reason: str = "invalid or missing credentials") -> None:
        super().__init__(reason)
