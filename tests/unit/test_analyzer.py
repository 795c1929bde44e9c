from __future__ import annotations

import pytest

from kb.text import Analyzer, detect_lang
from kb.text.analyzer import _CHUNK, _chunks


def test_analyzer_error_codes_match_case_and_prefix_insensitively(analyzer: Analyzer) -> None:
    doc = set(analyzer.tokens("Outlook 报错 0x800CCC0E，另外安装更新时出现 0x80070005"))
    assert "0x800ccc0e" in set(analyzer.tokens("0x800ccc0e")) & doc
    assert "0x80070005" in set(analyzer.tokens("error 80070005")) & doc
    assert analyzer.tokens("0x0000011B") == analyzer.tokens("0x0000011b") == ["0x0000011b"]


def test_analyzer_full_width_and_traditional_are_normalised(analyzer: Analyzer) -> None:
    assert analyzer.tokens("ＯＵＴＬＯＯＫ ０x８００ccc０e") == analyzer.tokens("outlook 0x800ccc0e")
    assert "打印机" in analyzer.tokens("印表機無法連線")
    assert "数据库" in analyzer.tokens("資料庫")


def test_analyzer_keeps_identifiers_whole(analyzer: Analyzer) -> None:
    toks = analyzer.tokens(
        r"Install KB5005565 on build 22621.1702 (SP1), CVE-2021-34527, outlook.exe 14.0.2 "
        r"C:\Windows\SoftwareDistribution /var/log/messages Event ID 4771"
    )
    for whole in (
        "kb5005565",
        "22621.1702",
        "sp1",
        "cve-2021-34527",
        "outlook.exe",
        "14.0.2",
        "c:\\windows\\softwaredistribution",
        "/var/log/messages",
        "4771",
    ):
        assert whole in toks, whole
    assert "outlook" in toks and "softwaredistribut" in toks  # parts of compounds too
    assert "14" not in toks  # versions stay whole only


def test_analyzer_stems_and_drops_stopwords(analyzer: Analyzer) -> None:
    assert analyzer.tokens("The printers are printing") == ["printer", "print"]
    zh = analyzer.tokens("我的电脑蓝屏了")
    assert "的" not in zh and "我" not in zh
    assert "蓝屏" in zh and "电脑" in zh


def test_analyzer_chinese_words_and_bigrams(analyzer: Analyzer) -> None:
    toks = analyzer.tokens("域控制器同步失败")
    assert "域控制器" in toks  # glossary / user dictionary word kept whole
    assert "同步" in toks and "制器" in toks  # bigrams as well as words


def test_analyzer_gloss_puts_chinese_into_english(analyzer: Analyzer) -> None:
    gloss = analyzer.analyze("打印机蓝屏").gloss
    assert {"printer", "blue", "screen", "bsod"} <= set(gloss)
    assert "printer" in analyzer.embed_text("打印机无法打印")
    # English text has the same gloss and native tokens
    a = analyzer.analyze("Printer offline")
    assert a.gloss == a.native


def test_analyzer_query_cost_is_capped(analyzer: Analyzer) -> None:
    text = " ".join(f"term{i}" for i in range(1000))
    a = analyzer.analyze_query(text, max_chars=10_000, max_terms=50)
    assert len(set(a.native)) == 50
    short = analyzer.analyze_query("alpha " * 10 + "omega", max_chars=20, max_terms=50)
    assert "omega" not in short.native
    assert all(len(c) <= _CHUNK for c in _chunks("啊" * 1000))
    assert "".join(_chunks("啊" * 1000)) == "啊" * 1000


@pytest.mark.parametrize(
    "text, lang",
    [
        ("Outlook cannot connect", "en"),
        ("电脑蓝屏怎么办", "zh"),
        ("Outlook 2016 在 cached mode 下报错", "mixed"),
        ("打印机报错 0x0000011b", "zh"),
    ],
)
def test_detect_lang(text: str, lang: str) -> None:
    assert detect_lang(text) == lang
