"""A search index that follows the database while a server runs (one per worker process).

Each worker holds its own in-memory engine. After a worker commits a change it calls ``refresh()`` itself, so
its own next search sees the change; a background thread in every worker polls cheaply (the outbox's newest id
and the name of the current generation on disk) every ``interval`` seconds and catches up when either moved.
The first worker to catch up applies the outbox and saves a generation under the index lock; the others see a
new generation and reload it. So a change made through any worker reaches every worker within about
``interval`` plus one catch-up.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from kb.config import Settings
from kb.indexer import IndexSync, SyncReport, generation_name
from kb.models import Outbox
from kb.search.engine import Candidates
from kb.search.types import Document, Embedder, Filter, Hit, Mode


@dataclass(frozen=True, slots=True)
class LiveStatus:
    generation: str | None
    documents: int
    outbox_lag: int  # outbox rows committed but not yet in a saved generation
    last_refresh: float  # time.time() of the last completed check


class LiveIndex:
    """Thread-safe search over an ``IndexSync`` that a background thread keeps current."""

    def __init__(self, sync: IndexSync, session_factory: sessionmaker[Session], settings: Settings) -> None:
        self.sync = sync
        self.session_factory = session_factory
        self.settings = settings
        self._refresh_lock = threading.Lock()
        self._seen: tuple[int | None, str | None] = (None, sync.generation)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.last_refresh = time.time()
        self.errors = 0

    @classmethod
    def open(
        cls, session_factory: sessionmaker[Session], settings: Settings, *, embedder: Embedder | None
    ) -> LiveIndex:
        return cls(IndexSync.open(session_factory, settings, embedder=embedder), session_factory, settings)

    # ---- reading ----------------------------------------------------------------------------------
    def search(
        self,
        query: str,
        k: int = 10,
        mode: Mode = "hybrid",
        filters: Filter | None = None,
        *,
        embed_chars: int | None = None,
    ) -> list[Hit]:
        with self.sync.lock.read():
            return self.sync.engine.search(query, k, mode, filters, embed_chars=embed_chars)

    def candidates(self, query: str, k: int, mode: Mode = "hybrid", filters: Filter | None = None) -> Candidates:
        with self.sync.lock.read():
            return self.sync.engine.candidates(query, k, mode, filters)

    def get(self, doc_id: str) -> Document | None:
        with self.sync.lock.read():
            return self.sync.engine.get(doc_id)

    def documents(self, doc_ids: Sequence[str]) -> dict[str, Document]:
        with self.sync.lock.read():
            found = {i: self.sync.engine.get(i) for i in doc_ids}
        return {i: d for i, d in found.items() if d is not None}

    @property
    def has_vectors(self) -> bool:
        return self.sync.engine.dense is not None and self.sync.engine.embedder is not None

    def status(self) -> LiveStatus:
        with self.session_factory() as session:
            lag = int(session.scalar(select(func.count()).select_from(Outbox)) or 0)
        with self.sync.lock.read():
            documents = len(self.sync.engine)
        return LiveStatus(self.sync.generation, documents, lag, self.last_refresh)

    # ---- following the database -------------------------------------------------------------------
    def _marks(self) -> tuple[int | None, str | None]:
        with self.session_factory() as session:
            newest = session.scalar(select(func.max(Outbox.id)))
        return newest, generation_name(self.settings.index_dir)

    def refresh(self, *, force: bool = False) -> SyncReport | None:
        """Catch up if the outbox or the generation on disk moved since the last check (always with ``force``)."""
        with self._refresh_lock:
            marks = self._marks()
            if not force and marks == self._seen and marks[1] == self.sync.generation:
                self.last_refresh = time.time()
                return None
            report = self.sync.catch_up()
            self._seen = self._marks()
            self.last_refresh = time.time()
            return report

    def start(self, interval: float = 0.5) -> None:
        """Poll in a daemon thread every ``interval`` seconds until ``stop()``."""
        if self._thread is not None:
            return

        def loop() -> None:
            while not self._stop.wait(interval):
                try:
                    self.refresh()
                except Exception:  # noqa: BLE001 - a failed poll is retried at the next tick; counted
                    self.errors += 1

        self._thread = threading.Thread(target=loop, name="kb-live-index", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
