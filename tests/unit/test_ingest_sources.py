"""JSONL / CSV case readers: per-record errors with 1-based start lines, and whole-file errors."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from ingest.sources import (
    DEFAULT_MAPPING,
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
    assert errors[10].record == "42" and "timeline[1]" in errors[10].reason
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
    path = tmp_path / "cases.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + (json.dumps(GOOD) + "\n" + json.dumps(zh, ensure_ascii=False)).encode())

    en_case, zh_case = _records(list(read_jsonl(path)))

    assert en_case.lang == "en" and zh_case.lang == "zh"
    assert en_case.priority == "P2" and en_case.channel == "email"
    assert en_case.created_at == datetime(2024, 5, 1, 1, 30, tzinfo=UTC)
    assert en_case.resolved_at is not None and en_case.resolved_at.utcoffset() == timedelta(0)
    assert zh_case.timeline == (TimelineEntry("note_public", "eng", datetime(2024, 5, 1, 4, tzinfo=UTC), "已处理"),)


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


CSV_ZH = (
    "工单号,标题,问题描述,解决方案,优先级,创建时间,时间线,无关列\n"  # 1
    'C-1,打印机无法打印,"第一行\n第二行，报错 0x0000011B\n第三行",重启服务,P3,2024-05-01T09:00:00+08:00,,x\n'  # 2-4
    'C-2,Outlook 断开,"描述 ""引号"" 内容",更换配置文件,P9,,,\n'  # 5
    "\n"  # 6: blank
    'C-3,VPN 掉线,描述,,P2,,"[{""kind"": ""call"", ""author"": ""eng"", ""text"": ""已回访""}]",\n'  # 7
    "C-4,坏时间线,描述,,P2,,[oops,\n"  # 8
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
    bad_priority = items[1].item
    assert isinstance(bad_priority, RecordError) and bad_priority.record == "C-2" and bad_priority.line == 5
    third = items[2].item
    assert isinstance(third, CaseRecord) and third.resolution == ""
    assert third.timeline == (TimelineEntry("call", "eng", None, "已回访"),)
    bad_timeline = items[3].item
    assert isinstance(bad_timeline, RecordError) and "timeline" in bad_timeline.reason


def test_read_csv_english_headers_crlf_and_custom_mapping(tmp_path: Path) -> None:
    path = tmp_path / "export.csv"
    path.write_bytes(b'Ticket,Subject,Description,Resolution\r\nT-9,Printer offline,"a\r\nb",Fixed\r\n')
    with pytest.raises(IngestError, match="case_id"):
        read_csv(path)  # "Ticket" is not in the default mapping
    mapping = {**DEFAULT_MAPPING, "case_id": ("Ticket",)}
    ((line, record),) = list(read_csv(path, mapping))
    assert line == 2 and isinstance(record, CaseRecord) and record.case_id == "T-9"
    with pytest.raises(ValueError, match="unknown fields"):
        read_csv(path, {"ticket": ("Ticket",)})


def test_read_csv_non_utf8_record_is_reported_and_reading_continues(tmp_path: Path) -> None:
    path = tmp_path / "cases.csv"
    rows = ["case_id,subject,description", "C-1,打印机,描述", "C-2,打印机,描述", "C-3,ok,fine"]
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
    (tmp_path / "b.CSV").write_text("case_id,subject,description\nC-7,s,d\n", encoding="utf-8")
    (tmp_path / "c.xlsx").write_bytes(b"PK")
    assert _records(list(read_cases(tmp_path / "a.jsonl")))[0].case_id == "C-1001"
    assert _records(list(read_cases(tmp_path / "b.CSV")))[0].case_id == "C-7"
    with pytest.raises(IngestError, match="unknown source format"):
        read_cases(tmp_path / "c.xlsx")


DOC = Path(__file__).resolve().parents[2] / "docs" / "ingest-formats.md"


@pytest.mark.parametrize("fence, suffix", [("json", ".jsonl"), ("csv", ".csv")])
def test_examples_in_the_format_doc_parse(tmp_path: Path, fence: str, suffix: str) -> None:
    text = DOC.read_text(encoding="utf-8")
    example = text.split(f"```{fence}\n", 1)[1].split("```", 1)[0]
    path = tmp_path / f"example{suffix}"
    path.write_text(example, encoding="utf-8")
    ((line, record),) = list(read_cases(path))
    assert isinstance(record, CaseRecord) and line == (1 if fence == "json" else 2)
    assert record.resolution and record.priority and record.timeline


def test_format_doc_lists_every_mapped_header() -> None:
    text = DOC.read_text(encoding="utf-8").split("`DEFAULT_MAPPING`:", 1)[1]
    for field, names in DEFAULT_MAPPING.items():
        row = next(ln for ln in text.splitlines() if ln.startswith(f"| `{field}` | `"))
        assert all(f"`{name}`" in row for name in names), field
