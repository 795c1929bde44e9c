"""Split long documents into overlapping passages at sentence boundaries (Chinese and English).

A passage is a slice of the original text (whitespace inside it is kept), at most ``max_chars`` long.
Sentence ends: Chinese ``。！？；`` and line breaks anywhere; English ``. ! ?`` followed by whitespace
(or by a Chinese character), except after abbreviations (``e.g.``, ``Dr.``), before a lowercase word,
and after a list number at the start of a line (``1. Open Outlook``). ``14.0.2`` is never split: no space
follows its dots.
"""

from __future__ import annotations

import re
from typing import Final

_CLOSERS = "”’」』）)】\\]\"'"
_BOUNDARY: Final = re.compile(
    rf"[。！？；]+[{_CLOSERS}]*"  # Chinese ends (full-width)
    r"|\n+"  # line breaks
    rf"|[.!?]+[{_CLOSERS}]*(?=\s|$|[\u3400-\u4dbf\u4e00-\u9fff])"  # English ends before space or hanzi
)
_ABBREVIATIONS: Final = frozenset(
    "e.g i.e vs al cf approx dept fig inc ltd co corp jr sr mr mrs ms dr prof st vol ver rev".split()
)
_NUMBER_ABBREVIATIONS: Final = frozenset({"no", "nos"})  # "No. 5"
_WORD_BEFORE: Final = re.compile(r"(?<![A-Za-z0-9])([A-Za-z][A-Za-z.]*)$")
_LIST_NUMBER: Final = re.compile(r"(?:^|\n)[ \t]*\d{1,3}$")
_NEXT_CHAR: Final = re.compile(r"[ \t]*(\S?)")
_SOFT_BREAK: Final = re.compile(r"[\s,，、:：]")


def _is_sentence_end(text: str, match: re.Match[str]) -> bool:
    token = match.group()
    if token[0] != ".":
        return True
    start, end = match.start(), match.end()
    nxt = _NEXT_CHAR.match(text, end)
    rest = nxt.group(1) if nxt is not None else ""
    if rest.islower():
        return False  # "etc. are copied", "approx. ten"
    before = text[max(0, start - 24) : start]
    word = _WORD_BEFORE.search(before)
    if word is not None:
        name = word.group(1).lower().rstrip(".")
        if name in _ABBREVIATIONS or (name in _NUMBER_ABBREVIATIONS and rest.isdigit()):
            return False
    return _LIST_NUMBER.search(text[max(0, start - 40) : start]) is None


def _sentence_spans(text: str) -> list[tuple[int, int]]:
    spans: list[tuple[int, int]] = []
    start = 0
    for match in _BOUNDARY.finditer(text):
        if _is_sentence_end(text, match):
            spans.append((start, match.end()))
            start = match.end()
    spans.append((start, len(text)))
    stripped: list[tuple[int, int]] = []
    for lo, hi in spans:
        piece = text[lo:hi]
        lead = len(piece) - len(piece.lstrip())
        trail = len(piece) - len(piece.rstrip())
        if lo + lead < hi - trail:
            stripped.append((lo + lead, hi - trail))
    return stripped


def _hard_split(text: str, lo: int, hi: int, max_chars: int) -> list[tuple[int, int]]:
    """Cut one over-long sentence into pieces <= max_chars, preferring a space or comma in the second half."""
    pieces: list[tuple[int, int]] = []
    while hi - lo > max_chars:
        cut = lo + max_chars
        soft = [m.end() for m in _SOFT_BREAK.finditer(text, lo + max_chars // 2, cut)]
        if soft:
            cut = soft[-1]
        piece_hi = cut
        while piece_hi > lo and text[piece_hi - 1].isspace():
            piece_hi -= 1
        pieces.append((lo, piece_hi))
        lo = cut
        while lo < hi and text[lo].isspace():
            lo += 1
    if lo < hi:
        pieces.append((lo, hi))
    return pieces


def split_sentences(text: str) -> list[str]:
    """The sentences of ``text`` (stripped, in order), cut where ``split_passages`` would cut."""
    return [text[lo:hi] for lo, hi in _sentence_spans(text)]


def split_passages(text: str, *, max_chars: int = 600, overlap_sentences: int = 1) -> list[str]:
    """Split ``text`` into passages of at most ``max_chars`` characters, cut at sentence ends.

    Consecutive passages share ``overlap_sentences`` sentences (fewer when they would not fit). A sentence
    longer than ``max_chars`` is cut into pieces on its own. Text that fits is returned whole (stripped);
    empty or whitespace-only text gives ``[]``.
    """
    if max_chars < 1:
        raise ValueError(f"max_chars must be at least 1, not {max_chars}")
    if overlap_sentences < 0:
        raise ValueError(f"overlap_sentences must be 0 or more, not {overlap_sentences}")
    stripped = text.strip()
    if not stripped:
        return []
    if len(stripped) <= max_chars:
        return [stripped]
    units: list[tuple[int, int]] = []
    for lo, hi in _sentence_spans(text):
        units.extend(_hard_split(text, lo, hi, max_chars) if hi - lo > max_chars else [(lo, hi)])

    def span_len(first: int, last: int) -> int:  # characters of units[first..last] with what lies between
        return units[last][1] - units[first][0]

    passages: list[str] = []
    first = 0
    while True:
        last = first
        while last + 1 < len(units) and span_len(first, last + 1) <= max_chars:
            last += 1
        passages.append(text[units[first][0] : units[last][1]])
        if last + 1 >= len(units):
            return passages
        nxt = last + 1  # the next passage must bring at least this new unit
        first = max(first + 1, nxt - overlap_sentences)
        while first < nxt and span_len(first, nxt) > max_chars:
            first += 1  # drop overlap that does not fit with the new sentence
