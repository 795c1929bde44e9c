"""Sections drafted from zh / en / mixed cases, error codes, and the machine-made other-language variant."""

from __future__ import annotations

import ast
import dataclasses
import sys
from pathlib import Path

import pytest

from ingest.clean import clean_timeline, record_names
from ingest.extract import (
    GLOSS_METHOD,
    ZH_MARKER,
    Sections,
    Variant,
    error_codes,
    extract_sections,
    other_language_variant,
)
from ingest.sources import CaseRecord, EntryKind, TimelineEntry, Visibility
from kb.text import Analyzer

SECRET = "INTERNAL-ONLY-7731"


def _internal(text: str) -> TimelineEntry:
    return TimelineEntry("note", "eng", None, f"{text} {SECRET}", "internal")


ZH_CASE = CaseRecord(
    case_id="C-zh",
    subject="打印机无法打印，报错 0x0000011b",
    description=(
        "您好，\n\n更新后所有网络打印机无法打印，报错 0x0000011b。联系人张伟，手机 13812345678。\n"
        "环境：Windows 10 22H2，内部版本 19045.2965\n\n谢谢！\n张伟\nIT部"
    ),
    resolution=(
        "原因：九月安全更新加强了打印服务的 RPC 认证，打印服务器未安装同一更新。\n\n"
        "解决方法：\n1. 在打印服务器上安装最新累积更新。\n2. 重启打印后台处理程序服务（net stop spooler）。"
    ),
    product="windows-client",
    version="Windows 10",
    contact_name="张伟",
    customer_org="北京某某科技有限公司",
    timeline=(
        _internal("原因：客户自己改了注册表。解决方法：临时设置 RpcAuthnLevelPrivacyEnabled=0"),
        TimelineEntry("note", "eng", None, "Fix: 已在打印服务器 10.1.2.3 上部署补丁，问题解决。", "customer"),
    ),
)

EN_CASE = CaseRecord(
    case_id="C-en",
    subject="Outlook cannot send mail, error 0x800ccc0e",
    description=(
        "Hi team,\n\nSince Monday Outlook fails to send with 0x800CCC0E and the bounce says "
        "550 5.7.1 Unable to relay.\nOS: Windows 11 23H2\n\nBest regards,\nJohn Smith\nTel: +1 (555) 123-4567"
    ),
    resolution=(
        "Root cause: the receive connector did not allow relay from 192.168.10.20.\n\n"
        "Resolution: added the sender to the receive connector; Event ID 1035 stopped."
    ),
    product="Outlook",
    version="2016",
    contact_name="John Smith",
    customer_org="Contoso Ltd",
    timeline=(
        _internal("Cause: customer misconfigured it. Resolution: bypassed the checks. OS: Windows XP"),
        TimelineEntry(
            "email", "John Smith", None, "Thanks, it works.\n\nOn Mon, Support <s@f.com> wrote:\n> done", "customer"
        ),
    ),
)

MIXED_CASE = CaseRecord(
    case_id="C-mixed",
    subject="SQL Server 登录失败 error 18456",
    description="用户用 sa 登录 SQL Server 2019 CU18 时报 Login failed，Msg 18456, Level 14, State 8。",
    resolution="根本原因是 sa 密码已过期。执行 ALTER LOGIN sa WITH CHECK_EXPIRATION = OFF 后恢复。",
    product="sql-server",
    timeline=(_internal("密码是 P@ssw0rd"),),
)


def _all_text(sections: Sections) -> str:
    return "\n".join(str(v) for v in dataclasses.astuple(sections))


def test_extract_zh_case() -> None:
    s = extract_sections(ZH_CASE)
    assert s.symptom.startswith("打印机无法打印，报错 0x0000011b\n\n更新后所有网络打印机无法打印")
    assert "您好" not in s.symptom and "环境" not in s.symptom and "谢谢" not in s.symptom
    assert "[NAME]" in s.symptom and "[PHONE]" in s.symptom and "13812345678" not in s.symptom
    assert s.environment.splitlines() == ["windows-client Windows 10", "Windows 10 22H2，内部版本 19045.2965"]
    assert s.cause == "九月安全更新加强了打印服务的 RPC 认证，打印服务器未安装同一更新。"
    assert s.resolution.startswith("1. 在打印服务器上安装最新累积更新。\n2. 重启打印后台处理程序服务")
    assert s.resolution.endswith("已在打印服务器 [IP] 上部署补丁，问题解决。")  # the public fix note
    assert s.error_codes == ("0x0000011B",)
    assert s.keywords[:2] == ("windows-client", "0x0000011B") and "打印机" in s.keywords
    assert "打印" not in s.keywords  # a piece of a kept term adds nothing


