"""JSONL / CSV case readers: per-record errors with 1-based start lines, and whole-file errors."""

from __future__ import annotations

import dataclasses
import json
import pickle
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from ingest.sources import (
    DEFAULT_MAPPING,
    KEYS,
    LEGACY_KINDS,
    CaseRecord,
    RecordError,
    SourceItem,
    TimelineEntry,
    parse_case,
    read_cases,
    read_csv,
    read_jsonl,
)
from kb.errors import IngestError, KBError

GOOD = {
    "case_id": "C-1001",
    "subject": "Outlook cannot connect to Exchange",
    "description": "Outlook 2016 shows 0x800CCC0E when sending.",
    "resolution": "Re-created the mail profile.",
    "product": "outlook",
    "priority": "P2",
    "channel": "email",
    "created_at": "2024-05-01T09:30:00+08:00",
    "resolved_at": "2024-05-02T10:00:00Z",
}


def _records(items: list[SourceItem]) -> list[CaseRecord]:
    return [item for _, item in items if isinstance(item, CaseRecord)]


def _errors(items: list[SourceItem]) -> list[RecordError]:
    return [item for _, item in items if isinstance(item, RecordError)]


def test_read_jsonl_reports_bad_lines_with_their_numbers_and_continues(tmp_path: Path) -> None:
    with_timeline = {
        **GOOD,
        "case_id": "C-1002",
        "timeline": [
            {"kind": "email", "author": "cust", "at": "2024-05-01T10:00:00+08:00", "text": "Still failing"},
            {"kind": "note_internal", "author": "eng", "text": "check the connector"},
        ],
    }
    lines = [
        json.dumps(GOOD),  # 1
        "",  # 2: blank, skipped
        '{"case_id": "C-bad-json", "subject": ',  # 3
        json.dumps({**GOOD, "case_id": "C-no-subject", "subject": None}),  # 4
        json.dumps({**GOOD, "case_id": "C-prio", "priority": "urgent"}),  # 5
        json.dumps({**GOOD, "case_id": "C-date", "created_at": "yesterday"}),  # 6
        json.dumps({**GOOD, "case_id": "C-type", "subject": ["not", "text"]}),  # 7
        json.dumps(with_timeline, ensure_ascii=False),  # 8
        "[1, 2]",  # 9
        json.dumps({**GOOD, "case_id": 42, "timeline": [{"kind": "fax", "text": "x"}]}),  # 10
    ]
    path = tmp_path / "cases.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")

    items = list(read_jsonl(path))

    assert [line for line, _ in items] == [1, 3, 4, 5, 6, 7, 8, 9, 10]
    assert [r.case_id for r in _records(items)] == ["C-1001", "C-1002"]
    errors = {e.line: e for e in _errors(items)}
    assert errors[3].record is None and "invalid JSON" in errors[3].reason
    assert errors[4].record == "C-no-subject" and "subject" in errors[4].reason
    assert errors[5].record == "C-prio" and "priority" in errors[5].reason
    assert errors[6].record == "C-date" and "created_at" in errors[6].reason
    assert errors[7].record == "C-type" and "subject must be a string" in errors[7].reason
    assert errors[9].record is None and "object" in errors[9].reason
    assert errors[10].record == "42"
    assert errors[10].reason == "timeline[1]: kind must be one of call, email, note, state, escalation, got 'fax'"
    assert all(e.line == line for line, e in items if isinstance(e, RecordError))


def test_read_jsonl_parses_fields_times_timeline_and_detects_lang(tmp_path: Path) -> None:
    zh: dict[str, object] = {
        **GOOD,
        "case_id": "C-2",
        "subject": "打印机无法打印",
        "description": "所有打印机都报错，无法打印文件。",
    }
    zh["resolution"] = "重新安装打印驱动后恢复正常。"
    zh["timeline"] = [{"kind": "note_public", "author": "eng", "at": "2024-05-01 12:00:00+08:00", "text": "已处理"}]
    zh["ticket_url"] = "https://tickets.example.com/C-2"
    path = tmp_path / "cases.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + (json.dumps(GOOD) + "\n" + json.dumps(zh, ensure_ascii=False)).encode())

    en_case, zh_case = _records(list(read_jsonl(path)))

    assert en_case.lang == "en" and zh_case.lang == "zh"
    assert en_case.priority == "P2" and en_case.channel == "email"
    assert en_case.created_at == datetime(2024, 5, 1, 1, 30, tzinfo=UTC)
    assert en_case.resolved_at is not None and en_case.resolved_at.utcoffset() == timedelta(0)
    at = datetime(2024, 5, 1, 4, tzinfo=UTC)
    assert zh_case.timeline == (TimelineEntry("note", "eng", at, "已处理", "customer"),)
    assert dict(en_case.meta) == {} and dict(zh_case.meta) == {"ticket_url": "https://tickets.example.com/C-2"}


