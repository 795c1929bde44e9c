"""tac-kb: bilingual (zh/en) knowledge search for technical support centers.

The public surface of the core; everything else is internal and may change.
"""

from kb.config import Settings
from kb.documents import read_documents
from kb.errors import (
    ConfigError,
    DocumentNotFound,
    DuplicateDocument,
    IndexNotReady,
    InvalidInput,
    KBError,
    NotFound,
    QueryError,
)
from kb.search.types import Document, Filter, Hit
from kb.text import Analyzer, detect_lang

__all__ = [
    "Analyzer",
    "ConfigError",
    "Document",
    "DocumentNotFound",
    "DuplicateDocument",
    "Filter",
    "Hit",
    "IndexNotReady",
    "InvalidInput",
    "KBError",
    "NotFound",
    "QueryError",
    "Settings",
    "detect_lang",
    "read_documents",
]
