"""The portal's pages one by one: login, language, instant search, the article page, the case form's suggestions
and deflection events, and what customers may not reach."""

from __future__ import annotations

import re

import httpx
import pytest
from playwright.sync_api import Browser, BrowserContext, expect
from sqlalchemy import select

from kb.models import Feedback, IntakeSession
from tests.api.conftest import PASSWORD
from tests.browser.conftest import BILINGUAL_EN, BILINGUAL_ID, BILINGUAL_ZH, Site, login, new_page, shot

pytestmark = pytest.mark.browser


def test_login_page_refuses_a_wrong_password_and_pages_need_a_login(
    site: Site, browser: Browser, contexts: list[BrowserContext]
) -> None:
    page = new_page(browser, contexts)
    page.goto(site.url("/cases/new"))
    expect(page).to_have_url(re.compile(r"/login\?next=%2Fcases%2Fnew$"))
    shot(page, "login")
    page.fill("input[name=email]", "customer@test.example")
    page.fill("input[name=password]", "wrong-password")
    page.click("#login-form button[type=submit]")
    expect(page.locator("#flash")).to_be_visible()
    expect(page).to_have_url(re.compile(r"/login"))
    page.fill("input[name=password]", PASSWORD)
    page.click("#login-form button[type=submit]")
    page.wait_for_url(site.url("/cases/new"))  # back where the visitor wanted to go
    assert page.js_errors == []  # type: ignore[attr-defined]


def test_login_redirects_by_role_and_logout_ends_the_session(
    site: Site, browser: Browser, contexts: list[BrowserContext]
) -> None:
    for who, home in [("customer", "/"), ("engineer", "/console"), ("author", "/author"), ("admin", "/console")]:
        page = new_page(browser, contexts)
        login(page, site, who, expect_path=home)
    page.click("#logout")
    page.wait_for_url(site.url("/login"))
    page.goto(site.url("/console"))
    expect(page).to_have_url(re.compile(r"/login\?next="))


def test_customers_get_a_403_page_on_staff_pages_and_never_an_internal_article(
    site: Site, browser: Browser, contexts: list[BrowserContext]
) -> None:
    with httpx.Client(base_url=site.base) as staff:
        r = staff.post("/api/v1/auth/token", json={"email": "author@test.example", "password": PASSWORD})
        draft = staff.post(
            "/api/v1/articles",
            json={"zh": {"title": "内部草稿：仅限员工", "resolution": "内部步骤"}, "keywords": [], "products": []},
            headers={"Authorization": f"Bearer {r.json()['access_token']}"},
        )
    assert draft.status_code == 201, draft.text
    draft_id = draft.json()["article_id"]

    page = new_page(browser, contexts)
    login(page, site, "customer", expect_path="/")
    for path in ["/console", "/author", f"/author/articles/{draft_id}", "/console/cases/1"]:
        response = page.goto(site.url(path))
        assert response is not None and response.status == 403, path
        expect(page.locator("#message")).to_have_text("您没有权限访问此页面。")
    page.goto(site.url(f"/articles/{draft_id}"))
    expect(page.locator("#article-title")).to_have_text("未找到。")
    expect(page.locator("body")).not_to_contain_text("内部草稿")
    response = page.goto(site.url("/articles/bad%20id!"))
    assert response is not None and response.status == 404


def test_interface_language_follows_accept_language_and_the_switch(
    site: Site, browser: Browser, contexts: list[BrowserContext]
) -> None:
    page = new_page(browser, contexts, locale="en-US")
    login(page, site, "customer", expect_path="/")
    expect(page.locator("h1")).to_have_text("How can we help?")
    expect(page.locator("html")).to_have_attribute("lang", "en")
    page.click("#lang-switch")
    page.wait_for_url(site.url("/"))
    expect(page.locator("h1")).to_have_text("有什么可以帮您？")
    page.goto(site.url("/cases"))  # the choice sticks (cookie)
    expect(page.locator("h1")).to_have_text("我的工单")
    page.click("#lang-switch")
    expect(page.locator("h1")).to_have_text("My cases")


