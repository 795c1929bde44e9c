"""Turn a resolved case into knowledge-article sections, and gloss them into the other language.

``extract_sections`` is rule-based and deterministic: labelled blocks (``Cause:``, ``原因：``,
``Resolution:``, ``解决方法：``...) decide cause and resolution, the first paragraphs of the description
give the symptom, OS / version lines the environment. Only customer-visible text feeds a section: a
timeline entry is read only when its ``visibility`` is ``"customer"`` and its kind is a call, an e-mail
or a note (``PUBLIC_KINDS``); internal entries, state changes and escalations (internal reasoning, even
when an export marks them customer-visible) are never read. Text is cleaned
(``ingest.clean``) before it is used, so sections carry no quoted replies, signatures or personal data.
"""

from __future__ import annotations

import importlib
import re
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Final, Literal, Protocol

from ingest.clean import clean_case_text, clean_timeline, record_names
from ingest.sources import CaseRecord, TimelineEntry

GLOSS_METHOD: Final = "gloss:cc-cedict+glossary"
ZH_MARKER: Final = "【机器生成·英文原文】"  # "machine-made, English original" before each section of a zh variant
PUBLIC_KINDS: Final = frozenset({"call", "email", "note"})
"""Kinds whose customer-visible entries may feed a section; internal entries never do (see ``_readable``)."""

_CJK: Final = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
_LABELS: Final = {
    "cause": r"root\s*cause(?:\s*analysis)?|cause|根本原因|根因|原因分析|问题原因|原因",
    "resolution": r"resolution|solution|fix|workaround|解决方法|解决方案|解决办法|处理方法|处理办法|处理方案|"
    r"修复方法|临时解决方法|规避方法",
    "symptom": r"symptoms?|issue|problem|问题现象|现象|症状|问题描述",
    "environment": r"environment|env|os|operating\s*system|platform|环境|操作系统|系统环境|运行环境",
}
_ANY_LABEL = "|".join(_LABELS.values())
_LABEL_LINE = re.compile(  # "Cause:", "**Fix**:", "2. 解决方法：", "【原因】"
    rf"^[ \t]*(?:\d+[.)、][ \t]*)?"
    rf"(?:[【\[][ \t]*(?:{_ANY_LABEL})[ \t]*[】\]][ \t]*[:：]?|\**(?:{_ANY_LABEL})\**[ \t]*[:：])[ \t]*",
    re.I | re.M,
)
_LABEL_KIND = {kind: re.compile(rf"(?:{alts})", re.I) for kind, alts in _LABELS.items()}
_CAUSE_SENTENCE = re.compile(r"root\s*cause|根本原因|根因|原因是|原因为", re.I)
_GREETING = re.compile(
    r"^\s*(?:hi|hello|dear|good\s+(?:morning|afternoon))\b.{0,40}$|^\s*(?:您好|你好|各位)\S{0,10}$", re.I
)
_SENTENCE_END = re.compile(r"(?<=[。！？；])|(?<=[.!?;])\s+")
_ENV_CUE = re.compile(
    r"\b(?:windows\s*(?:server\s*)?(?:xp|vista|7|8(?:\.1)?|10|11|20\d\d)|win\s?(?:7|10|11)|mac\s*os|macos|os\s*x"
    r"|ios\s*\d|android\s*\d|ubuntu|debian|centos|rhel|red\s*hat|suse|aix\s*\d|solaris|hp-ux|esxi|hyper-v)\b"
    r"|\b(?:office|outlook|exchange|sql\s*server|sharepoint|word|excel|teams)\s*(?:20\d\d|365)\b|\bmicrosoft\s*365\b"
    r"|\b(?:version|ver\.?|build|release)\s*[:：]?\s*v?\d+(?:\.\d+)+|\b\d{2}H\d\b|\b\d+\.\d+\.\d+\.\d+\b"
    r"|\b(?:x64|x86|64-bit|32-bit|arm64)\b|\b(?:CU|SP|TL)\d{1,2}\b|64\s*位|32\s*位|(?:版本|内部版本|系统)\s*[:：]?\s*\S*\d",
    re.I,
)
# error codes: each pattern's group 1 is the code
_HEX = re.compile(r"(?<![\w])0[xX]([0-9A-Fa-f]{8})(?![\w])")
_BARE_HEX = re.compile(r"(?<![\w.{}-])([89ACac][0-9A-Fa-f]{7})(?![\w.{}-])")
_EVENT = re.compile(r"(?:\bevent\s*id|事件\s*(?:id|编号|号))\s*[:：#]?\s*(\d{1,5})(?!\d)", re.I)
_LABELLED_NUM = re.compile(
    r"(?:\b(?:error|err|msg|system\s+error)(?:\s*(?:code|number|no\.?|#))?|错误(?:代码|码|号)?)\s*[:：#]?\s*(\d{1,6})(?![\w.])",
    re.I,
)
_NDR = re.compile(r"(?<![\w.])(?:([245]\d\d)[ -])?([245]\.\d{1,3}\.\d{1,3})(?![\w.])")
_NDR_CONTEXT = re.compile(r"ndr|dsn|smtp|bounce|status\s*code|退信|状态码|未送达", re.I)
_ORACLE = re.compile(r"\b(ORA-\d{5})\b")

