"""Read resolved support cases from JSONL or CSV exports, or from our own database, into ``CaseRecord`` values.

A reader yields one ``SourceItem(line, item)`` per record, where ``item`` is a ``CaseRecord`` or a
``RecordError``: a malformed record (bad JSON, a missing required field, a bad priority, an unparseable
date, a bad event kind or visibility, a wrong type, bytes that are not UTF-8) is reported and reading
goes on with the next record (STYLE.md section 5). Only a source the run cannot use at all (missing,
unreadable, no header, no column for a required field, unknown suffix) raises ``IngestError``, and it
does so when the reader is called, before the first record. ``line`` is the 1-based line of the file
where the record starts.

The input keys follow the issue's case format (``id``, ``org``, ``contact``, ``events`` with ``body`` and
``visibility``); the older names (``case_id``, ``customer_org``, ``contact_name``, ``timeline`` with
``text`` and the kinds ``note_internal`` / ``note_public`` / ``state_change``) are still read. Unknown
top-level keys (and unmapped CSV columns) are kept in ``CaseRecord.meta``. The formats and the CSV column
mapping are documented in ``docs/ingest-formats.md``.

``stored_case_record`` turns a case already in the database (``kb.models.Case`` with its ``CaseEvent``
timeline, loaded by ``ingest.pipeline.read_stored_cases``) into the same ``CaseRecord``, with ``db_case_id`` set,
so the pipeline attaches the draft to that case instead of creating one; such an item's ``line`` is None.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import reprlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, tzinfo
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, BinaryIO, Final, Literal, NamedTuple, NoReturn, cast, get_args

from kb.errors import IngestError
from kb.text import detect_lang

if TYPE_CHECKING:  # only the rows' types: this module never touches the database
    from kb.models import Case, CaseEvent

Lang = Literal["zh", "en", "mixed"]
Channel = Literal["phone", "email", "web", "chat"]
Priority = Literal["P1", "P2", "P3", "P4"]
EntryKind = Literal["call", "email", "note", "state", "escalation"]
Visibility = Literal["internal", "customer"]

_CHANNEL_ALIASES: Final = {
    "phone": "phone", "tel": "phone", "call": "phone", "电话": "phone",
    "email": "email", "e-mail": "email", "mail": "email", "邮件": "email", "电子邮件": "email",
    "web": "web", "portal": "web", "web portal": "web", "网页": "web", "门户": "web", "网站": "web",
    "chat": "chat", "im": "chat", "在线": "chat", "在线聊天": "chat", "聊天": "chat",
}  # fmt: skip
_PRIORITY_ALIASES: Final = {f"{p}{i}": f"P{i}" for i in range(1, 5) for p in ("", "p")}  # P1, p1, 1 -> P1
_VISIBILITY_ALIASES: Final[Mapping[str, Visibility]] = {
    "internal": "internal", "private": "internal", "customer": "customer", "public": "customer",
}  # fmt: skip
LEGACY_KINDS: Final[Mapping[str, tuple[EntryKind, Visibility]]] = MappingProxyType({
    "note_internal": ("note", "internal"), "note_public": ("note", "customer"), "state_change": ("state", "customer"),
})  # fmt: skip
"""Kinds of the older timeline format -> (kind, visibility)."""
_BOM: Final = b"\xef\xbb\xbf"
_short = reprlib.Repr()
_short.maxstring = _short.maxother = 60


@dataclass(frozen=True, slots=True)
class TimelineEntry:
    """One event of a case: a call, an e-mail, a note, a state change or an escalation.

    ``visibility`` says whether the customer saw it; it defaults to ``"internal"`` because an export that
    does not say must never make an entry look customer-facing.
    """

    kind: EntryKind
    author: str = ""
    at: datetime | None = None
    text: str = ""
    visibility: Visibility = "internal"

    def __post_init__(self) -> None:
        for name, allowed in (("kind", EntryKind), ("visibility", Visibility)):
            value = getattr(self, name)
            if value not in get_args(allowed):
                raise ValueError(f"{name} must be one of {', '.join(get_args(allowed))}, got {value!r}")
        if self.at is not None and self.at.utcoffset() is None:
            raise ValueError(f"timeline time {self.at.isoformat()} has no timezone")


class FrozenMeta(dict[str, object]):
    """``CaseRecord.meta``: a dict that refuses changes. ``dict()``, ``json.dumps``, pickle, ``copy`` and
    ``dataclasses.asdict`` take it as they take a dict (``types.MappingProxyType`` fails the last three)."""

    __slots__ = ()

    def _read_only(self, *args: object, **kwargs: object) -> NoReturn:
        raise TypeError("CaseRecord.meta is read-only; copy it with dict(record.meta)")

    __setitem__ = __delitem__ = __ior__ = clear = pop = popitem = setdefault = update = _read_only

    def __reduce__(self) -> tuple[type[FrozenMeta], tuple[dict[str, object]]]:
        return type(self), (dict(self),)


@dataclass(frozen=True, slots=True)
class CaseRecord:
    """A support case as exported by the ticketing system; raw text, before cleaning.

    ``resolution`` may be empty (such a case is read, and skipped by the pipeline). ``lang`` is
    detected from subject, description and resolution when not given, so it is never None on an
    instance. ``meta`` holds the export's unknown top-level fields (JSON values, in input order) as a
    read-only copy. Construction validates: case_id/subject/description non-empty, priority/channel/lang
    values, timezone-aware times, JSON-serialisable meta; it raises ``ValueError`` naming the field.
    ``created_at`` is required by the readers (a record without it is a ``RecordError``); only direct
    construction may leave it None. ``db_case_id`` is set only by ``read_stored_cases``: the id of the
    ``kb.models.Case`` the record was read from (the pipeline links the draft to it and creates no case); it is
    not part of the record's content (no file key sets it, ``record_hash`` leaves it out).
    """

    case_id: str
    subject: str
    description: str
    resolution: str = ""
    product: str = ""
    version: str = ""
    customer_org: str = ""
    contact_name: str = ""
    contact_email: str = ""
    channel: Channel | None = None
    priority: Priority | None = None
    state: str = ""
    created_at: datetime | None = None
    resolved_at: datetime | None = None
    timeline: tuple[TimelineEntry, ...] = ()
    lang: Lang | None = None
    meta: Mapping[str, object] = dataclasses.field(default_factory=FrozenMeta, hash=False)
    db_case_id: int | None = None

    def __post_init__(self) -> None:
        for name in ("case_id", "subject", "description"):
            if not getattr(self, name).strip():
                raise ValueError(f"{name} is required")
        for name, allowed in (("channel", Channel), ("priority", Priority), ("lang", Lang)):
            value = getattr(self, name)
            if value is not None and value not in get_args(allowed):
                raise ValueError(f"{name} must be one of {', '.join(get_args(allowed))}, got {value!r}")
        for time in (self.created_at, self.resolved_at):
            if time is not None and time.utcoffset() is None:
                raise ValueError(f"{time.isoformat()} has no timezone (created_at / resolved_at)")
        try:  # a private copy through JSON: proves the values serialise, and shares nothing with the input
            meta = json.loads(json.dumps(dict(self.meta), ensure_ascii=False))
        except (TypeError, ValueError) as exc:
            raise ValueError(f"meta must be a JSON-serialisable mapping: {exc}") from None
        object.__setattr__(self, "meta", FrozenMeta(meta))  # frozen: the documented way to set in __post_init__
        if self.lang is None:
            detected = detect_lang(" ".join((self.subject, self.description, self.resolution)))
            object.__setattr__(self, "lang", detected)


@dataclass(frozen=True, slots=True)
class RecordError:
    """A record that could not be read: ``record`` is its case id when that much was readable; ``line`` is None
    for a database record."""

    record: str | None
    line: int | None
    reason: str


class SourceItem(NamedTuple):
    """``(line, CaseRecord)`` or ``(line, RecordError)``; ``line`` is where the record starts (1-based), None
    for a case read from the database."""

    line: int | None
    item: CaseRecord | RecordError


ColumnMapping = Mapping[str, Sequence[str]]
"""CaseRecord field -> the CSV header names accepted for it (matched case-insensitively)."""

FIELDS: Final = tuple(name for name in CaseRecord.__dataclass_fields__ if name not in ("meta", "db_case_id"))
"""The fields a source sets by name (``meta`` is what is left over; ``db_case_id`` is never read from a file)."""
REQUIRED: Final = ("case_id", "subject", "description", "created_at")
KEYS: Final[Mapping[str, tuple[str, ...]]] = MappingProxyType({
    **{name: (name,) for name in FIELDS},
    "case_id": ("id", "case_id"), "customer_org": ("org", "customer_org"),
    "contact_name": ("contact", "contact_name"), "timeline": ("events", "timeline"),
})  # fmt: skip
"""CaseRecord field -> the JSON keys read for it: the issue's name first, then the older one."""
_KNOWN: Final = frozenset(key for keys in KEYS.values() for key in keys)
_ENTRY_KEYS: Final = {"kind": ("kind",), "author": ("author",), "at": ("at",), "text": ("body", "text"),
                      "visibility": ("visibility",)}  # fmt: skip
