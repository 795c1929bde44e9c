"""Cleaning case text: quoted replies, signatures, disclaimers, PII, and technical text left intact."""

from __future__ import annotations

import pytest

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
from ingest.sources import CaseRecord, TimelineEntry

EN_MAIL = """Hi team,

Outlook 2016 keeps prompting for a password, error 0x800CCC0E.

Best regards,
John Smith
Senior IT Engineer | Contoso Ltd
Tel: +1 (555) 123-4567
john.smith@contoso.com

This email and any attachments are confidential and intended solely for the addressee.
If you received it in error, please delete it.

-----Original Message-----
From: Support <support@fabrikam.com>
Sent: Monday, May 1, 2023 10:00 AM
To: John Smith
Subject: RE: case 123

Please send us the logs."""

ZH_MAIL = """您好，

打印机无法打印，报错 0x0000011B，电脑是 Windows 10 22H2。

谢谢！
张伟
IT部 系统工程师
手机：13812345678

本邮件及其附件含有某某公司的保密信息，仅限于发送给上面地址中列出的个人或群组。

在 2023年5月1日周一 上午10:00，support@fabrikam.com 写道：
> 请提供日志
> 谢谢"""


def test_strip_quoted_outlook_header_block_en() -> None:
    text = "It still fails.\n\nFrom: Support <s@f.com>\nSent: Monday\nSubject: RE: case\n\nTry a restart."
    assert strip_quoted(text) == "It still fails."
    assert strip_quoted("Done.\n-----Original Message-----\nolder text") == "Done."


def test_strip_quoted_wrapped_attribution_and_bottom_posting() -> None:
    top = "Thanks, fixed.\n\nOn Mon, May 1, 2023 at 10:00 AM Support <s@f.com>\nwrote:\nolder reply"
    assert strip_quoted(top) == "Thanks, fixed."
    bottom = "On Mon, May 1, 2023, Support wrote:\n> Did the restart help?\n\nYes, restarting the spooler helped."
    assert strip_quoted(bottom) == "Yes, restarting the spooler helped."


def test_strip_quoted_chinese_clients() -> None:
    assert (
        strip_quoted("已经好了。\n\n发件人: 支持中心\n发送时间: 2023年5月1日 10:00\n主题: 回复\n请重启") == "已经好了。"
    )
    assert strip_quoted("收到。\n------------------ 原始邮件 ------------------\n发件人: x") == "收到。"
    assert strip_quoted("问题依旧。\n在 2023年5月1日 上午10:00，张三 <z@x.com> 写道：\n请重启") == "问题依旧。"


def test_strip_quoted_keeps_technical_lines_that_look_like_headers() -> None:
    text = "From: the event log, see below.\nPS C:\\> Get-Service spooler\n1 > 0 is true"
    assert strip_quoted(text) == text


@pytest.mark.parametrize(
    "text, kept",
    [
        ("Printer works now.\n--\nJohn\nIT", "Printer works now."),
        ("Printer works now.\n\nThanks,\nJohn", "Printer works now."),
        ("Printer works now.\nKind regards\nJohn", "Printer works now."),
        ("Printer works now.\n\nSent from my iPhone", "Printer works now."),
        ("打印正常了。\n\n此致\n敬礼\n张伟", "打印正常了。"),
        ("打印正常了。\n谢谢", "打印正常了。"),
        ("Printer works now.\n\nJane Doe\nSystem Administrator\nMobile: +44 20 7946 0958", "Printer works now."),
        ("Thanks, restarting the spooler fixed it.", None),
        ("Update from the user:\nThanks, restarting the spooler fixed it.", None),
        ("Checked the logs.\nBest Practices Analyzer reports no issue.", None),
        ("Hi team,\nThanks!\nThe problem is back after the reboot.\nError 0x800CCC0E again.", None),
        ("您好，\n谢谢！\n问题又出现了，报错 0x0000011B。", None),
        ("Steps:\n1. Open Print Management\n2. Restart the Print Spooler", None),
        ("Run these:\nnet stop spooler\nnet start spooler", None),
        ("Install the update.\nSee KB5005565\nhttps://support.microsoft.com/help/5005565", None),
    ],
)
def test_strip_signature(text: str, kept: str | None) -> None:
    assert strip_signature(text) == (text if kept is None else kept)


def test_strip_boilerplate_en_and_zh_disclaimers() -> None:
    en = "Fixed by KB5005565.\n\nCONFIDENTIALITY NOTICE: This e-mail is private.\nDo not forward.\n\n----------"
    assert strip_boilerplate(en) == "Fixed by KB5005565."
    zh = "已解决。\n\n本邮件及其附件含有某某公司的保密信息，仅限于指定收件人使用。"
    assert strip_boilerplate(zh) == "已解决。"


def test_clean_case_text_en_mail() -> None:
    text, counts = clean_case_text(EN_MAIL, ["John Smith", "Contoso"])
    assert text == "Hi team,\n\nOutlook 2016 keeps prompting for a password, error 0x800CCC0E."
    assert counts == RedactionCounts()  # the signature held all the personal data


