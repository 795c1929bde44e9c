"""The extractive generator: answer with the sources' own sentences, each carrying its citation.

Sentences are scored by how much of the question they cover: the idf-weighted share of the question's terms
found in the sentence (with a little of its neighbourhood), in the question's own tokens or in the English
interlingua (glosses), whichever covers more, so a Chinese question is matched against English text too.

A support article with a resolution section answers with its resolution steps (what the customer should do),
led by its best-matching sentence of symptom or cause; any other text answers with its best sentences. The
best sentence's score is the answer's *support*: below the calibrated threshold the assistant abstains.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Final

from kb.assistant.guard import WITHHELD, is_instruction
from kb.assistant.types import Source
from kb.search.engine import is_identifier
from kb.search.passages import split_sentences
from kb.text import Analyzer

IdfFn = Callable[[Iterable[str]], dict[str, float]]
Tokens = tuple[frozenset[str], frozenset[str], str]
_CJK_WORD: Final = re.compile("[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
QUESTION_WORDS: Final = frozenset(
    "怎么 怎么办 怎样 怎么样 如何 什么 为什么 为何 哪里 哪个 哪些 是否 能否 可否 可以 请问 一下 办 吗 呢 吧 啊".split()
)
"""Interrogatives and fillers of Chinese questions: they say a question is asked, not what about."""

CONTEXT_WEIGHT: Final = 0.3
"""Share of a sentence's score that comes from its window (itself with the sentences before and after):
the sentence that holds an answer often names the subject only through a pronoun."""
MAX_STEPS: Final = 8
MAX_SENTENCE_CHARS: Final = 600
CACHE_TEXTS: Final = 20_000
IDENTIFIER_WEIGHT: Final = 3.0
TOP_TERMS: Final = 10
"""Full coverage needs the idf mass of the question's ``TOP_TERMS`` most informative terms, not of all of them:
a long question (a pasted description) is answered by a text that covers its core, not its every word. Chosen on
XQuAD (balanced accuracy of abstention zh 0.78 -> 0.79, zh cross-lingual 0.66 -> 0.70; en unchanged)."""
STEP_SECTIONS: Final = frozenset({"resolution"})
TITLE: Final = "title"
RANK_PRIOR: Final = 0.25
"""Bonus of the first retrieved source over the last (linear in rank): the ranker (identifiers, the embedding,
fusion tuned on nDCG) is the better judge of which document answers, sentence coverage of which sentence does.
Chosen on XQuAD (200 questions per direction: correct answers en 0.86 -> 0.87, zh 0.84 -> 0.845, 0.1 -> 0.25)."""


@dataclass(frozen=True, slots=True)
class Question:
    text: str
    lang: str
    native: dict[str, float]
    gloss: dict[str, float]

    @property
    def empty(self) -> bool:
        return not self.native and not self.gloss


@dataclass(frozen=True, slots=True)
class Scored:
    """A candidate sentence: where it is (source index, section, position) and how well it covers the question."""

    source: int
    section: str
    position: int
    text: str
    own: float
    score: float


class Matcher:
    """Scores texts against a question with the index's idf (``native_idf`` / ``gloss_idf``).

    The question is read as content words (``Analyzer.words``: whole jieba words, no bigrams or single characters,
    no interrogatives); a Chinese word is found in a text as a substring of its normalised form, any other word
    among its tokens. Glosses (English) are matched token by token.
    """

    def __init__(self, analyzer: Analyzer, native_idf: IdfFn, gloss_idf: IdfFn, *, max_terms: int = 64) -> None:
        self.analyzer = analyzer
        self._native_idf = native_idf
        self._gloss_idf = gloss_idf
        self._max_terms = max_terms
        self._cache: dict[str, Tokens] = {}

    def question(self, text: str) -> Question:
        text = text[:1000]
        a = self.analyzer.analyze_query(text, max_chars=1000, max_terms=self._max_terms)
        words = set(self.analyzer.words(text))
        asked = [w for w in words if w in QUESTION_WORDS] + [w for w in QUESTION_WORDS if w in text]
        native = self._native_idf(
            t
            for t in a.native
            if not any(t in w for w in asked)  # "怎么办" and its pieces say nothing
        )
        unseen = self._native_idf([""])[""]  # the idf of a term no text has
        native = {  # a Chinese bigram or character no text has is an artefact of the cut, not a missing concept
            t: w for t, w in native.items() if not (w >= unseen and _CJK_WORD.match(t) and t not in words)
        }
        return Question(text, a.lang, _boost(native), _boost(self._gloss_idf(a.gloss)))

    def tokens(self, text: str) -> Tokens:
        """(native tokens, gloss tokens, normalised text) of ``text``; cached, since the same articles answer
        many questions."""
        cached = self._cache.get(text)
        if cached is None:
            a = self.analyzer.analyze(text)
            cached = (frozenset(a.native), frozenset(a.gloss), self.analyzer.normalize(text))
            if len(self._cache) >= CACHE_TEXTS:
                self._cache.clear()  # crude but bounded; a warm cache refills within a few questions
            self._cache[text] = cached
        return cached

    def coverage(self, q: Question, text: str) -> float:
        """Share (0..1) of the question's idf mass found in ``text``, natively or through glosses."""
        if q.empty or not text:
            return 0.0
        return self.covers(q, self.tokens(text))

    def covers(self, q: Question, tokens: Tokens) -> float:
        native, gloss, norm = tokens
        return max(_share(q.native, native), _share(q.gloss, gloss))


