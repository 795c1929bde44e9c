"""Service load test: ``python -m eval.loadtest --clients 20 --requests 500 [--workers 2] [--json]``.

Starts ``kb serve`` on loopback over a temporary copy of the samples (``kb db upgrade``, ``kb ingest articles``
with the sample corpus as validated/public, ``kb ingest cases`` with the first ``--cases`` sample cases,
``kb users import`` of the sample users), or over an existing ``--db`` / ``--index-dir``. Each client logs in
as one of the sample users (staff and customers in turn) and keeps its own HTTP connection. Each client sends
``--requests`` requests (``--clients 20 --requests 500``: 10,000 in all), its own slice of one list drawn with a fixed
seed from a realistic mix:

- 60 % ``GET /search`` with a sample query (zh, en and mixed, ``data/samples/queries.jsonl``);
- 25 % ``POST /suggest`` with a query as the case form's subject and description;
- 10 % reads: an article (``GET /articles/{id}``) or a case (staff: ``GET /cases/{id}``; customers: their
  organisation's case list);
- 5 % ``GET /auth/me``.

Reported: errors (non-2xx or transport errors), p50/p95/p99 per request kind and overall, throughput, and the
resident memory (``/proc/<pid>/status`` VmRSS) of the server processes, sampled every ``--sample-s`` seconds while
the load runs. Memory is *flat* when every worker's RSS at the end of the run grew by less than
``FLAT_MB`` (30 MB) or less than ``FLAT_FRACTION`` (5 %) over its RSS when a quarter of the measured requests were
done (the first quarter is the warm-up of allocator pools and caches). The server is stopped at the end (or on
Ctrl-C). It embeds queries with the configured model unless ``--no-embed``. Exit status 1 when any request failed
or memory was not flat.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "data" / "samples"
KB = Path(sys.executable).parent / "kb"
MIX: tuple[tuple[str, float], ...] = (("search", 0.60), ("suggest", 0.25), ("read", 0.10), ("me", 0.05))
STAFF_ROLES = frozenset({"admin", "engineer", "author", "reviewer", "coach"})
FLAT_MB = 30.0
FLAT_FRACTION = 0.05


@dataclass(frozen=True, slots=True)
class User:
    email: str
    password: str
    role: str


@dataclass
class Client:
    user: User
    http: httpx.Client

    @property
    def is_staff(self) -> bool:
        return self.user.role in STAFF_ROLES


@dataclass(frozen=True, slots=True)
class Result:
    kind: str
    ms: float
    status: int  # 0: transport error


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _run(args: Sequence[str], env: dict[str, str]) -> None:
    done = subprocess.run(args, env=env, cwd=ROOT, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"loadtest: {' '.join(args[:3])} failed ({done.returncode}):\n{done.stderr[-2000:]}")


def prepare(work: Path, env: dict[str, str], n_cases: int, no_embed: bool) -> None:
    """A fresh database and index in ``work`` from the samples, as the sample main job builds them."""
    cases = work / "cases.jsonl"
    with open(SAMPLES / "cases.jsonl", encoding="utf-8") as src, open(cases, "w", encoding="utf-8") as out:
        for i, line in enumerate(src):
            if i >= n_cases:
                break
            out.write(line)
    embed = ["--no-embed"] if no_embed else []
    _run([str(KB), "db", "upgrade"], env)
    articles = [str(SAMPLES / "corpus.jsonl"), "--confidence", "validated", "--audience", "public", "-q"]
    _run([str(KB), "ingest", "articles", *articles, *embed], env)
    _run([str(KB), "ingest", "cases", str(cases), "-q", *embed], env)
    _run([str(KB), "users", "import", str(SAMPLES / "users.jsonl")], env)


def _children(pid: int) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                out.append(int(entry.name))
    return out


def _rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def server_rss(pid: int) -> dict[str, Any]:
    """RSS in MB of the ``kb serve`` supervisor and its worker processes (spawned uvicorn workers)."""
    workers = []
    for child in _children(pid):
        try:
            cmd = Path(f"/proc/{child}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if "spawn_main" in cmd:
            workers.append(round(_rss_mb(child), 1))
    parent = round(_rss_mb(pid), 1)
    return {"supervisor": parent, "workers": sorted(workers), "total": round(parent + sum(workers), 1)}


class RssSampler:
    """Every ``period`` seconds, the RSS of each server worker with the count of requests done so far."""

    def __init__(self, pid: int, period: float, done: Callable[[], int]) -> None:
        self.pid = pid
        self.period = period
        self.done = done  # measured requests finished so far
        self.samples: list[dict[str, Any]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._t0 = time.monotonic()

    def _sample(self) -> None:
        workers = {}
        for child in _children(self.pid):
            try:
                cmd = Path(f"/proc/{child}/cmdline").read_bytes()
            except OSError:
                continue
            if b"spawn_main" in cmd:
                workers[str(child)] = round(_rss_mb(child), 1)
        if not workers:  # --workers 1: uvicorn serves in the kb serve process itself
            workers[str(self.pid)] = round(_rss_mb(self.pid), 1)
        t = round(time.monotonic() - self._t0, 1)
        self.samples.append({"t_s": t, "done": self.done(), "workers": workers})

    def _loop(self) -> None:
        while not self._stop.wait(self.period):
            self._sample()

    def __enter__(self) -> RssSampler:
        self._sample()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        self._sample()


def flatness(samples: Sequence[dict[str, Any]], total: int) -> dict[str, Any]:
    """Per worker: RSS at the first sample with a quarter of ``total`` done vs the last sample; flat or not."""
    quarter = next((s for s in samples if s["done"] >= total / 4), samples[-1])
    end = samples[-1]
    workers = {}
    for pid, at_end in end["workers"].items():
        base = quarter["workers"].get(pid)
        if base is None:  # a worker that started after the quarter mark (a restart) is not flat
            workers[pid] = {"at_quarter": None, "end": at_end, "growth_mb": None, "flat": False}
            continue
        growth = round(at_end - base, 1)
        flat = growth < FLAT_MB or growth < FLAT_FRACTION * base
        peak = max(s["workers"].get(pid, 0.0) for s in samples)
        workers[pid] = {"at_quarter": base, "end": at_end, "peak": peak, "growth_mb": growth, "flat": flat}
    gone = sorted(set(quarter["workers"]) - set(end["workers"]))
    return {
        "criterion": f"per worker, RSS(end) - RSS(25 % of requests done) < {FLAT_MB:g} MB or < {FLAT_FRACTION:.0%}",
        "quarter_at_s": quarter["t_s"],
        "end_at_s": end["t_s"],
        "workers": workers,
        "workers_gone": gone,
        "flat": bool(workers) and not gone and all(w["flat"] for w in workers.values()),
    }


def _worker_pids(url: str) -> set[str]:
    text = httpx.get(f"{url}/metrics", timeout=10).text
    return {
        line.split('pid="')[1].split('"')[0] for line in text.splitlines() if line.startswith("kb_index_documents{")
    }


@contextmanager
def serve(env: dict[str, str], workers: int, log: Path, no_embed: bool) -> Iterator[tuple[str, int]]:
    """``kb serve`` on a free loopback port until every worker answers; stopped (SIGINT) on exit."""
    port = _free_port()
    args = [str(KB), "serve", "--workers", str(workers), "--port", str(port), *(["--no-embed"] if no_embed else [])]
    with open(log, "wb") as out:
        proc = subprocess.Popen(args, env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 600
        while True:
            if proc.poll() is not None:
                raise SystemExit(f"loadtest: kb serve exited ({proc.returncode}):\n{log.read_text()[-2000:]}")
            try:
                if httpx.get(f"{url}/api/v1/ready", timeout=5).status_code == 200:
                    seen: set[str] = set()
                    for _ in range(workers * 10):
                        seen |= _worker_pids(url)
                    if len(seen) >= workers:
                        break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit("loadtest: kb serve not ready within 600 s")
            time.sleep(0.5)
        yield url, proc.pid
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)


def read_users(path: Path) -> list[User]:
    users = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            row = json.loads(line)
            users.append(User(row["email"], row["password"], row["role"]))
    return users


def login(url: str, users: Sequence[User], n: int) -> list[Client]:
    """``n`` clients, each logged in (its own token and connection), staff and customers in turn."""
    order = [u for u in users if u.role in ("engineer", "reviewer", "author")]
    customers = [u for u in users if u.role == "customer"]
    cycle = [u for pair in zip(order * len(customers), customers * len(order), strict=True) for u in pair] or users
    clients = []
    for i in range(n):
        user = cycle[i % len(cycle)]
        http = httpx.Client(base_url=url, timeout=60)
        r = http.post("/api/v1/auth/token", json={"email": user.email, "password": user.password})
        if r.status_code != 200:
            raise SystemExit(f"loadtest: login of {user.email} failed: {r.status_code} {r.text[:200]}")
        http.headers["Authorization"] = f"Bearer {r.json()['access_token']}"
        http.cookies.clear()
        clients.append(Client(user, http))
    return clients


def plan(n: int, seed: int = 7) -> list[tuple[str, float]]:
    """``n`` (kind, draw) pairs from ``MIX``; the draw picks the query / id inside the kind."""
    rng = random.Random(seed)
    kinds, weights = zip(*MIX, strict=True)
    return [(rng.choices(kinds, weights)[0], rng.random()) for _ in range(n)]


class Workload:
    def __init__(self, queries: Sequence[str], article_ids: Sequence[str], case_ids: Sequence[int]) -> None:
        self.queries = queries
        self.article_ids = article_ids
        self.case_ids = case_ids

    def request(self, client: Client, kind: str, draw: float) -> httpx.Response:
        query = self.queries[int(draw * len(self.queries))]
        if kind == "search":
            return client.http.get("/api/v1/search", params={"q": query})
        if kind == "suggest":
            return client.http.post("/api/v1/suggest", json={"subject": query[:200], "description": query})
        if kind == "me":
            return client.http.get("/api/v1/auth/me")
        half = draw < 0.5
        if half:
            return client.http.get(f"/api/v1/articles/{self.article_ids[int(draw * 2 * len(self.article_ids))]}")
        if client.is_staff and self.case_ids:
            return client.http.get(f"/api/v1/cases/{self.case_ids[int((draw - 0.5) * 2 * len(self.case_ids))]}")
        return client.http.get("/api/v1/cases", params={"limit": 20})

    def run(
        self, clients: Sequence[Client], items: Sequence[tuple[str, float]], results: list[Result] | None = None
    ) -> tuple[list[Result], float]:
        """Client ``i`` sends ``items[i::len(clients)]`` in order; results are appended to ``results`` as they come."""
        lock = threading.Lock()
        results = [] if results is None else results

        def worker(client: Client, mine: Sequence[tuple[str, float]]) -> None:
            for kind, draw in mine:
                start = time.perf_counter()
                try:
                    status = self.request(client, kind, draw).status_code
                except httpx.HTTPError:
                    status = 0
                ms = (time.perf_counter() - start) * 1000
                with lock:
                    results.append(Result(kind, ms, status))

        n = len(clients)
        threads = [threading.Thread(target=worker, args=(c, items[i::n])) for i, c in enumerate(clients)]
        start = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return results, time.perf_counter() - start


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (``q`` in 0..100) of non-empty ``values``."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), int(-(-q * len(ordered) // 100))))
    return ordered[rank - 1]


def summarise(results: Sequence[Result]) -> dict[str, Any]:
    by_kind: dict[str, list[Result]] = defaultdict(list)
    for r in results:
        by_kind[r.kind].append(r)
    by_kind["all"] = list(results)
    out: dict[str, Any] = {}
    for kind, rows in sorted(by_kind.items()):
        ms = [r.ms for r in rows]
        out[kind] = {
            "n": len(rows),
            "errors": sum(1 for r in rows if not 200 <= r.status < 300),
            "p50_ms": round(percentile(ms, 50), 1),
            "p95_ms": round(percentile(ms, 95), 1),
            "p99_ms": round(percentile(ms, 99), 1),
            "mean_ms": round(sum(ms) / len(ms), 1),
        }
    return out


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m eval.loadtest", description=__doc__.split("\n\n")[0])
    p.add_argument("--clients", type=int, default=20, help="concurrent clients (default 20)")
    p.add_argument("--requests", type=int, default=500, help="measured requests per client (default 500)")
    p.add_argument("--workers", type=int, default=2, help="kb serve worker processes (default 2)")
    p.add_argument("--db", help="an existing database URL (with --index-dir) instead of a copy of the samples")
    p.add_argument("--index-dir", help="the index directory of --db")
    p.add_argument("--cases", type=int, default=100, help="sample cases ingested into the temporary copy (default 100)")
    p.add_argument("--no-embed", action="store_true", help="BM25 only (the server loads no model)")
    p.add_argument("--rss-log", help="write every RSS sample (JSON list) to this file")
    p.add_argument("--sample-s", type=float, default=1.0, help="seconds between RSS samples (default 1)")
    p.add_argument("--json", action="store_true", help="print the report as one JSON line")
    args = p.parse_args(argv)
    if not 1 <= args.clients <= 200 or not 1 <= args.requests <= 10_000 or not 1 <= args.workers <= 16:
        p.error("--clients 1..200, --requests 1..10000, --workers 1..16")
    if not 0.1 <= args.sample_s <= 60:
        p.error("--sample-s 0.1..60")
    if bool(args.db) != bool(args.index_dir):
        p.error("--db and --index-dir go together")
    work = Path(tempfile.mkdtemp(prefix="kb-loadtest-"))
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "KB_CACHE_DIR": str(work / "cache")}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    env["KB_DATABASE_URL"] = args.db or f"sqlite:///{work / 'kb.db'}"
    env["KB_INDEX_DIR"] = args.index_dir or str(work / "index")
    try:
        t0 = time.perf_counter()
        if not args.db:
            prepare(work, env, args.cases, args.no_embed)
        setup_s = time.perf_counter() - t0
        queries = [json.loads(line)["text"] for line in (SAMPLES / "queries.jsonl").read_text("utf-8").splitlines()]
        with serve(env, args.workers, work / "serve.log", args.no_embed) as (url, pid):
            clients = login(url, read_users(SAMPLES / "users.jsonl"), args.clients)
            staff = next(c for c in clients if c.is_staff)
            # Published articles only: every client may read them (ingested cases add internal drafts).
            published: dict[str, str | int] = {"confidence": "validated", "audience": "public", "limit": 100}
            listed = staff.http.get("/api/v1/articles", params=published).json()["items"]
            # The staff queue lists open cases unless asked: the sample cases are resolved or closed.
            by_state = httpx.QueryParams([("state", "resolved"), ("state", "closed"), ("limit", "100")])
            cases = staff.http.get("/api/v1/cases", params=by_state).json()["items"]
            if not cases:
                raise SystemExit("loadtest: no case to read (GET /api/v1/cases?state=resolved&state=closed is empty)")
            workload = Workload(queries, [a["article_id"] for a in listed], [c["id"] for c in cases])
            warm = [
                (kind, i / (3 * len(clients))) for i in range(len(clients)) for kind in ("search", "suggest", "read")
            ]
            workload.run(clients, warm)
            rss_warm = server_rss(pid)
            total = args.clients * args.requests
            load_start = [round(x, 2) for x in os.getloadavg()]
            results: list[Result] = []
            with RssSampler(pid, args.sample_s, lambda: len(results)) as sampler:
                _, wall = workload.run(clients, plan(total), results)
            rss_end = server_rss(pid)
            memory = flatness(sampler.samples, total)
            for c in clients:
                c.http.close()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    stats = summarise(results)
    failures = [f"{r.kind}:{r.status}" for r in results if not 200 <= r.status < 300]
    report = {
        "command": "python -m eval.loadtest " + " ".join(argv if argv is not None else sys.argv[1:]),
        "clients": args.clients,
        "requests": len(results),
        "workers": args.workers,
        "embed": not args.no_embed,
        "articles": len(workload.article_ids),
        "cases": len(workload.case_ids),
        "setup_s": round(setup_s, 1),
        "wall_s": round(wall, 2),
        "throughput_rps": round(len(results) / wall, 1),
        "errors": len(failures),
        "error_samples": failures[:10],
        "latency": stats,
        "rss_mb": {"after_warmup": rss_warm, "end": rss_end},
        "memory": memory,
        "rss_samples": len(sampler.samples),
        "load_avg_start": load_start,
        "load_avg_end": [round(x, 2) for x in os.getloadavg()],
    }
    if args.json:
        print(json.dumps(report, ensure_ascii=False))
    else:
        print(
            f"{report['requests']} requests, {args.clients} clients, {args.workers} workers: "
            f"{report['throughput_rps']} req/s, {report['errors']} errors, wall {report['wall_s']} s"
        )
        print(f"{'kind':<8} {'n':>5} {'err':>4} {'p50':>8} {'p95':>8} {'p99':>8}  (ms)")
        for kind, s in stats.items():
            print(f"{kind:<8} {s['n']:>5} {s['errors']:>4} {s['p50_ms']:>8} {s['p95_ms']:>8} {s['p99_ms']:>8}")
        print(f"server RSS MB after warm-up {rss_warm}, at the end {rss_end}")
        print(f"memory: {memory['criterion']}: {'flat' if memory['flat'] else 'NOT FLAT'}")
        for wpid, w in memory["workers"].items():
            print(f"  worker {wpid}: {w['at_quarter']} MB at 25 % -> {w['end']} MB at the end ({w['growth_mb']} MB)")
    if args.rss_log:
        Path(args.rss_log).write_text(json.dumps(sampler.samples) + "\n", encoding="utf-8")
    return 1 if failures or not memory["flat"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
