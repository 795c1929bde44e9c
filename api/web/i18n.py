"""The portal's interface strings in Chinese and English, and the choice of language for a request: the ``lang``
cookie when the user switched, else the best of ``Accept-Language``, else Chinese."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final, Literal

UiLang = Literal["zh", "en"]
UI_LANGS: Final[tuple[UiLang, UiLang]] = ("zh", "en")
LANG_COOKIE: Final = "lang"
DEFAULT_LANG: Final[UiLang] = "zh"

_PAIRS: Final[dict[str, tuple[str, str]]] = {
    # key: (zh, en)
    "app_name": ("技术支持知识库", "Support knowledge base"),
    "nav_search": ("搜索", "Search"),
    "nav_assistant": ("智能助手", "Assistant"),
    "assistant_title": ("问问知识库助手", "Ask the knowledge base"),
    "assistant_hint": (
        "用自己的话描述问题；回答只引用知识库文章，每句都标注来源。",
        "Describe the problem in your own words; answers quote knowledge base articles, each sentence cited.",
    ),
    "assistant_placeholder": (
        "例如：Outlook 无法连接 Exchange，报错 0x800CCC0E",
        "e.g. Outlook cannot connect, 0x800CCC0E",
    ),
    "assistant_ask": ("提问", "Ask"),
    "assistant_sources": ("来源", "Sources"),
    "assistant_closest": ("最接近的文章", "Closest articles"),
    "assistant_abstained": ("知识库中没有可靠的答案。", "The knowledge base has no reliable answer."),
    "assistant_quoted": ("以下内容摘自知识库文章。", "Quoted from knowledge base articles."),
    "assistant_generated": (
        "由生成模型根据知识库文章撰写，已核对来源。",
        "Written by the generator from the articles; sources checked.",
    ),
    "assistant_from_search": ("找不到？问问智能助手", "Can't find it? Ask the assistant"),
    "assist_title": ("智能助手（工程师模式）", "Assistant (engineer mode)"),
    "assist_load": ("生成摘要、下一步和回复草稿", "Summary, next steps and a draft reply"),
    "assist_summary": ("案例摘要", "Case summary"),
    "assist_next_steps": ("建议的下一步", "Suggested next steps"),
    "assist_reply": ("给客户的回复草稿", "Draft reply to the customer"),
    "assist_use_reply": ("放入回复框", "Use as reply"),
    "nav_new_case": ("提交工单", "New case"),
    "nav_my_cases": ("我的工单", "My cases"),
    "nav_console": ("工单队列", "Queue"),
    "nav_author": ("知识编写", "Authoring"),
    "nav_logout": ("退出", "Log out"),
    "switch_lang": ("English", "中文"),
    "login_title": ("登录", "Log in"),
    "email": ("邮箱", "E-mail"),
    "password": ("密码", "Password"),
    "login_button": ("登录", "Log in"),
    "search_title": ("有什么可以帮您？", "How can we help?"),
    "search_placeholder": ("描述问题或输入错误代码，例如：蓝屏 0x000000D1", "Describe the problem or an error code"),
    "no_results": ("没有找到相关文章。", "No matching articles."),
    "not_found": ("未找到。", "Not found."),
    "loading": ("加载中…", "Loading…"),
    "still_need_help": ("没有解决？提交工单", "Still stuck? Open a case"),
    "symptom": ("现象", "Symptom"),
    "environment": ("环境", "Environment"),
    "cause": ("原因", "Cause"),
    "resolution": ("解决方法", "Resolution"),
    "title": ("标题", "Title"),
    "machine_translated": ("机器翻译", "Machine translated"),
    "helpful_q": ("这篇文章有帮助吗？", "Was this helpful?"),
    "yes": ("有帮助", "Yes"),
    "no": ("没有帮助", "No"),
    "thanks": ("感谢您的反馈！", "Thanks for your feedback!"),
    "new_case_title": ("提交工单", "Open a case"),
    "subject": ("主题", "Subject"),
    "description": ("问题描述", "Description"),
    "product": ("产品", "Product"),
    "product_version": ("版本", "Version"),
    "priority": ("优先级", "Priority"),
    "submit_case": ("提交工单", "Open case"),
    "suggestions_title": ("这些文章也许能解决您的问题", "These articles may solve it"),
    "my_cases_title": ("我的工单", "My cases"),
    "no_cases": ("没有工单。", "No cases."),
    "state": ("状态", "State"),
    "updated": ("更新时间", "Updated"),
    "opened": ("创建时间", "Opened"),
    "timeline": ("处理记录", "Timeline"),
    "add_note": ("添加备注", "Add a note"),
    "note": ("备注", "Note"),
    "send": ("发送", "Send"),
    "internal": ("内部", "Internal"),
    "queue_title": ("工单队列", "Case queue"),
    "sla": ("SLA", "SLA"),
    "org": ("客户", "Customer"),
    "assigned_to_me": ("只看我的", "Assigned to me"),
    "all_states": ("全部状态", "All states"),
    "suggested_articles": ("推荐文章", "Suggested articles"),
    "similar_cases": ("相似的已解决工单", "Similar resolved cases"),
    "linked_articles": ("已关联文章", "Linked articles"),
    "link": ("关联", "Link"),
    "linked": ("已关联", "Linked"),
    "transitions": ("状态变更", "Change state"),
    "escalate": ("升级", "Escalate"),
    "escalation_level": ("升级级别", "Escalation level"),
    "create_article": ("由此工单创建文章", "Create article from this case"),
    "kind": ("类型", "Kind"),
    "assign_to_me": ("分配给我", "Assign to me"),
    "assigned_to_you": ("已分配给您", "Assigned to you"),
    "assignee": ("处理人", "Assignee"),
    "unassigned": ("未分配", "Unassigned"),
    "new_article": ("新建文章", "New article"),
    "new_article_lang": ("语言", "Language"),
    "mark_current": ("标记译文为最新", "Mark translation current"),
    "marked_current": ("译文已标记为最新", "Translation marked current"),
    "author_title": ("知识编写", "Authoring"),
    "drafts": ("草稿 (WIP)", "Drafts (WIP)"),
    "review_queue": ("待审核", "Review queue"),
    "no_articles": ("没有文章。", "No articles."),
    "stale": ("译文过期", "Translation stale"),
    "keywords": ("关键词", "Keywords"),
    "products": ("产品", "Products"),
    "error_codes": ("错误代码", "Error codes"),
    "save": ("保存", "Save"),
    "saved": ("已保存", "Saved"),
    "versions": ("版本历史", "Version history"),
    "diff": ("比较", "Compare"),
    "confidence": ("可信度", "Confidence"),
    "audience": ("可见范围", "Audience"),
    "act_submit": ("提交审核", "Submit for review"),
    "act_publish": ("发布", "Publish"),
    "act_archive": ("归档", "Archive"),
    "act_back_to_wip": ("退回草稿", "Back to draft"),
    "act_restore": ("恢复", "Restore"),
    "state_new": ("新建", "New"),
    "state_triaged": ("已分拣", "Triaged"),
    "state_in_progress": ("处理中", "In progress"),
    "state_waiting_on_customer": ("等待客户", "Waiting on customer"),
    "state_escalated": ("已升级", "Escalated"),
    "state_resolved": ("已解决", "Resolved"),
    "state_closed": ("已关闭", "Closed"),
    "sla_ok": ("正常", "OK"),
    "sla_at_risk": ("有风险", "At risk"),
    "sla_breached": ("已超时", "Breached"),
    "sla_met": ("已达成", "Met"),
    "sla_paused": ("暂停", "Paused"),
    "error": ("出错了：", "Error: "),
    "forbidden": ("您没有权限访问此页面。", "You may not open this page."),
}

STRINGS: Final[Mapping[UiLang, Mapping[str, str]]] = {
    "zh": {k: v[0] for k, v in _PAIRS.items()},
    "en": {k: v[1] for k, v in _PAIRS.items()},
}


def parse_accept_language(header: str) -> UiLang | None:
    """The supported language with the highest q in an ``Accept-Language`` header (None when neither appears)."""
    best: tuple[tuple[float, int], UiLang] | None = None
    for position, part in enumerate(header.split(",")[:20]):
        tag, _, params = part.strip().partition(";")
        primary = tag.strip().lower().split("-")[0]
        if primary not in UI_LANGS:
            continue
        q = 1.0
        params = params.strip()
        if params.startswith("q="):
            try:
                q = float(params[2:])
            except ValueError:
                q = 0.0
        if q <= 0:
            continue
        lang: UiLang = "zh" if primary == "zh" else "en"
        if best is None or (q, -position) > best[0]:
            best = ((q, -position), lang)
    return best[1] if best else None


def choose_lang(cookie: str | None, accept_language: str | None) -> UiLang:
    """The interface language: an explicit ``lang`` cookie wins over ``Accept-Language``."""
    if cookie == "zh":
        return "zh"
    if cookie == "en":
        return "en"
    return parse_accept_language(accept_language or "") or DEFAULT_LANG