_TEXT_FIELDS: Final = ("subject", "description", "resolution", "product", "version", "customer_org", "contact_name",
                       "contact_email", "state")  # fmt: skip

DEFAULT_MAPPING: Final[ColumnMapping] = MappingProxyType({
    "case_id": ("id", "case_id", "Case Number", "Case ID", "Ticket ID", "工单号", "工单编号", "案例编号"),
    "subject": ("subject", "Title", "Summary", "标题", "主题"),
    "description": ("description", "Details", "问题描述", "描述"),
    "resolution": ("resolution", "Solution", "解决方案", "解决方法"),
    "product": ("product", "产品"),
    "version": ("version", "Product Version", "版本", "产品版本"),
    "customer_org": ("org", "customer_org", "Account Name", "Customer", "客户", "客户名称"),
    "contact_name": ("contact", "contact_name", "Contact Name", "联系人"),
    "contact_email": ("contact_email", "Contact Email", "Email", "联系人邮箱", "邮箱"),
    "channel": ("channel", "Case Origin", "Origin", "渠道", "来源"),
    "priority": ("priority", "优先级"),
    "state": ("state", "Status", "状态"),
    "created_at": ("created_at", "Date/Time Opened", "Created Date", "创建时间"),
    "resolved_at": ("resolved_at", "Date/Time Closed", "Closed Date", "Resolved Date", "解决时间", "关闭时间"),
    "timeline": ("events", "timeline", "时间线"),
    "lang": ("lang", "Language", "语言"),
})  # fmt: skip