def support_bucket(question_lang: str, source_lang: str) -> str:
    """The calibration bucket of an answer: the question's language, and whether the best sentence is in it
    (coverage through glosses runs lower than coverage in the question's own words, so each has its threshold)."""
    q = "en" if question_lang == "en" else "zh"
    return f"{q}-same" if source_lang == q else f"{q}-cross"


def _boost(weights: dict[str, float]) -> dict[str, float]:
    """Identifiers (error codes, KB ids) weigh ``IDENTIFIER_WEIGHT`` x their idf: in support the exact code is
    the strongest evidence there is (retrieval boosts them the same way, ``kb.search.engine``)."""
    return {t: w * IDENTIFIER_WEIGHT if is_identifier(t) else w for t, w in weights.items()}


def _share(weights: dict[str, float], tokens: frozenset[str] | set[str]) -> float:
    total = sum(weights.values())
    if len(weights) > TOP_TERMS:
        total = sum(sorted(weights.values(), reverse=True)[:TOP_TERMS])
    if total <= 0:
        return 0.0
    return min(1.0, sum(w for t, w in weights.items() if t in tokens) / total)


_STEP: Final = re.compile(
    r"(?:^|(?<=[\s;；。.]))(?=(?:\d{1,2}|[一二三四五六七八九十])(?:[、)）]|\.(?!\d))\s*\S)"  # "1. x", not "10.068"
)