def test_instant_search_in_chinese_and_the_article_page_switches_language(
    site: Site, browser: Browser, contexts: list[BrowserContext]
) -> None:
    page = new_page(browser, contexts)
    login(page, site, "customer", expect_path="/")
    page.locator("#q").press_sequentially("打印机脱机", delay=40)
    first = page.locator("#results li").first
    expect(first).to_have_attribute("data-article-id", BILINGUAL_ID)
    expect(page).to_have_url(re.compile(r"/\?q="))
    shot(page, "search")
    page.locator("#q").fill("")
    expect(page.locator("#results li")).to_have_count(0)
    page.locator("#q").fill("打印机脱机")
    page.locator("#results li a").first.click()
    page.wait_for_url(site.url(f"/articles/{BILINGUAL_ID}"))
    expect(page.locator("#article-title")).to_have_text(BILINGUAL_ZH.title)
    expect(page.locator("[data-field=resolution]")).to_contain_text("改为新 IP")
    page.click("#variant-switch button[data-lang=en]")
    expect(page.locator("#article-title")).to_have_text(BILINGUAL_EN.title)
    expect(page.locator("[data-field=cause]")).to_contain_text("port still points")
    shot(page, "article")
    page.click("#helpful-yes")
    expect(page.locator("#feedback-done")).to_be_visible()
    with site.factory() as session:
        votes = session.scalars(select(Feedback).where(Feedback.article_id == BILINGUAL_ID)).all()
    assert [(v.helpful, v.user_id) for v in votes] == [(True, site.user_ids["customer"])]
    assert page.js_errors == []  # type: ignore[attr-defined]


def test_case_form_shows_suggestions_and_records_an_abandoned_form(
    site: Site, browser: Browser, contexts: list[BrowserContext]
) -> None:
    page = new_page(browser, contexts)
    login(page, site, "other_customer", expect_path="/")
    page.goto(site.url("/cases/new"))
    page.fill("input[name=subject]", "Outlook 无法连接服务器")
    page.locator("textarea[name=description]").press_sequentially("Outlook 一直显示正在连接", delay=20)
    expect(page.locator("#suggestions")).to_be_visible()
    expect(page.locator("#suggestion-list li").first).to_be_visible()
    shot(page, "case_form_suggestions")
    # similar resolved cases are staff knowledge: the customer form shows articles only
    expect(page.locator("#suggestions")).not_to_contain_text("重建 Outlook 配置文件")
    page.goto(site.url("/"))  # leave without opening a case: pagehide sends "abandoned"
    expect(page.locator("#q")).to_be_visible()
    with site.factory() as session:
        rows = session.scalars(
            select(IntakeSession).where(IntakeSession.user_id == site.user_ids["other_customer"])
        ).all()
    assert len(rows) == 1
    assert rows[0].suggested >= 1 and rows[0].abandoned and rows[0].case_id is None


def _token(client: httpx.Client, who: str) -> dict[str, str]:
    r = client.post("/api/v1/auth/token", json={"email": f"{who}@test.example", "password": PASSWORD})
    assert r.status_code == 200, r.text
    return {"Authorization": f"Bearer {r.json()['access_token']}"}


