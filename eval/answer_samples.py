"""The assistant end to end on the bundled samples: citation precision and abstention quality.

A fresh database gets the sample knowledge base (``data/samples/corpus.jsonl``, every article validated and
public) and the real service stack answers as a customer would be answered: ``LiveIndex`` with the configured
embedding model, ``build_assistant`` (the thresholds of ``data/assistant.json``, calibrated on XQuAD, never on
these questions).

- Answerable questions: ``data/samples/queries.jsonl`` with their judged articles (``qrels.tsv``). The assistant
  should answer; *citation precision* is the share of its citations that are judged relevant, *first-citation
  hit* the share of answers whose leading citation is relevant.
- Unanswerable questions: ``data/samples/assistant-unanswerable.jsonl`` (written for this evaluation: topics the
  knowledge base does not cover, support and otherwise, zh, en and mixed). The assistant should abstain.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from kb.access import Principal
from kb.article_io import ArticleRecord, import_article, read_articles
from kb.assistant import Answer, build_assistant
from kb.cli_db import open_database
from kb.config import Settings
from kb.lifecycle import ArticleState, Audience, Confidence, Role
from kb.live import LiveIndex
from kb.repository import create_org

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "data" / "samples"


def _jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _qrels(path: Path) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        parts = line.split("\t")
        if len(parts) == 3 and int(parts[2]) > 0:
            out.setdefault(parts[0], set()).add(parts[1])
    return out


def run(settings: Settings, *, embed: bool) -> dict[str, Any]:
    from kb.cli import make_embedder

    engine, factory = open_database(settings)
    with factory.begin() as session:
        org = create_org(session, "Eval Customer Ltd")
        org_id = org.id
        for _, record in read_articles(SAMPLES / "corpus.jsonl"):
            if isinstance(record, ArticleRecord):
                import_article(session, record, default_state=ArticleState(Confidence.VALIDATED, Audience.PUBLIC))
    live = LiveIndex.open(factory, settings, embedder=make_embedder(settings, batch=False) if embed else None)
    assistant = build_assistant(live, settings)
    customer = Principal(None, Role.CUSTOMER, org_id=org_id)

    def ask(text: str) -> tuple[Answer, float]:
        t0 = time.perf_counter()
        with factory() as session:
            prepared = assistant.prepare(session, customer, text)
        answer = assistant.answer(prepared, generator="extractive")
        return answer, time.perf_counter() - t0

    qrels = _qrels(SAMPLES / "qrels.tsv")
    rows: list[dict[str, Any]] = []
    for q in _jsonl(SAMPLES / "queries.jsonl"):
        if q["id"] not in qrels:
            continue
        answer, seconds = ask(q["text"])
        cited = [c.ref for c in answer.citations]
        rows.append(
            {
                "id": q["id"],
                "lang": q.get("lang", ""),
                "answerable": True,
                "answered": answer.status == "answered",
                "cited": cited,
                "relevant_cites": sum(c in qrels[q["id"]] for c in cited),
                "first_hit": bool(cited) and cited[0] in qrels[q["id"]],
                "uncited_sentences": sum(not s.cites for s in answer.sentences),
                "support": answer.support,
                "seconds": seconds,
            }
        )
    for q in _jsonl(SAMPLES / "assistant-unanswerable.jsonl"):
        answer, seconds = ask(q["text"])
        rows.append(
            {
                "id": q["id"],
                "lang": q.get("lang", ""),
                "answerable": False,
                "answered": answer.status == "answered",
                "cited": [c.ref for c in answer.citations],
                "support": answer.support,
                "seconds": seconds,
            }
        )
    live.stop()
    engine.dispose()
    return summarise(rows)


def summarise(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    def block(sel: Sequence[dict[str, Any]]) -> dict[str, Any]:
        ans = [r for r in sel if r["answerable"]]
        una = [r for r in sel if not r["answerable"]]
        answered = [r for r in ans if r["answered"]]
        cites = sum(len(r["cited"]) for r in answered)
        out: dict[str, Any] = {"answerable": len(ans), "unanswerable": len(una)}
        if ans:
            out["answered_when_answerable"] = round(len(answered) / len(ans), 4)
        if answered:
            out["citation_precision"] = round(sum(r["relevant_cites"] for r in answered) / max(cites, 1), 4)
            out["first_citation_hit"] = round(statistics.fmean(r["first_hit"] for r in answered), 4)
            out["citations_per_answer"] = round(cites / len(answered), 3)
            out["uncited_sentences"] = sum(r["uncited_sentences"] for r in answered)
        if una:
            out["abstained_when_unanswerable"] = round(statistics.fmean(not r["answered"] for r in una), 4)
        if ans and una:
            out["balanced_accuracy"] = round(
                (out["answered_when_answerable"] + out["abstained_when_unanswerable"]) / 2, 4
            )
        return out

    report: dict[str, Any] = {"all": block(rows)}
    for lang in sorted({r["lang"] for r in rows}):
        report[lang] = block([r for r in rows if r["lang"] == lang])
    seconds = sorted(r["seconds"] for r in rows)
    report["latency_ms"] = {
        "p50": round(seconds[len(seconds) // 2] * 1000, 1),
        "p95": round(seconds[int(len(seconds) * 0.95)] * 1000, 1),
    }
    report["wrongly_answered_unanswerable"] = [r["id"] for r in rows if not r["answerable"] and r["answered"]]
    report["abstained_answerable"] = [r["id"] for r in rows if r["answerable"] and not r["answered"]]
    return report


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m eval.answer_samples", description=__doc__.split("\n\n")[0])
    p.add_argument("--bm25", action="store_true", help="retrieve without the embedding model")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="kb-answer-eval-") as tmp:
        settings = Settings.from_env(
            index_dir=Path(tmp) / "index", database_url=f"sqlite:///{tmp}/kb.db", refresh_interval_ms=60_000
        )
        report = run(settings, embed=not args.bm25)
    print(json.dumps(report, indent=2, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