def test_read_jsonl_bad_utf8_line_is_one_error(tmp_path: Path) -> None:
    path = tmp_path / "cases.jsonl"
    path.write_bytes(json.dumps(GOOD).encode() + b"\n" + '{"subject": "打印机"}'.encode("gbk") + b"\n")
    items = list(read_jsonl(path))
    assert isinstance(items[0].item, CaseRecord)
    assert items[1].line == 2 and isinstance(items[1].item, RecordError) and "UTF-8" in items[1].item.reason


def test_naive_times_need_a_default_timezone() -> None:
    naive = {**GOOD, "created_at": "2024/05/01 09:30"}
    with pytest.raises(ValueError, match="timezone"):
        parse_case(naive)
    cst = timezone(timedelta(hours=8))
    assert parse_case(naive, default_tz=cst).created_at == datetime(2024, 5, 1, 9, 30, tzinfo=cst)


def test_priority_and_channel_are_normalised() -> None:
    record = parse_case({**GOOD, "priority": 1, "channel": "电话"})
    assert (record.priority, record.channel) == ("P1", "phone")
    assert parse_case({**GOOD, "priority": "p4", "channel": "Web"}).priority == "P4"
    with pytest.raises(ValueError, match="channel"):
        parse_case({**GOOD, "channel": "pigeon"})


def test_case_record_validates_direct_construction() -> None:
    with pytest.raises(ValueError, match="case_id"):
        CaseRecord(case_id=" ", subject="s", description="d")
    with pytest.raises(ValueError, match="timezone"):
        CaseRecord(case_id="c", subject="s", description="d", created_at=datetime(2024, 1, 1))
    assert CaseRecord(case_id="c", subject="Printer offline", description="It is offline.").lang == "en"


T0 = "2024-05-01T09:00:00+08:00"


# ---- the format: id / org / contact / events, body, visibility, meta -----------------------
SPEC: dict[str, object] = {
    "id": "TAC-1",
    "org": "Contoso Ltd",
    "contact": "John Smith",
    "channel": "email",
    "product": "outlook",
    "version": "2016",
    "priority": "P2",
    "subject": "Outlook cannot connect",
    "description": "0x800CCC0E when sending.",
    "created_at": "2024-05-01T09:30:00+08:00",
    "resolved_at": "2024-05-02T10:00:00Z",
    "state": "closed",
    "resolution": "Re-created the mail profile.",
    "events": [
        {"at": "2024-05-01T10:00:00+08:00", "kind": "email", "author": "cust", "visibility": "customer", "body": "Hi"},
        {"at": "2024-05-01T11:00:00+08:00", "kind": "note", "author": "eng", "visibility": "internal", "body": "hm"},
        {"at": "2024-05-01T12:00:00+08:00", "kind": "state", "author": "eng", "visibility": "customer", "body": ""},
    ],
    "sla_contract": "gold",  # unknown: kept in meta
    "tags": ["vip", {"region": "east"}],
}
LEGACY: dict[str, object] = {
    "case_id": "TAC-1",
    "customer_org": "Contoso Ltd",
    "contact_name": "John Smith",
    **{k: v for k, v in SPEC.items() if k not in ("id", "org", "contact", "events")},
    "timeline": [
        {"at": "2024-05-01T10:00:00+08:00", "kind": "email", "author": "cust", "visibility": "public", "text": "Hi"},
        {"at": "2024-05-01T11:00:00+08:00", "kind": "note_internal", "author": "eng", "text": "hm"},
        {"at": "2024-05-01T12:00:00+08:00", "kind": "state_change", "author": "eng"},
    ],
}


