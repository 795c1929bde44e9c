"""The assistant in the portal, with the real bundled model: a customer asks in Chinese, gets an answer whose
sentences carry citations, opens the cited article; then asks what the knowledge base cannot answer and is
offered the case form (prefilled with the question)."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Browser, BrowserContext, expect

from tests.browser.conftest import BILINGUAL_ID, Site, login, new_page, shot

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def test_customer_asks_in_chinese_and_opens_the_cited_article(
    real_site: Site, browser: Browser, contexts: list[BrowserContext]
) -> None:
    page = new_page(browser, contexts)
    login(page, real_site, "customer", expect_path="/")
    page.click("#ask-assistant-link")
    page.wait_for_url(real_site.url("/assistant"))
    page.fill("#question", "打印机显示脱机，打印任务一直排队，怎么办？")
    page.click("#ask-button")
    expect(page.locator("#answer")).to_have_attribute("data-status", "answered")
    sentences = page.locator("#answer-sentences li")
    assert sentences.count() >= 2
    for i in range(sentences.count()):  # every sentence carries at least one citation
        assert sentences.nth(i).locator(".cite").count() >= 1
    # answered in Chinese, from the Chinese variant of the bilingual article
    assert any("\u4e00" <= ch <= "\u9fff" for ch in sentences.first.inner_text())
    first_cite = page.locator("#citation-list li").first
    expect(first_cite).to_have_attribute("data-ref", BILINGUAL_ID)
    shot(page, "assistant_answer_zh")
    page.locator("#answer-sentences a.cite").first.click()
    page.wait_for_url(real_site.url(f"/articles/{BILINGUAL_ID}"))
    expect(page.locator("h1")).to_contain_text("打印机")
    assert page.js_errors == []  # type: ignore[attr-defined]


def test_unanswerable_question_offers_a_case_form(
    real_site: Site, browser: Browser, contexts: list[BrowserContext]
) -> None:
    page = new_page(browser, contexts)
    login(page, real_site, "customer", expect_path="/")
    question = "公司年假怎么申请？"
    page.goto(real_site.url("/assistant"))
    page.fill("#question", question)
    page.click("#ask-button")
    expect(page.locator("#answer")).to_have_attribute("data-status", "abstained")
    expect(page.locator("#abstention")).to_be_visible()
    assert page.locator("#answer-sentences li").count() == 0
    shot(page, "assistant_abstained")
    page.click("#open-case")
    page.wait_for_url(real_site.url("/cases/new") + "**")
    expect(page.locator("input[name=subject]")).to_have_value(question)
    expect(page.locator("#case-form")).to_be_visible()
    assert page.js_errors == []  # type: ignore[attr-defined]


def test_engineer_mode_on_a_case_page(real_site: Site, browser: Browser, contexts: list[BrowserContext]) -> None:
    """The engineer opens a customer's printer case, asks for the assistant's summary and draft reply: every
    sentence cited, the bilingual article's steps among the next steps, and the reply goes into the note form."""
    customer = new_page(browser, contexts)
    login(customer, real_site, "customer", expect_path="/")
    customer.goto(real_site.url("/cases/new"))
    customer.fill("input[name=subject]", "打印机显示脱机，无法打印")
    customer.fill("textarea[name=description]", "共享打印机在 Windows 中显示脱机，打印任务一直排队。")
    customer.fill("input[name=product]", "windows-client")
    customer.click("#submit-case")
    customer.wait_for_url(re.compile(r".*/cases/\d+$"))
    case_id = customer.url.rsplit("/", 1)[1]
    page = new_page(browser, contexts)
    login(page, real_site, "engineer", expect_path="/console")
    page.goto(real_site.url(f"/console/cases/{case_id}"))
    page.click("#assist-load")
    expect(page.locator("#assist-body")).to_be_visible()
    for section in ("#assist-summary", "#assist-steps", "#assist-reply"):
        items = page.locator(f"{section} li")
        assert items.count() >= 1, section
        for i in range(items.count()):
            assert items.nth(i).locator(".cite").count() >= 1, section
    expect(page.locator(f"#assist-citations li[data-ref={BILINGUAL_ID}]")).to_be_visible()
    expect(page.locator("#assist-reply")).to_contain_text("打印机")
    page.click("#assist-use-reply")
    body = page.locator("#note-form textarea[name=body]").input_value()
    assert "打印机" in body and not page.locator("#note-form input[name=internal]").is_checked()
    shot(page, "console_case_assistant")
    assert page.js_errors == []  # type: ignore[attr-defined]