# ---- one record ---------------------------------------------------------------------------------
def parse_case(data: Mapping[str, object], *, default_tz: tzinfo | None = None) -> CaseRecord:
    """Build a ``CaseRecord`` from one JSON object (absent, None and "" mean missing).

    Keys are read as listed in ``KEYS`` (``id`` or ``case_id``, ``events`` or ``timeline``...; two keys
    for one field must agree); every other key goes to ``meta``. ``id``, ``subject``, ``description``
    and ``created_at`` are required. Times are ISO 8601 (``2024-05-01T09:30:00+08:00``; ``Z`` and
    ``2024/05/01 09:30`` are accepted); a time without an offset takes ``default_tz`` or is an error.
    Raises ``ValueError`` naming the field (as the input spelt it).
    """
    return _parse(data, {key: value for key, value in data.items() if key not in _KNOWN}, default_tz)


def _parse(data: Mapping[str, object], meta: Mapping[str, object], default_tz: tzinfo | None) -> CaseRecord:
    got = {name: _pick(data, keys) for name, keys in KEYS.items()}
    for name in REQUIRED:
        if _missing(got[name][1]):
            keys = KEYS[name]
            raise ValueError(f"{keys[0]}{f' (or {keys[1]})' if len(keys) > 1 else ''} is required")
    label, timeline = got["timeline"]
    if isinstance(timeline, str):  # CSV: a JSON array in one cell
        try:
            timeline = json.loads(timeline) if timeline.strip() else None
        except json.JSONDecodeError as exc:
            raise ValueError(f"{label} is not a JSON array: {exc.msg} at char {exc.pos}") from exc
    if timeline is not None and not isinstance(timeline, list):
        raise ValueError(f"{label} must be an array, got {type(timeline).__name__}")
    entries = tuple(_entry(f"{label}[{i}]", raw, default_tz) for i, raw in enumerate(timeline or (), start=1))
    lang = _text(*got["lang"]).lower()
    return CaseRecord(
        case_id=_case_id(*got["case_id"]),
        channel=cast(Channel | None, _choice(*got["channel"], _CHANNEL_ALIASES)),
        priority=cast(Priority | None, _choice(*got["priority"], _PRIORITY_ALIASES)),
        created_at=_time(*got["created_at"], default_tz),
        resolved_at=_time(*got["resolved_at"], default_tz),
        timeline=entries,
        lang=cast(Lang, lang) if lang else None,
        meta=meta,
        db_case_id=None,  # files never set it (and naming it keeps the text fields' ** apart from it for mypy)
        **{name: _text(*got[name]) for name in _TEXT_FIELDS},
    )