def test_spec_format_is_read_into_the_record_fields() -> None:
    record = parse_case(SPEC)
    assert (record.case_id, record.customer_org, record.contact_name) == ("TAC-1", "Contoso Ltd", "John Smith")
    assert (record.state, record.version, record.resolution) == ("closed", "2016", "Re-created the mail profile.")
    cst = timezone(timedelta(hours=8))
    assert record.timeline == (
        TimelineEntry("email", "cust", datetime(2024, 5, 1, 10, tzinfo=cst), "Hi", "customer"),
        TimelineEntry("note", "eng", datetime(2024, 5, 1, 11, tzinfo=cst), "hm", "internal"),
        TimelineEntry("state", "eng", datetime(2024, 5, 1, 12, tzinfo=cst), "", "customer"),
    )


def test_legacy_names_kinds_and_text_read_as_the_spec_format() -> None:
    assert parse_case(LEGACY) == parse_case(SPEC)


def test_unknown_fields_are_kept_as_meta_in_input_order() -> None:
    record = parse_case({"x_first": 1, **SPEC, "x_null": None})
    assert list(record.meta) == ["x_first", "sla_contract", "tags", "x_null"]
    assert json.loads(json.dumps(dict(record.meta))) == {
        "x_first": 1,
        "sla_contract": "gold",
        "tags": ["vip", {"region": "east"}],
        "x_null": None,
    }
    with pytest.raises(TypeError, match="read-only"):
        record.meta["sla_contract"] = "silver"  # type: ignore[index]
    assert pickle.loads(pickle.dumps(record)) == record and hash(record) == hash(parse_case({**SPEC, "tags": []}))
    assert dataclasses.asdict(record)["meta"]["sla_contract"] == "gold"


def test_meta_is_a_private_json_copy() -> None:
    tags = ["vip"]
    record = CaseRecord(case_id="c", subject="s", description="d", meta={"tags": tags})
    tags.append("changed")
    assert record.meta == {"tags": ["vip"]}
    with pytest.raises(ValueError, match="meta must be a JSON-serialisable"):
        CaseRecord(case_id="c", subject="s", description="d", meta={"when": datetime(2024, 1, 1, tzinfo=UTC)})
    assert dict(CaseRecord(case_id="c", subject="s", description="d").meta) == {}


@pytest.mark.parametrize(
    "spec, legacy, value, other",
    [
        ("id", "case_id", "TAC-1", "TAC-2"),
        ("org", "customer_org", "Contoso", "Fabrikam"),
        ("contact", "contact_name", "John", "Jane"),
        ("events", "timeline", [{"kind": "call"}], [{"kind": "email"}]),
    ],
)
def test_an_alias_pair_must_agree(spec: str, legacy: str, value: object, other: object) -> None:
    base = {k: v for k, v in SPEC.items() if k not in ("org", "contact", "events")}
    both = parse_case({**base, spec: value, legacy: value})
    assert both == parse_case({**base, legacy: value}) and spec not in both.meta and legacy not in both.meta
    with pytest.raises(ValueError, match=f"^{spec} and {legacy} disagree: "):
        parse_case({**base, spec: value, legacy: other})
    assert parse_case({**base, spec: value, legacy: ""}) == parse_case({**base, spec: value})  # "" is absent


@pytest.mark.parametrize("name", ["id", "subject", "description", "created_at"])
@pytest.mark.parametrize("how", ["absent", "empty", "blank", "null"])
def test_a_missing_required_field_fails_that_record_alone_jsonl(tmp_path: Path, name: str, how: str) -> None:
    bad: dict[str, object] = {k: v for k, v in SPEC.items() if k != name}
    if how != "absent":
        bad[name] = {"empty": "", "blank": "  ", "null": None}[how]
    path = tmp_path / "cases.jsonl"
    path.write_text("\n".join(json.dumps(d) for d in (bad, {**SPEC, "id": "TAC-2"})), encoding="utf-8")
    (line1, error), (line2, record) = list(read_jsonl(path))
    assert isinstance(error, RecordError) and line1 == 1 and error.reason.startswith(f"{name} ")
    assert "is required" in error.reason and error.record == (None if name == "id" else "TAC-1")
    assert isinstance(record, CaseRecord) and record.case_id == "TAC-2" and line2 == 2


