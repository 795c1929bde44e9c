"""Loading evaluation datasets: both corpus formats, language filters, skipped queries, clear errors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from eval.datasets import DatasetError, Query, load_dataset


def write_dataset(
    folder: Path, docs: list[dict[str, Any]], queries: list[dict[str, Any]], qrels: list[tuple[str, str, int]]
) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "corpus.jsonl").write_text(
        "".join(json.dumps(d, ensure_ascii=False) + "\n" for d in docs), encoding="utf-8"
    )
    (folder / "queries.jsonl").write_text(
        "".join(json.dumps(q, ensure_ascii=False) + "\n" for q in queries), encoding="utf-8"
    )
    (folder / "qrels.tsv").write_text("".join(f"{q}\t{d}\t{r}\n" for q, d, r in qrels), encoding="utf-8")
    return folder


@pytest.fixture
def bilingual(tmp_path: Path) -> Path:
    docs = [
        {"id": "p1-zh", "title": "", "text": "打印机无法连接", "lang": "zh"},
        {"id": "p1-en", "title": "", "text": "Printer cannot connect", "lang": "en"},
        {"id": "p2-zh", "title": "邮件", "text": "Outlook 报错 0x800CCC0E", "lang": "zh"},
        {"id": "p2-en", "title": "Mail", "text": "Outlook error 0x800CCC0E", "lang": "en"},
        {"id": "m1", "title": "", "text": "VPN 断开 after sleep", "lang": "mixed"},
    ]
    queries = [
        {"id": "q1-zh", "text": "打印机连不上", "lang": "zh"},
        {"id": "q1-en", "text": "printer offline", "lang": "en"},
        {"id": "q2-zh", "text": "Outlook 错误", "lang": "zh"},
        {"id": "q3-en", "text": "vpn drops", "lang": "en"},
        {"id": "q4-mx", "text": "VPN 掉线", "lang": "mixed"},
    ]
    qrels = [
        ("q1-zh", "p1-zh", 1),
        ("q1-zh", "p1-en", 1),
        ("q1-en", "p1-zh", 1),
        ("q1-en", "p1-en", 1),
        ("q2-zh", "p2-zh", 2),
        ("q2-zh", "p2-en", 1),
        ("q3-en", "m1", 1),
        ("q3-en", "p1-en", 0),
        ("q4-mx", "m1", 1),
    ]
    return write_dataset(tmp_path / "tiny-set", docs, queries, qrels)


def test_eval_datasets_loads_plain_format(bilingual: Path) -> None:
    ds = load_dataset(bilingual)
    assert ds.name == "tiny-set"
    assert [d.doc_id for d in ds.docs] == ["p1-zh", "p1-en", "p2-zh", "p2-en", "m1"]
    assert ds.docs[3].title == "Mail" and ds.docs[3].text == "Outlook error 0x800CCC0E"
    assert ds.docs[4].lang == "mixed"
    assert ds.queries[0] == Query(id="q1-zh", text="打印机连不上", lang="zh")
    assert len(ds.queries) == 5 and ds.skipped_queries == 0
    assert ds.qrels["q2-zh"] == {"p2-zh": 2, "p2-en": 1}
    assert ds.qrels["q3-en"] == {"m1": 1, "p1-en": 0}
    assert ds.query_lang is None and ds.doc_lang is None


def test_eval_datasets_doc_lang_shrinks_pool_and_skips_queries(bilingual: Path) -> None:
    ds = load_dataset(bilingual, doc_lang="en")
    assert {d.doc_id for d in ds.docs} == {"p1-en", "p2-en"}
    assert [q.id for q in ds.queries] == ["q1-zh", "q1-en", "q2-zh"]
    # q3-en keeps only a non-relevant judgment (p1-en, 0): it is skipped like q4-mx
    assert ds.skipped_queries == 2
    assert ds.skipped_by_lang == {"en": 1, "mixed": 1}
    assert ds.qrels == {"q1-zh": {"p1-en": 1}, "q1-en": {"p1-en": 1}, "q2-zh": {"p2-en": 1}}


def test_eval_datasets_cross_lingual_pool(bilingual: Path) -> None:
    ds = load_dataset(bilingual, query_lang="zh", doc_lang="en")
    assert [q.id for q in ds.queries] == ["q1-zh", "q2-zh"]
    assert {d.lang for d in ds.docs} == {"en"}
    assert ds.skipped_queries == 0  # queries of other languages are filtered, not skipped
    assert (ds.query_lang, ds.doc_lang) == ("zh", "en")


def test_eval_datasets_mixed_filters(bilingual: Path) -> None:
    ds = load_dataset(bilingual, query_lang="mixed", doc_lang="mixed")
    assert [d.doc_id for d in ds.docs] == ["m1"]
    assert [q.id for q in ds.queries] == ["q4-mx"]


def test_eval_datasets_bad_lang_filter_raises(bilingual: Path) -> None:
    with pytest.raises(ValueError, match="doc_lang"):
        load_dataset(bilingual, doc_lang="fr")


def test_eval_datasets_structured_sample_format(tmp_path: Path) -> None:
    article = {
        "id": "KB-1",
        "title": "Outlook 无法连接 Exchange",
        "lang": "zh",
        "product": "Outlook",
        "versions": ["2016", "2019"],
        "error_codes": ["0x800CCC0E"],
        "keywords": ["邮件"],
        "symptom": "发送邮件时报错 0x800CCC0E",
        "environment": "",
        "cause": "SMTP 端口被防火墙拦截",
        "resolution": "放行 587 端口",
    }
    bare = {"id": "KB-2", "title": "VPN", "lang": "mixed", "symptom": "VPN drops", "resolution": "重新登录"}
    folder = write_dataset(
        tmp_path / "samples",
        [article, bare],
        [{"id": "q1", "text": "0x800CCC0E", "lang": "mixed"}],
        [("q1", "KB-1", 1)],
    )
    ds = load_dataset(folder)
    doc = ds.docs[0]
    assert doc.title == "Outlook 无法连接 Exchange"
    assert doc.text == "发送邮件时报错 0x800CCC0E\nSMTP 端口被防火墙拦截\n放行 587 端口"
    assert dict(doc.attrs) == {"product": "Outlook", "lang": "zh"}
    assert ds.docs[1].text == "VPN drops\n重新登录"
    assert dict(ds.docs[1].attrs) == {"lang": "mixed"}
    assert ds.queries[0].lang == "mixed"


def test_eval_datasets_tolerates_blank_lines(bilingual: Path) -> None:
    corpus = bilingual / "corpus.jsonl"
    corpus.write_text(corpus.read_text(encoding="utf-8") + "\n\n", encoding="utf-8")
    assert len(load_dataset(bilingual).docs) == 5


def test_eval_datasets_malformed_json_names_file_and_line(bilingual: Path) -> None:
    queries = bilingual / "queries.jsonl"
    lines = queries.read_text(encoding="utf-8").splitlines()
    lines[2] = '{"id": "q2-zh", "text": '
    queries.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(DatasetError, match=r"queries\.jsonl:3: invalid JSON") as info:
        load_dataset(bilingual)
    assert info.value.line == 3 and info.value.path == queries
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize(
    ("file", "line", "replacement", "message"),
    [
        ("corpus.jsonl", 2, '{"id": "p1-en", "text": "x", "lang": "fr"}', "lang must be one of"),
        ("corpus.jsonl", 2, '{"id": "p1-zh", "text": "x", "lang": "zh"}', "duplicate document id"),
        ("corpus.jsonl", 1, '{"id": "p1-zh", "lang": "zh"}', "needs 'text' or one of"),
        ("corpus.jsonl", 1, '["p1-zh"]', "expected a JSON object"),
        ("queries.jsonl", 1, '{"id": "q1-zh", "lang": "zh"}', "'text' must be a non-empty string"),
        ("qrels.tsv", 2, "q1-zh p1-en 1", "got 1 column"),
        ("qrels.tsv", 3, "q1-en\tp1-zh\tyes", "relevance must be an integer"),
        ("qrels.tsv", 4, "q9\tp1-en\t1", "unknown query id 'q9'"),
        ("qrels.tsv", 5, "q2-zh\tnope\t1", "unknown document id 'nope'"),
    ],
)
def test_eval_datasets_bad_line_names_line(
    bilingual: Path, file: str, line: int, replacement: str, message: str
) -> None:
    path = bilingual / file
    lines = path.read_text(encoding="utf-8").splitlines()
    lines[line - 1] = replacement
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(DatasetError, match=rf"{file}:{line}: .*{message}"):
        load_dataset(bilingual)


def test_eval_datasets_missing_file_is_clear(bilingual: Path) -> None:
    (bilingual / "qrels.tsv").unlink()
    with pytest.raises(DatasetError, match=r"qrels\.tsv: file not found"):
        load_dataset(bilingual)


def test_eval_datasets_missing_folder_is_clear(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="not a dataset folder"):
        load_dataset(tmp_path / "nope")


def test_eval_datasets_accepts_beir_header(bilingual: Path) -> None:
    qrels = bilingual / "qrels.tsv"
    qrels.write_text("query-id\tcorpus-id\tscore\n" + qrels.read_text(encoding="utf-8"), encoding="utf-8")
    assert len(load_dataset(bilingual).queries) == 5