def _missing(value: object) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def _pick(data: Mapping[str, object], keys: Sequence[str]) -> tuple[str, object]:
    """(key, value) of the first of ``keys`` the object holds (None and "" count as absent), or
    ``(keys[0], None)``. Two keys for one field that disagree are an error: which one is right?"""
    found = [(key, data[key]) for key in keys if data.get(key) is not None and data.get(key) != ""]
    if not found:
        return keys[0], None
    key, value = found[0]
    for other, second in found[1:]:
        if second != value:
            raise ValueError(f"{key} and {other} disagree: {_short.repr(value)} vs {_short.repr(second)}")
    return key, value


def _case_id(label: str, value: object) -> str:
    if isinstance(value, int) and not isinstance(value, bool):  # numeric ticket numbers are common
        return str(value)
    if isinstance(value, str):
        return value.strip()
    if value is None:
        return ""
    raise ValueError(f"{label} must be a string, got {type(value).__name__}")


def _text(label: str, value: object) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise ValueError(f"{label} must be a string, got {type(value).__name__}")
    return value.strip()


def _choice(label: str, value: object, aliases: Mapping[str, str]) -> str | None:
    if value is None or value == "":
        return None
    key = str(value).strip().lower() if isinstance(value, str | int) and not isinstance(value, bool) else ""
    if key not in aliases:
        raise ValueError(f"{label} must be one of {', '.join(sorted(set(aliases.values())))}, got {value!r}")
    return aliases[key]


def _time(label: str, value: object, default_tz: tzinfo | None) -> datetime | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise ValueError(f"{label} must be an ISO 8601 string, got {type(value).__name__}")
    text = value.strip()
    if len(text) >= 10 and text[4] == "/" and text[7] == "/":
        text = text[:10].replace("/", "-") + text[10:]
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"{label} is not an ISO 8601 time: {value!r}") from None
    if parsed.utcoffset() is None:
        if default_tz is None:
            raise ValueError(f"{label} {value!r} has no timezone offset")
        parsed = parsed.replace(tzinfo=default_tz)
    return parsed


def _entry(where: str, raw: object, default_tz: tzinfo | None) -> TimelineEntry:
    """One event; ``where`` (``events[3]``, 1-based) prefixes every error. Unknown keys are ignored."""
    if not isinstance(raw, dict):
        raise ValueError(f"{where} must be an object, got {type(raw).__name__}")
    try:
        got = {name: _pick(raw, keys) for name, keys in _ENTRY_KEYS.items()}
        kind = _text(*got["kind"]).lower()
        visibility = _visibility(*got["visibility"])
        if kind in LEGACY_KINDS:
            legacy = kind
            kind, implied = LEGACY_KINDS[legacy]
            if visibility not in (None, implied):
                raise ValueError(f"kind {legacy!r} is {implied}, but visibility is {visibility!r}")
            visibility = implied
        at = _time(*got["at"], default_tz)
        return TimelineEntry(
            cast(EntryKind, kind), _text(*got["author"]), at, _text(*got["text"]), visibility or "internal"
        )
    except ValueError as exc:
        raise ValueError(f"{where}: {exc}") from None


def _visibility(label: str, value: object) -> Visibility | None:
    if value is None or value == "":
        return None  # not said: the caller decides (internal, unless a legacy kind says otherwise)
    if not isinstance(value, str) or value.strip().lower() not in _VISIBILITY_ALIASES:
        raise ValueError(f"{label} must be one of internal, customer (or public, private), got {value!r}")
    return _VISIBILITY_ALIASES[value.strip().lower()]


def _record_id(data: Mapping[str, object]) -> str | None:
    try:
        return _case_id(*_pick(data, KEYS["case_id"])) or None
    except ValueError:
        return None


# ---- files ------------------------------------------------------------------------------------
def read_jsonl(path: Path | str, *, default_tz: tzinfo | None = None) -> Iterator[SourceItem]:
    """One case per line (a JSON object); blank lines are skipped. Raises ``IngestError`` now when
    the file cannot be opened; bad records come out as ``RecordError`` items."""
    path = Path(path)
    _open(path).close()
    return _iter_jsonl(path, default_tz)


