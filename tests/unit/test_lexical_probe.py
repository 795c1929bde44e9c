"""eval.lexical_probe: each lexical ranker on a small written dataset, and the CLI's errors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from eval.lexical_probe import RANKERS, Fields, main, probe

ROOT = Path(__file__).resolve().parents[2]

DOCS = [
    ("d1", "花呗怎么还款"),
    ("d2", "借呗额度怎么提升"),
    ("d3", "Outlook 无法连接 Exchange 服务器"),
    ("d4", "打印机脱机无法打印"),
    ("d5", "花呗可以延期还款吗"),
]
QUERIES = [("q1", "如何提升借呗的额度"), ("q2", "打印机显示脱机"), ("q3", "花呗还款的方法")]
QRELS = [("q1", "d2"), ("q2", "d4"), ("q3", "d1")]


def _write(tmp_path: Path) -> Path:
    with open(tmp_path / "corpus.jsonl", "w", encoding="utf-8") as f:
        for doc_id, text in DOCS:
            f.write(json.dumps({"id": doc_id, "title": "", "text": text, "lang": "zh"}, ensure_ascii=False) + "\n")
    with open(tmp_path / "queries.jsonl", "w", encoding="utf-8") as f:
        for qid, text in QUERIES:
            f.write(json.dumps({"id": qid, "text": text, "lang": "zh"}, ensure_ascii=False) + "\n")
    (tmp_path / "qrels.tsv").write_text("".join(f"{q}\t{d}\t1\n" for q, d in QRELS), encoding="utf-8")
    return tmp_path


def test_every_ranker_puts_the_obvious_paraphrase_first(tmp_path: Path, analyzer: Any) -> None:
    report = probe(_write(tmp_path), analyzer)
    assert report["n_queries"] == 3
    rankers = report["rankers"]
    assert isinstance(rankers, dict)
    assert set(rankers) == set(RANKERS)
    for name, metrics in rankers.items():
        assert metrics["mrr@10"] == pytest.approx(1.0), name
        assert metrics["recall@10"] == pytest.approx(1.0), name


def test_a_ranker_that_finds_nothing_scores_zero(tmp_path: Path, analyzer: Any) -> None:
    path = _write(tmp_path)
    (path / "qrels.tsv").write_text("q1\td3\t1\n", encoding="utf-8")  # no word of q1 is in d3
    report = probe(path, analyzer, ["bm25-native"])
    assert report["rankers"] == {"bm25-native": {"ndcg@10": 0.0, "mrr@10": 0.0, "recall@10": 0.0}}


def test_cosine_penalises_what_the_document_adds(analyzer: Any) -> None:
    docs: Fields = {"native": [["a", "b"], ["a", "b", "c", "d", "e", "f"]], "gloss": [[], []], "words": [[], []]}
    queries: Fields = {"native": [["a", "b"]], "gloss": [[]], "words": [[]]}
    scores = RANKERS["cosine-native"](docs, queries)
    assert scores.shape == (1, 2)
    assert scores[0, 0] == pytest.approx(1.0)
    assert 0 < scores[0, 1] < scores[0, 0]
    empty: Fields = {"native": [[]], "gloss": [[]], "words": [[]]}
    assert np.all(RANKERS["bm25-native"](docs, empty) == 0)


def test_cli_json_and_bad_dataset(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([str(_write(tmp_path)), "--ranker", "bm25-words", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert list(out["rankers"]) == ["bm25-words"]
    assert out["rankers"]["bm25-words"]["mrr@10"] == pytest.approx(1.0)
    assert main([str(tmp_path / "missing")]) == 1
    assert "missing" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main([str(tmp_path), "--ranker", "nope"])
    assert exc.value.code == 2