@pytest.mark.parametrize("column", [0, 1, 2, 3])
def test_a_missing_required_field_fails_that_record_alone_csv(tmp_path: Path, column: int) -> None:
    cells = ["TAC-1", "Printer offline", "It is offline.", "2024-05-01T09:00:00+08:00"]
    cells[column] = ""
    path = tmp_path / "cases.csv"
    path.write_text(f"id,subject,description,created_at\n{','.join(cells)}\nTAC-2,s,d,{T0}\n", encoding="utf-8")
    (line1, error), (line2, record) = list(read_csv(path))
    name = ("id", "subject", "description", "created_at")[column]
    assert isinstance(error, RecordError) and line1 == 2 and error.reason.startswith(f"{name} ")
    assert isinstance(record, CaseRecord) and record.case_id == "TAC-2" and line2 == 3


def test_an_unparseable_date_fails_that_record_alone(tmp_path: Path) -> None:
    path = tmp_path / "cases.jsonl"
    rows = [{**SPEC, "resolved_at": "next week"}, {**SPEC, "id": "TAC-2"}, {**SPEC, "id": "TAC-3", "created_at": 5}]
    path.write_text("\n".join(json.dumps(d) for d in rows), encoding="utf-8")
    items = [item for _, item in read_jsonl(path)]
    assert isinstance(items[0], RecordError) and "resolved_at is not an ISO 8601 time" in items[0].reason
    assert isinstance(items[1], CaseRecord)
    assert isinstance(items[2], RecordError) and "created_at must be an ISO 8601 string" in items[2].reason


@pytest.mark.parametrize(
    "given, visibility",
    [
        ("customer", "customer"),
        ("PUBLIC", "customer"),
        (" Private ", "internal"),
        ("internal", "internal"),
        (None, "internal"),
    ],
)
def test_event_visibility_and_its_aliases(given: str | None, visibility: str) -> None:
    event = {"kind": "call", "body": "called back"} | ({} if given is None else {"visibility": given})
    (entry,) = parse_case({**SPEC, "events": [event]}).timeline
    assert entry.visibility == visibility and entry.text == "called back"


@pytest.mark.parametrize(
    "event, reason",
    [
        ({"kind": "fax"}, "events[3]: kind must be one of call, email, note, state, escalation, got 'fax'"),
        ({}, "events[3]: kind must be one of call, email, note, state, escalation, got ''"),
        ({"kind": "note", "visibility": "everyone"}, "events[3]: visibility must be one of internal, customer"),
        ({"kind": "note", "visibility": True}, "events[3]: visibility must be one of internal, customer"),
        ({"kind": "note_internal", "visibility": "customer"}, "events[3]: kind 'note_internal' is internal"),
        ({"kind": "note", "body": "a", "text": "b"}, "events[3]: body and text disagree: 'a' vs 'b'"),
        ({"kind": "note", "at": "soon"}, "events[3]: at is not an ISO 8601 time"),
        ("a note", "events[3] must be an object, got str"),
    ],
)
def test_a_bad_event_fails_the_record_with_its_position(event: object, reason: str) -> None:
    events = [{"kind": "call"}, {"kind": "email"}, event]
    with pytest.raises(ValueError) as info:
        parse_case({**SPEC, "events": events})
    assert str(info.value).startswith(reason)


@pytest.mark.parametrize(
    "kind, expected",
    [
        ("note_internal", ("note", "internal")),
        ("note_public", ("note", "customer")),
        ("state_change", ("state", "customer")),
        ("escalation", ("escalation", "internal")),
        ("Email", ("email", "internal")),
    ],
)
def test_legacy_event_kinds_map_to_kind_and_visibility(kind: str, expected: tuple[str, str]) -> None:
    (entry,) = parse_case({**SPEC, "events": [{"kind": kind, "text": "t"}]}).timeline
    assert (entry.kind, entry.visibility) == expected
    assert parse_case({**SPEC, "events": [{"kind": kind, "visibility": expected[1]}]}).timeline[0].kind == expected[0]


def test_timeline_entry_validates_direct_construction() -> None:
    with pytest.raises(ValueError, match="kind must be one of"):
        TimelineEntry("note_internal")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="visibility must be one of internal, customer, got 'public'"):
        TimelineEntry("note", visibility="public")  # type: ignore[arg-type]
    assert TimelineEntry("email").visibility == "internal"


