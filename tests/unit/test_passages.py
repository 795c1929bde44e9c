"""split_passages: sentence-aligned passages for Chinese, English and mixed text."""

from __future__ import annotations

import pytest

from kb.search.passages import split_passages


def test_passages_short_text_is_one_passage() -> None:
    assert split_passages("Outlook cannot connect. Restart it.") == ["Outlook cannot connect. Restart it."]
    assert split_passages("  打印机缺纸。 \n") == ["打印机缺纸。"]


@pytest.mark.parametrize("text", ["", "   ", "\n\t \n"])
def test_passages_empty_text_gives_nothing(text: str) -> None:
    assert split_passages(text) == []


def test_passages_chinese_sentence_ends() -> None:
    text = "打开设置。点击账户！需要重启吗？是的；然后登录\n第二行内容"
    assert split_passages(text, max_chars=7, overlap_sentences=0) == [
        "打开设置。", "点击账户！", "需要重启吗？", "是的；然后登录", "第二行内容",
    ]  # fmt: skip


def test_passages_english_sentence_ends() -> None:
    text = "Outlook cannot connect. Is the server up? Yes! Restart the service."
    assert split_passages(text, max_chars=25, overlap_sentences=0) == [
        "Outlook cannot connect.", "Is the server up? Yes!", "Restart the service.",
    ]  # fmt: skip


def test_passages_version_numbers_and_abbreviations_are_not_ends() -> None:
    first = "Upgrade to 14.0.2 first, e.g. with the installer."
    text = f"{first} Then restart the PC. See No. 5 and figure 3.1 too."
    parts = split_passages(text, max_chars=len(first), overlap_sentences=0)
    assert parts == [first, "Then restart the PC.", "See No. 5 and figure 3.1 too."]


def test_passages_numbered_steps_stay_with_their_text() -> None:
    text = "1. Open Outlook and go to the File menu.\n2. Click Account Settings and pick the profile."
    assert split_passages(text, max_chars=50, overlap_sentences=0) == [
        "1. Open Outlook and go to the File menu.", "2. Click Account Settings and pick the profile.",
    ]  # fmt: skip


def test_passages_mixed_chinese_and_english() -> None:
    text = "Outlook 无法连接 Exchange。错误码 0x800CCC0E. Restart Outlook.然后重新登录。"
    assert split_passages(text, max_chars=30, overlap_sentences=0) == [
        "Outlook 无法连接 Exchange。", "错误码 0x800CCC0E.", "Restart Outlook.然后重新登录。",
    ]  # fmt: skip


def test_passages_overlap_by_sentences() -> None:
    text = " ".join(f"Sentence {i} ends here." for i in range(10))  # 20 or 21 chars each
    parts = split_passages(text, max_chars=70, overlap_sentences=1)
    assert parts[0] == "Sentence 0 ends here. Sentence 1 ends here. Sentence 2 ends here."
    assert parts[1].startswith("Sentence 2 ends here.")
    for a, b in zip(parts, parts[1:], strict=False):
        assert a.split(". ")[-1].rstrip(".") == b.split(". ")[0].rstrip(".")  # last sentence starts the next
    assert parts[-1].endswith("Sentence 9 ends here.")
    assert all(len(p) <= 70 for p in parts)
    no_overlap = split_passages(text, max_chars=70, overlap_sentences=0)
    assert " ".join(no_overlap) == text


def test_passages_respect_max_chars_and_cover_the_text() -> None:
    text = "这是一个比较长的句子，用来测试分段。" * 40 + "This is English. " * 30
    parts = split_passages(text, max_chars=100, overlap_sentences=2)
    assert all(len(p) <= 100 for p in parts)
    assert parts[0].startswith("这是") and parts[-1].endswith("This is English.")


def test_passages_huge_sentence_is_hard_split() -> None:
    huge = "Word " * 400  # 2,000 chars, no sentence end
    parts = split_passages("Short intro. " + huge + "Tail.", max_chars=300)
    assert all(len(p) <= 300 for p in parts)
    assert parts[0] == "Short intro."
    assert all(p.startswith("Word") for p in parts[1:])  # cut at spaces, not inside words
    assert sum(p.count("Word") for p in parts) == 400  # one unit per piece: no overlap can fit
    assert parts[-1].endswith("Tail.")
    unbroken = "甲" * 1_000
    assert split_passages(unbroken, max_chars=300) == ["甲" * 300, "甲" * 300, "甲" * 300, "甲" * 100]


def test_passages_reject_bad_arguments() -> None:
    with pytest.raises(ValueError, match="max_chars"):
        split_passages("text", max_chars=0)
    with pytest.raises(ValueError, match="overlap_sentences"):
        split_passages("text", overlap_sentences=-1)
