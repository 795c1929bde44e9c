"""Clean e-mail style case text: quoted replies, signatures, disclaimers, and personal data.

Everything here is pure string work, tuned to leave technical content alone: error codes
(``0x800CCC0E``, ``80070005``), KB numbers, versions (``14.0.2``, ``16.0.14332.20255``, NDR ``5.7.1``),
paths, commands, GUIDs and loopback / unspecified addresses survive ``clean_case_text`` unchanged
(``tests/unit/test_ingest_clean.py`` pins a list of such strings). When a rule is unsure it keeps text:
a missed signature costs less than a lost resolution step.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Final

from ingest.sources import CaseRecord, TimelineEntry

_CJK: Final = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"

# ---- quoted replies -----------------------------------------------------------------------------
_QUOTED = re.compile(r"^\s*>")
_ATTRIBUTION = re.compile(r"^\s*(?:On\s.{0,300}\bwrote\s*:|在\s*.{0,300}写道\s*[:：]?)\s*$", re.I)
_ORIGINAL = re.compile(
    r"^\s*-{2,}\s*(?:Original Message|Forwarded message|原始邮件|转发邮件|原邮件)\s*-{2,}\s*$|^\s*_{10,}\s*$", re.I
)
_HEADER_FROM = re.compile(r"^\s*\**(?:From|发件人|寄件者)\**\s*[:：]", re.I)
_HEADER_NEXT = re.compile(r"^\s*\**(?:Sent|Date|发送时间|日期|时间|寄件日期)\**\s*[:：]", re.I)

# ---- signatures ---------------------------------------------------------------------------------
_SIGN_OFF = re.compile(
    r"^\s*(?:--|—)\s*$"
    r"|^\s*(?:(?:best|kind|warm|warmest|with)\s+)?regards\b.{0,40}$"
    r"|^\s*(?:thanks?|thank\s+you)\s*(?:&|and)\s*regards\b.{0,40}$"
    r"|^\s*best\s*,.{0,40}$"
    r"|^\s*(?:many\s+)?(?:thanks|thank\s+you|thx|cheers|sincerely|yours\s+sincerely)"
    r"(?:\s+(?:very\s+much|in\s+advance|again|a\s+lot))?\s*[,.!]*\s*(?-i:[A-Z][\w.'-]*(?:\s+[A-Z][\w.'-]*){0,2})?\s*$"
    r"|^\s*(?:此致|敬礼|此致\s*敬礼|祝好|顺祝商祺|顺颂商祺|谢谢|多谢|非常感谢|谢谢您?的?支持)[\s!！。,，.~]*$"
    r"|^\s*(?:Sent from my \w.{0,30}|Get Outlook for \w+|发自我的.{0,20}|从我的.{0,20}发送)\s*$",
    re.I,
)
_CONTACT_STRONG = re.compile(
    r"^\s*(?:(?:tel|phone|mobile|mob|cell|fax|office|direct|[mtpfe]|e-?mail|web|website|address|addr|"
    r"电话|手机|座机|传真|邮箱|地址|网址|微信)\s*[:：]|(?:tel|mob|fax)\.)"
    r"|@[\w-]+\.[\w.]+|^\s*\+?[\d\s()-]{9,}$",  # not bare URLs: a resolution may end with a KB link
    re.I,
)
_CONTACT_WEAK = re.compile(
    r"\b(?:engineer|manager|director|administrator|admin|specialist|consultant|analyst|supervisor|lead|officer|"
    r"architect|technician|department|dept|ltd|inc|corp|corporation|limited|gmbh|llc)\b"
    r"|(?:工程师|经理|主管|总监|专员|顾问|部|有限公司|公司|集团|中心)\s*$"
    rf"|^\s*(?-i:[A-Z][a-z'.-]+(?:\s+[A-Z][a-z'.-]*){{0,3}})\s*$|^\s*[{_CJK}]{{2,4}}\s*$",
    re.I,
)

# ---- boilerplate --------------------------------------------------------------------------------
_DISCLAIMER = re.compile(
    r"^\s*\**\s*(?:confidentiality\s+notice|disclaimer|免责声明|保密声明)\b"
    r"|^\s*this\s+(?:e-?mail|message|communication)\b.{0,80}\b(?:confidential|privileged|intended\s+solely)"
    r"|^\s*the\s+information\s+(?:contained\s+)?in\s+this\s+(?:e-?mail|message)"
    r"|^\s*(?:本|此)(?:电子)?邮件(?:及其?附件)?.{0,10}(?:含有|包含|可能含有|仅供|属于).{0,30}(?:保密|机密|指定)"
    r"|^\s*please\s+consider\s+the\s+environment\s+before\s+printing",
    re.I,
)
_RULE_LINE = re.compile(r"^\s*[-_=*~]{3,}\s*$")

# ---- personal data ------------------------------------------------------------------------------
_EMAIL = re.compile(r"(?<![\w.%+-])[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}(?![\w-])")
_SERIAL = re.compile(
    r"(?<![\w/])((?:S/N|Serial\s*(?:Number|No\.?|#)|Service\s*Tag|序列号|机器序列号|产品序列号|服务编号)\s*[:：#]?\s*"
    r"|(?:SN|Serial)\s*[:：#]\s*)([A-Z0-9][A-Z0-9-]{3,})(?![\w-])",
    re.I,
)
_IPV6 = re.compile(
    r"(?<![\w:.])(?:[0-9A-Fa-f]{0,4}:){2,7}(?:[0-9A-Fa-f]{1,4}|(?:\d{1,3}\.){3}\d{1,3})?(?:%[\w.]+)?(?![\w:])"
)
_OCTET = r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"
_IPV4 = re.compile(rf"(?<![\w.]){_OCTET}(?:\.{_OCTET}){{3}}(?!\w)(?!\.\d)")
_VERSION_BEFORE = re.compile(r"(?:version|ver|build|rev|release|版本号?)\s*[=:：]?\s*$", re.I)
_PHONE_LABELLED = re.compile(
    r"(?<![\w])((?:tel|phone|mobile|cell|fax|电话|手机|座机|传真|联系电话)\s*(?:no\.?|number|号码)?\s*[:：]?\s*)"
    r"(\+?\d[\d\s()-]{5,18}\d)(?!\w)",
    re.I,
)
_PHONE = re.compile(
    r"(?<![\w+.-])(?:"
    r"\+\d{1,3}[\s-]?(?:\(\d{1,4}\)|\d{1,4})(?:[\s.-]?\d{2,4}){1,4}"  # +86 21 1234 5678, +1 (555) 123-4567
    r"|1[3-9]\d[\s-]?\d{4}[\s-]?\d{4}"  # CN mobile
    r"|(?:\(0[1-9]\d{1,2}\)\s?|0[1-9]\d{1,2}[\s-])\d{3,4}[\s-]?\d{4}(?:-\d{1,5})?"  # CN landline 010-12345678
    r"|\(\d{3}\)\s?\d{3}[\s.-]\d{4}|\d{3}-\d{3}-\d{4}"  # North America
    r")(?!\w)(?!\.\d)"
)
_KEEP_IPV4: Final = ("0.0.0.0", "127.", "255.")  # unspecified, loopback, netmasks: technical, not personal
_HONORIFICS: Final = ("先生", "女士", "小姐", "工程师", "工", "经理", "总", "老师", "主任")
_ORG_SUFFIX = re.compile(
    r"(?:[\s,]+(?:co\.?,?\s*)?(?:ltd\.?|limited|inc\.?|llc|corp\.?|corporation|gmbh|co\.?))+\s*$"
    r"|(?:股份)?有限(?:责任)?公司$|集团$",
    re.I,
)


@dataclass(frozen=True, slots=True)
class RedactionCounts:
    """How many of each kind of personal datum ``redact`` replaced."""

    email: int = 0
    phone: int = 0
    ip: int = 0
    serial: int = 0
    name: int = 0

    @property
    def total(self) -> int:
        return self.email + self.phone + self.ip + self.serial + self.name

    def __add__(self, other: RedactionCounts) -> RedactionCounts:
        return RedactionCounts(
            self.email + other.email,
            self.phone + other.phone,
            self.ip + other.ip,
            self.serial + other.serial,
            self.name + other.name,
        )


def strip_quoted(text: str) -> str:
    """Drop quoted replies: ``>`` lines, and everything from a reply header on.

    Reply headers: ``-----Original Message-----`` (and 原始邮件, Outlook's underscore rule), a
    ``From:/发件人:`` line followed by ``Sent:/Date:/发送时间:`` within four lines, and attribution lines
    (``On ... wrote:``, ``在 ... 写道：``). An attribution line directly followed by ``>`` lines only
    introduces them (bottom-posting), so text after that quote is kept.
    """
    lines = text.splitlines()
    out: list[str] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        if _ORIGINAL.match(line) or (_HEADER_FROM.match(line) and _header_block(lines, i)):
            break
        span = _attribution(lines, i)
        if span:
            following = next((ln for ln in lines[i + span :] if ln.strip()), "")
            if not _QUOTED.match(following):
                break
            i += span
            continue
        if not _QUOTED.match(line):
            out.append(line)
        i += 1
    return "\n".join(out).strip()


def _header_block(lines: list[str], i: int) -> bool:
    return any(_HEADER_NEXT.match(ln) for ln in lines[i + 1 : i + 5])


def _attribution(lines: list[str], i: int) -> int:
    """Number of lines (1-3; mail clients wrap long ones) of an attribution starting at ``i``, or 0."""
    if not re.match(r"^\s*(?:On\s|在)", lines[i], re.I):
        return 0
    for span in range(1, 4):
        if i + span <= len(lines) and _ATTRIBUTION.match(" ".join(lines[i : i + span])):
            return span
    return 0


def strip_signature(text: str) -> str:
    """Cut from a sign-off line (``-- ``, ``Best regards``, ``Thanks,``, 此致, 谢谢, ``Sent from my iPhone``)
    and drop a trailing contact block (name / title / phone / e-mail lines).

    A sign-off on the first line of the text is not a signature; a trailing block is dropped only when it
    holds at least one line that is clearly contact data (a phone or e-mail label, a number, an address).
    """
    lines = text.splitlines()
    content = [i for i, ln in enumerate(lines) if ln.strip()]
    for i in content[1:]:
        if _SIGN_OFF.match(lines[i]) and _signature_like(lines[i + 1 :]):
            lines = lines[:i]
            break
    end = len(lines)
    strong = False
    while end > 1:
        line = lines[end - 1]
        if not line.strip():
            end -= 1
            continue
        if len(line.strip()) > 80:
            break
        if _CONTACT_STRONG.search(line):
            strong = True
        elif not _CONTACT_WEAK.search(line):
            break
        end -= 1
    if strong and any(ln.strip() for ln in lines[:end]):
        lines = lines[:end]
    return "\n".join(lines).strip()


def _signature_like(lines: list[str]) -> bool:
    """What follows a sign-off: a few short lines, none a sentence ("Thanks!" then "It is back." is a mail
    that goes on, not a signature)."""
    rest = [ln.strip() for ln in lines if ln.strip()]
    return len(rest) <= 8 and all(
        len(ln) <= 70
        and (not re.search(r"[.。!?！？:：]$", ln) or bool(_CONTACT_WEAK.search(ln)))
        or _SIGN_OFF.match(ln)
        or _CONTACT_STRONG.search(ln)
        for ln in rest
    )


def strip_boilerplate(text: str) -> str:
    """Drop legal disclaimers ("This email and any attachments are confidential...", 本邮件及其附件含有...
    保密信息) paragraph by paragraph, and rule lines left dangling at the end."""
    out: list[str] = []
    skipping = False
    for line in text.splitlines():
        if skipping and not line.strip():
            skipping = False
        elif not skipping and _DISCLAIMER.match(line):
            skipping = True
        if not skipping:
            out.append(line)
    while out and (not out[-1].strip() or _RULE_LINE.match(out[-1])):
        out.pop()
    return "\n".join(out).strip()


def redact(text: str, names: Sequence[str] = ()) -> tuple[str, RedactionCounts]:
    """Replace personal data with placeholders: ``[EMAIL]``, ``[PHONE]``, ``[IP]``, ``[SERIAL]``, ``[NAME]``.

    IPv4/IPv6 addresses go, except 0.0.0.0, 127.x, 255.x (masks), ``::`` and ``::1``; dotted versions
    do not (a 4-part version has a part above 255, or follows "version"/"build"). Serial numbers are
    redacted only after a label (S/N, Serial Number, Service Tag, 序列号) and when they hold a digit.
    ``names`` (contact, customer) are matched case-insensitively; Latin names as whole words only.
    """
    text, email = _EMAIL.subn("[EMAIL]", text)
    serial = 0

    def _serial(m: re.Match[str]) -> str:
        nonlocal serial
        if not any(c.isdigit() for c in m.group(2)):
            return m.group()
        serial += 1
        return m.group(1) + "[SERIAL]"

    text = _SERIAL.sub(_serial, text)
    ip = 0

    def _ipv6(m: re.Match[str]) -> str:
        nonlocal ip
        try:
            addr = ipaddress.IPv6Address(m.group().split("%")[0])
        except ValueError:
            return m.group()
        if addr.is_unspecified or addr.is_loopback:
            return m.group()
        ip += 1
        return "[IP]"

    def _ipv4(m: re.Match[str]) -> str:
        nonlocal ip
        if m.group().startswith(_KEEP_IPV4) or _VERSION_BEFORE.search(m.string, max(0, m.start() - 12), m.start()):
            return m.group()
        ip += 1
        return "[IP]"

    text = _IPV4.sub(_ipv4, _IPV6.sub(_ipv6, text))
    phone = 0

    def _phone(m: re.Match[str]) -> str:
        nonlocal phone
        number = m.group(m.lastindex or 0)
        if sum(c.isdigit() for c in number) < 7:
            return m.group()
        phone += 1
        return (m.group(1) if m.lastindex == 2 else "") + "[PHONE]"

    text = _PHONE.sub(_phone, _PHONE_LABELLED.sub(_phone, text))
    name = 0
    pattern = _names_pattern(names)
    if pattern is not None:
        text, name = pattern.subn("[NAME]", text)
    return text, RedactionCounts(email=email, phone=phone, ip=ip, serial=serial, name=name)


def _names_pattern(names: Iterable[str]) -> re.Pattern[str] | None:
    parts: list[str] = []
    for raw in sorted({" ".join(n.split()) for n in names if len(n.strip()) >= 2}, key=len, reverse=True):
        body = r"\s+".join(re.escape(w) for w in raw.split())
        if re.search(f"[{_CJK}]", raw):
            parts.append(body)  # Chinese is not space-delimited: no word boundaries to ask for
        else:
            parts.append(rf"(?<![A-Za-z0-9]){body}(?![A-Za-z0-9])")
    return re.compile("|".join(parts), re.I) if parts else None


def record_names(record: CaseRecord) -> tuple[str, ...]:
    """Names to redact for one case: the contact (and, for a Chinese name, surname + honorific such as
    张工 or 王经理) and the customer organisation (with and without its legal suffix)."""
    out: list[str] = []
    contact = record.contact_name.strip()
    if contact:
        out.append(contact)
        if re.fullmatch(f"[{_CJK}]{{2,4}}", contact):
            out.extend(contact[0] + title for title in _HONORIFICS)
        elif "," in contact:  # "Smith, John"
            out.append(" ".join(p.strip() for p in reversed(contact.split(",", 1))))
    org = record.customer_org.strip()
    if org:
        out.append(org)
        short = _ORG_SUFFIX.sub("", org).strip(" ,")
        if short and short != org and len(short) >= 3:
            out.append(short)
    return tuple(dict.fromkeys(out))


def _tidy(text: str) -> str:
    lines = [ln.rstrip() for ln in text.splitlines()]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()


def clean_case_text(text: str, names: Sequence[str] = ()) -> tuple[str, RedactionCounts]:
    """``strip_quoted`` -> ``strip_boilerplate`` -> ``strip_signature`` -> ``redact``, then tidy blank lines."""
    body = strip_signature(strip_boilerplate(strip_quoted(text)))
    cleaned, counts = redact(body, names)
    return _tidy(cleaned), counts


def clean_timeline(entries: Iterable[TimelineEntry], names: Sequence[str] = ()) -> tuple[TimelineEntry, ...]:
    """Each entry with its text cleaned and its author redacted when it is one of ``names``; kind, time and
    visibility are kept (which entries may reach an article is ``ingest.extract``'s decision)."""
    out: list[TimelineEntry] = []
    for entry in entries:
        text, _ = clean_case_text(entry.text, names)
        author, _ = redact(entry.author, names)
        out.append(replace(entry, text=text, author=author))
    return tuple(out)
