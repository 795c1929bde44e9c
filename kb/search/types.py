"""Value types and protocols shared by the retrieval modules (no heavy imports here)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

Lang = Literal["zh", "en"]
Mode = Literal["bm25", "vector", "hybrid"]
MODES: tuple[Mode, ...] = ("bm25", "vector", "hybrid")

FloatArray = npt.NDArray[np.float32]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]


@dataclass(frozen=True, slots=True)
class Document:
    """One searchable knowledge document.

    ``text`` is the body (for knowledge articles: symptom, environment, cause and resolution);
    ``attrs`` are exact-match filter values (e.g. ``product``, ``audience``); ``lang`` is the
    document's own language: ``zh``, ``en`` or ``mixed``.
    """

    doc_id: str
    title: str
    text: str
    lang: str = "en"
    attrs: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Hit:
    """A ranked result. ``signals`` maps each signal that found the document to its raw score."""

    doc_id: str
    score: float
    signals: Mapping[str, float] = field(default_factory=dict)
    passage: int | None = None


@dataclass(frozen=True, slots=True)
class Filter:
    """Exact-match constraints: every key must match one of its allowed values.

    ``Filter({"lang": {"zh"}, "audience": {"public", "customer"}})``. An empty filter allows all.
    """

    allowed: Mapping[str, frozenset[str]] = field(default_factory=dict)

    @classmethod
    def of(cls, **allowed: str | Sequence[str]) -> Filter:
        return cls({k: frozenset([v] if isinstance(v, str) else v) for k, v in allowed.items()})

    def __bool__(self) -> bool:
        return bool(self.allowed)


@runtime_checkable
class Embedder(Protocol):
    """Turns texts into L2-normalised float32 vectors of width ``dim``."""

    @property
    def dim(self) -> int: ...

    @property
    def name(self) -> str: ...

    @property
    def cjk_capable(self) -> bool:
        """True when the model reads Chinese itself (so Chinese need not be glossed into English)."""
        ...

    def encode(self, texts: Sequence[str], *, batch_size: int = 64, progress: bool = False) -> FloatArray: ...
