"""Browser tests: Debian's chromium driven by Playwright against a real uvicorn server on 127.0.0.1.

The server runs ``create_app`` plus the portal (``api.web.install``) over a temp SQLite database seeded like the
API tests (users of every role, 60 sample articles), with one bilingual article and a few resolved cases on top.
Screenshots of every page go to tests/browser/screenshots/ (gitignored).
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from playwright.sync_api import Browser, BrowserContext, Page, sync_playwright
from sqlalchemy.orm import Session, sessionmaker

from api.main import create_app
from api.web import install
from kb.articles import Variant, create_article
from kb.cli_db import open_database
from kb.config import Settings
from kb.lifecycle import ArticleState, Audience, CaseState, Channel, Confidence, Priority
from kb.repository import create_case, transition_case
from tests.api.conftest import PASSWORD, seed
from tests.fakes import HashEmbedder

SHOTS = Path(__file__).resolve().parent / "screenshots"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
BILINGUAL_ID = "KB-TEST-0001"
BILINGUAL_ZH = Variant(
    "打印机显示脱机，无法打印",
    symptom="共享打印机在 Windows 中显示“脱机”，打印任务一直排队。",
    environment="Windows 11，网络打印机。",
    cause="打印机的 IP 地址变了，端口仍指向旧地址。",
    resolution="1. 在打印机面板查看当前 IP。\n2. 打印机属性 > 端口，改为新 IP。\n3. 给打印机分配固定 IP。",
)
BILINGUAL_EN = Variant(
    "Printer shows offline and will not print",
    symptom="A shared printer shows Offline in Windows and print jobs stay queued.",
    environment="Windows 11, network printer.",
    cause="The printer's IP address changed; the port still points to the old one.",
    resolution="1. Read the current IP on the printer panel.\n2. Printer properties > Ports: use the new IP.\n"
    "3. Give the printer a reserved IP.",
    translated=True,
)
RESOLVED_CASES = [
    ("打印机脱机，打印任务卡住", "办公室打印机显示脱机，无法打印。", "打印机 IP 变化，更新端口后恢复。"),
    ("Printer offline after router replacement", "All jobs stuck, printer offline.", "Updated the TCP/IP port."),
    ("Outlook 无法连接服务器", "Outlook 一直显示正在连接。", "重建 Outlook 配置文件后恢复。"),
]


def extra_seed(settings: Settings, user_ids: dict[str, int], org_ids: dict[str, int]) -> None:
    """One bilingual article (validated, public) and a few resolved cases of the customer's organisation."""
    engine, factory = open_database(settings)
    with factory.begin() as session:
        create_article(
            session,
            user_ids["reviewer"],
            zh=BILINGUAL_ZH,
            en=BILINGUAL_EN,
            keywords=["打印机", "脱机", "printer", "offline"],
            article_id=BILINGUAL_ID,
            products=["windows-client"],
            state=ArticleState(Confidence.VALIDATED, Audience.PUBLIC),
        )
        for subject, description, resolution in RESOLVED_CASES:
            case = create_case(
                session,
                org_id=org_ids["customer"],
                contact_name="customer",
                contact_email="customer@test.example",
                channel=Channel.WEB,
                product="windows-client",
                subject=subject,
                description=description,
                lang="zh" if any("\u4e00" <= ch <= "\u9fff" for ch in subject) else "en",
                priority=Priority.P3,
            )
            for target in (CaseState.TRIAGED, CaseState.IN_PROGRESS, CaseState.RESOLVED):
                transition_case(session, case.id, target, user_ids["engineer"], expected_version=case.version_id)
            case.resolution = resolution
            session.flush()
    engine.dispose()


@dataclass
class Site:
    base: str
    settings: Settings
    user_ids: dict[str, int]
    org_ids: dict[str, int]
    factory: sessionmaker[Session]

    def url(self, path: str) -> str:
        return self.base + path


def _free_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


@contextmanager
def serve_site(tmp: Path, embedder: Any) -> Iterator[Site]:
    """The seeded app plus the portal on a real uvicorn server (127.0.0.1, a free port) until the block ends."""
    settings = Settings(
        index_dir=tmp / "index",
        database_url=f"sqlite:///{tmp / 'kb.db'}",
        cache_dir=tmp / "cache",
        refresh_interval_ms=100,
        rate_limit_per_minute=100_000,
    )
    user_ids, org_ids = seed(settings)
    extra_seed(settings, user_ids, org_ids)
    app = create_app(settings, embedder=embedder)
    install(app)
    sock = _free_socket()
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 300
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the server did not start")
        time.sleep(0.05)
    assert httpx.get(base + "/login", timeout=10).status_code == 200
    engine, factory = open_database(settings)
    try:
        yield Site(base, settings, user_ids, org_ids, factory)
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()
        engine.dispose()


@pytest.fixture(scope="session")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    with serve_site(tmp_path_factory.mktemp("browser"), HashEmbedder()) as running:
        yield running


@pytest.fixture(scope="session")
def real_site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    """The same site with the real bundled sentence-transformers model (one per run: it loads the model)."""
    from kb.cli import make_embedder

    embedder = make_embedder(Settings.from_env(), batch=False)
    with serve_site(tmp_path_factory.mktemp("browser-real"), embedder) as running:
        yield running


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    SHOTS.mkdir(exist_ok=True)
    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def contexts(browser: Browser) -> Iterator[list[BrowserContext]]:
    """Browser contexts (separate cookie jars) opened by a test; all closed at its end."""
    opened: list[BrowserContext] = []
    yield opened
    for ctx in opened:
        ctx.close()


def new_page(browser: Browser, contexts: list[BrowserContext], locale: str = "zh-CN", **kwargs: Any) -> Page:
    ctx = browser.new_context(locale=locale, viewport={"width": 1280, "height": 900}, **kwargs)
    ctx.set_default_timeout(15_000)
    contexts.append(ctx)
    page = ctx.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.js_errors = errors  # type: ignore[attr-defined]
    return page


def login(page: Page, site: Site, who: str, *, expect_path: str) -> None:
    page.goto(site.url("/login"))
    page.fill("input[name=email]", f"{who}@test.example")
    page.fill("input[name=password]", PASSWORD)
    page.click("#login-form button[type=submit]")
    page.wait_for_url(site.url(expect_path))


def shot(page: Page, name: str) -> None:
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)
