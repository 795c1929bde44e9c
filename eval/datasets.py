"""Load a retrieval dataset: ``corpus.jsonl``, ``queries.jsonl`` and ``qrels.tsv`` in one folder.

The shared evaluation data (``../shared/eval/<task>/``, see its README) carries ``{"id", "title", "text",
"lang"}`` corpus lines. Our own samples (``data/samples``) may instead carry the structured article fields
(symptom, environment, cause, resolution, product, ...); their text is the non-empty body fields joined by
newlines. ``qrels.tsv`` is ``query-id<TAB>doc-id<TAB>relevance`` without a header.

Filtering by ``doc_lang`` shrinks the document pool; queries left without any relevant document in the pool
are dropped and counted in ``Dataset.skipped_queries`` (the shared README asks reports to say so).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kb.search.types import Document

LANGS: tuple[str, ...] = ("zh", "en", "mixed")
SHARED_EVAL_DIR: Path = Path(__file__).resolve().parents[2] / "shared" / "eval"
"""The shared evaluation data, ``../shared/eval`` from the project root (read in place, never copied)."""
BODY_FIELDS: tuple[str, ...] = ("symptom", "environment", "cause", "resolution")
"""Structured corpus fields joined (in this order) into a document's text."""
_QRELS_HEADERS = frozenset({"query-id", "query_id", "qid"})


class DatasetError(ValueError):
    """A dataset file is missing or has a malformed line. ``line`` is 1-based, or None for the whole file."""

    def __init__(self, path: Path, line: int | None, reason: str) -> None:
        where = f"{path}:{line}" if line is not None else str(path)
        super().__init__(f"{where}: {reason}")
        self.path = path
        self.line = line
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Query:
    """One evaluation query. ``lang`` is ``zh``, ``en`` or ``mixed``."""

    id: str
    text: str
    lang: str


@dataclass(frozen=True)
class Dataset:
    """A loaded (and possibly language-filtered) dataset, ready to evaluate.

    ``queries`` holds only queries with at least one relevant document in ``docs``; ``qrels`` maps each of
    them to its judged documents in the pool. ``skipped_queries`` counts the queries dropped for having no
    relevant document left (``skipped_by_lang`` splits that count by query language).
    """

    name: str
    docs: list[Document]
    queries: list[Query]
    qrels: dict[str, dict[str, int]]
    skipped_queries: int = 0
    skipped_by_lang: dict[str, int] = field(default_factory=dict)
    query_lang: str | None = None
    doc_lang: str | None = None


def resolve_dataset_dir(arg: str) -> Path:
    """``arg`` as a path when it is a folder, else the shared evaluation folder of that name if one exists."""
    path = Path(arg)
    if not path.is_dir() and len(path.parts) == 1 and (SHARED_EVAL_DIR / arg).is_dir():
        return SHARED_EVAL_DIR / arg
    return path


def load_dataset(path: Path, *, query_lang: str | None = None, doc_lang: str | None = None) -> Dataset:
    """Read ``corpus.jsonl``, ``queries.jsonl`` and ``qrels.tsv`` from the folder ``path``.

    ``doc_lang`` keeps only documents of that language; ``query_lang`` only queries of that language.
    Raises ``DatasetError`` (a ``ValueError``) naming the file and line for a missing file, a malformed
    line, a duplicate id or a qrel pointing at an unknown query or document.
    """
    for name, value in (("query_lang", query_lang), ("doc_lang", doc_lang)):
        if value is not None and value not in LANGS:
            raise ValueError(f"{name} must be one of {', '.join(LANGS)}, not {value!r}")
    path = Path(path)
    if not path.is_dir():
        raise DatasetError(
            path, None, "not a dataset folder (expected corpus.jsonl, queries.jsonl, qrels.tsv)"
        )
    all_docs = _read_corpus(path / "corpus.jsonl")
    all_queries = _read_queries(path / "queries.jsonl")
    all_qrels = _read_qrels(path / "qrels.tsv", set(all_queries), set(all_docs))

    docs = [d for d in all_docs.values() if doc_lang is None or d.lang == doc_lang]
    pool = {d.doc_id for d in docs}
    queries: list[Query] = []
    qrels: dict[str, dict[str, int]] = {}
    skipped_by_lang: dict[str, int] = {}
    for query in all_queries.values():
        if query_lang is not None and query.lang != query_lang:
            continue
        judged = {doc_id: rel for doc_id, rel in all_qrels.get(query.id, {}).items() if doc_id in pool}
        if not any(rel > 0 for rel in judged.values()):
            skipped_by_lang[query.lang] = skipped_by_lang.get(query.lang, 0) + 1
            continue
        queries.append(query)
        qrels[query.id] = judged
    return Dataset(
        name=path.resolve().name,
        docs=docs,
        queries=queries,
        qrels=qrels,
        skipped_queries=sum(skipped_by_lang.values()),
        skipped_by_lang=skipped_by_lang,
        query_lang=query_lang,
        doc_lang=doc_lang,
    )


