"""``create_app(settings)``: the FastAPI service. Models, the database and the search index load once, in the
lifespan; requests never read index files.

Routes live under ``/api/v1`` (plus ``/health``, ``/ready`` and ``/metrics`` at the root for operators).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI

from api import limits
from api.errors import install_error_handlers
from api.routes import ROUTERS
from api.searchlog import SearchLogBuffer
from kb.assistant import build_assistant
from kb.cli_db import open_database
from kb.config import Settings
from kb.db import make_session_factory
from kb.live import LiveIndex
from kb.search.types import Embedder

API_PREFIX = "/api/v1"
_DEFAULT: Any = object()


def default_embedder(settings: Settings) -> Embedder | None:
    """The query embedder of a serving process (one torch thread: see ``Settings.query_threads``)."""
    if settings.embed_in_service == "off":
        return None
    from kb.cli import make_embedder

    return make_embedder(settings, batch=False)


def create_app(settings: Settings | None = None, *, embedder: Embedder | None = _DEFAULT) -> FastAPI:
    """The service for ``settings`` (default: from the environment). ``embedder`` overrides the configured model
    (tests pass a fake, or None for BM25 only)."""
    settings = settings or Settings.from_env()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine, factory = open_database(settings)
        model = default_embedder(settings) if embedder is _DEFAULT else embedder
        live = LiveIndex.open(factory, settings, embedder=model)
        app.state.settings = settings
        app.state.engine = engine
        app.state.session_factory = factory
        app.state.read_factory = make_session_factory(engine, readonly=True)
        app.state.live = live
        hooks: list[Callable[[], object]] = [live.refresh]
        app.state.after_commit = hooks
        app.state.assistant = build_assistant(live, settings)
        app.state.search_log = SearchLogBuffer(factory)
        app.state.search_log.start()
        for start in app.state.on_start:
            start(app)
        live.start(settings.refresh_interval_ms / 1000)
        try:
            yield
        finally:
            live.stop()
            app.state.search_log.stop()
            for stop in app.state.on_stop:
                stop(app)
            if app.state.assistant.llm is not None:
                app.state.assistant.llm.close()
            engine.dispose()

    app = FastAPI(
        title="tac-kb",
        version="1",
        summary="Knowledge search, case lifecycle and self-service for technical support centers (zh/en)",
        lifespan=lifespan,
    )
    app.state.on_start = []
    app.state.on_stop = []
    install_error_handlers(app)
    for router in ROUTERS:
        app.include_router(router, prefix=API_PREFIX)
    limits.configure(app, max_body_bytes=settings.max_body_bytes, per_minute=settings.rate_limit_per_minute)
    return app