_EN_STOP: Final = frozenset(
    "a an and or but the to of in on at by for from into with without after before when while since because due via "
    "is are was were be been being does doesn't do did not no cannot can't can unable fail fails failed failing "
    "error errors issue issues problem problems this that these those it its our we you they user users some all "
    "any every each other how why what which keeps keep still again also only new get gets getting shows showing "
    "show will won't would should could there here then than more most very case customer please help".split()
)
_ZH_SPLIT = re.compile(
    r"无法|不能|不会|没有|出现|导致|报错|提示|显示|一直|总是|突然|怎么|如何|为什么|请问|我们|用户|之后|以后|的时候|时候|[的了和与及或被把]"
)


@dataclass(frozen=True, slots=True)
class Sections:
    """The parts of a knowledge article drafted from one case."""

    symptom: str
    environment: str
    cause: str
    resolution: str
    error_codes: tuple[str, ...] = ()
    keywords: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Variant:
    """Sections in the other language; always machine-made, and ``method`` says how."""

    lang: Literal["zh", "en"]
    sections: Sections
    machine_translated: bool = True
    method: str = GLOSS_METHOD


class Translator(Protocol):
    """A machine translator; ``name`` is recorded as the variant's ``method``."""

    @property
    def name(self) -> str: ...

    def translate(self, text: str, source: str, target: str) -> str: ...


def load_translator(spec: str) -> Translator:
    """The translator made by the factory that ``spec`` (``package.module:attr``) names, called with no arguments.

    The factory's result must have a ``translate(text, source, target)`` method; its ``name`` (the variant's
    ``method``) defaults to ``spec``. Raises ``ValueError`` naming ``spec`` when the module cannot be imported,
    has no such attribute, the factory fails, or the result has no ``translate``.
    """
    module_name, colon, attr = spec.partition(":")
    if not colon or not module_name.strip() or not attr.strip():
        raise ValueError(f"translator {spec!r}: expected module:attr (e.g. mypackage.mt:make_translator)")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # ImportError, or whatever the module raises while it is imported
        raise ValueError(f"translator {spec!r}: cannot import {module_name!r}: {exc}") from exc
    factory: object = module
    for part in attr.split("."):
        if not hasattr(factory, part):
            raise ValueError(f"translator {spec!r}: {module_name!r} has no attribute {attr!r}")
        factory = getattr(factory, part)
    if not callable(factory):
        raise ValueError(f"translator {spec!r}: {attr!r} is not callable (it should make a translator)")
    try:
        made = factory()
    except Exception as exc:  # a plugin's own error (missing key, model): one message, the run does not start
        raise ValueError(f"translator {spec!r}: the factory failed: {type(exc).__name__}: {exc}") from exc
    if not callable(getattr(made, "translate", None)):
        raise ValueError(f"translator {spec!r}: {type(made).__name__} has no translate(text, source, target) method")
    name = getattr(made, "name", None)
    return made if isinstance(name, str) and name else _Named(made, spec)