def steps_of(text: str) -> list[str]:
    """The numbered steps of a resolution (``1. ...; 2. ...`` on one line or several), else its sentences."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    starts = [m.start() for m in _STEP.finditer(text)]
    if len(starts) >= 2:
        pieces = [text[a:b] for a, b in zip([0, *starts], [*starts, len(text)], strict=True)]
        steps = [p.strip().rstrip(";；").strip() for p in pieces if p.strip().rstrip(";；").strip()]
        # a step may hold several sentences; it stays one unit (it is one thing to do)
        return steps
    return [s for line in lines for s in split_sentences(line)]


def sentences_of(source: Source) -> list[tuple[str, int, str]]:
    """(section, position, sentence) of ``source`` in reading order, without instruction-like sentences;
    a resolution is cut into its numbered steps."""
    out: list[tuple[str, int, str]] = []
    for section, text in source.sections:
        units = steps_of(text) if section in STEP_SECTIONS else split_sentences(text)
        for i, sentence in enumerate(units):
            sentence = sentence.strip()
            if len(sentence) < 2 or WITHHELD in sentence or is_instruction(sentence):
                continue
            out.append((section, i, sentence[:MAX_SENTENCE_CHARS]))
    return out


def score_sentences(matcher: Matcher, q: Question, sources: Sequence[Source]) -> list[Scored]:
    """Every quotable sentence of ``sources`` with its own coverage and its score (own + window)."""
    scored: list[Scored] = []
    for s_idx, source in enumerate(sources):
        if source.title:  # scored (a title match says the source is about the question) but never quoted
            cover = matcher.coverage(q, source.title)
            scored.append(Scored(s_idx, TITLE, -1, source.title, cover, cover))
        items = sentences_of(source)
        toks = [matcher.tokens(text) for _, _, text in items]
        own = [matcher.covers(q, t) for t in toks]
        for i, (section, pos, text) in enumerate(items):
            near = [j for j in (i - 1, i + 1) if 0 <= j < len(items) and items[j][0] == section]
            ctx = own[i]
            if near:  # the window: its sentences' tokens and texts together
                window = [toks[j] for j in sorted([i, *near])]
                native = frozenset().union(*(t[0] for t in window))
                gloss = frozenset().union(*(t[1] for t in window))
                ctx = matcher.covers(q, (native, gloss, " ".join(t[2] for t in window)))
            score = (1 - CONTEXT_WEIGHT) * own[i] + CONTEXT_WEIGHT * ctx
            scored.append(Scored(s_idx, section, pos, text, own[i], score))
    return scored


@dataclass(frozen=True, slots=True)
class Extract:
    """The chosen sentences (source index, section, text) in answer order, and the answer's support."""

    picks: list[tuple[int, str, str]]
    support: float
    best_source: int


def extract(
    scored: Sequence[Scored],
    sources: Sequence[Source],
    *,
    max_sentences: int = 2,
    max_steps: int = MAX_STEPS,
    relative: float = 0.75,
) -> Extract:
    """Pick the answer's sentences from ``scored``.

    Each source scores by its best sentence or its title, plus a small prior for its retrieval rank (the
    ranker saw more than the words: identifiers, the embedding); the best source leads. When it has resolution
    steps, the answer is its best sentence outside the steps (symptom or cause: what the steps fix) and then
    the steps themselves; otherwise the best sentences (by the same rank-aware score, each at least
    ``relative`` x the best) of the best sources. The support is the leading source's score without the prior.
    """
    if not scored or not sources:
        return Extract([], 0.0, -1)
    n = len(sources)

    def prior(source: int) -> float:
        return RANK_PRIOR * (1 - source / n)

    best_of = [0.0] * n
    for s in scored:
        best_of[s.source] = max(best_of[s.source], s.score)
    lead = max(range(n), key=lambda i: (best_of[i] + prior(i), -i))
    support = best_of[lead]
    quotable = [s for s in scored if s.section != TITLE]
    steps = [t for sec, t in sources[lead].sections if sec in STEP_SECTIONS and t.strip()]
    if steps:
        picks: list[tuple[int, str, str]] = []
        mine = sorted((s for s in quotable if s.source == lead), key=lambda s: (-s.score, s.position))
        first = next((s for s in mine if s.section not in STEP_SECTIONS), None)
        if first is not None and first.score > 0:
            picks.append((lead, first.section, first.text))
        step_sentences = [s for s in quotable if s.source == lead and s.section in STEP_SECTIONS]
        picks.extend((lead, s.section, s.text) for s in step_sentences[:max_steps])
        return Extract(picks, support, lead)
    order = sorted(quotable, key=lambda s: (-(s.score + prior(s.source)), s.source, s.position))
    if not order:
        return Extract([], support, lead)
    top = order[0].score + prior(order[0].source)
    chosen = [s for s in order if s.score > 0 and s.score + prior(s.source) >= relative * top][:max_sentences]
    chosen.sort(key=lambda s: (s.source != lead, s.source, s.section, s.position))
    return Extract([(s.source, s.section, s.text) for s in chosen], support, lead)
