"""Retrieved text is data, never instructions: clean it before use, and clean what comes out.

- ``clean_source``: hidden text goes (HTML comments, elements styled invisible, zero-width and bidi control
  characters, tags), so what the assistant reads is what a reader of the article sees.
- ``is_instruction``: a sentence written to a model ("ignore previous instructions", "you are now ...",
  "忽略之前的指令") is never quoted and never put into a prompt; it is replaced by ``WITHHELD``.
- ``fence``: sources go into a prompt between boundary lines carrying a per-request random nonce, which the
  source text cannot forge (any fence-like line in it is removed first).
- ``filter_links``: an answer may link only to the knowledge base's own pages; any other link or image, and
  any bare URL, is removed (and counted).
"""

from __future__ import annotations

import html
import re
import secrets
from typing import Final

WITHHELD: Final = "[withheld: instruction-like text]"

_HIDDEN_ELEMENT: Final = re.compile(
    r"<(?P<tag>[a-z][a-z0-9]*)\b[^>]*?(?:style\s*=\s*[\"'][^\"']*"
    r"(?:display\s*:\s*none|visibility\s*:\s*hidden|font-size\s*:\s*0+(?:\.0+)?(?![\d.])|opacity\s*:\s*0+(?:\.0+)?(?![\d.])|color\s*:\s*(?:#fff(?:fff)?|white|transparent))"
    r"[^\"']*[\"']|\bhidden\b|aria-hidden\s*=\s*[\"']true[\"'])[^>]*>.*?</(?P=tag)\s*>",
    re.IGNORECASE | re.DOTALL,
)
_COMMENT: Final = re.compile(r"<!--.*?(?:-->|$)", re.DOTALL)
_SCRIPT: Final = re.compile(r"<(script|style|template|noscript)\b.*?(?:</\1\s*>|$)", re.IGNORECASE | re.DOTALL)
_TAG: Final = re.compile(r"</?[a-z][a-z0-9-]*\b[^<>]*>", re.IGNORECASE)
_INVISIBLE: Final = re.compile("[\u00ad\u180e\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u206f\ufeff\ufff9-\ufffb]")
_TAG_CHARS: Final = re.compile("[\U000e0000-\U000e007f]")  # "ASCII smuggling" through Unicode tag characters
_FENCE_LIKE: Final = re.compile(
    r"^.*(?:<<<|>>>|\[/?(?:SOURCE|INST|SYS)\b|<\|[a-z_]+\|>).*$", re.IGNORECASE | re.MULTILINE
)


def clean_source(text: str) -> str:
    """``text`` as a reader sees it: hidden elements, comments, scripts, tags and invisible characters removed."""
    text = _INVISIBLE.sub("", _TAG_CHARS.sub("", text))
    text = _COMMENT.sub(" ", text)
    text = _SCRIPT.sub(" ", text)
    for _ in range(3):  # nested hidden elements
        text, n = _HIDDEN_ELEMENT.subn(" ", text)
        if not n:
            break
    if "<" in text:
        text = _TAG.sub(" ", text)
    if "&" in text:
        text = html.unescape(text)
        text = _INVISIBLE.sub("", text)
    text = _FENCE_LIKE.sub("", text)
    return re.sub(r"[ \t]{2,}", " ", text).strip()


# Phrases addressed to a model, not to a reader. Matched on the case-folded sentence.
_INSTRUCTION: Final = re.compile(
    "|".join(
        [
            r"\b(?:ignore|disregard|forget|override|bypass)\b.{0,40}\b(?:previous|prior|above|earlier|all|any|your|the)\b"
            r".{0,40}\b(?:instructions?|prompts?|rules?|guidelines?|context|directions?|directives?)",
            r"\b(?:ignore|disregard|forget)\s+(?:all|everything|anything)\s+(?:above|before|previous|prior|earlier|else)",
            r"\b(?:new|updated|real|actual|hidden|secret)\s+(?:system\s+)?instructions?\b",
            r"\bsystem\s*(?:prompt|instructions?)\b",
            r"\byou\s+are\s+(?:now|no\s+longer|actually)\b",
            r"\b(?:act|behave|respond|answer|reply)\s+(?:as|like)\s+(?:an?\s+)?(?:admin|administrator|root|developer|dan|unrestricted|jailbroken)",
            r"\b(?:developer|debug|god|admin|jailbreak)\s+mode\b",
            r"\b(?:assistant|ai|chatbot|language\s+model|llm|gpt|the\s+model)\b.{0,40}\b(?:must|should|shall|will|has\s+to|needs?\s+to)"
            r"\s+(?:now\s+|always\s+|only\s+)*(?:ignore|reveal|say|reply|respond|answer|output|include|print|tell|"
            r"disregard|write|add|cite|link|recommend|forget|obey|follow)\b",
            r"\b(?:reveal|leak|dump|print|output|repeat|disclose)\b.{0,30}\b(?:your|the|all|any)\s+(?:system\s+)?"
            r"(?:prompt|instructions|rules|internal\s+(?:articles?|notes?|documents?|cases?)|confidential|secrets?)",
            r"\b(?:respond|reply|answer)\s+only\s+(?:with|in)\b",
            r"\b(?:from\s+now\s+on|do\s+not\s+cite|without\s+citations?|always\s+cite)\b",
            r"\bcite\s*(?:source\s*)?\[\d+\]",
            r"(?:^|[.!?。！？]\s*)(?:system|assistant|user|human)\s*:",
            r"\bprompt\s+injection\b",
            r"(?<![勿不别])忽略.{0,12}(?:指令|指示|提示词|规则|要求|说明)",
            r"忽略(?:之前|以上|上面|前面|先前|所有|全部)的?.{0,4}(?:提示|内容|指示)",
            r"无视.{0,12}(?:指令|指示|提示|规则|要求)",
            r"(?:新的|真正的|隐藏的)系统提示|系统提示词|系统指令",
            r"你现在(?:是|扮演|作为)",
            r"(?:扮演|假装|充当).{0,10}(?:管理员|开发者|助手|模型)",
            r"(?:助手|模型|机器人|AI|ai).{0,20}(?:必须|应该|务必|一定要).{0,4}"
            r"(?:回答|回复|输出|忽略|泄露|透露|说|告诉|写|添加|推荐|引用|链接|服从|遵守)",
            r"(?:泄露|透露).{0,12}(?:提示词|指令|内部|机密|密码|密钥)",
            r"(?:输出|显示|打印).{0,6}(?:提示词|系统指令|内部文章|内部案例|机密)",
            r"(?:只|仅)(?:回答|回复)",
            r"不要(?:引用|标注来源)",
        ]
    ),
    re.IGNORECASE,
)