def _iter_jsonl(path: Path, default_tz: tzinfo | None) -> Iterator[SourceItem]:
    with _open(path) as raw:
        lines = _Lines(raw)
        for number, text in enumerate(lines, start=1):
            reason = "not valid UTF-8" if number in lines.bad else ""
            if not text.strip():
                continue
            data: object = None
            try:
                data = None if reason else json.loads(text)
            except json.JSONDecodeError as exc:
                reason = f"invalid JSON: {exc.msg} at column {exc.colno}"
            if isinstance(data, dict):
                yield _item(number, data, None, default_tz)
            else:
                reason = reason or f"expected a JSON object, got {type(data).__name__}"
                yield SourceItem(number, RecordError(None, number, reason))


def read_csv(
    path: Path | str, mapping: ColumnMapping = DEFAULT_MAPPING, *, default_tz: tzinfo | None = None
) -> Iterator[SourceItem]:
    """Cases from a CSV file with a header row, columns named as in ``mapping``; a cell may span lines.

    Raises ``IngestError`` now when the file cannot be opened, has no header, is not UTF-8 in its
    header, or lacks a column for a required field (``REQUIRED``). The non-empty cells of columns that
    map to no field go to ``meta`` under their header (``column_N``, 1-based, for a blank header or a
    cell past the header's end); a second column for an already mapped field is ignored.
    """
    path = Path(path)
    aliases = _aliases(mapping)
    with _open(path) as raw:
        lines = _Lines(raw)
        try:
            header = next(csv.reader(lines), None)
        except csv.Error as exc:
            raise IngestError(str(path), 1, f"malformed CSV header: {exc}") from exc
    if not header or not any(cell.strip() for cell in header):
        raise IngestError(str(path), 1, "no header row")
    if lines.bad:
        raise IngestError(str(path), 1, "the header is not UTF-8 (save the file as 'CSV UTF-8')")
    columns: dict[str, tuple[int, str]] = {}  # field -> (column index, the KEYS name parse_case reads it as)
    extra: dict[int, str] = {}  # column index -> its meta key; a cell past the header's end is column_N
    for index, name in enumerate(header):
        target = aliases.get(name.strip().casefold())
        if target is None:
            extra[index] = name.strip() or f"column_{index + 1}"
        elif target not in columns:
            key = name.strip().casefold()  # "id", "events": errors then name the column as the file does
            columns[target] = (index, key if key in KEYS[target] else target)
    missing = [name for name in REQUIRED if name not in columns]
    if missing:
        wanted = "; ".join(f"{name} <- {' | '.join(mapping.get(name, ()))}" for name in missing)
        raise IngestError(str(path), 1, f"no column for a required field: {wanted}")
    return _iter_csv(path, dict(columns.values()), extra, len(header), default_tz)


def _iter_csv(
    path: Path, columns: dict[int, str], extra: dict[int, str], width: int, default_tz: tzinfo | None
) -> Iterator[SourceItem]:
    with _open(path) as raw:
        lines = _Lines(raw)
        reader = csv.reader(lines)
        next(reader)  # the header, checked by read_csv
        last = reader.line_num
        while True:
            try:
                row = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                yield SourceItem(last + 1, RecordError(None, last + 1, f"malformed CSV: {exc}"))
                last = reader.line_num
                continue
            start, last = last + 1, reader.line_num
            if not any(cell.strip() for cell in row):  # blank lines
                continue
            data = {key: row[index] for index, key in columns.items() if index < len(row)}
            meta: dict[str, object] = {}
            for index, cell in enumerate(row):
                name = extra.get(index) if index < width else f"column_{index + 1}"
                if name is not None and cell.strip():
                    meta.setdefault(name, cell.strip())
            bad = sorted(n for n in lines.bad if start <= n <= last)
            if bad:
                reason = f"line {bad[0]} is not valid UTF-8"
                yield SourceItem(start, RecordError(_record_id(data), start, reason))
                continue
            yield _item(start, data, meta, default_tz)


