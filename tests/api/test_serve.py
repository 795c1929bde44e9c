"""``kb serve --workers 2``: a real uvicorn server in a subprocess; a change made through one worker (or straight
into the database) leaves the search results of *every* worker within 2 s."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from kb.articles import set_article_state
from kb.cli_db import open_database
from kb.config import Settings
from kb.lifecycle import ArticleState, Audience, Confidence, Role
from kb.models import Article
from tests.api.conftest import PASSWORD, seed

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
KB = Path(sys.executable).parent / "kb"
QUERY = "0x80070005 Windows Update"
TARGET = "KB-WINC-0002"
FRESHNESS_LIMIT = 2.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class Server:
    url: str
    settings: Settings
    proc: subprocess.Popen[bytes]
    log: Path


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("serve")
    settings = Settings(index_dir=tmp / "index", database_url=f"sqlite:///{tmp / 'kb.db'}", cache_dir=tmp / "cache")
    seed(settings)
    port = free_port()
    env = {
        **os.environ,
        "KB_DATABASE_URL": settings.database_url,
        "KB_INDEX_DIR": str(settings.index_dir),
        "KB_CACHE_DIR": str(settings.cache_dir),
        "HF_HUB_OFFLINE": "1",
    }
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    log = tmp / "serve.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [str(KB), "serve", "--workers", "2", "--no-embed", "--port", str(port)],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            if proc.poll() is not None:
                raise AssertionError(f"kb serve exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
            try:
                if httpx.get(f"{url}/api/v1/ready", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"kb serve not ready in 120 s:\n{log.read_text()[-3000:]}")
            time.sleep(0.3)
        # /ready answers as soon as one worker is up; wait until both have loaded (their pids label the gauges).
        while len(_worker_pids(url)) < 2:
            if time.monotonic() > deadline:
                raise AssertionError(f"second worker not up in 120 s:\n{log.read_text()[-3000:]}")
            time.sleep(0.3)
        yield Server(url, settings, proc, log)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)


def _worker_pids(url: str, tries: int = 40) -> set[str]:
    pids: set[str] = set()
    for _ in range(tries):
        text = httpx.get(f"{url}/metrics", timeout=5).text
        pids.update(line.split('pid="')[1].split('"')[0] for line in text.splitlines() if "kb_index_documents{" in line)
        if len(pids) == 2:
            break
    return pids


def _documents_by_worker(url: str) -> dict[str, float]:
    """``kb_index_documents`` of each worker (scrapes until both answered)."""
    seen: dict[str, float] = {}
    for _ in range(40):
        for line in httpx.get(f"{url}/metrics", timeout=5).text.splitlines():
            if line.startswith("kb_index_documents{"):
                seen[line.split('pid="')[1].split('"')[0]] = float(line.rsplit(" ", 1)[1])
        if len(seen) == 2:
            break
    return seen


def _pids_of(log: Path, request_ids: set[str]) -> set[int]:
    time.sleep(0.3)  # the access line is written just after the response is sent
    pids = set()
    for line in log.read_text(encoding="utf-8").splitlines():
        if line.startswith("{"):
            entry = json.loads(line)
            if entry["request_id"] in request_ids:
                pids.add(entry["pid"])
    return pids


def _login(url: str, who: str) -> dict[str, str]:
    r = httpx.post(f"{url}/api/v1/auth/token", json={"email": f"{who}@test.example", "password": PASSWORD})
    assert r.status_code == 200, r.text
    return {"Authorization": f"Bearer {r.json()['access_token']}"}


def _search(url: str, headers: dict[str, str], query: str) -> tuple[list[str], str]:
    """Article ids found and the request id. httpx.get opens a new connection for every call, so consecutive
    searches land on either worker."""
    r = httpx.get(f"{url}/api/v1/search", params={"q": query, "k": 10}, headers=headers, timeout=10)
    assert r.status_code == 200, r.text
    return [a["article_id"] for a in r.json()["articles"]], r.headers["x-request-id"]


def _ids(url: str, headers: dict[str, str], query: str) -> list[str]:
    return _search(url, headers, query)[0]


def _gone_everywhere(server: Server, headers: dict[str, str], query: str, target: str, start: float) -> float:
    """Seconds from ``start`` until 20 consecutive searches on new connections no longer return ``target``;
    checks that both workers answered some of those 20."""
    streak: list[str] = []
    streak_start = time.monotonic()
    while len(streak) < 20:
        now = time.monotonic()
        if now - start > FRESHNESS_LIMIT + 5:
            raise AssertionError(f"{target} still found {now - start:.2f} s after the change")
        ids, request_id = _search(server.url, headers, query)
        if target in ids:
            streak = []
            continue
        if not streak:
            streak_start = now
        streak.append(request_id)
    assert len(_pids_of(server.log, set(streak))) == 2, "the 20 searches did not reach both workers"
    return streak_start - start


def test_both_workers_answer(server: Server) -> None:
    pids = _worker_pids(server.url)
    assert len(pids) == 2, f"only worker(s) {pids} answered"


def _health_count(url: str) -> float:
    text = httpx.get(f"{url}/metrics", timeout=5).text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "kb_http_request_duration_seconds_count" and sample.labels == {
                "method": "GET",
                "route": "/api/v1/health",
                "status": "200",
            }:
                return float(sample.value)
    return 0.0


def test_metrics_of_both_workers_are_merged(server: Server) -> None:
    before = _health_count(server.url)
    request_ids = set()
    for _ in range(20):
        r = httpx.get(f"{server.url}/api/v1/health", timeout=5)
        assert r.status_code == 200
        request_ids.add(r.headers["x-request-id"])
    assert len(_pids_of(server.log, request_ids)) == 2, "the 20 requests did not reach both workers"
    assert _health_count(server.url) - before == 20  # whichever worker answers the scrape


def test_archive_through_the_api_leaves_every_worker_within_2s(server: Server) -> None:
    reviewer = _login(server.url, "reviewer")
    customer = _login(server.url, "customer")
    assert all(_ids(server.url, customer, QUERY)[:1] == [TARGET] for _ in range(6))
    article = httpx.get(f"{server.url}/api/v1/articles/{TARGET}", headers=reviewer, timeout=10)
    assert article.status_code == 200, article.text
    r = httpx.post(
        f"{server.url}/api/v1/articles/{TARGET}/transitions",
        json={"expected_version": article.json()["version_id"], "confidence": "archived"},
        headers=reviewer,
        timeout=10,
    )
    assert r.status_code == 200, r.text
    start = time.monotonic()
    elapsed = _gone_everywhere(server, customer, QUERY, TARGET, start)
    print(f"\narchived through the API: gone from every worker after {elapsed:.3f} s")
    assert elapsed <= FRESHNESS_LIMIT


def test_change_written_straight_to_the_database_is_followed(server: Server) -> None:
    """No worker handled this change: both must see it by polling the database's outbox."""
    target = "KB-WINC-0001"
    engine, factory = open_database(server.settings)
    try:
        with factory() as session:
            article = session.get(Article, target)
            assert article is not None
            version_id = article.version_id
    finally:
        engine.dispose()
    customer = _login(server.url, "customer")
    staff = _login(server.url, "engineer")
    title = httpx.get(f"{server.url}/api/v1/articles/{target}", headers=staff, timeout=10).json()
    query = (title.get("en") or title.get("zh"))["title"]
    assert target in _ids(server.url, customer, query)
    counts = set(_documents_by_worker(server.url).values())
    assert len(counts) == 1, counts
    before = counts.pop()
    engine, factory = open_database(server.settings)
    try:
        with factory.begin() as session:
            set_article_state(
                session,
                target,
                Role.REVIEWER,
                ArticleState(Confidence.ARCHIVED, Audience.PUBLIC),
                expected_version=version_id,
            )
    finally:
        engine.dispose()
    start = time.monotonic()
    index_lag: list[float] = []

    def watch_indexes() -> None:
        # Results are checked against the database when hydrated; the workers' indexes must follow too.
        while time.monotonic() - start < FRESHNESS_LIMIT + 5:
            docs = _documents_by_worker(server.url)
            if len(docs) == 2 and all(n == before - 1 for n in docs.values()):
                index_lag.append(time.monotonic() - start)
                return
            time.sleep(0.02)

    watcher = threading.Thread(target=watch_indexes)
    watcher.start()
    try:
        elapsed = _gone_everywhere(server, customer, query, target, start)
    finally:
        watcher.join()
    print(f"\narchived in the database: gone from every worker's results after {elapsed:.3f} s")
    assert elapsed <= FRESHNESS_LIMIT
    assert index_lag, "a worker's index still holds the archived article"
    print(f"both worker indexes dropped it after {index_lag[0]:.3f} s")
    assert index_lag[0] <= FRESHNESS_LIMIT
