"""Choose fusion weights by evaluation: ``python -m eval.calibrate [--write]``.

For each query language it runs every calibration setting (shared datasets and our samples, listed in
``SETTINGS``), collects each query's per-signal candidate scores once, then grid-searches the weights:

1. bm25-only mode: the gloss-field weight that maximises mean nDCG@10;
2. hybrid: the (gloss, vector) weights, BM25 fixed at 1, that maximise the worst margin over all settings
   of hybrid nDCG@10 minus the better of bm25-only and vector-only (the issue's "never worse than its
   parts"), then the mean nDCG@10.

The result is written into ``data/fusion.json`` under the embedding model's name (and as
``default-en`` when the model is English-only), so every index built afterwards records it.
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from eval.cache import CachedEmbedder
from eval.datasets import SHARED_EVAL_DIR, load_dataset
from eval.metrics import ndcg_at_k
from kb.config import Settings
from kb.search.engine import Candidates, SearchEngine
from kb.search.fusion import Weights
from kb.text import Analyzer

ROOT = Path(__file__).resolve().parents[1]
SETTINGS: dict[str, list[tuple[str, str | None]]] = {
    # query language -> (dataset, document language filter)
    "zh": [("xquad-dev", "zh"), ("xquad-dev", "en"), ("afqmc-dev", None), ("samples", None)],
    "en": [("xquad-dev", "en"), ("xquad-dev", "zh"), ("samples", None)],
    "mixed": [("samples", None)],
}
GLOSS_GRID = (0.0, 0.1, 0.2, 0.3, 0.5, 0.7, 1.0)
VECTOR_GRID = (0.0, 0.1, 0.2, 0.3, 0.5, 0.7, 1.0, 1.5, 2.0, 3.0, 5.0)


Norm = tuple[str, float, float]  # (normalisation, overlap, gloss weight on same-language documents)
NORM_GRID: tuple[Norm, ...] = (
    ("minmax", 0.0, 1.0),
    ("query-max", 0.25, 1.0),
    ("query-max", 0.25, 0.5),
    ("query-max", 0.25, 0.25),
    ("query-max", 0.0, 0.5),
    ("query-max", 0.5, 0.5),
)


@dataclass
class Setting:
    name: str
    queries: list[tuple[Candidates, dict[str, int]]]

    def ndcg(self, weights: Weights, norm: Norm) -> float:
        return statistics.fmean(
            ndcg_at_k([h.doc_id for h in c.rank(weights, 10, *norm)], rels, 10) for c, rels in self.queries
        )


def _dataset_dir(name: str) -> Path:
    return ROOT / "data" / "samples" if name == "samples" else SHARED_EVAL_DIR / name


def collect(lang: str, settings: Settings, embedder: CachedEmbedder, analyzer: Analyzer) -> list[Setting]:
    out = []
    for name, doc_lang in SETTINGS[lang]:
        if not (_dataset_dir(name) / "corpus.jsonl").is_file():
            print(f"skipping {name}: not found at {_dataset_dir(name)}", file=sys.stderr)
            continue
        ds = load_dataset(_dataset_dir(name), query_lang=lang, doc_lang=doc_lang)
        if not ds.queries:
            continue
        engine = SearchEngine.build(ds.docs, settings, embedder=embedder, analyzer=analyzer, progress=True)
        queries = [(engine.candidates(q.text, 10), ds.qrels[q.id]) for q in ds.queries]
        out.append(Setting(f"{name} {lang}->{doc_lang or 'all'} ({len(queries)} q)", queries))
        embedder.flush()
    return out


@dataclass
class Choice:
    norm: Norm
    sparse_gloss: float
    weights: Weights
    key: tuple[float, float]  # (worst margin over the parts, mean hybrid nDCG@10)
    lines: list[str]


def calibrate(settings_list: Sequence[Setting], norm: Norm) -> Choice:
    """The best bm25-mode gloss weight and hybrid weights for one query language and normalisation."""
    sparse_scores = {g: [s.ndcg(Weights(1.0, g, 0.0), norm) for s in settings_list] for g in GLOSS_GRID}
    best_g = max(GLOSS_GRID, key=lambda g: (statistics.fmean(sparse_scores[g]), -g))
    vector_only = [s.ndcg(Weights(0.0, 0.0, 1.0), norm) for s in settings_list]
    floor = [max(b, v) for b, v in zip(sparse_scores[best_g], vector_only, strict=True)]
    best: tuple[tuple[float, float], Weights] = ((-1.0, 0.0), Weights(1.0, best_g, 0.0))
    for g, v in itertools.product(GLOSS_GRID, VECTOR_GRID):
        w = Weights(1.0, g, v)
        scores = [s.ndcg(w, norm) for s in settings_list]
        key = (round(min(a - f for a, f in zip(scores, floor, strict=True)), 4), statistics.fmean(scores))
        if key > best[0]:
            best = (key, w)
    lines = [
        f"  {s.name}: bm25 {b:.4f}  vector {v:.4f}  hybrid {s.ndcg(best[1], norm):.4f}"
        for s, b, v in zip(settings_list, sparse_scores[best_g], vector_only, strict=True)
    ]
    return Choice(norm, best_g, best[1], best[0], lines)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m eval.calibrate", description=__doc__.split("\n\n")[0])
    p.add_argument("--write", action="store_true", help="write the weights into data/fusion.json")
    p.add_argument("--model", help="embedding model (default: KB_EMBED_MODEL)")
    p.add_argument("--langs", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    args = p.parse_args(argv)
    settings = Settings.from_env(**({"embed_model": args.model} if args.model else {}))
    from kb.search.embed import SentenceTransformerEmbedder

    inner = SentenceTransformerEmbedder(settings.embed_model, threads=settings.embed_threads)
    embedder = CachedEmbedder(inner, settings.cache_dir)
    analyzer = Analyzer(settings.data_dir)
    collected = {lang: collect(lang, settings, embedder, analyzer) for lang in args.langs}
    by_norm: dict[Norm, dict[str, Choice]] = {}
    for norm in NORM_GRID:
        by_norm[norm] = {lang: calibrate(collected[lang], norm) for lang in args.langs}
        for lang, c in by_norm[norm].items():
            print(
                f"[{norm}] {lang}: margin {c.key[0]:+.4f} mean {c.key[1]:.4f};"
                f" bm25-mode gloss {c.sparse_gloss}; hybrid {c.weights.as_dict()}"
            )
            print("\n".join(c.lines))
    norm = max(
        NORM_GRID,
        key=lambda n: (
            min(c.key[0] for c in by_norm[n].values()),
            statistics.fmean(c.key[1] for c in by_norm[n].values()),
        ),
    )
    print(f"chosen normalisation: {norm}")
    profile: dict[str, object] = {"norm": norm[0], "overlap": norm[1], "gloss_same": norm[2]}
    for lang, c in by_norm[norm].items():
        profile[lang] = {**c.weights.as_dict(), "sparse_gloss": c.sparse_gloss}
    if args.write:
        path = settings.data_dir / "fusion.json"
        data = json.loads(path.read_text(encoding="utf-8"))
        names = [inner.name] + ([] if inner.cjk_capable else ["default-en"])
        for name in names:
            data["profiles"].setdefault(name, {}).update(profile)
        path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        print(f"wrote {', '.join(names)} into {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