def test_read_csv_spec_headers_and_extra_columns_become_meta(tmp_path: Path) -> None:
    path = tmp_path / "cases.csv"
    path.write_text(
        "ID,Org,Contact,subject,description,created_at,Region,, Status ,state,SLA\n"
        f"TAC-1,Contoso,John,s,d,{T0},east,loose,open,closed,  ,tail\n"
        f"TAC-2,Fabrikam,Jane,s,d,{T0},,,,,\n",
        encoding="utf-8",
    )
    first, second = _records(list(read_csv(path)))
    assert (first.case_id, first.customer_org, first.contact_name, first.state) == ("TAC-1", "Contoso", "John", "open")
    # unmapped columns with a value, in column order; a blank header or a cell past the header is column_N;
    # "state" repeats the mapped "Status" column and is ignored; the blank SLA cell is left out
    assert list(first.meta.items()) == [("Region", "east"), ("column_8", "loose"), ("column_12", "tail")]
    assert dict(second.meta) == {}


def test_read_csv_names_a_missing_created_at_column(tmp_path: Path) -> None:
    path = tmp_path / "cases.csv"
    path.write_text("id,subject,description\nTAC-1,s,d\n", encoding="utf-8")
    with pytest.raises(IngestError, match="created_at <- created_at"):
        read_csv(path)


def test_csv_errors_name_the_spec_column(tmp_path: Path) -> None:
    path = tmp_path / "cases.csv"
    path.write_text(f'id,subject,description,created_at,events\nTAC-1,s,d,{T0},"[{{""kind"": ""fax""}}]"\n')
    ((_, error),) = list(read_csv(path))
    assert isinstance(error, RecordError) and error.reason.startswith("events[1]: kind must be one of")


CSV_ZH = (
    "工单号,标题,问题描述,解决方案,优先级,创建时间,时间线,无关列\n"  # 1
    f'C-1,打印机无法打印,"第一行\n第二行，报错 0x0000011B\n第三行",重启服务,P3,{T0},,x\n'  # 2-4
    f'C-2,Outlook 断开,"描述 ""引号"" 内容",更换配置文件,P9,{T0},,\n'  # 5
    "\n"  # 6: blank
    f'C-3,VPN 掉线,描述,,P2,{T0},"[{{""kind"": ""call"", ""author"": ""eng"", ""text"": ""已回访""}}]", \n'  # 7
    f"C-4,坏时间线,描述,,P2,{T0},[oops,\n"  # 8
)


def test_read_csv_chinese_headers_bom_and_multiline_start_lines(tmp_path: Path) -> None:
    path = tmp_path / "cases.csv"
    path.write_bytes(b"\xef\xbb\xbf" + CSV_ZH.encode("utf-8"))

    items = list(read_csv(path))

    assert [line for line, _ in items] == [2, 5, 7, 8]
    first = items[0].item
    assert isinstance(first, CaseRecord)
    assert first.case_id == "C-1" and first.description == "第一行\n第二行，报错 0x0000011B\n第三行"
    assert first.resolution == "重启服务" and first.priority == "P3" and first.lang == "zh"
    assert dict(first.meta) == {"无关列": "x"}  # an unmapped column is kept
    bad_priority = items[1].item
    assert isinstance(bad_priority, RecordError) and bad_priority.record == "C-2" and bad_priority.line == 5
    third = items[2].item
    assert isinstance(third, CaseRecord) and third.resolution == "" and dict(third.meta) == {}  # blank cell: no meta
    assert third.timeline == (TimelineEntry("call", "eng", None, "已回访", "internal"),)  # visibility not given
    bad_timeline = items[3].item
    assert isinstance(bad_timeline, RecordError) and "timeline" in bad_timeline.reason


def test_read_csv_english_headers_crlf_and_custom_mapping(tmp_path: Path) -> None:
    path = tmp_path / "export.csv"
    path.write_bytes(
        b'Ticket,Subject,Description,Resolution,created_at\r\nT-9,Printer offline,"a\r\nb",Fixed,2024-05-01T08:00Z\r\n'
    )
    with pytest.raises(IngestError, match="case_id"):
        read_csv(path)  # "Ticket" is not in the default mapping
    mapping = {**DEFAULT_MAPPING, "case_id": ("Ticket",)}
    ((line, record),) = list(read_csv(path, mapping))
    assert line == 2 and isinstance(record, CaseRecord) and record.case_id == "T-9"
    with pytest.raises(ValueError, match="unknown fields"):
        read_csv(path, {"ticket": ("Ticket",)})


