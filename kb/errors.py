"""Errors raised by tac-kb.

The tree::

    KBError
    ├── ConfigError            a setting is missing or invalid
    ├── NotFound
    │   └── DocumentNotFound   doc_id
    ├── DuplicateDocument      doc_id
    ├── IndexNotReady          path, reason: no index, or a corrupt / mismatched one
    ├── QueryError             a query that cannot be run as given
    └── InvalidInput           a malformed input record: path, line

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
