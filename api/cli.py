"""``kb serve``: the API under uvicorn, registered into the ``kb`` command through the ``kb.commands`` entry
point (``kb`` never imports ``api``).

``kb serve [--host 127.0.0.1] [--port 8000] [--workers N] [--db URL] [--index-dir DIR] [--no-embed]`` runs N
worker processes (uvicorn's factory mode: each imports ``api.cli:app_from_env`` and builds its own app from the
environment). Options are handed to the workers as ``KB_*`` variables. Each worker keeps its own search index in
step with the database (it polls the outbox) and its own webhook sender; the per-client rate limit is per worker.
With several workers the Prometheus metrics of all of them are merged through ``PROMETHEUS_MULTIPROC_DIR`` (a
temporary directory unless already set). One JSON access-log line per request goes to stderr (logger
``kb.access``).
"""

from __future__ import annotations

import argparse
import ctypes
import os
import shutil
import sys
import tempfile
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI

from api import observability, web, webhooks
from api.main import create_app
from kb.cli import settings_from_args
from kb.cli_db import open_database
from kb.config import Settings

MALLOC_ARENAS = 2
"""glibc gives threads their own malloc arenas (up to 8 per core); a worker's request threads then spread memory
over many of them and RSS keeps growing long after warm-up (the load test in ``eval/BENCH.md``: +71 MB and still
rising over 10,000 requests with the default, +27 / +8 MB and flat with 2)."""


def limit_malloc_arenas(n: int = MALLOC_ARENAS) -> None:
    """Cap glibc's malloc arenas of this process (``mallopt(M_ARENA_MAX)``); nothing on other C libraries."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-8, n)  # M_ARENA_MAX
    except (OSError, AttributeError):  # not glibc
        pass


def app_from_env() -> FastAPI:
    """The app of one ``kb serve`` worker: settings from the environment, webhook sender, metrics and logs, and
    the web portal."""
    limit_malloc_arenas()
    app = create_app(Settings.from_env())
    webhooks.install(app)
    observability.install(app)
    web.install(app)
    return app


def log_config() -> dict[str, Any]:
    """uvicorn's logging plus the ``kb.*`` loggers; access lines are already JSON, so the message is printed as is
    (uvicorn's own access log is off: ``kb.access`` replaces it)."""
    from uvicorn.config import LOGGING_CONFIG

    config: dict[str, Any] = {
        **LOGGING_CONFIG,
        "formatters": {**LOGGING_CONFIG["formatters"], "raw": {"format": "%(message)s"}},
        "handlers": {
            **LOGGING_CONFIG["handlers"],
            "raw": {"class": "logging.StreamHandler", "formatter": "raw", "stream": "ext://sys.stderr"},
        },
        "loggers": {
            **LOGGING_CONFIG["loggers"],
            "kb.access": {"handlers": ["raw"], "level": "INFO", "propagate": False},
            "kb": {"handlers": ["default"], "level": "INFO", "propagate": False},
        },
    }
    return config


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    if not 1 <= args.workers <= 64:
        raise SystemExit("kb serve: --workers must be between 1 and 64")
    if not 0 <= args.port <= 65535:
        raise SystemExit("kb serve: --port must be between 0 and 65535")
    settings = settings_from_args(args)
    engine, _ = open_database(settings)  # refuses an old schema here, in one line, not in every worker
    engine.dispose()
    os.environ.setdefault("MALLOC_ARENA_MAX", str(MALLOC_ARENAS))  # worker processes read it when they start
    os.environ["KB_DATABASE_URL"] = settings.database_url
    os.environ["KB_INDEX_DIR"] = str(settings.index_dir)
    os.environ["KB_EMBED_MODEL"] = settings.embed_model
    if args.no_embed:
        os.environ["KB_EMBED_IN_SERVICE"] = "off"
    made_dir: str | None = None
    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        made_dir = tempfile.mkdtemp(prefix="kb-metrics-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = made_dir
    print(
        f"kb serve: http://{args.host}:{args.port} workers={args.workers} db={settings.database_url} "
        f"embed={'off' if args.no_embed else settings.embed_in_service}",
        file=sys.stderr,
        flush=True,
    )
    try:
        uvicorn.run(
            "api.cli:app_from_env",
            factory=True,
            host=args.host,
            port=args.port,
            workers=args.workers,
            log_config=log_config(),
            access_log=False,
            timeout_graceful_shutdown=10,
        )
    finally:
        if made_dir is not None:
            shutil.rmtree(made_dir, ignore_errors=True)
    return 0


def register(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], common: Callable[[argparse.ArgumentParser], None]
) -> None:
    """Add ``kb serve``."""
    s = sub.add_parser("serve", help="run the HTTP API (uvicorn) with N worker processes")
    s.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    s.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    s.add_argument("--workers", type=int, default=1, help="worker processes (default 1)")
    s.add_argument("--db", help="database URL (default: $KB_DATABASE_URL or sqlite:///.kb/kb.db)")
    s.add_argument("--no-embed", action="store_true", help="BM25 only: the workers load no embedding model")
    common(s)
    s.set_defaults(func=cmd_serve)
