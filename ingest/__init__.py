"""Resolved support cases -> bilingual knowledge-article drafts (the pure front half: no database).

``sources`` reads JSONL/CSV exports into ``CaseRecord`` values (bad records are reported, not raised;
unknown fields kept in ``meta``; timeline entries carry a ``visibility``),
``clean`` strips quoted replies, signatures, disclaimers and personal data, ``extract`` drafts the
article sections and glosses them into the other language. Imports ``kb`` only.
"""

from ingest.clean import (
    RedactionCounts,
    clean_case_text,
    clean_timeline,
    record_names,
    redact,
    strip_boilerplate,
    strip_quoted,
    strip_signature,
)
from ingest.extract import (
    GLOSS_METHOD,
    Glosser,
    Sections,
    Translator,
    Variant,
    error_codes,
    extract_sections,
    other_language_variant,
)
from ingest.sources import (
    DEFAULT_MAPPING,
    CaseRecord,
    ColumnMapping,
    EntryKind,
    RecordError,
    SourceItem,
    TimelineEntry,
    Visibility,
    parse_case,
    read_cases,
    read_csv,
    read_jsonl,
)

__all__ = [
    "DEFAULT_MAPPING",
    "GLOSS_METHOD",
    "CaseRecord",
    "ColumnMapping",
    "EntryKind",
    "Glosser",
    "RecordError",
    "RedactionCounts",
    "Sections",
    "SourceItem",
    "TimelineEntry",
    "Translator",
    "Variant",
    "Visibility",
    "clean_case_text",
    "clean_timeline",
    "error_codes",
    "extract_sections",
    "other_language_variant",
    "parse_case",
    "read_cases",
    "read_csv",
    "read_jsonl",
    "record_names",
    "redact",
    "strip_boilerplate",
    "strip_quoted",
    "strip_signature",
]