@dataclass(frozen=True, slots=True)
class _Named:
    """A loaded translator without a ``name``: named by its spec."""

    inner: object
    name: str

    def translate(self, text: str, source: str, target: str) -> str:
        return str(self.inner.translate(text, source, target))  # type: ignore[attr-defined]


class Glosser(Protocol):
    """What the gloss needs from ``kb.text.Analyzer``: Chinese words -> English glosses, Latin kept."""

    def embed_text(self, text: str) -> str: ...


# ---- extraction -------------------------------------------------------------------------------
def extract_sections(record: CaseRecord, timeline: Sequence[TimelineEntry] | None = None) -> Sections:
    """Symptom, environment, cause, resolution, error codes and keywords of one case.

    ``timeline`` is the cleaned timeline (``clean_timeline``); when None, the record's own timeline is
    cleaned here. Subject, description and resolution are always cleaned here (cleaning is idempotent).
    """
    names = record_names(record)
    subject = clean_case_text(record.subject, names)[0]
    description = clean_case_text(record.description, names)[0]
    resolution_text = clean_case_text(record.resolution, names)[0]
    entries = clean_timeline(record.timeline, names) if timeline is None else tuple(timeline)
    public = [e.text for e in entries if _readable(e) and e.text.strip()]

    res_rest, res_blocks = _split_labelled(resolution_text)
    symptom = _symptom(subject, description)
    environment = _environment(record, description, public)
    causes = [body for kind, body in res_blocks if kind == "cause"]
    for text in public:
        causes.extend(body for kind, body in _split_labelled(text)[1] if kind == "cause")
    if not causes:
        causes = [s for text in (resolution_text, *public) for s in _sentences(text) if _CAUSE_SENTENCE.search(s)]
    fixes = [res_rest] + [body for kind, body in res_blocks if kind == "resolution"]
    for text in public:
        fixes.extend(body for kind, body in _split_labelled(text)[1] if kind == "resolution")
    resolution = _join(fixes)
    codes = error_codes([subject, description, resolution_text, *public])
    return Sections(
        symptom=symptom,
        environment=environment,
        cause=_join(causes),
        resolution=resolution,
        error_codes=tuple(dict.fromkeys(codes)),
        keywords=_keywords(record.product, codes, subject),
    )


def _readable(entry: TimelineEntry) -> bool:
    """May this entry's text reach an article? Never when internal: the customer did not see it, and an
    engineer's guess or workaround there is not a published fix."""
    return entry.visibility != "internal" and entry.kind in PUBLIC_KINDS


def _split_labelled(text: str) -> tuple[str, list[tuple[str, str]]]:
    """(unlabelled text, [(kind, body), ...]). A resolution body runs to the next label; other bodies
    end at a blank line too, and what follows them counts as unlabelled text."""
    matches = list(_LABEL_LINE.finditer(text))
    if not matches:
        return text.strip(), []
    rest = [text[: matches[0].start()]]
    blocks: list[tuple[str, str]] = []
    for m, nxt in zip(matches, [*matches[1:], None], strict=True):
        body = text[m.end() : nxt.start() if nxt else len(text)]
        kind = _label_kind(m.group())
        if kind != "resolution":
            body, _, tail = body.lstrip().partition("\n\n")
            rest.append(tail)
        if body.strip():
            blocks.append((kind, body.strip()))
    return _join(rest), blocks


def _label_kind(label: str) -> str:
    word = re.sub(rf"[^\w{_CJK}\s]|\d", " ", label).strip()
    for kind, pattern in _LABEL_KIND.items():
        if pattern.fullmatch(word):
            return kind
    return "symptom"  # unreachable for text the label pattern matched


def _symptom(subject: str, description: str) -> str:
    rest, blocks = _split_labelled(description)
    labelled = [body for kind, body in blocks if kind == "symptom"]
    paragraphs = labelled or [p.strip() for p in re.split(r"\n\s*\n", rest) if p.strip()]
    chosen: list[str] = []
    for para in paragraphs:
        lines = [ln for ln in para.splitlines() if not _GREETING.match(ln)]
        para = "\n".join(lines).strip()
        if para:
            chosen.append(para)
        if sum(len(p) for p in chosen) >= 200 or len(chosen) >= 3:
            break
    body = "\n\n".join(chosen)
    if subject and not body.startswith(subject):
        return f"{subject}\n\n{body}".strip()
    return body or subject


