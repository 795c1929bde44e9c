"""One analyzer for Chinese, English and mixed support text, used identically at index and query time.

Pipeline: Unicode NFKC (full width -> half width) -> traditional -> simplified Chinese (OpenCC
``tw2sp``, which also maps Taiwan phrasing such as 印表機 -> 打印机) -> case folding -> segments:

- Chinese runs: jieba (search mode, support user dictionary) words plus character bigrams;
- identifiers kept whole: error codes (``0x800CCC0E`` and ``800ccc0e`` both become ``0x800ccc0e``),
  KB / CVE ids, versions (``14.0.2``), file names (``outlook.exe``), paths; compound ones also yield parts;
- English words: stopwords dropped, Snowball stemmer.

Besides these *native* tokens the analyzer produces *gloss* tokens: the same text in an English
interlingua (Chinese words replaced by CC-CEDICT / glossary glosses, then the English rules), which is
what lets a Chinese query find an English document and the reverse.

Cost is bounded: Chinese runs are cut into chunks of at most ``_CHUNK`` characters before jieba (its HMM
path is quadratic on long runs), and queries are capped in characters and distinct terms.
"""

from __future__ import annotations

import hashlib
import logging
import re
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kb.errors import ConfigError
from kb.text.lexicon import Lexicon

ANALYZER_VERSION = 2
_CHUNK = 100
_CJK = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
_SEGMENT = re.compile(
    rf"(?P<cjk>[{_CJK}]+)"
    r"|(?P<winpath>[a-z]:\\[^\s,;\"'<>|" + _CJK + r"]*)"
    r"|(?P<unixpath>(?<![\w/])/(?:[a-z0-9._-]+/)+[a-z0-9._-]*)"
    r"|(?P<word>[a-z0-9]+(?:[._\-][a-z0-9]+)*)"
)
_WORD = re.compile(r"[a-z0-9]+(?:[._\-][a-z0-9]+)*")
_HEX = re.compile(r"0x([0-9a-f]{4,16})")
_BARE_HEX = re.compile(r"[0-9a-f]{8}")
_NUMERIC_DOTTED = re.compile(r"\d+(?:\.\d+)+")
_SEPARATORS = re.compile(r"[._\-]")


def detect_lang(text: str) -> str:
    """``zh``, ``en`` or ``mixed`` from the share of Chinese characters against English words."""
    cjk = sum(1 for ch in text if "\u3400" <= ch <= "\u9fff" or "\uf900" <= ch <= "\ufaff")
    if cjk == 0:
        return "en"
    en_words = len(re.findall(r"[A-Za-z]{2,}", text))
    share = en_words * 1.5 / (cjk + en_words * 1.5)
    if share < 0.15:
        return "zh"
    if share > 0.85:
        return "en"
    return "mixed"


@dataclass(frozen=True, slots=True)
class Analysis:
    """Tokens of one text: ``native`` for same-language matching, ``gloss`` in the English interlingua."""

    native: list[str]
    gloss: list[str]
    lang: str


