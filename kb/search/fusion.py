"""Language-aware score fusion: pure, deterministic.

Each signal (``bm25`` native tokens, ``gloss`` English-interlingua tokens, ``vector`` embeddings)
gives exact scores for one shared candidate set. Scores are min-max normalised per signal over the
candidates and combined with weights chosen per query language and per embedding model by
``python -m eval.calibrate`` (see ``data/fusion.json`` and eval/RESULTS.md). A signal whose scores are
all equal carries no information for this query and contributes nothing.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from kb.errors import ConfigError
from kb.search.types import FloatArray

SIGNALS = ("bm25", "gloss", "vector")
LEXICAL = ("bm25", "gloss")
QUERY_LANGS = ("zh", "en", "mixed")


@dataclass(frozen=True, slots=True)
class Weights:
    """Weight of each signal for one query language."""

    bm25: float
    gloss: float
    vector: float

    def of(self, signal: str) -> float:
        return float(getattr(self, signal))

    def as_dict(self) -> dict[str, float]:
        return {s: self.of(s) for s in SIGNALS}


@dataclass(frozen=True, slots=True)
class FusionProfile:
    """Weights per query language, for one embedding model (or one family of models).

    ``by_lang`` weighs all three signals (hybrid mode); ``sparse_gloss`` is the weight of the gloss field
    against native BM25 in bm25-only mode.
    """

    name: str
    by_lang: Mapping[str, Weights]
    sparse_gloss: Mapping[str, float]
    norm: str = "minmax"
    overlap: float = 0.0
    gloss_same: float = 1.0
    """Scale of the gloss signal for documents in the query's own language (1.0: no difference)."""

    def weights(self, lang: str) -> Weights:
        return self.by_lang.get(lang) or self.by_lang["mixed"]

    def sparse(self, lang: str) -> Weights:
        return Weights(1.0, self.sparse_gloss.get(lang, self.sparse_gloss["mixed"]), 0.0)

    def as_dict(self) -> dict[str, object]:
        return {
            "name": self.name,
            "weights": {lang: w.as_dict() for lang, w in self.by_lang.items()},
            "sparse_gloss": dict(self.sparse_gloss),
            "norm": self.norm,
            "overlap": self.overlap,
            "gloss_same": self.gloss_same,
        }


def load_profile(path: Path, model: str, cjk_capable: bool) -> FusionProfile:
    """The profile for ``model`` from ``path``; unknown models get the default of their family
    (``default-cjk`` for models that read Chinese, ``default-en`` for English-only ones)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        key = model if model in data["profiles"] else ("default-cjk" if cjk_capable else "default-en")
        raw = data["profiles"][key]
        by_lang = {lang: Weights(**{s: float(raw[lang][s]) for s in SIGNALS}) for lang in QUERY_LANGS}
        sparse = {lang: float(raw[lang]["sparse_gloss"]) for lang in QUERY_LANGS}
        norm = str(raw.get("norm", "minmax"))
        overlap = float(raw.get("overlap", 0.0))
        gloss_same = float(raw.get("gloss_same", 1.0))
        if norm not in NORMS:
            raise ValueError(f"norm {norm!r}")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"fusion profile file {path} is unreadable or incomplete: {exc}") from exc
    return FusionProfile(key, by_lang, sparse, norm, overlap, gloss_same)


def minmax(scores: FloatArray) -> FloatArray:
    """Scale to [0, 1]; a constant array (no information) becomes zeros."""
    if scores.size == 0:
        return scores
    lo, hi = float(scores.min()), float(scores.max())
    if hi - lo <= 1e-9:
        return np.zeros_like(scores)
    return ((scores - lo) / (hi - lo)).astype(np.float32)


NORMS = ("minmax", "query", "query-max")


def fuse(
    signals: Mapping[str, FloatArray],
    weights: Weights,
    doc_ids: Sequence[str],
    *,
    norm: str = "minmax",
    bounds: Mapping[str, float] | None = None,
    overlap: float = 0.0,
    gloss_scale: FloatArray | None = None,
) -> list[tuple[int, float]]:
    """Combine per-signal scores of the same candidates (aligned with ``doc_ids``).

    ``norm="query-max"`` is ``query`` with the two lexical fields (native tokens and English glosses)
    combined by max instead of sum: for a document in the query's language both fields see the same
    match, for one in the other language only the gloss field can, so a sum favours the query's language;
    ``overlap`` adds back that share of the smaller field (0: pure max, 1: the plain sum).
    ``gloss_scale`` (per candidate) scales the gloss signal, e.g. down for documents in the query's own
    language, where the native field already sees the match and the gloss only adds dictionary noise.
    ``norm="minmax"`` rescales each signal to [0, 1] over the candidates; ``norm="query"`` divides each
    signal by its query-dependent upper bound in ``bounds`` (for BM25: the sum of the query terms' largest
    weights, so 1.0 means "the whole query matched as well as anywhere"; for cosine: 1), which keeps a
    weak signal weak instead of stretching it. Returns ``(candidate index, fused score)`` best first; ties
    are broken by ``doc_id`` so the order never depends on hash or insertion order.
    """
    if norm not in NORMS:
        raise ValueError(f"norm must be one of {NORMS}, got {norm!r}")
    n = len(doc_ids)
    total = np.zeros(n, dtype=np.float64)
    lexical: npt.NDArray[np.float64] | None = None
    lexical_min: npt.NDArray[np.float64] | None = None
    for name, scores in signals.items():
        if scores.shape != (n,):
            raise ValueError(f"signal {name!r} has {scores.shape[0]} scores for {n} candidates")
        w = weights.of(name)
        if not w:
            continue
        if norm == "minmax":
            total += w * minmax(scores)
            continue
        bound = (bounds or {}).get(name, 0.0)
        if bound <= 0:
            continue
        part = w * np.clip(scores / bound, 0.0, 1.0)
        if name == "gloss" and gloss_scale is not None:
            part = part * gloss_scale
        if norm == "query-max" and name in LEXICAL:
            if lexical is None:
                lexical, lexical_min = part, None
            else:
                lexical, lexical_min = np.maximum(lexical, part), np.minimum(lexical, part)
        else:
            total += part
    if lexical is not None:
        total += lexical
        if overlap and lexical_min is not None:
            total += overlap * lexical_min
    order = sorted(range(n), key=lambda i: (-total[i], doc_ids[i]))
    return [(i, float(total[i])) for i in order]
