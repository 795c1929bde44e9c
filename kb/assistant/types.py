"""What the assistant reads (``Source``) and what it returns (``Answer``): frozen, JSON-ready data."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

Kind = Literal["article", "case", "event", "passage"]


@dataclass(frozen=True, slots=True)
class Source:
    """One retrieved text the answer may quote: an article version (in one language), a case or a case event.

    ``sections`` are ``(name, text)`` pairs in reading order (``symptom``, ``cause``, ``resolution`` ... or one
    ``text``); ``ref`` is the article id, ``case:<id>`` or ``event:<id>``; ``version`` is the article version the
    text was read from (0 for cases and events); ``score`` is the retrieval score that brought it in.
    """

    ref: str
    version: int
    kind: Kind
    lang: str
    title: str
    sections: tuple[tuple[str, str], ...]
    url: str = ""
    score: float = 0.0
    translated_from: str = ""  # the variant was missing in the question's language: the language it is in

    @property
    def text(self) -> str:
        return "\n".join(t for _, t in self.sections if t)


@dataclass(frozen=True, slots=True)
class Citation:
    """A numbered source of an answer: the exact article version (or case / event) a sentence was taken from."""

    n: int
    ref: str
    version: int
    kind: Kind
    title: str
    lang: str
    url: str


@dataclass(frozen=True, slots=True)
class Sentence:
    """One sentence of an answer with the numbers of the citations that support it (never empty)."""

    text: str
    cites: tuple[int, ...]
    section: str = ""


@dataclass(frozen=True, slots=True)
class Suggestion:
    """A close article shown with an abstention (or beside an answer)."""

    ref: str
    version: int
    title: str
    url: str


@dataclass(slots=True)
class Answer:
    """The assistant's reply. ``status`` is ``answered`` or ``abstained`` (the knowledge base does not know:
    ``closest`` lists the nearest articles and ``actions`` offers to open a case)."""

    question: str
    lang: str
    status: Literal["answered", "abstained"]
    sentences: list[Sentence] = field(default_factory=list)
    citations: list[Citation] = field(default_factory=list)
    closest: list[Suggestion] = field(default_factory=list)
    actions: list[dict[str, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    support: float = 0.0
    generator: str = "extractive"
    fallback: str = ""  # why the configured generator was not used ("" when it was, or none is configured)
    removed_citations: int = 0  # citations to anything not given to the generator, removed
    removed_links: int = 0  # links or images to anything but the knowledge base, removed
    dropped_sentences: int = 0  # generated sentences with no valid citation or no support in their source

    @property
    def text(self) -> str:
        return " ".join(s.text for s in self.sentences)

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["text"] = self.text
        return out
