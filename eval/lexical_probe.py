"""How far lexical matching alone goes on a dataset: ``python -m eval.lexical_probe DATASET_DIR [--json]``.

The instrument behind the afqmc-dev gap in eval/RESULTS.md. With an English-only embedding model, a Chinese
query reaches the vector signal only as CC-CEDICT glosses, so for Chinese-to-Chinese paraphrase search the lexical
side has to carry the ranking. This probe scores every query with a set of lexical rankers over the project's own
analyzer (``kb.text.Analyzer``) and reports nDCG@10, MRR@10 and Recall@10 for each, so the ceiling of what can be
won without a model that reads Chinese is measured rather than guessed:

- ``bm25-words``: BM25 (rank-bm25, the reference) over jieba words only (the issue's baseline);
- ``bm25-native``: BM25 over the native field (jieba words + character bigrams + characters);
- ``bm25-native+gloss``: that, plus the English-gloss field, each normalised by the query's best score;
- ``cosine-native``: symmetric tf-idf cosine over the native field (penalises what the document adds);
- ``rm3-native``: ``bm25-native`` with pseudo-relevance feedback (RM3: the top 5 documents' 10 heaviest terms,
  interpolated 0.8 / 0.2).

Exit status: 0 on success, 1 for a bad dataset, 2 for a bad option.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt
from rank_bm25 import BM25Okapi

from eval.datasets import SHARED_EVAL_DIR, DatasetError, load_dataset, resolve_dataset_dir
from eval.metrics import evaluate
from kb.search.engine import index_text
from kb.text import Analyzer

ROOT = Path(__file__).resolve().parents[1]
K = 10
RM3_DOCS = 5
RM3_TERMS = 10
RM3_ORIGINAL = 0.8

Fields = dict[str, list[list[str]]]
FloatArray = npt.NDArray[np.float64]
Ranker = Callable[[Fields, Fields], FloatArray]


def _bm25(docs: list[list[str]], queries: list[list[str]]) -> FloatArray:
    index = BM25Okapi([d or ["\x00"] for d in docs])  # rank-bm25 divides by zero on an empty document
    return np.array([index.get_scores(q) if q else np.zeros(len(docs)) for q in queries], dtype=np.float64)


def _by_best(scores: FloatArray) -> FloatArray:
    best = scores.max(axis=1, keepdims=True)
    return np.asarray(np.where(best > 0, scores / np.where(best > 0, best, 1.0), 0.0), dtype=np.float64)


def bm25_words(docs: Fields, queries: Fields) -> FloatArray:
    return _bm25(docs["words"], queries["words"])


def bm25_native(docs: Fields, queries: Fields) -> FloatArray:
    return _bm25(docs["native"], queries["native"])


def bm25_native_gloss(docs: Fields, queries: Fields) -> FloatArray:
    return _by_best(_bm25(docs["native"], queries["native"])) + _by_best(_bm25(docs["gloss"], queries["gloss"]))


def cosine_native(docs: Fields, queries: Fields) -> FloatArray:
    n = len(docs["native"])
    df: Counter[str] = Counter()
    for toks in docs["native"]:
        df.update(set(toks))
    unseen = math.log(n + 1) + 1.0

    def vector(toks: list[str]) -> dict[str, float]:
        v = {
            t: (1.0 + math.log(c)) * (math.log((n + 1) / (df[t] + 1)) + 1.0 if t in df else unseen)
            for t, c in Counter(toks).items()
        }
        norm = math.sqrt(sum(x * x for x in v.values())) or 1.0
        return {t: x / norm for t, x in v.items()}

    doc_vecs = [vector(toks) for toks in docs["native"]]
    postings: dict[str, list[tuple[int, float]]] = {}
    for row, vec in enumerate(doc_vecs):
        for term, weight in vec.items():
            postings.setdefault(term, []).append((row, weight))
    out = np.zeros((len(queries["native"]), n), dtype=np.float64)
    for qi, toks in enumerate(queries["native"]):
        for term, weight in vector(toks).items():
            for row, dw in postings.get(term, ()):
                out[qi, row] += weight * dw
    return out


def rm3_native(docs: Fields, queries: Fields) -> FloatArray:
    native = docs["native"]
    index = BM25Okapi([d or ["\x00"] for d in native])
    lengths = [max(len(d), 1) for d in native]
    out = np.zeros((len(queries["native"]), len(native)), dtype=np.float64)
    for qi, toks in enumerate(queries["native"]):
        if not toks:
            continue
        base = np.asarray(index.get_scores(toks), dtype=np.float64)
        top = np.argsort(-base, kind="stable")[:RM3_DOCS]
        weights = np.exp(base[top] - base[top].max())
        weights /= weights.sum()
        model: Counter[str] = Counter()
        for row, w in zip(top.tolist(), weights.tolist(), strict=True):
            for term, c in Counter(native[row]).items():
                model[term] += w * c / lengths[row]
        expansion = np.zeros(len(native), dtype=np.float64)
        for term, w in model.most_common(RM3_TERMS):
            expansion += w * np.asarray(index.get_scores([term]), dtype=np.float64)
        both = _by_best(np.stack([base, expansion]))
        out[qi] = RM3_ORIGINAL * both[0] + (1.0 - RM3_ORIGINAL) * both[1]
    return out


RANKERS: dict[str, Ranker] = {
    "bm25-words": bm25_words,
    "bm25-native": bm25_native,
    "bm25-native+gloss": bm25_native_gloss,
    "cosine-native": cosine_native,
    "rm3-native": rm3_native,
}


def probe(dataset_dir: Path, analyzer: Analyzer, rankers: Sequence[str] = tuple(RANKERS)) -> dict[str, object]:
    """Every ranker's metrics on the dataset (queries without a relevant document are skipped by the loader)."""
    ds = load_dataset(dataset_dir)
    doc_ids = [d.doc_id for d in ds.docs]

    def fields(texts: list[str]) -> Fields:
        out: Fields = {"native": [], "gloss": [], "words": []}
        for text in texts:
            a = analyzer.analyze(text)
            out["native"].append(a.native)
            out["gloss"].append(a.gloss)
            out["words"].append(analyzer.words(text))
        return out

    doc_fields = fields([index_text(d) for d in ds.docs])  # as the index reads them
    query_fields = fields([q.text for q in ds.queries])
    results: dict[str, dict[str, float]] = {}
    for name in rankers:
        scores = RANKERS[name](doc_fields, query_fields)
        run = {
            q.id: [doc_ids[j] for j in np.argsort(-scores[i], kind="stable")[:K].tolist() if scores[i, j] > 0]
            for i, q in enumerate(ds.queries)
        }
        metrics = evaluate(run, ds.qrels, ks=(K,))
        results[name] = {m: round(v, 4) for m, v in metrics.items() if m != "map"}
    return {"dataset": ds.name, "n_queries": len(ds.queries), "skipped_queries": ds.skipped_queries, "rankers": results}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m eval.lexical_probe", description=__doc__.split("\n\n")[0])
    parser.add_argument("dataset", metavar="DATASET_DIR", help=f"dataset folder, or a folder name in {SHARED_EVAL_DIR}")
    parser.add_argument("--ranker", action="append", choices=sorted(RANKERS), help="only these (repeatable)")
    parser.add_argument("--json", action="store_true", help="one JSON object instead of a table")
    args = parser.parse_args(argv)
    try:
        report = probe(resolve_dataset_dir(args.dataset), Analyzer(ROOT / "data"), args.ranker or tuple(RANKERS))
    except DatasetError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(report, ensure_ascii=False))
        return 0
    print(f"{report['dataset']}: {report['n_queries']} queries ({report['skipped_queries']} skipped)")
    print(f"{'ranker':<20} {'ndcg@10':>8} {'mrr@10':>8} {'recall@10':>10}")
    rankers = report["rankers"]
    assert isinstance(rankers, dict)
    for name, m in rankers.items():
        print(f"{name:<20} {m['ndcg@10']:>8.4f} {m['mrr@10']:>8.4f} {m['recall@10']:>10.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