def test_extract_en_case() -> None:
    s = extract_sections(EN_CASE)
    assert s.symptom.startswith("Outlook cannot send mail, error 0x800ccc0e\n\nSince Monday Outlook fails")
    assert "Best regards" not in s.symptom and "555" not in s.symptom and "Hi team" not in s.symptom
    assert s.environment.splitlines()[:2] == ["Outlook 2016", "Windows 11 23H2"]
    assert s.cause == "the receive connector did not allow relay from [IP]."
    assert s.resolution == "added the sender to the receive connector; Event ID 1035 stopped."
    assert s.error_codes == ("0x800CCC0E", "5.7.1", "Event ID 1035")
    assert s.keywords[:3] == ("Outlook", "0x800CCC0E", "5.7.1")


def test_extract_mixed_case_cause_sentence_and_numeric_error() -> None:
    s = extract_sections(MIXED_CASE)
    assert MIXED_CASE.lang == "mixed"
    assert s.cause == "根本原因是 sa 密码已过期。"
    assert s.resolution == MIXED_CASE.resolution
    assert "SQL Server 2019 CU18" in s.environment
    assert s.error_codes == ("error 18456",)
    assert "SQL Server" in s.keywords and "登录失败" in s.keywords


@pytest.mark.parametrize("case", [ZH_CASE, EN_CASE, MIXED_CASE], ids=["zh", "en", "mixed"])
def test_internal_notes_never_reach_a_section(case: CaseRecord) -> None:
    assert SECRET not in _all_text(extract_sections(case))
    cleaned = clean_timeline(case.timeline, record_names(case))
    assert SECRET not in _all_text(extract_sections(case, cleaned))


@pytest.mark.parametrize(
    "kind, visibility, read",
    [
        ("note", "customer", True),
        ("email", "customer", True),
        ("call", "customer", True),
        ("note", "internal", False),
        ("email", "internal", False),
        ("call", "internal", False),
        ("escalation", "customer", False),  # internal reasoning, whatever the export says
        ("state", "customer", False),
        ("email", None, False),  # visibility not given: internal
    ],
)
def test_only_customer_visible_calls_emails_and_notes_feed_sections(
    kind: EntryKind, visibility: Visibility | None, read: bool
) -> None:
    entry = TimelineEntry(kind, "eng", None, "Fix: FIX-MARK")
    if visibility is not None:
        entry = dataclasses.replace(entry, visibility=visibility)
    s = extract_sections(dataclasses.replace(EN_CASE, timeline=(entry,)))
    assert ("FIX-MARK" in s.resolution) is read
    assert ("FIX-MARK" in _all_text(s)) is read


def test_no_cause_marker_means_an_empty_cause() -> None:
    case = dataclasses.replace(EN_CASE, resolution="Re-created the Outlook profile.", timeline=())
    s = extract_sections(case)
    assert s.cause == "" and s.resolution == "Re-created the Outlook profile."


@pytest.mark.parametrize(
    "text, codes",
    [
        ("Outlook 报错 0x800ccc0e，再次 0X800CCC0E", ["0x800CCC0E", "0x800CCC0E"]),
        ("Windows Update 80070005 and 8024402c", ["0x80070005", "0x8024402C"]),
        ("upgrade rolled back with 0xC1900101", ["0xC1900101"]),
        ("Login failed. (Microsoft SQL Server, Error: 18456)", ["error 18456"]),
        ("错误代码：5，拒绝访问", ["error 5"]),
        ("Kerberos pre-auth failed, Event ID 4771", ["Event ID 4771"]),
        ("事件 ID 41 内核电源", ["Event ID 41"]),
        ("Remote Server returned '550 5.7.1 RESOLVER.RST.AuthRequired'", ["5.7.1"]),
        ("NDR status 5.1.10 recipient not found", ["5.1.10"]),
        ("ORA-12154: TNS:could not resolve", ["ORA-12154"]),
        ("Outlook 14.0.2, build 16.0.14332.20255, Python 2.7.18", []),
        ("{6F9619FF-8B86-D011-B42D-00C04FC964FF} port 88886666 KB5005565", []),
    ],
)
def test_error_codes_are_found_and_normalised(text: str, codes: list[str]) -> None:
    assert error_codes([text]) == codes