def test_pages_render_api_text_as_text_and_the_console_escalates(
    site: Site, browser: Browser, contexts: list[BrowserContext]
) -> None:
    evil = '<img src=x onerror="window.__xss=1">报错'
    with httpx.Client(base_url=site.base) as client:
        r = client.post(
            "/api/v1/cases",
            json={"subject": evil, "description": evil, "product": "windows-client", "priority": "p2"},
            headers=_token(client, "customer"),
        )
        assert r.status_code == 201, r.text
        case_id = r.json()["id"]
    customer = new_page(browser, contexts)
    login(customer, site, "customer", expect_path="/")
    customer.goto(site.url(f"/cases/{case_id}"))
    expect(customer.locator("#case-subject")).to_have_text(evil)
    expect(customer.locator("#case-description")).to_have_text(evil)
    assert customer.evaluate("window.__xss") is None

    engineer = new_page(browser, contexts, locale="en-US")
    login(engineer, site, "engineer", expect_path="/console")
    engineer.goto(site.url(f"/console/cases/{case_id}"))
    expect(engineer.locator("#case-subject")).to_have_text(evil)
    expect(engineer.locator("#case-meta")).to_contain_text("l1")
    engineer.click("#transitions button[data-to=triaged]")
    expect(engineer.locator("#case-state")).to_have_text("Triaged")
    engineer.select_option("#escalate-form select[name=level]", "l2")
    engineer.fill("#escalate-form input[name=note]", "needs the network team")
    engineer.click("#escalate-form button[type=submit]")
    expect(engineer.locator("#case-meta")).to_contain_text("l2")
    expect(engineer.locator("#timeline")).to_contain_text("needs the network team")
    assert engineer.evaluate("window.__xss") is None
    # the customer never sees the other org's case, on the page either
    other = new_page(browser, contexts)
    login(other, site, "other_customer", expect_path="/")
    other.goto(site.url(f"/cases/{case_id}"))
    expect(other.locator("#case-subject")).to_have_text("未找到。")


def test_editor_flags_a_stale_translation(site: Site, browser: Browser, contexts: list[BrowserContext]) -> None:
    with httpx.Client(base_url=site.base) as client:
        auth = _token(client, "author")
        r = client.post(
            "/api/v1/articles",
            json={"zh": {"title": "VPN 连接后无法上网"}, "en": {"title": "No internet after VPN connects"}},
            headers=auth,
        )
        assert r.status_code == 201, r.text
        article = r.json()
        assert article["stale"] == {"zh": False, "en": False}
    page = new_page(browser, contexts)
    login(page, site, "author", expect_path="/author")
    expect(page.locator(f"#list-wip tr[data-article-id='{article['article_id']}']")).to_be_visible()
    page.goto(site.url(f"/author/articles/{article['article_id']}"))
    expect(page.locator("input[name='en.title']")).to_have_value("No internet after VPN connects")
    expect(page.locator("#stale-en")).to_be_hidden()
    page.fill("textarea[name='zh.resolution']", "在 VPN 客户端里关闭“仅使用远程网关”。")
    page.click("#save")
    expect(page.locator("#stale-en")).to_be_visible()  # the English text no longer matches the edited Chinese
    expect(page.locator("#stale-zh")).to_be_hidden()
    expect(page.locator("#versions li")).to_have_count(2)


def test_pages_stay_out_of_the_openapi_document(site: Site) -> None:
    paths = httpx.get(site.url("/openapi.json"), timeout=10).json()["paths"]
    assert "/api/v1/search" in paths
    assert not [p for p in paths if not p.startswith("/api/v1") and p not in ("/health", "/ready", "/metrics")]
    assert httpx.get(site.url("/static/app.js"), timeout=10).status_code == 200


def test_language_switch_and_login_never_redirect_to_another_site(site: Site) -> None:
    for target in ["//evil.example/x", "https://evil.example/", "/\\evil.example"]:
        r = httpx.get(site.url("/lang/en"), params={"next": target}, timeout=10)
        assert r.status_code == 303 and r.headers["location"] == "/", target
        page = httpx.get(site.url("/login"), params={"next": target}, timeout=10).text
        assert "evil.example" not in page
    r = httpx.get(site.url("/lang/en"), params={"next": "/cases?x=1"}, timeout=10)
    assert r.headers["location"] == "/cases?x=1" and "lang=en" in r.headers["set-cookie"]
    r = httpx.get(site.url("/lang/fr"), params={"next": "/"}, timeout=10)
    assert "set-cookie" not in r.headers