class Analyzer:
    """Thread-safe after construction; build one per process (the jieba dictionary loads in ~0.6 s)."""

    def __init__(self, data_dir: Path) -> None:
        import jieba
        import opencc
        import Stemmer

        jieba.setLogLevel(logging.WARNING)
        self._data_dir = data_dir
        self._opencc = opencc.OpenCC("tw2sp")
        self._stem = Stemmer.Stemmer("english")
        self._en_stop = _read_words(data_dir / "stopwords" / "en.txt")
        self._zh_stop = _read_words(data_dir / "stopwords" / "zh.txt")
        self._jieba = jieba.Tokenizer()
        self._jieba.initialize()
        userdict = data_dir / "userdict.txt"
        if userdict.exists():
            with open(userdict, "rb") as f:  # jieba leaves a path it opens itself unclosed
                self._jieba.load_userdict(f)
        glossary = data_dir / "glossary.tsv"
        self.lexicon = Lexicon.load(glossary if glossary.exists() else None)
        for term in self.lexicon.glossary_terms():  # glossary terms are words to jieba too
            self._jieba.add_word(term)
        self._gloss_cache: dict[str, tuple[list[str], str]] = {}
        digest = hashlib.sha256()
        for name in ("stopwords/en.txt", "stopwords/zh.txt", "userdict.txt", "glossary.tsv"):
            path = data_dir / name
            digest.update(name.encode() + (path.read_bytes() if path.exists() else b""))
        self.fingerprint = f"v{ANALYZER_VERSION}-{digest.hexdigest()[:16]}"

    def describe(self) -> dict[str, Any]:
        """Everything that changes tokens; written into each index manifest."""
        return {
            "version": ANALYZER_VERSION,
            "fingerprint": self.fingerprint,
            "opencc": "tw2sp",
            "jieba": "cut_for_search+HMM, bigrams, unigrams",
            "stemmer": "snowball-english",
            "lexicon": self.lexicon.fingerprint,
        }

    # ---- normalisation -------------------------------------------------------------------------
    def normalize(self, text: str) -> str:
        """NFKC (full width -> half width), traditional -> simplified, case folded."""
        text = unicodedata.normalize("NFKC", text)
        if any("\u3400" <= ch <= "\u9fff" or "\uf900" <= ch <= "\ufaff" for ch in text):
            text = self._opencc.convert(text)
        return text.casefold()

    # ---- analysis --------------------------------------------------------------------------------
    def analyze(self, text: str) -> Analysis:
        """Native and gloss tokens of a document or query text."""
        norm = self.normalize(text)
        native: list[str] = []
        gloss: list[str] = []
        for kind, value in _segments(norm):
            if kind == "cjk":
                for chunk in _chunks(value):
                    native.extend(self._cjk_native(chunk))
                    gloss.extend(self._cjk_gloss(chunk)[0])
            else:
                toks = self._ascii(kind, value)
                native.extend(toks)
                gloss.extend(toks)
        return Analysis(native, gloss, detect_lang(text))

    def analyze_query(self, text: str, *, max_chars: int, max_terms: int) -> Analysis:
        """Like ``analyze``, with the query's cost bounded: at most ``max_chars`` characters are read
        and at most ``max_terms`` distinct terms kept in each field."""
        a = self.analyze(text[:max_chars])
        return Analysis(_cap_distinct(a.native, max_terms), _cap_distinct(a.gloss, max_terms), a.lang)

    def words(self, text: str) -> list[str]:
        """Content words of ``text``: Chinese cut into whole words by jieba (no bigrams or single characters),
        other text as in ``analyze``; stopwords removed. For reading what a question asks, not for the index."""
        out: list[str] = []
        for kind, value in _segments(self.normalize(text)):
            if kind == "cjk":
                for chunk in _chunks(value):
                    out.extend(w for w in self._jieba.cut(chunk, HMM=True) if w.strip() and w not in self._zh_stop)
            else:
                out.extend(self._ascii(kind, value))
        return out

    def tokens(self, text: str) -> list[str]:
        """Native tokens only."""
        return self.analyze(text).native

    def embed_text(self, text: str) -> str:
        """The text an English-only embedding model should see: Chinese words replaced by English glosses."""
        norm = self.normalize(text)
        out: list[str] = []
        last = 0
        for match in re.finditer(f"[{_CJK}]+", norm):
            out.append(norm[last : match.start()])
            for chunk in _chunks(match.group()):
                rendered = self._cjk_gloss(chunk)[1]
                if rendered:
                    out.append(f" {rendered} ")
            last = match.end()
        out.append(norm[last:])
        return " ".join("".join(out).split())

    # ---- pieces ----------------------------------------------------------------------------------
    def _cjk_native(self, run: str) -> list[str]:
        words = [w for w in self._jieba.cut_for_search(run, HMM=True) if w.strip() and w not in self._zh_stop]
        bigrams = [run[i : i + 2] for i in range(len(run) - 1)]
        # Single characters too: paraphrases of short questions often share characters, not words.
        chars = [c for c in run if c not in self._zh_stop]
        return words + bigrams + chars

    def _cjk_gloss(self, run: str) -> tuple[list[str], str]:
        """(English gloss tokens, English rendering) of one Chinese chunk; cached per chunk word."""
        tokens: list[str] = []
        rendered: list[str] = []
        for word in self._jieba.cut(run, HMM=True):
            if word in self._zh_stop or not word.strip():
                continue
            cached = self._gloss_cache.get(word)
            if cached is None:
                phrases = self.lexicon.glosses(word, limit=2)
                toks = [t for p in phrases for w in p.split() for t in self._ascii("word", w)]
                if self.lexicon.known(word):
                    rendering = phrases[0] if phrases else ""
                else:  # unknown to both dictionaries: a name, most likely; keep its sound
                    rendering = " ".join([self.lexicon.pinyin(word), *phrases[:1]]).strip()
                cached = (toks, rendering)
                if len(self._gloss_cache) < 200_000:
                    self._gloss_cache[word] = cached
            tokens.extend(cached[0])
            if cached[1]:
                rendered.append(cached[1])
        return tokens, " ".join(rendered)

    def _ascii(self, kind: str, value: str) -> list[str]:
        if kind in ("winpath", "unixpath"):
            whole = value.rstrip(".\\/")
            parts = [t for w in _WORD.findall(value) for t in self._word(w)]
            return [whole, *parts] if len(whole) > 3 else parts
        return self._word(value)

    def _word(self, tok: str) -> list[str]:
        hexm = _HEX.fullmatch(tok)
        if hexm:
            return ["0x" + hexm.group(1).zfill(8)]
        if _BARE_HEX.fullmatch(tok) and any(c.isdigit() for c in tok) and any(c.isalpha() for c in tok):
            return ["0x" + tok]
        if tok.isdigit() and len(tok) == 8 and tok.startswith("8"):  # 80070005: a Windows HRESULT without 0x
            return ["0x" + tok]
        if _SEPARATORS.search(tok):
            if _NUMERIC_DOTTED.fullmatch(tok):
                return [tok]  # a version or an SMTP status: whole only
            parts = [t for p in _SEPARATORS.split(tok) if p for t in self._word(p)]
            return [tok, *parts]
        if tok.isalpha():
            if len(tok) < 2 or tok in self._en_stop:
                return []
            return [self._stem.stemWord(tok)]
        return [tok]


def _segments(norm: str) -> Iterator[tuple[str, str]]:
    for match in _SEGMENT.finditer(norm):
        kind = match.lastgroup
        if kind is not None:
            yield kind, match.group()


def _chunks(run: str) -> Iterator[str]:
    for i in range(0, len(run), _CHUNK):
        yield run[i : i + _CHUNK]


def _cap_distinct(tokens: list[str], max_terms: int) -> list[str]:
    seen: set[str] = set()
    out: list[str] = []
    for t in tokens:
        if t not in seen:
            if len(seen) >= max_terms:
                continue
            seen.add(t)
        out.append(t)
    return out


def _read_words(path: Path) -> frozenset[str]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise ConfigError(f"cannot read word list {path}: {exc}") from exc
    return frozenset(w.strip().casefold() for w in lines if w.strip() and not w.startswith("#"))