def test_read_csv_non_utf8_record_is_reported_and_reading_continues(tmp_path: Path) -> None:
    path = tmp_path / "cases.csv"
    rows = ["case_id,subject,description,created_at"] + [f"C-{i},打印机,描述,{T0}" for i in (1, 2, 3)]
    data = [r.encode("gbk") if r.startswith("C-2") else r.encode() for r in rows]
    path.write_bytes(b"\n".join(data) + b"\n")
    items = list(read_csv(path))
    assert [(line, type(item).__name__) for line, item in items] == [
        (2, "CaseRecord"),
        (3, "RecordError"),
        (4, "CaseRecord"),
    ]


@pytest.mark.parametrize("content", [b"", b"\n\n", "工单号,标题".encode("gbk") + b"\nC-1,x\n"])
def test_read_csv_without_a_usable_header_raises(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "cases.csv"
    path.write_bytes(content)
    with pytest.raises(IngestError):
        read_csv(path)


def test_missing_or_unreadable_sources_raise_at_call(tmp_path: Path) -> None:
    for reader in (read_jsonl, read_csv, read_cases):
        with pytest.raises(IngestError, match="cannot read") as info:
            reader(tmp_path / "nope.csv")  # raised before iteration: the run cannot start
        assert isinstance(info.value, KBError) and info.value.record == str(tmp_path / "nope.csv")
    with pytest.raises(IngestError):
        read_jsonl(tmp_path)


def test_read_cases_chooses_the_reader_by_suffix(tmp_path: Path) -> None:
    (tmp_path / "a.jsonl").write_text(json.dumps(GOOD), encoding="utf-8")
    (tmp_path / "b.CSV").write_text(f"case_id,subject,description,created_at\nC-7,s,d,{T0}\n", encoding="utf-8")
    (tmp_path / "c.xlsx").write_bytes(b"PK")
    assert _records(list(read_cases(tmp_path / "a.jsonl")))[0].case_id == "C-1001"
    assert _records(list(read_cases(tmp_path / "b.CSV")))[0].case_id == "C-7"
    with pytest.raises(IngestError, match="unknown source format"):
        read_cases(tmp_path / "c.xlsx")


DOC = Path(__file__).resolve().parents[2] / "docs" / "ingest-formats.md"


@pytest.mark.parametrize(
    "fence, suffix, meta", [("json", ".jsonl", {"sla_contract": "gold"}), ("csv", ".csv", {"Region": "EMEA"})]
)
def test_examples_in_the_format_doc_parse(tmp_path: Path, fence: str, suffix: str, meta: dict[str, str]) -> None:
    text = DOC.read_text(encoding="utf-8")
    example = text.split(f"```{fence}\n", 1)[1].split("```", 1)[0]
    path = tmp_path / f"example{suffix}"
    path.write_text(example, encoding="utf-8")
    ((line, record),) = list(read_cases(path))
    assert isinstance(record, CaseRecord) and line == (1 if fence == "json" else 2)
    assert record.resolution and record.priority and record.timeline and record.customer_org and record.contact_name
    assert dict(record.meta) == meta
    assert {"customer", "internal"} >= {e.visibility for e in record.timeline}
    if fence == "json":  # the example is in the format, not the older names
        assert {"id", "org", "contact", "events"} <= set(json.loads(example))
        assert {"body", "visibility"} <= set(json.loads(example)["events"][0])


def test_format_doc_lists_every_key_alias_and_legacy_kind() -> None:
    fields = DOC.read_text(encoding="utf-8").split("## Fields", 1)[1].split("## JSONL", 1)[0]
    for keys in KEYS.values():
        row = next(ln for ln in fields.splitlines() if ln.startswith(f"| `{keys[0]}` |"))
        assert all(f"`{key}`" in row for key in keys), keys
    for legacy, (kind, visibility) in LEGACY_KINDS.items():
        assert f"| `{legacy}` | `kind` `{kind}`, `visibility` `{visibility}` |" in fields


def test_format_doc_lists_every_mapped_header() -> None:
    text = DOC.read_text(encoding="utf-8").split("`DEFAULT_MAPPING`:", 1)[1]
    for field, names in DEFAULT_MAPPING.items():
        row = next(ln for ln in text.splitlines() if ln.startswith(f"| `{field}` | `"))
        assert all(f"`{name}`" in row for name in names), field