def read_cases(
    path: Path | str, *, mapping: ColumnMapping = DEFAULT_MAPPING, default_tz: tzinfo | None = None
) -> Iterator[SourceItem]:
    """``read_jsonl`` for ``.jsonl``/``.ndjson``/``.json`` (JSON lines), ``read_csv`` for ``.csv``."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".ndjson", ".json"):
        return read_jsonl(path, default_tz=default_tz)
    if suffix == ".csv":
        return read_csv(path, mapping, default_tz=default_tz)
    raise IngestError(str(path), None, f"unknown source format {suffix or '(no suffix)'!r}: use .jsonl or .csv")


def _item(
    line: int, data: Mapping[str, object], meta: Mapping[str, object] | None, default_tz: tzinfo | None
) -> SourceItem:
    """A JSON object (``meta`` None: its unknown keys are the meta) or a CSV row (``meta`` given)."""
    try:
        record = parse_case(data, default_tz=default_tz) if meta is None else _parse(data, meta, default_tz)
        return SourceItem(line, record)
    except ValueError as exc:
        return SourceItem(line, RecordError(_record_id(data), line, str(exc)))


def _aliases(mapping: ColumnMapping) -> dict[str, str]:
    unknown = sorted(set(mapping) - set(FIELDS))
    if unknown:
        raise ValueError(f"mapping names unknown fields {unknown}; known: {', '.join(FIELDS)}")
    out: dict[str, str] = {}
    for target, names in mapping.items():
        for name in (names,) if isinstance(names, str) else names:
            out.setdefault(name.strip().casefold(), target)
    return out


def _open(path: Path) -> BinaryIO:
    try:
        if path.is_dir():
            raise IsADirectoryError(f"{path} is a directory")
        return open(path, "rb")
    except OSError as exc:
        raise IngestError(str(path), None, f"cannot read the source: {exc.strerror or exc}") from exc


class _Lines:
    """Decoded lines of a binary file (a leading BOM dropped); remembers the numbers of lines that were
    not UTF-8. Lines split on ``\\n`` only, as editors count them; a bad line is decoded with replacement
    characters so a CSV reader keeps its place, and the record holding it is reported, not kept.
    """

    def __init__(self, raw: BinaryIO) -> None:
        self._raw = raw
        self.bad: set[int] = set()

    def __iter__(self) -> Iterator[str]:
        for number, line in enumerate(self._raw, start=1):
            if number == 1 and line.startswith(_BOM):
                line = line[len(_BOM) :]
            try:
                yield line.decode("utf-8")
            except UnicodeDecodeError:
                self.bad.add(number)
                yield line.decode("utf-8", errors="replace")


# ---- the database -----------------------------------------------------------------------------
STORED_STATES: Final = ("resolved", "closed")
"""The case states ``ingest.pipeline.stored_case_ids`` may select (the pipeline drafts articles from these only)."""
_STORED_KINDS: Final[Mapping[str, EntryKind]] = MappingProxyType({
    "call": "call", "email": "email", "note_internal": "note", "note_public": "note", "state_change": "state",
    "escalation": "escalation",
})  # fmt: skip
"""``kb.models.EventKind`` value -> timeline kind; ``link`` entries (links to articles) are not case content."""


def stored_case_record(
    case: Case, org_name: str, events: Sequence[CaseEvent], authors: Mapping[int, str]
) -> CaseRecord:
    """The ``CaseRecord`` of a database case: ``case_id`` is its ``external_id``, or ``db:<id>`` when it has none;
    ``resolution`` is the case's, or else the text of its last move to resolved (a case worked in this system
    records its fix there); an empty description falls back to the subject, as the case's first timeline entry
    does. Raises ``ValueError`` as ``CaseRecord`` does."""
    entries: list[TimelineEntry] = []
    resolving_note = ""
    for event in events:
        kind = _STORED_KINDS.get(str(event.kind))
        if kind is None:
            continue
        author = authors.get(event.author_id, "") if event.author_id is not None else ""
        visibility: Visibility = "internal" if event.internal else "customer"
        entries.append(TimelineEntry(kind, author, event.at, event.text, visibility))
        if kind == "state" and str(event.to_state) == "resolved" and event.text.strip():
            resolving_note = event.text.strip()
    return CaseRecord(
        case_id=case.external_id or f"db:{case.id}",
        subject=case.subject,
        description=case.description if case.description.strip() else case.subject,
        resolution=case.resolution.strip() or resolving_note,
        product=case.product,
        version=case.version,
        customer_org=org_name,
        contact_name=case.contact_name,
        contact_email=case.contact_email,
        channel=cast(Channel, str(case.channel)),
        priority=cast(Priority, str(case.priority).upper()),
        state=str(case.state),
        created_at=case.opened_at,
        resolved_at=case.resolved_at or case.closed_at,
        timeline=tuple(entries),
        lang=cast(Lang, case.lang) if case.lang in get_args(Lang) else None,
        meta=dict(case.meta or {}),
        db_case_id=case.id,
    )