_LEAD: Final = re.compile(r"^[\W\d_]+")  # a step number, bullet or stray fence characters before a role prefix


def is_instruction(sentence: str) -> bool:
    """True when ``sentence`` addresses a model rather than a reader (never quoted, never prompted)."""
    return _INSTRUCTION.search(sentence) is not None or _INSTRUCTION.search(_LEAD.sub("", sentence)) is not None


def withhold(text: str) -> str:
    """``text`` with each instruction-like sentence, and the rest of its line, replaced by ``WITHHELD``: planted
    text rarely stops at one sentence ("assistant: Sure! PWNED"), and a line is what an author writes as one."""
    from kb.search.passages import split_sentences

    out: list[str] = []
    for line in text.split("\n"):
        sentences = split_sentences(line)
        for i, sentence in enumerate(sentences):
            if is_instruction(sentence):
                line = " ".join([*sentences[:i], WITHHELD])
                break
        out.append(line)
    return "\n".join(out)


def new_nonce() -> str:
    return secrets.token_hex(6)


def fence(n: int, nonce: str, header: str, body: str) -> str:
    """One source for a prompt, between boundary lines the source text cannot contain (``clean_source``)."""
    return f"<<<SOURCE [{n}] {nonce}>>>\n{header}\n{body}\n<<<END SOURCE [{n}] {nonce}>>>"


_MD_IMAGE: Final = re.compile(r"!\[([^\]]*)\]\(\s*([^)\s]*)[^)]*\)")
_MD_LINK: Final = re.compile(r"\[([^\]]+)\]\(\s*([^)\s]*)[^)]*\)")
_HTML_LINK: Final = re.compile(r"<a\b[^>]*href\s*=\s*[\"']?([^\"'\s>]*)[^>]*>(.*?)</a\s*>", re.IGNORECASE | re.DOTALL)
_HTML_IMG: Final = re.compile(r"<img\b[^>]*>", re.IGNORECASE)
_BARE_URL: Final = re.compile(
    r"(?:\b(?:https?|ftp|file|javascript|data|mailto):|\bwww\.|\b(?:[a-z0-9-]+\.)+[a-z]{2,}/)[^\s<>\"')\]，。]*",
    re.IGNORECASE,
)
_ALLOWED_PATH: Final = re.compile(r"^/(?:articles|cases)/[A-Za-z0-9._:-]+(?:#[A-Za-z0-9_-]*)?$")


def allowed_link(url: str, base_url: str = "") -> bool:
    """A link to one of the knowledge base's own article or case pages (relative, or under ``base_url``)."""
    if base_url and url.startswith(base_url.rstrip("/") + "/"):
        url = url[len(base_url.rstrip("/")) :]
    return _ALLOWED_PATH.match(url) is not None


def filter_links(text: str, base_url: str = "") -> tuple[str, int]:
    """``text`` with every link or image not pointing into the knowledge base removed; (text, removed)."""
    removed = 0

    def image(m: re.Match[str]) -> str:
        nonlocal removed
        removed += 1  # images are never shown in answers, wherever they point
        return ""

    def link(m: re.Match[str]) -> str:
        nonlocal removed
        if allowed_link(m.group(2), base_url):
            return m.group(0)
        removed += 1
        return m.group(1)

    def html_link(m: re.Match[str]) -> str:
        nonlocal removed
        removed += 1
        return _TAG.sub("", m.group(2))

    def bare(m: re.Match[str]) -> str:
        nonlocal removed
        if allowed_link(m.group(0), base_url):  # an absolute link to the knowledge base itself
            return m.group(0)
        removed += 1
        return "[link removed]"

    text = _MD_IMAGE.sub(image, text)
    text = _HTML_IMG.sub(image, text)
    text = _HTML_LINK.sub(html_link, text)
    text = _MD_LINK.sub(link, text)
    text = _BARE_URL.sub(bare, text)
    return text, removed
