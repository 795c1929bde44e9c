"""Measure the ingest pipeline on the labelled sample cases: near-duplicate links and merges, and throughput.

``python -m eval.dedupe [--no-embed] [--json]`` imports ``data/samples/corpus.jsonl`` into a temporary SQLite
database, ingests ``data/samples/cases.jsonl`` with the real pipeline (default: the bundled embedding model),
and scores every case against ``data/samples/case-truth.tsv`` (a known article id, or ``new:<slug>`` for a
problem the knowledge base does not hold; cases sharing a slug are one new problem):

- link precision / recall: a case that duplicates a known article should be *linked* to exactly that article;
- merge precision / recall: the 2nd and later cases of one new problem should be *merged* into its draft;
- new-problem coverage: the share of new problems that got a draft article of their own;
- throughput: cases per second of the whole run (clean, extract, dedupe, write, index with embeddings), and
  ``step_seconds``: the run's wall time split by pipeline step (``ingest.pipeline.STEPS``; a step's time runs
  until the next step starts, so ``apply`` holds the embedding of the new drafts and ``commit`` the commit).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from sqlalchemy import select

from ingest.pipeline import STEPS, DupRule, Pipeline
from ingest.sources import read_cases
from kb import db
from kb.article_io import ArticleRecord, read_articles
from kb.config import Settings
from kb.indexer import IndexSync
from kb.lifecycle import ArticleState, Audience, Confidence
from kb.models import IngestRecord
from kb.search.types import Embedder
from kb.text import Analyzer

SAMPLES = Path(__file__).resolve().parent.parent / "data" / "samples"


def score(truth: dict[str, str], records: dict[str, IngestRecord]) -> dict[str, Any]:
    """Link / merge precision and recall and new-problem coverage of one run's ``IngestRecord``s."""
    known = {c for c, t in truth.items() if not t.startswith("new:")}
    links = {c: r for c, r in records.items() if r.outcome == "linked"}
    merges = {c: r for c, r in records.items() if r.outcome == "merged"}
    correct_links = sum(1 for c, r in links.items() if truth.get(c) == r.article_id)
    draft_slug = {r.article_id: truth.get(c) for c, r in records.items() if r.outcome == "created"}
    correct_merges = sum(1 for c, r in merges.items() if draft_slug.get(r.article_id) == truth.get(c))
    slugs: dict[str, list[str]] = {}
    for c, t in truth.items():
        if t.startswith("new:"):
            slugs.setdefault(t, []).append(c)
    should_merge = sum(len(cases) - 1 for cases in slugs.values())
    covered = {t for t in draft_slug.values() if t and t.startswith("new:")}
    return {
        "cases": len(truth),
        "known_duplicates": len(known),
        "new_problems": len(slugs),
        "linked": len(links),
        "link_precision": round(correct_links / len(links), 4) if links else None,
        "link_recall": round(correct_links / len(known), 4) if known else None,
        "merged": len(merges),
        "merge_precision": round(correct_merges / len(merges), 4) if merges else None,
        "merge_recall": round(correct_merges / should_merge, 4) if should_merge else None,
        "new_problem_coverage": round(len(covered) / len(slugs), 4) if slugs else None,
    }


class StepClock:
    """An ``on_step`` hook that adds each step's wall time (until the next step is reached) to ``seconds``."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = dict.fromkeys(STEPS, 0.0)
        self._last: tuple[str, float] | None = None

    def __call__(self, name: str, n: int = 0) -> None:
        now = time.perf_counter()
        if self._last is not None:
            step, since = self._last
            self.seconds[step] += now - since
        self._last = (name, now)

    def stop(self) -> dict[str, float]:
        """Close the running step; the per-step seconds, rounded."""
        self("end")
        self._last = None
        return {step: round(s, 2) for step, s in self.seconds.items() if step in STEPS}


def run(embed: bool, rule: DupRule) -> dict[str, Any]:
    """Import the sample articles, ingest the sample cases, and score the result."""
    truth = {row["case_id"]: row["article"] for row in csv.DictReader(open(SAMPLES / "case-truth.tsv"), delimiter="\t")}
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings.from_env(index_dir=Path(tmp) / "index", database_url=f"sqlite:///{tmp}/kb.db")
        engine = db.make_engine(settings.database_url)
        db.create_schema(engine)
        factory = db.make_session_factory(engine)
        embedder: Embedder | None = None
        if embed:
            from kb.search.embed import SentenceTransformerEmbedder

            embedder = SentenceTransformerEmbedder(settings.embed_model, threads=settings.embed_threads)
        sync = IndexSync.open(factory, settings, embedder=embedder)
        pipeline = Pipeline(factory, sync, Analyzer(settings.data_dir), dup_rule=rule, save_every=100)
        articles = [(n, a) for n, a in read_articles(SAMPLES / "corpus.jsonl") if isinstance(a, ArticleRecord)]
        started = time.perf_counter()
        pipeline.ingest_articles(articles, default_state=ArticleState(Confidence.VALIDATED, Audience.PUBLIC))
        article_s = time.perf_counter() - started
        clock = StepClock()
        pipeline.on_step, sync.on_step = clock, clock
        started = time.perf_counter()
        report = pipeline.ingest_cases(read_cases(SAMPLES / "cases.jsonl"))
        case_s = time.perf_counter() - started
        steps = clock.stop()
        with factory() as session:
            records = {
                r.external_id: r for r in session.scalars(select(IngestRecord).where(IngestRecord.source == "case"))
            }
        engine.dispose()
    return {
        "model": embedder.name if embedder else None,
        "rule": {"lexical": rule.lexical, "vector": rule.vector, "lexical_only": rule.lexical_only},
        "report": report.as_json(),
        **score(truth, records),
        "articles_per_s": round(len(articles) / article_s, 2),
        "cases_per_s": round(report.read / case_s, 2),
        "case_seconds": round(case_s, 1),
        "step_seconds": steps,
        "cores": os.cpu_count(),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m eval.dedupe", description=__doc__.splitlines()[0])
    p.add_argument("--no-embed", action="store_true", help="BM25 only")
    p.add_argument("--json", action="store_true", help="one JSON line")
    args = p.parse_args(argv)
    result = run(not args.no_embed, DupRule())
    if args.json:
        print(json.dumps(result, ensure_ascii=False))
        return 0
    for key, value in result.items():
        print(f"{key}: {value}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