def _lines(path: Path) -> Iterator[tuple[int, str]]:
    """Yield (1-based line number, stripped line) for non-blank lines; a missing file is a DatasetError."""
    try:
        with path.open(encoding="utf-8") as fh:
            for number, line in enumerate(fh, start=1):
                if line.strip():
                    yield number, line.rstrip("\r\n")
    except FileNotFoundError as exc:
        raise DatasetError(path, None, "file not found") from exc
    except UnicodeDecodeError as exc:
        raise DatasetError(path, None, f"not UTF-8 text ({exc.reason})") from exc


def _json_objects(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    for number, line in _lines(path):
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DatasetError(path, number, f"invalid JSON ({exc.msg} at column {exc.colno})") from exc
        if not isinstance(obj, dict):
            raise DatasetError(path, number, "expected a JSON object")
        yield number, obj


def _str_field(obj: Mapping[str, Any], key: str, path: Path, line: int, *, required: bool = True) -> str:
    value = obj.get(key)
    if value is None and not required:
        return ""
    if not isinstance(value, str) or (required and not value):
        raise DatasetError(path, line, f"field {key!r} must be a non-empty string")
    return value


def _lang(obj: Mapping[str, Any], path: Path, line: int) -> str:
    lang = _str_field(obj, "lang", path, line)
    if lang not in LANGS:
        raise DatasetError(path, line, f"lang must be one of {', '.join(LANGS)}, not {lang!r}")
    return lang


def _body_text(obj: Mapping[str, Any], path: Path, line: int) -> str:
    """Structured format: the non-empty body fields (strings or lists of strings) joined by newlines."""
    parts: list[str] = []
    for key in BODY_FIELDS:
        value = obj.get(key)
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            value = "\n".join(v for v in value if v.strip())
        if value is None:
            continue
        if not isinstance(value, str):
            raise DatasetError(path, line, f"field {key!r} must be a string")
        if value.strip():
            parts.append(value.strip())
    if not parts:
        raise DatasetError(path, line, f"needs 'text' or one of {', '.join(BODY_FIELDS)}")
    return "\n".join(parts)


def _read_corpus(path: Path) -> dict[str, Document]:
    docs: dict[str, Document] = {}
    for line, obj in _json_objects(path):
        doc_id = _str_field(obj, "id", path, line)
        if doc_id in docs:
            raise DatasetError(path, line, f"duplicate document id {doc_id!r}")
        lang = _lang(obj, path, line)
        title = _str_field(obj, "title", path, line, required=False)
        attrs: dict[str, str] = {"lang": lang}
        if "text" in obj:
            text = _str_field(obj, "text", path, line, required=False)
        else:
            text = _body_text(obj, path, line)
            product = obj.get("product")
            if product is not None:
                if not isinstance(product, str):
                    raise DatasetError(path, line, "field 'product' must be a string")
                attrs = {"product": product, "lang": lang}
        if not text.strip() and not title.strip():
            raise DatasetError(path, line, "document has neither text nor title")
        docs[doc_id] = Document(doc_id=doc_id, title=title, text=text, lang=lang, attrs=attrs)
    return docs


def _read_queries(path: Path) -> dict[str, Query]:
    queries: dict[str, Query] = {}
    for line, obj in _json_objects(path):
        query_id = _str_field(obj, "id", path, line)
        if query_id in queries:
            raise DatasetError(path, line, f"duplicate query id {query_id!r}")
        text = _str_field(obj, "text", path, line)
        queries[query_id] = Query(id=query_id, text=text, lang=_lang(obj, path, line))
    return queries


def _read_qrels(path: Path, query_ids: set[str], doc_ids: set[str]) -> dict[str, dict[str, int]]:
    qrels: dict[str, dict[str, int]] = {}
    for line, raw in _lines(path):
        cols = raw.split("\t")
        if line == 1 and cols[0].strip().lower() in _QRELS_HEADERS:
            continue  # tolerate a BEIR-style header, though the shared format has none
        if len(cols) != 3:
            raise DatasetError(
                path, line, f"expected query-id<TAB>doc-id<TAB>relevance, got {len(cols)} column(s)"
            )
        query_id, doc_id, rel_text = (c.strip() for c in cols)
        try:
            rel = int(rel_text)
        except ValueError:
            raise DatasetError(path, line, f"relevance must be an integer, not {rel_text!r}") from None
        if query_id not in query_ids:
            raise DatasetError(path, line, f"unknown query id {query_id!r}")
        if doc_id not in doc_ids:
            raise DatasetError(path, line, f"unknown document id {doc_id!r}")
        qrels.setdefault(query_id, {})[doc_id] = rel
    return qrels
