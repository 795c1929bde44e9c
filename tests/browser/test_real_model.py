"""The customer's search and case form with the real bundled sentence-transformers model (not the hash fake):
a Chinese query, an English query for the same bilingual article, and suggestions while a case is typed."""

from __future__ import annotations

import pytest
from playwright.sync_api import Browser, BrowserContext, expect

from tests.browser.conftest import BILINGUAL_ID, Site, login, new_page, shot

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def test_customer_search_and_case_suggestions_with_the_real_model(
    real_site: Site, browser: Browser, contexts: list[BrowserContext]
) -> None:
    page = new_page(browser, contexts)
    login(page, real_site, "customer", expect_path="/")
    page.locator("#q").press_sequentially("打印机脱机了怎么办", delay=30)
    expect(page.locator("#results li").first).to_have_attribute("data-article-id", BILINGUAL_ID)
    page.locator("#q").fill("printer is offline")
    expect(page.locator("#results li").first).to_have_attribute("data-article-id", BILINGUAL_ID)
    shot(page, "search_real_model")
    page.goto(real_site.url("/cases/new"))
    page.fill("input[name=subject]", "打印机一直显示脱机")
    page.locator("textarea[name=description]").press_sequentially("打印任务排队，打不出来", delay=20)
    expect(page.locator(f"#suggestion-list li[data-article-id={BILINGUAL_ID}]")).to_be_visible()
    assert page.js_errors == []  # type: ignore[attr-defined]
