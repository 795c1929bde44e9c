"""Read knowledge documents from JSONL: the common evaluation format or our article format.

A line is either ``{"id", "title", "text", "lang", ...}`` or a knowledge article with structured fields
``{"id", "title", "lang", "product", "symptom", "environment", "cause", "resolution", ...}``; then the
text is those four sections joined, and ``product`` (with ``lang``) becomes a filter attribute.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from kb.errors import InvalidInput
from kb.search.types import Document

SECTIONS = ("symptom", "environment", "cause", "resolution")
ATTR_KEYS = ("product", "audience", "source")
LANGS = ("zh", "en", "mixed")


def corpus_path(path: Path) -> Path:
    """``path`` itself for a file, ``path/corpus.jsonl`` for a dataset directory."""
    return path / "corpus.jsonl" if path.is_dir() else path


def read_documents(path: Path) -> Iterator[Document]:
    """Documents of a JSONL file or dataset directory; a malformed line raises ``InvalidInput``."""
    source = corpus_path(path)
    try:
        lines = source.open(encoding="utf-8")
    except OSError as exc:
        raise InvalidInput(source, 0, f"cannot read: {exc.strerror or exc}") from exc
    with lines:
        for number, line in enumerate(lines, start=1):
            if line.strip():
                yield parse_document(line, source, number)


def parse_document(line: str, path: Path, number: int) -> Document:
    try:
        record: Any = json.loads(line)
    except json.JSONDecodeError as exc:
        raise InvalidInput(path, number, f"not valid JSON ({exc.msg})") from exc
    if not isinstance(record, dict):
        raise InvalidInput(path, number, "expected a JSON object")
    doc_id = record.get("id")
    if not isinstance(doc_id, str) or not doc_id.strip():
        raise InvalidInput(path, number, "missing or empty string field 'id'")
    text = record.get("text")
    if text is None:
        parts = [record.get(s) for s in SECTIONS]
        text = "\n".join(p for p in parts if isinstance(p, str) and p.strip())
    if not isinstance(text, str) or not text.strip():
        raise InvalidInput(path, number, f"document {doc_id!r} has no text (give 'text' or {', '.join(SECTIONS)})")
    title = record.get("title") or ""
    if not isinstance(title, str):
        raise InvalidInput(path, number, "field 'title' must be a string")
    lang = record.get("lang", "en")
    if lang not in LANGS:
        raise InvalidInput(path, number, f"field 'lang' must be one of {', '.join(LANGS)}, got {lang!r}")
    attrs = {k: str(record[k]) for k in ATTR_KEYS if record.get(k) is not None}
    extra = record.get("attrs")
    if isinstance(extra, dict):
        attrs.update({str(k): str(v) for k, v in extra.items()})
    return Document(doc_id, title, text, lang, attrs)
