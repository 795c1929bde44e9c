"""Intake suggestion latency: ``python -m eval.suggest_bench [--requests 600] [--json]``.

Starts ``kb serve`` (one worker, hybrid, the configured model) on loopback over a temporary copy of the samples, as
``eval.loadtest`` does (all sample articles as validated/public, the first ``--cases`` sample cases ingested, the
sample users), or over an existing ``--db`` / ``--index-dir``. One client, logged in as a customer, sends
``POST /api/v1/suggest`` requests one after the other, as the case form does while a case is typed: for each sample
case (taken in a fixed interleaved order so zh, en and mixed texts alternate), prefixes of its subject of increasing
length, then the whole subject with prefixes of its description of increasing length (at most 4,000 characters, as
the form sends). The first ``--warmup`` requests are not measured.

Reported per text language of the case (zh, en, mixed; see ``text_lang``) and overall: p50/p95/p99/max of the
client-side time (request sent to response read, over a keep-alive connection) and of the server-side time (the
route's own ``took_ms``: normalise, retrieve, hydrate, log; without HTTP parsing and JSON encoding), and the load
average before and after (the machine is shared). Exit status 1 when a request failed or the overall client-side
p99 is not under ``--target-ms`` (default 100).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from eval.loadtest import SAMPLES, login, percentile, prepare, read_users, serve

TextLang = Literal["zh", "en", "mixed"]
_CJK = re.compile(r"[\u3400-\u9fff]")
_LATIN = re.compile(r"[A-Za-z]")
ZH_SHARE = 0.6
MAX_DESCRIPTION = 4000  # the case form sends at most this much description


@dataclass(frozen=True, slots=True)
class Typed:
    subject: str
    description: str
    lang: TextLang


@dataclass(frozen=True, slots=True)
class Sample:
    lang: TextLang
    client_ms: float
    server_ms: float
    status: int


def text_lang(text: str) -> TextLang:
    """en: no CJK; zh: CJK characters are at least ``ZH_SHARE`` of the CJK characters plus Latin letters (a Chinese
    text with a few product names and codes); mixed: the rest (Chinese and English sentences side by side)."""
    cjk = len(_CJK.findall(text))
    if not cjk:
        return "en"
    return "zh" if cjk / (cjk + len(_LATIN.findall(text))) >= ZH_SHARE else "mixed"


def _prefixes(text: str, steps: int) -> list[str]:
    """``steps`` prefixes of ``text`` of increasing length, the last one the whole text (none shorter than 2)."""
    cuts = sorted({max(2, round(len(text) * i / steps)) for i in range(1, steps + 1)})
    return [text[:c] for c in cuts if c <= len(text)]


def typing_sequence(case: dict[str, Any]) -> Iterator[Typed]:
    """What the case form sends while this case is typed: subject prefixes, then description prefixes."""
    subject = case["subject"].strip()
    description = case.get("description", "").strip()[:MAX_DESCRIPTION]
    lang = text_lang(f"{subject} {description}")
    for prefix in _prefixes(subject, 3):
        yield Typed(prefix, "", lang)
    for prefix in _prefixes(description, 4):
        yield Typed(subject, prefix, lang)


def workload(cases: Sequence[dict[str, Any]], n: int) -> list[Typed]:
    """``n`` requests: cases taken round-robin by language (zh, en, mixed), each typed in full, repeated if short."""
    by_lang: dict[TextLang, list[dict[str, Any]]] = defaultdict(list)
    for case in cases:
        by_lang[text_lang(f"{case['subject']} {case.get('description', '')}")].append(case)
    order: list[dict[str, Any]] = []
    queues = [list(v) for _, v in sorted(by_lang.items())]
    while any(queues):
        for q in queues:
            if q:
                order.append(q.pop(0))
    out: list[Typed] = []
    while len(out) < n and order:
        for case in order:
            out.extend(typing_sequence(case))
            if len(out) >= n:
                break
    return out[:n]


def _stats(values: Sequence[float]) -> dict[str, float]:
    return {
        "p50_ms": round(percentile(values, 50), 1),
        "p95_ms": round(percentile(values, 95), 1),
        "p99_ms": round(percentile(values, 99), 1),
        "max_ms": round(max(values), 1),
        "mean_ms": round(sum(values) / len(values), 1),
    }


def summarise(samples: Sequence[Sample]) -> dict[str, Any]:
    groups: dict[str, list[Sample]] = defaultdict(list)
    for s in samples:
        groups[s.lang].append(s)
    groups["all"] = list(samples)
    return {
        lang: {
            "n": len(rows),
            "errors": sum(1 for r in rows if r.status != 200),
            "client": _stats([r.client_ms for r in rows]),
            "server": _stats([r.server_ms for r in rows if r.status == 200] or [0.0]),
        }
        for lang, rows in sorted(groups.items())
    }


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m eval.suggest_bench", description=__doc__.split("\n\n")[0])
    p.add_argument("--requests", type=int, default=600, help="measured requests (default 600)")
    p.add_argument("--warmup", type=int, default=60, help="requests before the measured ones (default 60)")
    p.add_argument("--cases", type=int, default=315, help="sample cases ingested into the copy (default: all 315)")
    p.add_argument("--mode", choices=("hybrid", "bm25"), default="hybrid")
    p.add_argument("--target-ms", type=float, default=100.0, help="client-side p99 goal (default 100)")
    p.add_argument("--db", help="an existing database URL (with --index-dir) instead of a copy of the samples")
    p.add_argument("--index-dir", help="the index directory of --db")
    p.add_argument("--json", action="store_true", help="print the report as one JSON line")
    args = p.parse_args(argv)
    if not 1 <= args.requests <= 20_000 or not 0 <= args.warmup <= 5_000 or not 1 <= args.cases <= 10_000:
        p.error("--requests 1..20000, --warmup 0..5000, --cases 1..10000")
    if bool(args.db) != bool(args.index_dir):
        p.error("--db and --index-dir go together")
    cases = [json.loads(line) for line in (SAMPLES / "cases.jsonl").read_text("utf-8").splitlines() if line.strip()]
    plan = workload(cases, args.warmup + args.requests)
    work = Path(tempfile.mkdtemp(prefix="kb-suggest-bench-"))
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "KB_CACHE_DIR": str(work / "cache")}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    env["KB_DATABASE_URL"] = args.db or f"sqlite:///{work / 'kb.db'}"
    env["KB_INDEX_DIR"] = args.index_dir or str(work / "index")
    samples: list[Sample] = []
    try:
        t0 = time.perf_counter()
        if not args.db:
            prepare(work, env, args.cases, no_embed=False)
        setup_s = time.perf_counter() - t0
        with serve(env, 1, work / "serve.log", no_embed=False) as (url, _pid):
            customers = [u for u in read_users(SAMPLES / "users.jsonl") if u.role == "customer"]
            (client,) = login(url, customers, 1)
            load_start = [round(x, 2) for x in os.getloadavg()]
            for i, typed in enumerate(plan):
                body = {"subject": typed.subject, "description": typed.description, "k": 5, "mode": args.mode}
                start = time.perf_counter()
                r = client.http.post("/api/v1/suggest", json=body)
                client_ms = (time.perf_counter() - start) * 1000
                server_ms = float(r.json().get("took_ms", 0.0)) if r.status_code == 200 else 0.0
                if i >= args.warmup:
                    samples.append(Sample(typed.lang, client_ms, server_ms, r.status_code))
            load_end = [round(x, 2) for x in os.getloadavg()]
            client.http.close()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    stats = summarise(samples)
    report = {
        "command": "python -m eval.suggest_bench " + " ".join(argv if argv is not None else sys.argv[1:]),
        "mode": args.mode,
        "cases_ingested": args.cases,
        "warmup": args.warmup,
        "requests": len(samples),
        "setup_s": round(setup_s, 1),
        "load_avg_start": load_start,
        "load_avg_end": load_end,
        "target_ms": args.target_ms,
        "latency": stats,
    }
    ok = stats["all"]["errors"] == 0 and stats["all"]["client"]["p99_ms"] < args.target_ms
    report["meets_target"] = ok
    if args.json:
        print(json.dumps(report, ensure_ascii=False))
    else:
        print(f"{len(samples)} suggest requests after {args.warmup} warm-up, load {load_start} -> {load_end}")
        print(f"{'lang':<6} {'n':>4} {'err':>3}  client p50/p95/p99/max     server p50/p95/p99/max  (ms)")
        for lang, s in stats.items():
            c, sv = s["client"], s["server"]
            print(
                f"{lang:<6} {s['n']:>4} {s['errors']:>3}  {c['p50_ms']:>6} {c['p95_ms']:>6} {c['p99_ms']:>6} "
                f"{c['max_ms']:>6}   {sv['p50_ms']:>6} {sv['p95_ms']:>6} {sv['p99_ms']:>6} {sv['max_ms']:>6}"
            )
        print(f"client p99 < {args.target_ms:g} ms: {'yes' if ok else 'NO'}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