def test_zh_variant_is_an_english_gloss_marked_machine_made(analyzer: Analyzer) -> None:
    sections = extract_sections(ZH_CASE)
    variant = other_language_variant(sections, "zh", analyzer)
    assert isinstance(variant, Variant)
    assert (variant.lang, variant.machine_translated, variant.method) == ("en", True, GLOSS_METHOD)
    s = variant.sections
    assert "printer" in s.symptom and "打印机" not in s.symptom
    assert "0x0000011b" in s.symptom and "Windows 10 22H2" in s.environment  # Latin text kept as it was
    assert "net stop spooler" in s.resolution and "\n2. " in s.resolution  # commands and layout kept
    assert "printer" in s.keywords and s.error_codes == sections.error_codes
    assert not any("\u4e00" <= ch <= "\u9fff" for ch in s.symptom + s.cause + s.resolution)


def test_en_variant_keeps_english_with_a_machine_marker() -> None:
    sections = extract_sections(EN_CASE)
    variant = other_language_variant(sections, "en", None)
    assert variant.lang == "zh" and variant.machine_translated
    assert variant.sections.cause == ZH_MARKER + sections.cause
    assert variant.sections.resolution == ZH_MARKER + sections.resolution
    empty = other_language_variant(dataclasses.replace(sections, cause=""), "en", None)
    assert empty.sections.cause == ""


class DictTranslator:
    """A fake translator: whole-text lookups, unknown text comes back tagged."""

    name = "dict-translator"

    def __init__(self, table: dict[str, str]) -> None:
        self.table = table
        self.calls: list[tuple[str, str]] = []

    def translate(self, text: str, source: str, target: str) -> str:
        self.calls.append((source, target))
        return self.table.get(text, f"<{target}>{text}")


def test_a_translator_replaces_the_gloss_and_names_the_method() -> None:
    sections = Sections("打印机离线", "", "驱动过旧", "更新驱动", ("0x0000011B",), ("windows-client", "打印机"))
    translator = DictTranslator({"打印机离线": "Printer offline", "打印机": "printer"})
    variant = other_language_variant(sections, "mixed", None, translator=translator)
    assert variant.method == "dict-translator" and variant.machine_translated and variant.lang == "en"
    assert variant.sections.symptom == "Printer offline" and variant.sections.cause == "<en>驱动过旧"
    assert variant.sections.environment == "" and variant.sections.keywords == ("windows-client", "printer")
    assert set(translator.calls) == {("zh", "en")}


def test_variant_rejects_bad_arguments() -> None:
    sections = Sections("打印机离线", "", "", "")
    with pytest.raises(ValueError, match="lang"):
        other_language_variant(sections, "fr", None)
    with pytest.raises(ValueError, match="analyzer"):
        other_language_variant(sections, "zh", None)


FRONT_HALF = ("__init__.py", "sources.py", "clean.py", "extract.py")


@pytest.mark.parametrize("module", FRONT_HALF)
def test_ingest_front_half_imports_only_kb_and_the_standard_library(module: str) -> None:
    """STYLE.md section 2: ingest stands on kb; the reading / cleaning / drafting half is pure (no database,
    no heavy library). ``pipeline.py`` persists, so it is left to the project-wide boundary test."""
    root = Path(__file__).resolve().parents[2] / "ingest"
    for path in [root / module]:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import | ast.ImportFrom) and getattr(node, "level", 0) == 0:
                names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
                for top in {n.split(".")[0] for n in names}:
                    assert top in {"kb", "ingest"} or top in sys.stdlib_module_names, f"{path.name}: {top}"
