"""Engineer mode: everything an engineer needs beside an open case, every sentence cited.

- ``summary``: the problem (the description's first sentences), where the case stands, and the latest timeline
  entries (internal notes marked);
- ``similar``: the most similar resolved cases and what solved them;
- ``next_steps``: the resolution steps of the articles linked to the case (or, when none is linked yet, of the
  best suggested article);
- ``reply``: a draft reply to the customer in the case's language, built only from articles the *customer* may
  read (an internal article's steps never go into a customer reply).

Cases, events and articles are read with the engineer's permissions (``kb.access``); the reply's articles with
those of a customer of the case's organisation.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Final

from sqlalchemy import select
from sqlalchemy.orm import Session

from kb.access import Principal
from kb.assistant.core import Assistant, article_sources
from kb.assistant.extract import MAX_STEPS, STEP_SECTIONS, steps_of
from kb.assistant.guard import clean_source, filter_links, is_instruction
from kb.assistant.types import Citation, Sentence, Source
from kb.casework import visible_case
from kb.errors import PermissionDenied
from kb.lifecycle import Role
from kb.models import CaseArticleLink, CaseEvent
from kb.repository import timeline
from kb.retrieval import suggest
from kb.search.passages import split_sentences

SIMILAR: Final = 3
EVENTS: Final = 3


@dataclass(slots=True)
class CaseAssist:
    case_id: int
    lang: str
    summary: list[Sentence] = field(default_factory=list)
    similar: list[dict[str, Any]] = field(default_factory=list)
    next_steps: list[Sentence] = field(default_factory=list)
    reply: list[Sentence] = field(default_factory=list)
    citations: list[Citation] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class _Book:
    """Numbers citations in order of first use."""

    def __init__(self) -> None:
        self.citations: list[Citation] = []
        self._n: dict[tuple[str, int], int] = {}

    def cite(self, ref: str, version: int, kind: str, title: str, lang: str, url: str) -> int:
        key = (ref, version)
        if key not in self._n:
            self._n[key] = len(self.citations) + 1
            self.citations.append(Citation(self._n[key], ref, version, kind, title, lang, url))  # type: ignore[arg-type]
        return self._n[key]

    def source(self, s: Source) -> int:
        return self.cite(s.ref, s.version, s.kind, s.title, s.lang, s.url)


_T: Final = {
    "status": {
        "zh": "当前状态：{state}，优先级 {priority}，升级级别 {level}，{assignee}。",
        "en": "Status: {state}, priority {priority}, escalation {level}, {assignee}.",
    },
    "assigned": {"zh": "已分配", "en": "assigned"},
    "unassigned": {"zh": "尚未分配", "en": "not assigned yet"},
    "event": {"zh": "{at} {kind}{internal}：{text}", "en": "{at} {kind}{internal}: {text}"},
    "internal": {"zh": "（内部）", "en": " (internal)"},
    "similar": {
        "zh": "案例 #{id}（{subject}）的解决办法：{resolution}",
        "en": "Case #{id} ({subject}) was solved: {resolution}",
    },
    "no_resolution": {"zh": "未记录解决办法", "en": "no resolution recorded"},
    "suggested": {
        "zh": "此案例尚未关联文章；下一步来自最匹配的建议文章 {ref}，请确认后关联。",
        "en": "No article is linked to this case yet; the next steps come from the best suggested article {ref}.",
    },
    "greeting": {"zh": "您好，{name}：", "en": "Hello {name},"},
    "intro": {
        "zh": "关于您反映的“{subject}”，请按以下步骤操作：",
        "en": "Regarding \u201c{subject}\u201d, please try the following steps:",
    },
    "closing": {
        "zh": "如果问题仍然存在，请直接回复此邮件，我们会继续跟进。",
        "en": "If the problem persists, reply to this message and we will follow up.",
    },
    "no_reply_steps": {
        "zh": "没有客户可见的文章可用于回复；回复中不含操作步骤。",
        "en": "No customer-visible article covers this case; the draft reply has no steps.",
    },
    "investigating": {
        "zh": "我们正在调查您反映的“{subject}”，有进展会第一时间通知您。",
        "en": "We are investigating \u201c{subject}\u201d and will update you as soon as we know more.",
    },
}


def _t(key: str, lang: str, **values: object) -> str:
    return _T[key]["en" if lang == "en" else "zh"].format(**values)


def case_assist(assistant: Assistant, session: Session, principal: Principal, case_id: int) -> CaseAssist:
    """Summary, similar resolved cases, next steps and a draft reply for the case (staff only)."""
    if not principal.is_staff:
        raise PermissionDenied(str(principal.role), "use engineer mode")
    case = visible_case(session, principal, case_id)
    lang = "en" if case.lang == "en" else "zh"
    out = CaseAssist(case.id, lang)
    book = _Book()
    case_ref = (f"case:{case.id}", 0, "case", case.subject, case.lang, f"/console/cases/{case.id}")
    n_case = book.cite(*case_ref)

    for sentence in _quotable(case.description)[:2]:
        out.summary.append(Sentence(sentence, (n_case,), "description"))
    assignee = _t("assigned" if case.assignee_id else "unassigned", lang)
    status = _t(
        "status",
        lang,
        state=case.state,
        priority=str(case.priority).upper(),
        level=case.escalation_level,
        assignee=assignee,
    )
    out.summary.append(Sentence(status, (n_case,), "status"))
    said = " ".join(case.description.split())
    events = [
        e
        for e in timeline(session, case.id, include_internal=True)
        if e.text.strip() and " ".join(e.text.split()) != said  # the opening entry repeats the description
    ]
    for event in events[-EVENTS:]:
        out.summary.append(_event_sentence(event, book, lang))

    found = suggest(assistant.live, session, principal, case.subject, case.description, k=SIMILAR, exclude_case=case.id)
    for hit in found.cases:
        n = book.cite(f"case:{hit.case_id}", 0, "case", hit.subject, "", f"/console/cases/{hit.case_id}")
        resolution = " ".join(_quotable(hit.resolution)[:2]) or _t("no_resolution", lang)
        out.similar.append(
            {
                "case_id": hit.case_id,
                "subject": hit.subject,
                "state": hit.state,
                "score": hit.score,
                "sentence": Sentence(
                    _t("similar", lang, id=hit.case_id, subject=hit.subject, resolution=resolution), (n,)
                ),
            }
        )

    linked = _linked_articles(session, case.id)
    steps_from = article_sources(session, principal, linked, lang)
    if not steps_from:
        steps_from = article_sources(session, principal, [h.article_id for h in found.articles[:1]], lang)
        if steps_from:
            out.notes.append(_t("suggested", lang, ref=steps_from[0].ref))
    for source in steps_from[:2]:
        n = book.source(source)
        for step in _steps(source):
            out.next_steps.append(Sentence(step, (n,), "resolution"))

    customer = Principal(None, Role.CUSTOMER, org_id=case.org_id)
    reply_ids = linked + [h.article_id for h in found.articles if h.article_id not in linked]
    public = article_sources(session, customer, reply_ids, lang)
    out.reply.append(Sentence(_t("greeting", lang, name=case.contact_name or ""), (n_case,), "greeting"))
    if public:
        source = public[0]
        n = book.source(source)
        out.reply.append(Sentence(_t("intro", lang, subject=case.subject), (n_case,), "intro"))
        for step in _steps(source):
            out.reply.append(Sentence(step, (n,), "step"))
        out.reply.append(Sentence(_t("closing", lang), (n_case,), "closing"))
    else:
        out.notes.append(_t("no_reply_steps", lang))
        out.reply.append(Sentence(_t("investigating", lang, subject=case.subject), (n_case,), "intro"))
    out.citations = book.citations
    return out


def _quotable(text: str) -> list[str]:
    clean, _ = filter_links(clean_source(text or ""))
    return [s.strip() for s in split_sentences(clean) if s.strip() and not is_instruction(s)]


def _steps(source: Source) -> list[str]:
    steps: list[str] = []
    for section, text in source.sections:
        if section in STEP_SECTIONS:
            for step in steps_of(text):
                clean, _ = filter_links(step)
                if clean.strip() and not is_instruction(clean):
                    steps.append(clean.strip())
    return steps[:MAX_STEPS]


def _event_sentence(event: CaseEvent, book: _Book, lang: str) -> Sentence:
    url = f"/console/cases/{event.case_id}#event-{event.id}"
    n = book.cite(f"event:{event.id}", 0, "event", str(event.kind), "", url)
    text = " ".join(_quotable(event.text)[:2])[:300]
    internal = _t("internal", lang) if event.internal else ""
    return Sentence(
        _t("event", lang, at=event.at.strftime("%Y-%m-%d %H:%M"), kind=event.kind, internal=internal, text=text),
        (n,),
        "timeline",
    )


def _linked_articles(session: Session, case_id: int) -> list[str]:
    rows: Sequence[str] = session.scalars(
        select(CaseArticleLink.article_id).where(CaseArticleLink.case_id == case_id).order_by(CaseArticleLink.id)
    ).all()
    return list(dict.fromkeys(rows))
