"""Fakes for fast unit tests (the real components have their own tests)."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np

from kb.search.types import FloatArray


class HashEmbedder:
    """Same text -> same unit vector, unrelated texts -> near-orthogonal ones; no model, no torch.

    Vectors are sums of per-token hash vectors, so texts sharing words are somewhat similar.
    """

    def __init__(self, dim: int = 32, name: str = "hash-embedder") -> None:
        self._dim = dim
        self._name = name
        self.calls = 0

    @property
    def dim(self) -> int:
        return self._dim

    @property
    def name(self) -> str:
        return self._name

    @property
    def cjk_capable(self) -> bool:
        return False

    def _token_vector(self, token: str) -> FloatArray:
        seed = int.from_bytes(hashlib.sha256(token.encode()).digest()[:8], "big")
        return np.random.default_rng(seed).standard_normal(self._dim).astype(np.float32)

    def encode(self, texts: Sequence[str], *, batch_size: int = 64, progress: bool = False) -> FloatArray:
        self.calls += 1
        out = np.zeros((len(texts), self._dim), dtype=np.float32)
        for i, text in enumerate(texts):
            for token in text.lower().split() or [""]:
                out[i] += self._token_vector(token)
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        return out / np.where(norms == 0, 1, norms)
