"""Each user's main path through the portal, in one story: a customer searches in Chinese, reads an article in
both languages, starts a case, sees a suggestion and opens the case anyway; an engineer picks it from the queue,
links the suggested article and resolves it; an author turns the case into an article, a reviewer publishes it,
and the customer then finds it in search. Every page is screenshotted on the way."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect
from sqlalchemy import select

from kb.models import CaseArticleLink, IntakeSession
from tests.browser.conftest import BILINGUAL_EN, BILINGUAL_ID, BILINGUAL_ZH, Site, login, new_page, shot

pytestmark = pytest.mark.browser

SUBJECT = "打印机脱机，无法打印"
DESCRIPTION = "办公室的共享打印机显示脱机，打印任务一直排队，重启电脑也没用。"
INTERNAL_NOTE = "内部备注：客户网络里有 DHCP 冲突"
RESOLUTION = "在打印机属性的端口里把 IP 改为打印机的新地址，并为打印机保留固定 IP。"
NEW_TITLE = "共享打印机脱机：端口仍指向旧 IP 地址 PRN7731"


def _case_id(page: Page) -> int:
    match = re.search(r"/cases/(\d+)$", page.url)
    assert match, page.url
    return int(match.group(1))


def customer_opens_a_case(site: Site, page: Page) -> int:
    login(page, site, "customer", expect_path="/")
    page.locator("#q").press_sequentially("打印机脱机", delay=40)
    expect(page.locator("#results li").first).to_have_attribute("data-article-id", BILINGUAL_ID)
    page.locator("#results li a").first.click()
    page.wait_for_url(site.url(f"/articles/{BILINGUAL_ID}"))
    expect(page.locator("#article-title")).to_have_text(BILINGUAL_ZH.title)
    page.click("#variant-switch button[data-lang=en]")
    expect(page.locator("#article-title")).to_have_text(BILINGUAL_EN.title)

    page.click("[data-nav=case_new]")
    page.wait_for_url(site.url("/cases/new"))
    page.fill("input[name=subject]", SUBJECT)
    page.locator("textarea[name=description]").press_sequentially(DESCRIPTION, delay=10)
    page.fill("input[name=product]", "windows-client")
    suggestion = page.locator(f"#suggestion-list li[data-article-id={BILINGUAL_ID}] a")
    expect(suggestion).to_be_visible()
    with page.expect_popup() as popup:  # suggestions open in a new tab: the form stays as typed
        suggestion.click()
    expect(popup.value.locator("#article-title")).to_have_text(BILINGUAL_ZH.title)
    popup.value.close()
    shot(page, "case_new")
    page.click("#submit-case")  # opens the case anyway
    page.wait_for_url(re.compile(r"/cases/\d+$"))
    case_id = _case_id(page)
    expect(page.locator("#case-subject")).to_have_text(SUBJECT)
    expect(page.locator("#case-state")).to_have_text("新建")
    shot(page, "case_customer")

    page.click("[data-nav=cases]")
    row = page.locator(f"#case-table tr[data-case-id='{case_id}']")
    expect(row).to_contain_text(SUBJECT)
    shot(page, "my_cases")
    with site.factory() as session:
        intake = session.scalars(select(IntakeSession).where(IntakeSession.case_id == case_id)).one()
    assert intake.suggested >= 1
    assert BILINGUAL_ID in intake.opened_articles
    assert not intake.abandoned
    return case_id


def engineer_resolves_it(site: Site, page: Page, case_id: int) -> None:
    login(page, site, "engineer", expect_path="/console")
    row = page.locator(f"#queue tr[data-case-id='{case_id}']")
    expect(row).to_contain_text(SUBJECT)
    expect(row.locator("[data-sla]")).to_have_attribute("data-sla", re.compile("ok|at_risk|breached"))
    shot(page, "console")
    row.locator("a").first.click()
    page.wait_for_url(site.url(f"/console/cases/{case_id}"))
    expect(page.locator("#case-subject")).to_have_text(SUBJECT)
    suggested = page.locator(f"#suggested-articles li[data-article-id={BILINGUAL_ID}]")
    expect(suggested).to_be_visible()
    expect(page.locator("#similar-cases li").first).to_be_visible()
    expect(page.locator("#similar-cases")).to_contain_text("打印")
    suggested.locator("button.link-article").click()
    expect(page.locator(f"#links li[data-article-id={BILINGUAL_ID}]")).to_contain_text("solved_by")

    page.fill("#note-form textarea[name=body]", INTERNAL_NOTE)
    page.click("#note-form button[type=submit]")
    expect(page.locator("#timeline li.internal").filter(has_text=INTERNAL_NOTE)).to_have_count(1)
    page.fill("#resolution-form textarea[name=resolution]", RESOLUTION)
    page.click("#resolution-form button[type=submit]")
    expect(page.locator("#resolution-saved")).to_be_visible()
    for target, label in [("triaged", "已分拣"), ("in_progress", "处理中"), ("resolved", "已解决")]:
        page.click(f"#transitions button[data-to={target}]")
        expect(page.locator("#case-state")).to_have_text(label)
    expect(page.locator("#case-sla")).to_have_attribute("data-sla", "met")
    shot(page, "console_case")
    with site.factory() as session:
        links = session.scalars(select(CaseArticleLink).where(CaseArticleLink.case_id == case_id)).all()
    assert [(link.article_id, link.relation) for link in links] == [(BILINGUAL_ID, "solved_by")]


def author_drafts_an_article(site: Site, page: Page, case_id: int) -> str:
    login(page, site, "author", expect_path="/author")
    page.goto(site.url(f"/console/cases/{case_id}"))
    expect(page.locator("#case-state")).to_have_text("已解决")
    page.click("#create-article")
    page.wait_for_url(re.compile(r"/author/articles/[A-Za-z0-9_-]+$"))
    article_id = page.url.rsplit("/", 1)[1]
    title = page.locator("input[name='zh.title']")
    expect(title).not_to_have_value("")
    expect(page.locator("#state-confidence")).to_contain_text("wip")
    expect(page.locator("#versions li")).to_have_count(1)
    title.fill(NEW_TITLE)
    page.click("#save")
    expect(page.locator("#versions li")).to_have_count(2)
    expect(page.locator("#saved")).to_be_visible()
    page.locator("#versions li[data-version='2'] button.diff-button").click()
    expect(page.locator("#diff")).to_contain_text(NEW_TITLE)
    shot(page, "editor")
    page.click("#state-actions button[data-action=submit]")
    expect(page.locator("#state-confidence")).to_contain_text("not_validated")
    expect(page.locator("#state-actions button[data-action=publish]")).to_have_count(0)  # authors do not publish
    page.click("[data-nav=author]")
    expect(page.locator(f"#list-not_validated tr[data-article-id='{article_id}']")).to_contain_text(NEW_TITLE)
    return article_id


def reviewer_publishes_it(site: Site, page: Page, article_id: str) -> None:
    login(page, site, "reviewer", expect_path="/author")
    row = page.locator(f"#list-not_validated tr[data-article-id='{article_id}']")
    expect(row).to_contain_text(NEW_TITLE)
    shot(page, "author")
    row.locator("a").click()
    page.wait_for_url(site.url(f"/author/articles/{article_id}"))
    page.click("#state-actions button[data-action=publish]")
    expect(page.locator("#state-confidence")).to_contain_text("validated")
    expect(page.locator("#state-audience")).to_contain_text("public")


def test_customer_engineer_author_and_reviewer_main_paths(
    site: Site, browser: Browser, contexts: list[BrowserContext]
) -> None:
    customer = new_page(browser, contexts)
    case_id = customer_opens_a_case(site, customer)
    engineer = new_page(browser, contexts)
    engineer_resolves_it(site, engineer, case_id)
    author = new_page(browser, contexts)
    article_id = author_drafts_an_article(site, author, case_id)

    # not yet published: the customer cannot open the draft
    customer.goto(site.url(f"/articles/{article_id}"))
    expect(customer.locator("#article-title")).to_have_text("未找到。")

    reviewer = new_page(browser, contexts)
    reviewer_publishes_it(site, reviewer, article_id)

    customer.goto(site.url("/"))
    customer.locator("#q").press_sequentially("PRN7731", delay=40)
    expect(customer.locator("#results li").first).to_have_attribute("data-article-id", article_id)
    customer.locator("#results li a").first.click()
    expect(customer.locator("#article-title")).to_have_text(NEW_TITLE)

    customer.goto(site.url(f"/cases/{case_id}"))
    expect(customer.locator("#case-state")).to_have_text("已解决")
    expect(customer.locator("#timeline")).to_contain_text("已分拣")
    expect(customer.locator("#timeline")).not_to_contain_text(INTERNAL_NOTE)
    customer.fill("#note-form textarea[name=body]", "谢谢，已经可以打印了。")
    customer.click("#note-form button[type=submit]")
    expect(customer.locator("#timeline")).to_contain_text("谢谢，已经可以打印了。")
    for page in (customer, engineer, author, reviewer):
        assert page.js_errors == []  # type: ignore[attr-defined]