def test_clean_case_text_zh_mail() -> None:
    text, _ = clean_case_text(ZH_MAIL, ["张伟"])
    assert text == "您好，\n\n打印机无法打印，报错 0x0000011B，电脑是 Windows 10 22H2。"


@pytest.mark.parametrize(
    "text, expected, kind",
    [
        ("mail me at zhang.wei@contoso.com.cn please", "mail me at [EMAIL] please", "email"),
        ("手机 13812345678", "手机 [PHONE]", "phone"),
        ("mobile 138-1234-5678", "mobile [PHONE]", "phone"),
        ("call 010-12345678 today", "call [PHONE] today", "phone"),
        ("或拨打 +86 21 1234 5678", "或拨打 [PHONE]", "phone"),
        ("US desk +1 (555) 123-4567.", "US desk [PHONE].", "phone"),
        ("Tel: 87654321", "Tel: [PHONE]", "phone"),
        ("host 192.168.10.20 is down", "host [IP] is down", "ip"),
        ("ping 10.0.0.1.", "ping [IP].", "ip"),
        ("gateway fe80::1ff:fe23:4567:890a%eth0", "gateway [IP]", "ip"),
        ("server 2001:db8::8a2e:370:7334 refused", "server [IP] refused", "ip"),
        ("S/N: ABC123456", "S/N: [SERIAL]", "serial"),
        ("Serial Number: 7XK2M93", "Serial Number: [SERIAL]", "serial"),
        ("序列号：CN12345678", "序列号：[SERIAL]", "serial"),
        ("Service Tag 7XK2M93 laptop", "Service Tag [SERIAL] laptop", "serial"),
        ("JOHN SMITH reported it", "[NAME] reported it", "name"),
        ("联系人张伟说仍然报错", "联系人[NAME]说仍然报错", "name"),
    ],
)
def test_redact_each_kind(text: str, expected: str, kind: str) -> None:
    out, counts = redact(text, ["John Smith", "张伟"])
    assert out == expected
    assert getattr(counts, kind) == 1 and counts.total == 1


TECHNICAL = [
    "0x800CCC0E",
    "error 0x80070005 (access denied), also 80070643",
    "STOP 0x0000007B INACCESSIBLE_BOOT_DEVICE",
    "Install KB5005565 and KB 2919355",
    "Outlook 14.0.2 and Office build 16.0.14332.20255",
    "550 5.7.1 Unable to relay",
    "Windows 10 22H2 build 19045.2965",
    "SQL Server 2019 CU18 (15.0.4261.1), error 18456",
    "Event ID 4771 on the DC",
    r"C:\Windows\System32\drivers\etc\hosts",
    "/var/log/messages and errpt -a",
    "DISM /Online /Cleanup-Image /RestoreHealth",
    "sfc /scannow && netsh winsock reset",
    "Get-Mailbox -Identity admin | fl",
    "Version=4.0.0.0, Culture=neutral, PublicKeyToken=b77a5c561934e089",
    "{6F9619FF-8B86-D011-B42D-00C04FC964FF}",
    r"HKLM\SOFTWARE\Microsoft\Office\16.0\Outlook",
    "listen on 0.0.0.0:1433, test with 127.0.0.1 and ::1, mask 255.255.255.0",
    "CVE-2021-34527 rt640x64.sys DRIVER_IRQL_NOT_LESS_OR_EQUAL",
    "smtp.office365.com:587 STARTTLS",
    "std::string at 12:30:45 on 2023-05-01",
    "OID 1.3.6.1.4.1.311.21.8",
    "ORA-12154: TNS:could not resolve",
    "Serial port COM1, SN unknown",
]


@pytest.mark.parametrize("text", TECHNICAL)
def test_technical_text_survives_cleaning(text: str) -> None:
    cleaned, counts = clean_case_text(text, ["John Smith", "Contoso Ltd"])
    assert cleaned == text
    assert counts.total == 0


def test_record_names_adds_honorifics_and_short_org() -> None:
    record = CaseRecord(
        case_id="c", subject="s", description="d", contact_name="王芳", customer_org="Contoso Co., Ltd."
    )
    names = record_names(record)
    assert {"王芳", "王工", "王经理", "Contoso Co., Ltd.", "Contoso"} <= set(names)
    text, counts = redact("王工您好，Contoso 的打印机已恢复", names)
    assert text == "[NAME]您好，[NAME] 的打印机已恢复" and counts.name == 2


def test_clean_timeline_cleans_text_and_author() -> None:
    entries = (
        TimelineEntry("email", "John Smith", None, "Works.\n\nThanks,\nJohn\n> old", "customer"),
        TimelineEntry("note", "eng", None, "John Smith called, see 10.1.2.3"),
    )
    email, note = clean_timeline(entries, ["John Smith"])
    assert email.text == "Works." and email.author == "[NAME]" and email.kind == "email"
    assert email.visibility == "customer"  # cleaning never changes who saw an entry
    assert note.text == "[NAME] called, see [IP]" and (note.kind, note.visibility) == ("note", "internal")
