"""An on-disk embedding cache, so repeated evaluation runs encode each text once per model.

Layout: ``<cache_dir>/<safe model name>/<shard>.npy`` (float32 rows) next to ``<shard>.json`` (the sha256 key
of each row, in order). Every flush writes one new shard pair under a unique name, each file through a temp
file and ``os.replace``, so concurrent runs never clobber each other and a crash leaves no half-written shard.
A shard is read only when both files exist and agree in length and width.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType

import numpy as np

from kb.search.types import Embedder, FloatArray


def cache_key(model_name: str, text: str) -> str:
    """The cache key of ``text`` under ``model_name``: hex sha256 of ``name + "\\0" + text``."""
    return hashlib.sha256(f"{model_name}\0{text}".encode()).hexdigest()


def model_dir_name(model_name: str) -> str:
    """A file-system-safe folder name for a model name or path (readable part + hash against collisions)."""
    readable = re.sub(r"[^A-Za-z0-9._-]+", "_", model_name).strip("._-")[-80:] or "model"
    return f"{readable}-{hashlib.sha256(model_name.encode()).hexdigest()[:8]}"


def _atomic_write(path: Path, write: Callable[[int], None]) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        write(fd)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class CachedEmbedder:
    """Wraps an ``Embedder``; ``encode`` only sends texts it has not seen (for this model) to the inner one.

    New vectors are kept in memory and written as one shard when ``flush_at`` of them are pending, on
    ``flush()``, or when leaving a ``with`` block. ``hits`` counts texts served from the cache (including a
    repeat within one call), ``misses`` the texts sent to the inner embedder.
    """

    def __init__(self, inner: Embedder, cache_dir: Path, *, flush_at: int = 256) -> None:
        if flush_at < 1:
            raise ValueError(f"flush_at must be at least 1, not {flush_at}")
        self.inner = inner
        self.directory = Path(cache_dir) / model_dir_name(inner.name)
        self.flush_at = flush_at
        self.hits = 0
        self.misses = 0
        self._vectors: dict[str, FloatArray] = {}
        self._pending: dict[str, FloatArray] = {}
        self._loaded = False  # shards are read on first use: checking their width needs inner.dim

    @property
    def dim(self) -> int:
        """Width of the inner embedder's vectors."""
        return self.inner.dim

    @property
    def name(self) -> str:
        """The inner embedder's name (also the cache namespace)."""
        return self.inner.name

    @property
    def cjk_capable(self) -> bool:
        """Whether the inner model reads Chinese itself."""
        return self.inner.cjk_capable

    def __len__(self) -> int:
        self._load()
        return len(self._vectors)

    def encode(self, texts: Sequence[str], *, batch_size: int = 64, progress: bool = False) -> FloatArray:
        """Vectors for ``texts`` (rows in order), encoding all cache misses in one inner call."""
        self._load()
        keys = [cache_key(self.inner.name, t) for t in texts]
        todo: dict[str, str] = {}
        for key, text in zip(keys, texts, strict=True):
            if key not in self._vectors and key not in todo:
                todo[key] = text
        self.misses += len(todo)
        self.hits += len(keys) - len(todo)
        if todo:
            vectors = self.inner.encode(list(todo.values()), batch_size=batch_size, progress=progress)
            fresh = np.asarray(vectors, dtype=np.float32)
            if fresh.shape != (len(todo), self.dim):
                raise ValueError(
                    f"{self.inner.name} gave shape {fresh.shape} for {len(todo)} texts of width {self.dim}"
                )
            for key, row in zip(todo, fresh, strict=True):
                self._vectors[key] = row
                self._pending[key] = row
            if len(self._pending) >= self.flush_at:
                self.flush()
        if not keys:
            return np.zeros((0, self.dim), dtype=np.float32)
        return np.stack([self._vectors[key] for key in keys]).astype(np.float32, copy=False)

    def flush(self) -> Path | None:
        """Write pending vectors as one new shard; return its ``.npy`` path (None if nothing was pending)."""
        if not self._pending:
            return None
        self.directory.mkdir(parents=True, exist_ok=True)
        stem = f"shard-{uuid.uuid4().hex}"
        npy, keys_file = self.directory / f"{stem}.npy", self.directory / f"{stem}.json"
        matrix = np.stack(list(self._pending.values())).astype(np.float32, copy=False)
        key_list = list(self._pending)

        def write_npy(fd: int) -> None:
            with os.fdopen(fd, "wb") as fh:
                np.save(fh, matrix, allow_pickle=False)

        def write_keys(fd: int) -> None:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump({"model": self.inner.name, "dim": self.dim, "keys": key_list}, fh)

        _atomic_write(npy, write_npy)  # vectors first: a shard is only read once its key list exists
        _atomic_write(keys_file, write_keys)
        self._pending.clear()
        return npy

    def _load(self) -> None:
        if self._loaded:
            return
        self._loaded = True
        if not self.directory.is_dir():
            return
        for keys_file in sorted(self.directory.glob("shard-*.json")):
            npy = keys_file.with_suffix(".npy")
            try:
                meta = json.loads(keys_file.read_text(encoding="utf-8"))
                matrix = np.load(npy, allow_pickle=False)
            except (OSError, ValueError):
                continue  # a foreign or damaged shard is a cache miss, not an error
            keys = meta.get("keys") if isinstance(meta, dict) else None
            if not isinstance(keys, list) or matrix.ndim != 2 or matrix.shape != (len(keys), self.dim):
                continue
            for key, row in zip(keys, matrix.astype(np.float32, copy=False), strict=True):
                self._vectors[str(key)] = row

    def __enter__(self) -> CachedEmbedder:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.flush()
