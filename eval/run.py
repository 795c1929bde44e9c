"""Run every query of a dataset through a search engine and score the rankings, per query language.

The engine comes from an injected factory (``docs -> engine``), so the harness is tested with fakes and
the CLI (``eval/__main__.py``) supplies the real ``kb.search.engine.SearchEngine``.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from eval.datasets import LANGS, Dataset, Query
from eval.metrics import METRIC_KEYS, mean, per_query
from kb.search.types import MODES, Document, Mode

KS: tuple[int, ...] = (10, 100)
"""Cut-offs: nDCG and MRR at the first, recall at each (so the keys are ``METRIC_KEYS``)."""
GROUPS_ALWAYS: tuple[str, ...] = ("all", "zh", "en")
"""Metric groups always reported; ``mixed`` is added when the dataset has mixed-language queries."""


class HitLike(Protocol):
    """What the harness reads from a search hit (``kb.search.types.Hit`` fits)."""

    @property
    def doc_id(self) -> str: ...


class SearchEngineLike(Protocol):
    """The part of ``kb.search.engine.SearchEngine`` the harness uses."""

    def search(self, query: str, /, *, k: int, mode: Mode) -> Sequence[HitLike]: ...

    def params(self) -> Mapping[str, object]: ...


EngineFactory = Callable[[list[Document]], SearchEngineLike]
"""Builds an engine over the dataset's documents (timed as the build)."""


@dataclass(frozen=True)
class EvalReport:
    """The outcome of one evaluation run.

    ``metrics`` maps each group (``all``, ``zh``, ``en`` and, when present, ``mixed``) to the mean of
    ``METRIC_KEYS``; a group without queries has every value None. ``params`` is the engine's
    ``params()`` plus ``query_lang``, ``doc_lang``, ``k`` and ``skipped_queries``.
    """

    dataset: str
    mode: str
    k: int
    n_queries: int
    skipped_queries: int
    metrics: dict[str, dict[str, float | None]]
    n_by_lang: dict[str, int]
    skipped_by_lang: dict[str, int]
    params: dict[str, object]
    build_seconds: float
    query_ms_p50: float
    query_ms_p99: float
    rankings: dict[str, list[str]] = field(default_factory=dict, repr=False)
    per_query: dict[str, dict[str, float]] = field(default_factory=dict, repr=False)


def _groups(queries: Sequence[Query]) -> list[str]:
    present = {q.lang for q in queries}
    return [*GROUPS_ALWAYS, *(lang for lang in LANGS if lang in present and lang not in GROUPS_ALWAYS)]


def run_eval(
    dataset: Dataset,
    mode: str,
    k: int,
    engine_factory: EngineFactory,
    *,
    progress: bool = False,
) -> EvalReport:
    """Build an engine over ``dataset.docs`` with ``engine_factory``, search every query, and score.

    ``mode`` is ``bm25``, ``vector`` or ``hybrid``; ``k`` is the number of hits asked for per query (use
    at least 100, or Recall@100 and MAP are measured on a shorter list).
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, not {mode!r}")
    if k < 1:
        raise ValueError(f"k must be at least 1, not {k}")
    search_mode: Mode = mode  # narrowed to the Literal by the membership test above

    started = time.perf_counter()
    engine = engine_factory(list(dataset.docs))
    build_seconds = time.perf_counter() - started

    queries: Iterable[Query] = dataset.queries
    if progress:
        from tqdm import tqdm

        queries = tqdm(dataset.queries, desc="queries", unit="q", leave=False)
    rankings: dict[str, list[str]] = {}
    latencies_ms: list[float] = []
    for query in queries:
        started = time.perf_counter()
        hits = engine.search(query.text, k=k, mode=search_mode)
        latencies_ms.append((time.perf_counter() - started) * 1000.0)
        rankings[query.id] = [hit.doc_id for hit in hits[:k]]

    scores = per_query(rankings, {q.id: dataset.qrels.get(q.id, {}) for q in dataset.queries}, KS)
    metrics: dict[str, dict[str, float | None]] = {}
    n_by_lang: dict[str, int] = {}
    for group in _groups(dataset.queries):
        ids = [q.id for q in dataset.queries if (group == "all" or q.lang == group) and q.id in scores]
        n_by_lang[group] = len(ids)
        means = mean({qid: scores[qid] for qid in ids})
        metrics[group] = {key: means.get(key) for key in METRIC_KEYS}

    params: dict[str, object] = dict(engine.params())
    params.update(
        query_lang=dataset.query_lang, doc_lang=dataset.doc_lang, k=k, skipped_queries=dataset.skipped_queries
    )
    p50, p99 = (float(np.percentile(latencies_ms, q)) for q in (50, 99)) if latencies_ms else (math.nan,) * 2
    return EvalReport(
        dataset=dataset.name,
        mode=mode,
        k=k,
        n_queries=n_by_lang["all"],
        skipped_queries=dataset.skipped_queries,
        metrics=metrics,
        n_by_lang=n_by_lang,
        skipped_by_lang=dict(dataset.skipped_by_lang),
        params=params,
        build_seconds=build_seconds,
        query_ms_p50=p50,
        query_ms_p99=p99,
        rankings=rankings,
        per_query=scores,
    )


def report_dict(report: EvalReport) -> dict[str, Any]:
    """The JSON report: ``dataset``, ``mode``, ``n_queries``, ``metrics`` (per group) and ``params``."""
    return {
        "dataset": report.dataset,
        "mode": report.mode,
        "n_queries": report.n_queries,
        "metrics": report.metrics,
        "params": report.params,
    }


def report_json(report: EvalReport) -> str:
    """``report_dict`` as one line of JSON (non-JSON param values such as paths are written with ``str``)."""
    return json.dumps(report_dict(report), ensure_ascii=False, default=str, allow_nan=False)


_COLUMNS: tuple[tuple[str, str], ...] = (
    ("nDCG@10", "ndcg@10"),
    ("MRR@10", "mrr@10"),
    ("Recall@10", "recall@10"),
    ("Recall@100", "recall@100"),
    ("MAP", "map"),
)


def format_table(report: EvalReport) -> str:
    """A readable multi-line report: one row per query-language group, then timing and parameters."""
    query_lang = report.params.get("query_lang") or "any"
    doc_lang = report.params.get("doc_lang") or "any"
    lines = [
        f"dataset {report.dataset}  mode {report.mode}  k {report.k}"
        f"  query_lang {query_lang}  doc_lang {doc_lang}",
        "",
        f"{'lang':<6} {'queries':>7} {'skipped':>7} " + " ".join(f"{title:>10}" for title, _ in _COLUMNS),
    ]
    for group, values in report.metrics.items():
        skipped = report.skipped_queries if group == "all" else report.skipped_by_lang.get(group, 0)
        cells = " ".join(f"{'-' if values[key] is None else f'{values[key]:.4f}':>10}" for _, key in _COLUMNS)
        lines.append(f"{group:<6} {report.n_by_lang.get(group, 0):>7} {skipped:>7} {cells}")
    lines.append("")
    lines.append(
        f"build {report.build_seconds:.2f} s   query p50 {report.query_ms_p50:.2f} ms"
        f"   p99 {report.query_ms_p99:.2f} ms"
    )
    if report.skipped_queries:
        lines.append(f"skipped {report.skipped_queries} queries without a relevant document in the pool")
    engine_params = {k: v for k, v in report.params.items() if k not in ("query_lang", "doc_lang", "k")}
    lines.append("params " + ", ".join(f"{k}={v}" for k, v in engine_params.items()))
    return "\n".join(lines)
