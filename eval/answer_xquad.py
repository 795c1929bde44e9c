"""The assistant's answer step on XQuAD (``../shared/eval/xquad-dev``): does the answer cite the gold paragraph,
and do its extracted sentences contain the gold answer? Per direction (zh->zh, en->en, zh->en, en->zh).

For each question the engine retrieves the top ``k`` paragraphs of the pool (the question's gold paragraph is
in it), the extractive generator answers, and the answer counts as correct when it cites the gold paragraph and
its sentences contain a gold answer string (in the paragraph's language: for zh->en the English question's
answers). The same question is asked again with its gold paragraphs taken out of the pool (the knowledge base
does not know): the support of both runs is what calibrates the abstention threshold (``--calibrate``).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from eval.datasets import SHARED_EVAL_DIR, load_dataset
from kb.assistant.extract import Matcher, extract, score_sentences, support_bucket
from kb.assistant.types import Source
from kb.config import Settings
from kb.search.engine import SearchEngine
from kb.search.types import Mode
from kb.text import Analyzer

DIRECTIONS = (("en", "en"), ("zh", "zh"), ("en", "zh"), ("zh", "en"))
K = 5


@dataclass(frozen=True, slots=True)
class Outcome:
    direction: str
    qid: str
    correct: bool
    cited_gold: bool
    contains: bool
    support: float  # gold in the pool
    support_without: float  # gold taken out of the pool
    bucket: str  # calibration bucket of the answer with the gold paragraph in the pool
    bucket_without: str
    n_cites: int
    seconds: float


def _norm(text: str) -> str:
    return "".join(unicodedata.normalize("NFKC", text).casefold().split())


def load_answers(path: Path) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                obj = json.loads(line)
                out[obj["query_id"]] = list(obj["answers"])
    return out


def answer_one(
    engine: SearchEngine, matcher: Matcher, question: str, *, k: int, exclude: set[str]
) -> tuple[list[str], str, float, str]:
    """(cited doc ids, extracted text, support, bucket) for ``question`` over the pool minus ``exclude``."""
    mode: Mode = "hybrid" if engine.dense is not None else "bm25"
    hits = [h for h in engine.search(question, k + len(exclude), mode) if h.doc_id not in exclude][:k]
    sources = []
    for h in hits:
        doc = engine.get(h.doc_id)
        assert doc is not None
        sources.append(Source(doc.doc_id, 0, "passage", doc.lang, doc.title, (("text", doc.text),), score=h.score))
    q = matcher.question(question)
    ext = extract(score_sentences(matcher, q, sources), sources)
    cited = sorted({sources[i].ref for i, _, _ in ext.picks})
    best_lang = sources[ext.best_source].lang if ext.best_source >= 0 else q.lang
    return cited, " ".join(t for _, _, t in ext.picks), ext.support, support_bucket(q.lang, best_lang)


def run(settings: Settings, *, limit: int | None, k: int, embed: bool) -> list[Outcome]:
    from eval.cache import CachedEmbedder
    from kb.search.embed import SentenceTransformerEmbedder

    analyzer = Analyzer(settings.data_dir)
    embedder = None
    if embed:
        inner = SentenceTransformerEmbedder(settings.embed_model, threads=settings.embed_threads)
        embedder = CachedEmbedder(inner, settings.cache_dir)
    root = SHARED_EVAL_DIR / "xquad-dev"
    answers = load_answers(root / "answers.jsonl")
    outcomes: list[Outcome] = []
    for q_lang, d_lang in DIRECTIONS:
        ds = load_dataset(root, query_lang=q_lang, doc_lang=d_lang)
        engine = SearchEngine.build(ds.docs, settings, embedder=embedder, analyzer=analyzer)
        matcher = Matcher(analyzer, engine.native.idf, engine.gloss.idf)
        queries = ds.queries[:limit] if limit else ds.queries
        for q in queries:
            gold = {d for d, r in ds.qrels[q.id].items() if r > 0}
            base = q.id.rsplit("-", 1)[0]
            golds = answers.get(f"{base}-{d_lang}", [])
            t0 = time.perf_counter()
            cited, text, support, bucket = answer_one(engine, matcher, q.text, k=k, exclude=set())
            seconds = time.perf_counter() - t0
            _, _, support_without, bucket_without = answer_one(engine, matcher, q.text, k=k, exclude=gold)
            contains = any(_norm(a) in _norm(text) for a in golds if a.strip())
            cited_gold = bool(gold & set(cited))
            outcomes.append(
                Outcome(
                    f"{q_lang}->{d_lang}",
                    q.id,
                    cited_gold and contains,
                    cited_gold,
                    contains,
                    support,
                    support_without,
                    bucket,
                    bucket_without,
                    len(cited),
                    seconds,
                )
            )
    return outcomes


def summarise(outcomes: Sequence[Outcome], thresholds: dict[str, float] | None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for direction in sorted({o.direction for o in outcomes}):
        rows = [o for o in outcomes if o.direction == direction]
        d: dict[str, Any] = {
            "questions": len(rows),
            "correct": round(statistics.fmean(o.correct for o in rows), 4),
            "cited_gold": round(statistics.fmean(o.cited_gold for o in rows), 4),
            "contains_answer": round(statistics.fmean(o.contains for o in rows), 4),
            "citations_per_answer": round(statistics.fmean(o.n_cites for o in rows), 3),
            "p50_ms": round(statistics.median(o.seconds for o in rows) * 1000, 1),
        }
        if thresholds is not None:
            answered = [o.support >= thresholds.get(o.bucket, 0.0) for o in rows]
            d["answered_with_gold"] = round(statistics.fmean(answered), 4)
            both = [o.correct and a for o, a in zip(rows, answered, strict=True)]
            d["correct_and_answered"] = round(statistics.fmean(both), 4)
            d["abstained_without_gold"] = round(
                statistics.fmean(o.support_without < thresholds.get(o.bucket_without, 0.0) for o in rows), 4
            )
        out[direction] = d
    return out


def calibrate(outcomes: Sequence[Outcome]) -> dict[str, dict[str, float]]:
    """Per bucket, the support threshold with the best balanced accuracy between "gold in the pool" (should
    answer) and "gold out of the pool" (should abstain): {bucket: {threshold, balanced_accuracy, n_pos, n_neg}}."""
    out: dict[str, dict[str, float]] = {}
    for bucket in sorted({o.bucket for o in outcomes} | {o.bucket_without for o in outcomes}):
        pos = [o.support for o in outcomes if o.bucket == bucket]
        neg = [o.support_without for o in outcomes if o.bucket_without == bucket]
        if len(pos) < 20 or len(neg) < 20:
            continue  # too few to calibrate on
        best = (0.0, 0.0)
        for t in sorted(set(pos) | set(neg)):
            bal = (sum(s >= t for s in pos) / len(pos) + sum(s < t for s in neg) / len(neg)) / 2
            if bal > best[1]:
                best = (t, bal)
        out[bucket] = {
            "threshold": round(best[0], 4),
            "balanced_accuracy": round(best[1], 4),
            "n_pos": len(pos),
            "n_neg": len(neg),
        }
    return out


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m eval.answer_xquad", description=__doc__.split("\n\n")[0])
    p.add_argument("--limit", type=int, help="questions per direction (default: all)")
    p.add_argument("--k", type=int, default=K)
    p.add_argument("--bm25", action="store_true", help="retrieve without the embedding model")
    p.add_argument("--write", action="store_true", help="write the calibration into data/assistant.json")
    args = p.parse_args(argv)
    if not (SHARED_EVAL_DIR / "xquad-dev").is_dir():
        print(f"xquad-dev not found at {SHARED_EVAL_DIR}", file=sys.stderr)
        return 2
    settings = Settings.from_env()
    outcomes = run(settings, limit=args.limit, k=args.k, embed=not args.bm25)
    calibration = calibrate(outcomes)
    thresholds = {b: c["threshold"] for b, c in calibration.items()}
    report = {
        "k": args.k,
        "calibration": calibration,
        "directions": summarise(outcomes, thresholds),
    }
    print(json.dumps(report, indent=2, ensure_ascii=False))
    if args.write:
        if args.limit:
            print("--write needs every question (no --limit)", file=sys.stderr)
            return 2
        path = settings.data_dir / "assistant.json"
        data = {
            "about": "Support thresholds of the assistant's abstention, per bucket (question language; best sentence "
            "in it or not), calibrated on XQuAD: best balanced accuracy between gold paragraph in / out of the pool.",
            "command": "python -m eval.answer_xquad --write",
            "k": args.k,
            "calibration": calibration,
        }
        path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        print(f"wrote {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
