"""The portal's smaller buttons: "assign to me" on the engineer's case page, "create article from this case" pressed
twice (one draft), "new article" in the author view, and "mark translation current" in the editor."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, BrowserContext, expect
from sqlalchemy import select

from kb.models import Case, CaseArticleLink, Relation
from tests.api.conftest import PASSWORD
from tests.browser.conftest import Site, login, new_page, shot

pytestmark = pytest.mark.browser


@contextmanager
def _api(site: Site, who: str) -> Iterator[httpx.Client]:
    """An API client logged in as ``who`` (bearer token, no cookie)."""
    with httpx.Client(base_url=site.base + "/api/v1", timeout=30) as http:
        r = http.post("/auth/token", json={"email": f"{who}@test.example", "password": PASSWORD})
        assert r.status_code == 200, r.text
        http.headers["Authorization"] = f"Bearer {r.json()['access_token']}"
        http.cookies.clear()
        yield http


def _open_case(site: Site, subject: str) -> dict[str, Any]:
    with _api(site, "customer") as http:
        body = {
            "subject": subject,
            "description": f"{subject}。重启后依旧。",
            "product": "windows-client",
            "priority": "p3",
        }
        r = http.post("/cases", json=body)
    assert r.status_code == 201, r.text
    return dict(r.json())


def test_engineer_assigns_a_case_to_themself(site: Site, browser: Browser, contexts: list[BrowserContext]) -> None:
    case = _open_case(site, "蓝牙耳机无法连接笔记本")
    page = new_page(browser, contexts)
    login(page, site, "engineer", expect_path="/console")
    page.goto(site.url(f"/console/cases/{case['id']}"))
    expect(page.locator("#case-assignee")).to_have_text("未分配")
    button = page.locator("#assign-me")
    expect(button).to_have_text("分配给我")
    button.click()
    expect(page.locator("#case-assignee")).to_have_text("已分配给您")
    expect(button).to_be_hidden()
    expect(page.locator("#timeline")).to_contain_text("assigned to")
    shot(page, "console_case_assigned")
    with site.factory() as session:
        row = session.get(Case, case["id"])
        assert row is not None and row.assignee_id == site.user_ids["engineer"]
    assert page.js_errors == []  # type: ignore[attr-defined]


def test_create_article_pressed_twice_makes_one_draft(
    site: Site, browser: Browser, contexts: list[BrowserContext]
) -> None:
    case = _open_case(site, "投影仪 HDMI 无信号")
    page = new_page(browser, contexts)
    login(page, site, "engineer", expect_path="/console")
    page.goto(site.url(f"/console/cases/{case['id']}"))
    expect(page.locator("#case-subject")).to_have_text("投影仪 HDMI 无信号")
    posts: list[str] = []
    page.on("request", lambda r: posts.append(r.url) if r.method == "POST" and "article-draft" in r.url else None)
    # Two presses in the same task, before the first answer: the second finds the button disabled.
    page.evaluate("() => { const b = document.querySelector('#create-article'); b.click(); b.click(); }")
    page.wait_for_url(re.compile(r"/author/articles/[A-Za-z0-9_-]+$"))
    first = page.url.rsplit("/", 1)[1]
    assert len(posts) == 1, posts
    # Pressed again later (back on the case page): the API answers the same draft.
    page.goto(site.url(f"/console/cases/{case['id']}"))
    expect(page.locator(f"#links li[data-article-id='{first}']")).to_be_visible()
    page.click("#create-article")
    page.wait_for_url(site.url(f"/author/articles/{first}"))
    with site.factory() as session:
        stmt = select(CaseArticleLink.article_id).where(
            CaseArticleLink.case_id == case["id"], CaseArticleLink.relation == Relation.SOLVED_BY
        )
        assert list(session.scalars(stmt)) == [first]
    assert page.js_errors == []  # type: ignore[attr-defined]


def test_author_creates_a_blank_article(site: Site, browser: Browser, contexts: list[BrowserContext]) -> None:
    page = new_page(browser, contexts, locale="en-GB")
    login(page, site, "author", expect_path="/author")
    expect(page.locator("#new-article")).to_have_text("New article")
    page.fill("#new-article-form input[name=title]", "Docking station: external monitors stay black")
    page.select_option("#new-article-form select[name=lang]", "en")
    page.click("#new-article")
    page.wait_for_url(re.compile(r"/author/articles/[A-Za-z0-9_-]+$"))
    article_id = page.url.rsplit("/", 1)[1]
    expect(page.locator("input[name='en.title']")).to_have_value("Docking station: external monitors stay black")
    expect(page.locator("input[name='zh.title']")).to_have_value("")
    expect(page.locator("#state-confidence")).to_contain_text("wip")
    page.click("[data-nav=author]")
    expect(page.locator(f"#list-wip tr[data-article-id='{article_id}']")).to_contain_text("Docking station")
    shot(page, "author_new_article")
    assert page.js_errors == []  # type: ignore[attr-defined]


def test_editor_marks_a_stale_translation_current(site: Site, browser: Browser, contexts: list[BrowserContext]) -> None:
    with _api(site, "author") as http:
        created = http.post("/articles", json={"zh": {"title": "键盘部分按键失灵", "resolution": "更新键盘驱动。"}})
        assert created.status_code == 201, created.text
        art = created.json()
        en = {"title": "Some keys do not work", "resolution": "Update the keyboard driver."}
        r = http.put(f"/articles/{art['article_id']}/translations/en", json={"expected_version": art["version_id"],
                     "variant": en})  # fmt: skip
        assert r.status_code == 200, r.text
        zh = {"title": "键盘部分按键失灵", "resolution": "更新键盘驱动，然后重启。"}
        r = http.patch(f"/articles/{art['article_id']}", json={"expected_version": r.json()["version_id"], "zh": zh})
        assert r.status_code == 200 and r.json()["stale"] == {"zh": False, "en": True}, r.text
        version = r.json()["version"]
    page = new_page(browser, contexts)
    login(page, site, "author", expect_path="/author")
    page.goto(site.url(f"/author/articles/{art['article_id']}"))
    expect(page.locator("#stale-en")).to_be_visible()
    expect(page.locator("#mark-current-zh")).to_be_hidden()
    mark = page.locator("#mark-current-en")
    expect(mark).to_have_text("标记译文为最新")
    mark.click()
    expect(page.locator("#flash")).to_have_text("译文已标记为最新")
    expect(page.locator("#stale-en")).to_be_hidden()
    expect(mark).to_be_hidden()
    expect(page.locator("#versions li")).to_have_count(version + 1)
    with _api(site, "author") as http:
        now = http.get(f"/articles/{art['article_id']}").json()
    assert now["stale"] == {"zh": False, "en": False}
    assert now["en"]["title"] == "Some keys do not work" and now["version"] == version + 1
    assert page.js_errors == []  # type: ignore[attr-defined]