def _environment(record: CaseRecord, description: str, public: Sequence[str]) -> str:
    """Product and version, labelled environment blocks anywhere public, and the clauses of the
    description that name an OS, a product release or a version (not the timeline's: there the
    engineer's "upgrade to 16.0.x" would read as the customer's environment)."""
    lines = [" ".join(p for p in (record.product, record.version) if p)]
    for text in (description, *public):
        lines.extend(body for kind, body in _split_labelled(text)[1] if kind == "environment")
    clauses = (c for s in _sentences(description) for c in s.split("，"))
    lines.extend(c for c in clauses if _ENV_CUE.search(c) and not _LABEL_LINE.match(c))
    kept: list[str] = []
    for line in (ln.strip() for ln in lines):
        if line and not any(line in k for k in kept):  # a clause of a labelled block already kept
            kept.append(line)
    return "\n".join(kept[:6])


def _sentences(text: str) -> list[str]:
    return [s.strip() for line in text.splitlines() for s in _SENTENCE_END.split(line) if s.strip()]


def _join(parts: Iterable[str]) -> str:
    return "\n\n".join(dict.fromkeys(p.strip() for p in parts if p.strip()))


def error_codes(texts: Iterable[str]) -> list[str]:
    """Every error code in ``texts``, normalised, in order of appearance (repeats kept, for counting).

    ``0x800ccc0e`` and HRESULT-like bare ``80070005`` / ``8024402C`` -> ``0x800CCC0E``; labelled numbers
    ``error 18456`` / ``错误 5`` -> ``error 18456``; ``Event ID 4771``; NDR codes ``5.7.1`` only after an
    SMTP reply code (``550 5.7.1``) or near a word like NDR/SMTP/退信; Oracle ``ORA-12154``.
    """
    found: list[tuple[int, int, str]] = []
    for t, text in enumerate(texts):
        for m in _HEX.finditer(text):
            found.append((t, m.start(), "0x" + m.group(1).upper()))
        for m in _BARE_HEX.finditer(text):
            code = m.group(1).upper()
            if any(c.isdigit() for c in code) and (code.startswith("80") or any(c.isalpha() for c in code)):
                found.append((t, m.start(), "0x" + code))
        for m in _EVENT.finditer(text):
            found.append((t, m.start(), f"Event ID {int(m.group(1))}"))
        for m in _LABELLED_NUM.finditer(text):
            found.append((t, m.start(), f"error {int(m.group(1))}"))
        for m in _NDR.finditer(text):
            if m.group(1) or _NDR_CONTEXT.search(text, max(0, m.start() - 40), m.start()):
                found.append((t, m.start(2), m.group(2)))
        for m in _ORACLE.finditer(text):
            found.append((t, m.start(), m.group(1).upper()))
    return [code for _, _, code in sorted(found)]


