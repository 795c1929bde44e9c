"""Ranking metrics: pure functions of one ranking and its judgments, plus means over queries.

Conventions follow trec_eval: a document is relevant when its grade is > 0; nDCG uses the grade as a
linear gain with a log2(rank + 1) discount and the ideal ordering of *all* judged documents (not only the
retrieved ones); MAP divides by the number of relevant documents, retrieved or not. A document id repeated
in a ranking counts once, at its first rank. Queries without a relevant document are not averaged.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

Ranking = Sequence[str]
Qrels = Mapping[str, Mapping[str, int]]
METRIC_KEYS: tuple[str, ...] = ("ndcg@10", "mrr@10", "recall@10", "recall@100", "map")
"""The keys of ``evaluate(..., ks=(10, 100))``, in report order."""


def _check_k(k: int) -> None:
    if k < 1:
        raise ValueError(f"k must be at least 1, not {k}")


def _unique(ranking: Ranking) -> list[str]:
    seen: set[str] = set()
    out: list[str] = []
    for doc_id in ranking:
        if doc_id not in seen:
            seen.add(doc_id)
            out.append(doc_id)
    return out


def _n_relevant(rels: Mapping[str, int]) -> int:
    return sum(1 for rel in rels.values() if rel > 0)


def dcg_at_k(ranking: Ranking, rels: Mapping[str, int], k: int) -> float:
    """Discounted cumulative gain of the top ``k``: sum of grade / log2(rank + 1), ranks from 1."""
    _check_k(k)
    return sum(
        max(rels.get(doc_id, 0), 0) / math.log2(rank + 1)
        for rank, doc_id in enumerate(_unique(ranking)[:k], start=1)
    )


def ndcg_at_k(ranking: Ranking, rels: Mapping[str, int], k: int) -> float:
    """nDCG@k: DCG of ``ranking`` over the DCG of the best possible ordering of the judged documents.

    0.0 when no judged document is relevant.
    """
    ideal_order = sorted((doc_id for doc_id, rel in rels.items() if rel > 0), key=lambda d: -rels[d])
    ideal = dcg_at_k(ideal_order, rels, k)
    return dcg_at_k(ranking, rels, k) / ideal if ideal > 0 else 0.0


def mrr_at_k(ranking: Ranking, rels: Mapping[str, int], k: int) -> float:
    """Reciprocal rank of the first relevant document within the top ``k``; 0.0 when there is none."""
    _check_k(k)
    for rank, doc_id in enumerate(_unique(ranking)[:k], start=1):
        if rels.get(doc_id, 0) > 0:
            return 1.0 / rank
    return 0.0


def recall_at_k(ranking: Ranking, rels: Mapping[str, int], k: int) -> float:
    """Share of the relevant documents found in the top ``k``; 0.0 when no document is relevant."""
    _check_k(k)
    n_relevant = _n_relevant(rels)
    if n_relevant == 0:
        return 0.0
    found = sum(1 for doc_id in _unique(ranking)[:k] if rels.get(doc_id, 0) > 0)
    return found / n_relevant


def average_precision(ranking: Ranking, rels: Mapping[str, int]) -> float:
    """Average precision over the whole ranking given (divided by all relevant documents, found or not)."""
    n_relevant = _n_relevant(rels)
    if n_relevant == 0:
        return 0.0
    found = 0
    total = 0.0
    for rank, doc_id in enumerate(_unique(ranking), start=1):
        if rels.get(doc_id, 0) > 0:
            found += 1
            total += found / rank
    return total / n_relevant


def query_metrics(
    ranking: Ranking, rels: Mapping[str, int], ks: Sequence[int] = (10, 100)
) -> dict[str, float]:
    """All report metrics of one query: ``ndcg@K``, ``mrr@K`` at the smallest cut-off K of ``ks``,
    ``recall@k`` for every k in ``ks`` and ``map``."""
    if not ks:
        raise ValueError("ks must hold at least one cut-off")
    for k in ks:
        _check_k(k)
    head = min(ks)
    out = {f"ndcg@{head}": ndcg_at_k(ranking, rels, head), f"mrr@{head}": mrr_at_k(ranking, rels, head)}
    for k in sorted(set(ks)):
        out[f"recall@{k}"] = recall_at_k(ranking, rels, k)
    out["map"] = average_precision(ranking, rels)
    return out


def per_query(
    run: Mapping[str, Ranking], qrels: Qrels, ks: Sequence[int] = (10, 100)
) -> dict[str, dict[str, float]]:
    """``query_metrics`` for every query of ``qrels`` with a relevant document.

    A query missing from ``run`` scores as an empty ranking; queries only in ``run`` are ignored.
    """
    return {
        query_id: query_metrics(run.get(query_id, ()), rels, ks)
        for query_id, rels in qrels.items()
        if _n_relevant(rels) > 0
    }


def mean(scores: Mapping[str, Mapping[str, float]]) -> dict[str, float]:
    """Per-metric arithmetic mean over queries; ``{}`` when there are no queries."""
    if not scores:
        return {}
    keys = list(next(iter(scores.values())))
    return {key: math.fsum(s[key] for s in scores.values()) / len(scores) for key in keys}


def evaluate(run: Mapping[str, Ranking], qrels: Qrels, ks: Sequence[int] = (10, 100)) -> dict[str, float]:
    """Mean metrics of ``run`` (query id -> ranked doc ids) against ``qrels``.

    With the default ``ks`` the keys are exactly ``ndcg@10``, ``mrr@10``, ``recall@10``, ``recall@100``
    and ``map``. With no query to average every metric is 0.0.
    """
    scores = per_query(run, qrels, ks)
    if not scores:
        return {key: 0.0 for key in query_metrics((), {}, ks)}
    return mean(scores)
