"""Ranking metrics against hand-computed values (the arithmetic is spelled out next to each number)."""

from __future__ import annotations

import math

import pytest

from eval.metrics import (
    METRIC_KEYS,
    average_precision,
    evaluate,
    mean,
    mrr_at_k,
    ndcg_at_k,
    per_query,
    query_metrics,
    recall_at_k,
)


def test_metrics_perfect_ranking_scores_one() -> None:
    rels = {"a": 1, "b": 1}
    ranking = ["a", "b", "x"]
    assert ndcg_at_k(ranking, rels, 10) == pytest.approx(1.0)
    assert mrr_at_k(ranking, rels, 10) == 1.0
    assert recall_at_k(ranking, rels, 10) == 1.0
    assert average_precision(ranking, rels) == 1.0


def test_metrics_relevant_at_rank_three() -> None:
    rels = {"a": 1}
    ranking = ["x", "y", "a"]
    # DCG = 1 / log2(3 + 1) = 1/2; IDCG = 1 / log2(2) = 1
    assert ndcg_at_k(ranking, rels, 10) == pytest.approx(0.5)
    assert mrr_at_k(ranking, rels, 10) == pytest.approx(1 / 3)
    assert average_precision(ranking, rels) == pytest.approx(1 / 3)
    assert recall_at_k(ranking, rels, 10) == 1.0
    assert recall_at_k(ranking, rels, 2) == 0.0


def test_metrics_graded_relevance_uses_linear_gain() -> None:
    rels = {"a": 2, "b": 1}
    # ranking b, a: DCG = 1/log2(2) + 2/log2(3) = 1 + 1.26186 = 2.26186
    # ideal a, b:   IDCG = 2/log2(2) + 1/log2(3) = 2 + 0.63093 = 2.63093  -> 0.85972
    assert ndcg_at_k(["b", "a"], rels, 10) == pytest.approx(0.85972, abs=1e-5)
    assert ndcg_at_k(["a", "b"], rels, 10) == pytest.approx(1.0)
    # both are relevant (grade > 0), so the binary metrics do not see the grades
    assert mrr_at_k(["b", "a"], rels, 10) == 1.0
    assert average_precision(["b", "a"], rels) == 1.0


def test_metrics_ideal_counts_unretrieved_relevant_docs() -> None:
    rels = {"a": 1, "b": 1}
    # DCG = 1; IDCG = 1 + 1/log2(3) = 1.63093 -> 0.61315
    assert ndcg_at_k(["a"], rels, 10) == pytest.approx(0.61315, abs=1e-5)
    assert recall_at_k(["a"], rels, 10) == 0.5
    assert average_precision(["a"], rels) == 0.5


def test_metrics_nothing_relevant_retrieved_scores_zero() -> None:
    rels = {"a": 1, "z": 0}
    for ranking in ([], ["x", "y", "z"]):
        assert ndcg_at_k(ranking, rels, 10) == 0.0
        assert mrr_at_k(ranking, rels, 10) == 0.0
        assert recall_at_k(ranking, rels, 10) == 0.0
        assert average_precision(ranking, rels) == 0.0


def test_metrics_k_cuts_off_the_ranking() -> None:
    rels = {"a": 1}
    ranking = [f"x{i}" for i in range(10)] + ["a"]  # relevant at rank 11
    assert ndcg_at_k(ranking, rels, 10) == 0.0
    assert mrr_at_k(ranking, rels, 10) == 0.0
    assert recall_at_k(ranking, rels, 10) == 0.0
    assert recall_at_k(ranking, rels, 100) == 1.0
    assert mrr_at_k(ranking, rels, 11) == pytest.approx(1 / 11)
    assert average_precision(ranking, rels) == pytest.approx(1 / 11)  # MAP reads the full ranking


def test_metrics_average_precision_divides_by_all_relevant() -> None:
    rels = {"a": 1, "b": 1, "c": 1}
    # hits at ranks 1 and 3: (1/1 + 2/3) / 3 relevant = 0.55556 (c is never found)
    assert average_precision(["a", "x", "b", "y"], rels) == pytest.approx(5 / 9)


def test_metrics_repeated_doc_counts_once() -> None:
    rels = {"b": 1}
    assert mrr_at_k(["a", "a", "b"], rels, 10) == pytest.approx(1 / 2)
    assert recall_at_k(["b", "b"], rels, 10) == 1.0


def test_metrics_bad_k_raises() -> None:
    with pytest.raises(ValueError, match="k must be at least 1"):
        ndcg_at_k(["a"], {"a": 1}, 0)
    with pytest.raises(ValueError):
        query_metrics(["a"], {"a": 1}, ())


def test_metrics_evaluate_keys_and_means() -> None:
    run = {"q1": ["a", "b"], "q2": ["x", "y", "c"], "q-extra": ["a"]}
    qrels = {"q1": {"a": 1}, "q2": {"c": 1}, "q-none": {"a": 0}, "q-missing": {"d": 1}}
    result = evaluate(run, qrels)
    assert tuple(result) == METRIC_KEYS
    # averaged over q1 (perfect), q2 (rank 3) and q-missing (not in the run: zero); q-none has no relevant doc
    assert result["ndcg@10"] == pytest.approx((1 + 0.5 + 0) / 3)
    assert result["mrr@10"] == pytest.approx((1 + 1 / 3 + 0) / 3)
    assert result["recall@10"] == pytest.approx(2 / 3)
    assert result["recall@100"] == pytest.approx(2 / 3)
    assert result["map"] == pytest.approx((1 + 1 / 3 + 0) / 3)
    assert set(per_query(run, qrels)) == {"q1", "q2", "q-missing"}


def test_metrics_evaluate_without_queries_is_zero() -> None:
    assert evaluate({}, {}) == dict.fromkeys(METRIC_KEYS, 0.0)
    assert mean({}) == {}


def test_metrics_custom_cutoffs_name_the_keys() -> None:
    result = evaluate({"q": ["a"]}, {"q": {"a": 1}}, ks=(5, 20))
    assert set(result) == {"ndcg@5", "mrr@5", "recall@5", "recall@20", "map"}
    assert all(math.isclose(v, 1.0) for v in result.values())
