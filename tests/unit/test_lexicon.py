from __future__ import annotations

from pathlib import Path

import pytest

from kb.errors import ConfigError
from kb.text.lexicon import Lexicon, _clean_gloss, read_glossary


def test_lexicon_glossary_wins_and_cedict_fills_in(tmp_path: Path) -> None:
    glossary = tmp_path / "g.tsv"
    glossary.write_text("# zh\ten\n补丁\tpatch|hotfix\n", encoding="utf-8")
    lex = Lexicon.load(glossary)
    assert lex.glosses("补丁") == ["patch", "hotfix"]
    assert lex.glosses("打印机") == ["printer"]
    assert lex.glosses("后")[0] == "back"  # the common 後 entry before the rare 后 "empress"
    assert lex.pinyin("打印") == "dayin"
    assert lex.pinyin("x打") == "da"  # characters it does not know are skipped


def test_lexicon_unknown_word_splits_into_known_parts() -> None:
    lex = Lexicon.load(None)
    assert not lex.known("打印机驱动器")
    assert "printer" in lex.glosses("打印机驱动器")


def test_lexicon_bad_glossary_line_names_the_line(tmp_path: Path) -> None:
    bad = tmp_path / "g.tsv"
    bad.write_text("蓝屏\tblue screen\nno tab here\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"g.tsv:2"):
        read_glossary(bad)


@pytest.mark.parametrize(
    "raw, clean",
    [
        ("to connect", "connect"),
        ("CL:個|个[ge4]", None),
        ("variant of 後|后[hou4]", None),
        ("USB flash drive", "usb flash drive"),
        ("(computing) server", "server"),
        ("a b c d e", None),
    ],
)
def test_lexicon_clean_gloss(raw: str, clean: str | None) -> None:
    assert _clean_gloss(raw) == clean
