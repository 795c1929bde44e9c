"""Crash safety of ``kb ingest cases``: SIGKILL a child process at every named step and at random moments.

One SQLite file and one index directory live through the whole test. A 2,000-case JSONL (clones of the sample
cases with new ids: half with the subjects of three others and the openings of three more, so that they become new
articles, the rest near-duplicates that are merged or linked; plus unresolved cases and malformed lines) is
ingested by ``kb ingest cases --no-embed --save-every 25`` in a child process that is killed with SIGKILL

* once at each step of ``ingest.pipeline.STEPS`` (the hidden ``--crash-at STEP:N``), and
* at least 50 times after a seeded random delay, a quarter each in start-up (imports, the analyzer, the index
  load and its catch-up), reading (records ingested before are skipped), writing new records, and saving the
  index (the kill lands a random moment after the child starts writing a generation directory).

After every kill the index is loaded as it is on disk (a kill must never leave it unloadable), caught up with
the outbox (``IndexSync.catch_up``, what every restart does), and then: the live documents of the index on disk
are exactly ``kb.indexer.searchable_documents`` of the database, same content, none live twice; no case and
no ingest record is there twice; every ingest record has its case, its article and its case-article link (one
transaction wrote them all); no article lacks its ingest record; the outbox is empty. The next trial re-runs
the same command (resume). A last run without a kill must finish with a consistent report.

BM25 only: crash safety does not depend on the embedder (the real model is exercised by the slow model tests).
``pytest -s`` prints a summary: trials, where each kill landed, timings.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from ingest.pipeline import STEPS
from kb.cli_db import open_database
from kb.config import Settings
from kb.indexer import IndexSync, searchable_documents
from kb.models import Article, Case, CaseArticleLink, IngestRecord, Outbox, Relation
from kb.search import store
from kb.search.types import Filter
from kb.text import Analyzer

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
SAMPLES = ROOT / "data" / "samples"
KB = Path(sys.executable).with_name("kb")
CASES = 2_000
UNRESOLVED = 12  # resolved: no; skipped, no IngestRecord
RANDOM_TRIALS = 50
SAVE_EVERY = 25
SEED = 20_251_123
KILL_TIMEOUT_S = 300  # a child that should be killed at a step must get there well before this
FINAL_TIMEOUT_S = 900
SKIP_S = 0.0015  # rough cost of re-reading one record ingested before (the "reading" phase of a resumed run)
WRITE_WINDOW_S = 3.0  # random kills after the first new record land within this many seconds of it
SAVE_WINDOW_S = 0.08  # "saving" kills land this long at most after a generation directory appears
# (writing one takes ~50-100 ms here: some kills land in it, others in the CURRENT switch or the purge after)
RELATION = {"created": Relation.SOLVED_BY, "merged": Relation.SOLVED_BY, "linked": Relation.RELATED}


@dataclass(slots=True)
class Kill:
    """One killed child: how it was killed, where, and what it had done."""

    kind: str  # "step" | "random"
    where: str  # STEP:N, or the delay and the phase it was aimed at
    seconds: float  # child lifetime
    ingested: int  # ingest records it committed before the kill
    saves: int  # index generations it saved
    caught_up: int  # outbox rows the catch-up applied after it
    check_s: float


@dataclass(slots=True)
class Input:
    path: Path
    valid: set[str]  # resolved, well-formed case ids: each must end with exactly one IngestRecord
    unresolved: set[str]
    malformed_lines: list[int]
    lines: int


@dataclass(slots=True)
class Harness:
    tmp: Path
    settings: Settings
    factory: sessionmaker[Session]
    analyzer: Analyzer
    env: dict[str, str]
    imported: set[str] = field(default_factory=set)  # ids of the sample articles imported first
    kills: list[Kill] = field(default_factory=list)

    def kb(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(KB), *args], capture_output=True, text=True, env=self.env, cwd=self.tmp, timeout=timeout, check=False
        )

    def ingest_cmd(self, source: Path, *extra: str) -> list[str]:
        base = ["ingest", "cases", str(source), "--no-embed", "-q", "--json", "--save-every", str(SAVE_EVERY)]
        return [str(KB), *base, *extra]

    def spawn(self, cmd: list[str]) -> subprocess.Popen[str]:
        return subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=self.env, cwd=self.tmp
        )

    def ingested(self) -> int:
        with self.factory() as session:
            return int(session.scalar(select(func.count()).select_from(IngestRecord)) or 0)

    def generation(self) -> int:
        try:
            return int((self.settings.index_dir / "CURRENT").read_text(encoding="utf-8").strip()[4:])
        except OSError:
            return 0


def _samples() -> list[dict[str, Any]]:
    files = sorted(SAMPLES.glob("cases*.jsonl"))
    records = [json.loads(line) for f in files for line in f.read_text(encoding="utf-8").splitlines() if line.strip()]
    assert len(records) >= 100, f"sample cases missing in {SAMPLES}"
    return records


def _write_input(path: Path, rng: random.Random) -> Input:
    """2,000 resolved cases (half with the subjects of three sample cases and the openings of three others:
    mostly new articles; half with a line added: near-duplicates, merged or linked), a dozen unresolved ones
    and malformed lines, shuffled together."""
    samples = _samples()
    records: list[str] = []
    valid: set[str] = set()
    unresolved: set[str] = set()
    for i in range(CASES):
        case = dict(samples[i % len(samples)])
        case["id"] = f"CRASH-{i:05d}"
        if rng.random() < 0.5:  # no single article matches most of title + symptom: a new article
            mix = rng.sample(samples, 6)
            case["subject"] = "; ".join(m["subject"] for m in mix[:3])
            case["description"] = " ".join(m["description"][:80] for m in mix[3:]) + f"\n\n{case['description']}"
        else:
            case["description"] = f"{case['description']}\n(ticket {i}, seen again)"
        records.append(json.dumps(case, ensure_ascii=False))
        valid.add(case["id"])
    for i in range(UNRESOLVED):
        case = {**rng.choice(samples), "id": f"OPEN-{i:03d}", "state": "in_progress", "resolved_at": None}
        records.append(json.dumps(case, ensure_ascii=False))
        unresolved.add(case["id"])
    bad = [
        '{"id": "BAD-JSON", "subject": "truncated',
        json.dumps({k: v for k, v in {**samples[0], "id": "BAD-NOSUBJECT"}.items() if k != "subject"}),
        json.dumps({**samples[1], "id": "BAD-DATE", "created_at": "yesterday-ish"}, ensure_ascii=False),
        json.dumps({**samples[2], "id": "BAD-DATE-2", "resolved_at": "2025-13-45T99:00:00"}, ensure_ascii=False),
    ]
    records += bad
    rng.shuffle(records)
    malformed = sorted(n for n, line in enumerate(records, start=1) if line in bad)
    path.write_text("\n".join(records) + "\n", encoding="utf-8")
    return Input(path, valid, unresolved, malformed, len(records))


@pytest.fixture
def harness(tmp_path: Path) -> Iterator[Harness]:
    settings = Settings(index_dir=tmp_path / "index", database_url=f"sqlite:///{tmp_path / 'kb.db'}")
    engine, factory = open_database(settings)
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "KB_DATABASE_URL": settings.database_url,
        "KB_INDEX_DIR": str(settings.index_dir),
    }
    try:
        yield Harness(tmp_path, settings, factory, Analyzer(settings.data_dir), env)
    finally:
        engine.dispose()


def _live_docs_on_disk(index_dir: Path) -> list[tuple[str, str, str, str, dict[str, str]]]:
    """The live rows of the current generation as stored (checksums verified), in row order."""
    gen = store.current_generation(index_dir)
    store.verify(gen)
    alive = np.load(gen / "alive.npy")
    with open(gen / "docs.jsonl", encoding="utf-8") as lines:
        rows = [json.loads(line) for line in lines]
    assert alive.shape == (len(rows),)
    return [(r["id"], r["title"], r["text"], r["lang"], r["attrs"]) for r, a in zip(rows, alive, strict=True) if a]


def check_invariants(h: Harness) -> int:
    """Load the index as the kill left it, catch up with the outbox, check database and index; returns how many
    outbox rows the catch-up applied."""
    engine = store.load(h.settings, embedder=None, analyzer=h.analyzer)  # raises IndexNotReady if unusable
    sync = IndexSync(h.factory, h.settings, engine, store.current_generation(h.settings.index_dir).name)
    report = sync.catch_up()  # what IndexSync.open does on every restart, minus its rebuild fallback

    with h.factory() as session:
        assert session.scalar(select(func.count()).select_from(Outbox)) == 0, "outbox not empty after catch-up"
        dup_cases = session.execute(select(Case.external_id).group_by(Case.external_id).having(func.count() > 1)).all()
        assert not dup_cases, f"cases imported twice: {dup_cases[:5]}"
        dup_records = session.execute(
            select(IngestRecord.source, IngestRecord.external_id)
            .group_by(IngestRecord.source, IngestRecord.external_id)
            .having(func.count() > 1)
        ).all()
        assert not dup_records, f"ingest records twice: {dup_records[:5]}"
        records = list(session.scalars(select(IngestRecord).where(IngestRecord.source == "case")))
        cases = {c.id: c.external_id for c in session.scalars(select(Case))}
        articles = set(session.scalars(select(Article.id)))
        links = {
            tuple(r)
            for r in session.execute(
                select(CaseArticleLink.case_id, CaseArticleLink.article_id, CaseArticleLink.relation)
            )
        }
        for r in records:  # the case, the article (or the link to the duplicate) and the record: one transaction
            assert r.case_id is not None and cases.get(r.case_id) == r.external_id, r.external_id
            assert r.article_id in articles, f"{r.external_id}: article {r.article_id} missing"
            assert (r.case_id, r.article_id, RELATION[r.outcome]) in links, f"{r.external_id}: link missing"
        assert set(cases.values()) == {r.external_id for r in records}, "a case without its ingest record"
        created = {r.article_id for r in records if r.outcome == "created"}
        assert len(created) == sum(r.outcome == "created" for r in records)
        assert articles == h.imported | created, "an article without its ingest record, or one lost"
        wanted = {d.doc_id: (d.doc_id, d.title, d.text, d.lang, dict(d.attrs)) for d in searchable_documents(session)}
        live = _live_docs_on_disk(h.settings.index_dir)
    ids = [d[0] for d in live]
    assert len(ids) == len(set(ids)), f"live twice: {[i for i, n in Counter(ids).items() if n > 1][:5]}"
    missing, extra = wanted.keys() - set(ids), set(ids) - wanted.keys()
    assert not missing and not extra, f"index vs database: missing {sorted(missing)[:5]}, extra {sorted(extra)[:5]}"
    stale = [d[0] for d in live if d != wanted[d[0]]]
    assert not stale, f"index documents differ from the database: {stale[:5]}"
    assert len(sync.engine) == len(wanted)  # the caught-up engine in memory holds the same set
    return report.applied


def _kill_at_step(h: Harness, source: Path, step: str, n: int) -> Kill:
    before, gen = h.ingested(), h.generation()
    start = time.perf_counter()
    out = subprocess.run(
        h.ingest_cmd(source, "--crash-at", f"{step}:{n}"),
        capture_output=True, text=True, env=h.env, cwd=h.tmp, timeout=KILL_TIMEOUT_S, check=False,
    )  # fmt: skip
    seconds = time.perf_counter() - start
    assert out.returncode == -signal.SIGKILL, f"--crash-at {step}:{n}: exit {out.returncode}\n{out.stderr[-2000:]}"
    return _after_kill(h, "step", f"{step}:{n}", seconds, before, gen)


def _kill_after(h: Harness, source: Path, delay: float, phase: str, *, into_save: float | None = None) -> Kill | None:
    """Start the child and SIGKILL it after ``delay`` seconds, or with ``into_save``: that many seconds after it
    next starts writing an index generation, waiting for one from ``delay`` on. None when it finished first."""
    before, gen = h.ingested(), h.generation()
    start = time.perf_counter()
    child = h.spawn(h.ingest_cmd(source))
    where = f"{delay:.2f}s ({phase})"
    try:
        time.sleep(delay)
        if into_save is not None:
            saving = f".tmp-gen-*-{child.pid}"  # kb.search.store.save writes the generation there, then renames
            while child.poll() is None and not any(h.settings.index_dir.glob(saving)):
                assert time.perf_counter() - start < KILL_TIMEOUT_S, "the child never saved the index"
                time.sleep(0.002)
            time.sleep(into_save)
            where = f"{time.perf_counter() - start:.2f}s ({phase} +{into_save * 1000:.0f} ms)"
    finally:
        if child.poll() is None:
            child.send_signal(signal.SIGKILL)
        _, err = child.communicate(timeout=60)
    if into_save is not None and any(h.settings.index_dir.glob(f".tmp-gen-*-{child.pid}")):
        where += " mid-write"
    seconds = time.perf_counter() - start
    if child.returncode == 0:
        return None
    assert child.returncode == -signal.SIGKILL, f"child failed: exit {child.returncode}\n{err[-2000:]}"
    return _after_kill(h, "random", where, seconds, before, gen)


def _after_kill(h: Harness, kind: str, where: str, seconds: float, before: int, gen: int) -> Kill:
    ingested, saves = h.ingested() - before, h.generation() - gen
    start = time.perf_counter()
    applied = check_invariants(h)
    kill = Kill(kind, where, seconds, ingested, saves, applied, time.perf_counter() - start)
    h.kills.append(kill)
    return kill


def _step_count(h: Harness, step: str, rng: random.Random) -> int:
    """N for ``--crash-at STEP:N``, so that the kill lands in the middle of a run."""
    if step in ("read", "check"):  # reached for every record, ingested before or not: past those
        return h.ingested() + rng.randint(10, 40)
    if step in ("save", "purge"):  # every SAVE_EVERY records
        return rng.randint(1, 3)
    return rng.randint(5, 40)  # reached for new records only


def test_crash_ingest_sigkill_anywhere_loses_nothing_and_duplicates_nothing(harness: Harness) -> None:
    h = harness
    t0 = time.perf_counter()
    rng = random.Random(SEED)
    data = _write_input(h.tmp / "cases.jsonl", rng)

    imported = h.kb("ingest", "articles", str(SAMPLES / "corpus.jsonl"), "--no-embed", "-q", "--json")
    assert imported.returncode == 0, imported.stderr
    with h.factory() as session:
        h.imported = set(session.scalars(select(Article.id)))
    assert len(h.imported) == json.loads(imported.stdout)["created"] > 0
    check_invariants(h)

    # The first record is reached after start-up: that kill measures how long start-up takes.
    startup = _kill_at_step(h, data.path, "read", 1).seconds
    for step in STEPS:
        _kill_at_step(h, data.path, step, _step_count(h, step, rng))

    # Random delays: a quarter each in start-up, around re-reading what earlier runs ingested, writing new
    # records, and saving the index (a random moment around the 50-100 ms a generation takes to write).
    for i in range(RANDOM_TRIALS):
        before_new = startup + h.ingested() * SKIP_S  # about when this run reaches its first new record
        if i % 4 == 0:
            delay, phase = rng.uniform(0.05, startup), "start-up"
        elif i % 4 == 2:
            delay, phase = rng.uniform(0.9 * startup, before_new + 0.2), "reading"
        elif i % 4 == 1:
            delay, phase = before_new + rng.uniform(0.0, WRITE_WINDOW_S), "writing"
        else:
            delay, phase = before_new, "saving"
        into_save = rng.uniform(0.0, SAVE_WINDOW_S) if phase == "saving" else None
        kill = _kill_after(h, data.path, delay, phase, into_save=into_save)
        assert kill is not None, f"trial {i}: the run finished before the kill at {delay:.2f} s"

    # The last run resumes and finishes.
    start = time.perf_counter()
    done_before = h.ingested()
    final = subprocess.run(
        h.ingest_cmd(data.path), capture_output=True, text=True, env=h.env, cwd=h.tmp, timeout=FINAL_TIMEOUT_S
    )
    final_s = time.perf_counter() - start
    assert final.returncode == 0, final.stderr[-2000:]
    report = json.loads(final.stdout.strip().splitlines()[-1])
    failed = report["failed"]
    assert report["read"] == data.lines
    assert report["read"] == report["created"] + report["merged"] + report["linked"] + report["skipped"] + len(failed)
    assert sorted(f["line"] for f in failed) == data.malformed_lines
    assert report["created"] + report["merged"] + report["linked"] == len(data.valid) - done_before
    assert report["skipped"] == done_before + len(data.unresolved)
    check_invariants(h)
    with h.factory() as session:
        records = Counter(session.scalars(select(IngestRecord.external_id).where(IngestRecord.source == "case")))
        outcomes = Counter(session.scalars(select(IngestRecord.outcome)))
    assert set(records) == data.valid and set(records.values()) == {1}

    # What a user runs next: the index is in step, and a committed article is found by its title.
    synced = h.kb("index", "sync", "--no-embed", "-q")
    assert synced.returncode == 0 and "(0 more changes applied" in synced.stdout, synced.stdout + synced.stderr
    engine = store.load(h.settings, embedder=None, analyzer=h.analyzer)
    with h.factory() as session:
        created = set(session.scalars(select(IngestRecord.article_id).where(IngestRecord.outcome == "created")))
        titles = {d.doc_id: d.title for d in searchable_documents(session) if d.doc_id in created}
    sample = rng.sample(sorted(titles), 40)
    articles = Filter.of(kind="article")
    lost = [a for a in sample if a not in [x.doc_id for x in engine.search(titles[a], 10, "bm25", articles)]]
    assert not lost, f"created articles not found by their titles: {lost[:5]}"
    out = h.kb("search", titles[sample[0]], "--json", "--mode", "bm25", "-k", "3")
    assert out.returncode == 0, out.stderr
    assert sample[0] in [hit["doc_id"] for hit in json.loads(out.stdout)["hits"]], out.stdout

    _summary(h, data, startup, final_s, report, outcomes, time.perf_counter() - t0)


def _summary(
    h: Harness,
    data: Input,
    startup: float,
    final_s: float,
    report: dict[str, Any],
    outcomes: Counter[str],
    total_s: float,
) -> None:
    kills = h.kills
    random_kills = [k for k in kills if k.kind == "random"]
    lines = [
        f"crash test: {len(kills)} SIGKILLs ({len(kills) - len(random_kills)} at named steps, "
        f"{len(random_kills)} at random delays) over {data.lines} input lines, {total_s:.0f} s in all",
        f"  start-up until the first record {startup:.1f} s; final run {final_s:.0f} s, report "
        f"created {report['created']} merged {report['merged']} linked {report['linked']} "
        f"skipped {report['skipped']} failed {len(report['failed'])}",
        f"  ingest records by outcome: {dict(sorted(outcomes.items()))}",
        f"  kills that had committed records: {sum(k.ingested > 0 for k in kills)}, that had saved the index: "
        f"{sum(k.saves > 0 for k in kills)}; records ingested before the final run: "
        f"{sum(k.ingested for k in kills)}; catch-up after a kill: mean "
        f"{sum(k.check_s for k in kills) / len(kills):.2f} s (with the checks), max outbox rows applied "
        f"{max(k.caught_up for k in kills)}",
    ]
    lines += [
        f"  {k.kind:6} {k.where:28} lived {k.seconds:5.1f} s  ingested {k.ingested:4}  saves {k.saves:2}  "
        f"catch-up applied {k.caught_up:3}  check {k.check_s:4.1f} s"
        for k in kills
    ]
    leftovers = sorted(p.name for p in h.settings.index_dir.glob(".tmp-*"))
    lines.append(f"  unfinished generation directories left by kills during a save: {len(leftovers)}")
    print("\n".join(lines))