def _keywords(product: str, codes: Sequence[str], subject: str) -> tuple[str, ...]:
    """Product, the three most frequent codes, then up to five salient subject terms."""
    top = [code for code, _ in sorted(Counter(codes).items(), key=lambda kv: (-kv[1], codes.index(kv[0])))][:3]
    words: list[tuple[int, int, str]] = []
    phrase_end = -1  # adjacent capitalised words make one term: "SQL Server", "Print Spooler"
    for m in re.finditer(rf"(?<![\w.\\/-])[A-Za-z][A-Za-z0-9]*(?:[._-][A-Za-z0-9]+)*|[{_CJK}]+", subject):
        token = m.group()
        if re.match(f"[{_CJK}]", token):
            pieces = _ZH_SPLIT.split(token)
            words.extend((2, m.start() + i, p) for i, p in enumerate(pieces) if 2 <= len(p) <= 10)
        elif token.lower() in _EN_STOP or len(token) < 3 or any(token.upper() in c for c in codes):
            continue
        elif re.search(r"\d|[._]|[a-z][A-Z]", token):
            words.append((0, m.start(), token))  # identifiers: KB5005565, outlook.exe, BitLocker
        elif token[0].isupper():
            last = words[-1] if words else None
            if last and last[0] == 1 and phrase_end == m.start() - 1 and last[2].count(" ") < 2:
                words[-1] = (1, last[1], f"{last[2]} {token}")
            else:
                words.append((1, m.start(), token))
            phrase_end = m.end()
        elif len(token) >= 4:
            words.append((3, m.start(), token))
    terms: list[str] = []
    for _, _, word in sorted(words):  # "打印" adds nothing once "打印机" is in
        if word.lower() != product.strip().lower() and not any(word in t or t in word for t in terms):
            terms.append(word)
    terms = terms[:5]
    return tuple(dict.fromkeys(k for k in (product.strip(), *top, *terms) if k))


# ---- the other language -----------------------------------------------------------------------
def other_language_variant(
    sections: Sections, lang: str, analyzer: Glosser | None, *, translator: Translator | None = None
) -> Variant:
    """The other language's sections, marked machine-made.

    zh / mixed -> en: Chinese words replaced by English glosses (``analyzer.embed_text``), Latin text,
    codes and layout kept. en -> zh: the English text kept, each section prefixed with ``ZH_MARKER``
    (there is no en -> zh dictionary gloss worth showing). A ``translator``, when given, is used
    instead and its ``name`` becomes ``method``. Error codes are language-neutral and copied as they are.
    """
    if lang not in ("zh", "en", "mixed"):
        raise ValueError(f"lang must be zh, en or mixed, got {lang!r}")
    source: Literal["zh", "en"] = "en" if lang == "en" else "zh"
    target: Literal["zh", "en"] = "zh" if lang == "en" else "en"
    if translator is not None:

        def convert(text: str) -> str:
            return translator.translate(text, source, target) if text.strip() else text

        keywords = tuple(convert(k) if re.search(f"[{_CJK}]", k) else k for k in sections.keywords)
        return Variant(target, _mapped(sections, convert, keywords), method=translator.name)
    if target == "zh":
        return Variant("zh", _mapped(sections, lambda t: f"{ZH_MARKER}{t}" if t.strip() else t, sections.keywords))
    if analyzer is None:
        raise ValueError("an analyzer (or a translator) is needed to gloss Chinese into English")
    glosser = analyzer
    keywords = tuple(dict.fromkeys(_gloss(k, glosser) for k in sections.keywords))
    return Variant("en", _mapped(sections, lambda t: _gloss(t, glosser), keywords))


def _mapped(sections: Sections, convert: Callable[[str], str], keywords: tuple[str, ...]) -> Sections:
    return Sections(
        symptom=convert(sections.symptom),
        environment=convert(sections.environment),
        cause=convert(sections.cause),
        resolution=convert(sections.resolution),
        error_codes=sections.error_codes,
        keywords=keywords,
    )


_PUNCT: Final = str.maketrans(
    {"，": ", ", "。": ". ", "：": ": ", "；": "; ", "！": "! ", "？": "? ", "、": ", ", "（": " (", "）": ") ",
     "【": " [", "】": "] ", "“": '"', "”": '"', "‘": "'", "’": "'", "《": '"', "》": '"', "～": "~", "…": "...",
     "　": " "}
)  # fmt: skip


def _gloss(text: str, glosser: Glosser) -> str:
    """Chinese runs -> English glosses; everything else (codes, paths, English, line breaks) as it was."""
    pieces: list[str] = []
    last = 0
    for m in re.finditer(f"[{_CJK}]+", text):
        pieces.extend((text[last : m.start()], f" {glosser.embed_text(m.group())} "))
        last = m.end()
    pieces.append(text[last:])
    out = []
    for line in "".join(pieces).translate(_PUNCT).splitlines():
        line = " ".join(line.split())
        out.append(re.sub(r" +([,.;:!?)\]])", r"\1", line))
    return "\n".join(out).strip()
