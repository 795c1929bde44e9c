"""The shared evaluation data loads with the expected counts (no engine needed)."""

from __future__ import annotations

from pathlib import Path

import pytest

from eval.datasets import load_dataset

SHARED_EVAL = Path(__file__).parents[2].parent / "shared" / "eval"

pytestmark = pytest.mark.integration


def shared(name: str) -> Path:
    folder = SHARED_EVAL / name
    if not folder.is_dir():
        pytest.skip(f"shared evaluation data not found at {folder}")
    return folder


def test_eval_shared_xquad_counts() -> None:
    ds = load_dataset(shared("xquad-dev"))
    assert ds.name == "xquad-dev"
    assert len(ds.docs) == 240 and len(ds.queries) == 1224 and ds.skipped_queries == 0
    assert sum(len(rels) for rels in ds.qrels.values()) == 2448
    assert {q.lang for q in ds.queries} == {"zh", "en"}


def test_eval_shared_xquad_cross_lingual_pool() -> None:
    ds = load_dataset(shared("xquad-dev"), query_lang="zh", doc_lang="en")
    assert len(ds.docs) == 120 and {d.lang for d in ds.docs} == {"en"}
    assert len(ds.queries) == 612 and {q.lang for q in ds.queries} == {"zh"}
    assert ds.skipped_queries == 0
    assert all(len(rels) == 1 for rels in ds.qrels.values())  # each question: its en paragraph only


def test_eval_shared_afqmc_counts() -> None:
    ds = load_dataset(shared("afqmc-dev"))
    assert len(ds.docs) == 4313 and len(ds.queries) == 682 and ds.skipped_queries == 0
