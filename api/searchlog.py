"""Searches, suggestions and assistant questions are logged for analytics in batches, off the request path.

A request appends to an in-memory buffer; a background thread writes the buffer every second in one
transaction (and at shutdown). A crash loses at most the last second of analytics, never a case or an article.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from sqlalchemy.orm import Session, sessionmaker

from kb.access import Principal
from kb.models import SearchLog, utcnow


@dataclass(frozen=True, slots=True)
class LoggedSearch:
    principal: Principal
    route: str
    query: str
    lang: str
    results: int
    top_ids: list[str]


class SearchLogBuffer:
    def __init__(self, factory: sessionmaker[Session], interval: float = 1.0) -> None:
        self.factory = factory
        self.interval = interval
        self._items: list[tuple[LoggedSearch, object]] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.errors = 0

    def add(self, item: LoggedSearch) -> None:
        with self._lock:
            self._items.append((item, utcnow()))

    def flush(self) -> int:
        with self._lock:
            items, self._items = self._items, []
        if not items:
            return 0
        with self.factory.begin() as session:
            for item, at in items:
                p = item.principal
                session.add(
                    SearchLog(
                        at=at,
                        user_id=p.user_id,
                        org_id=p.org_id,
                        role=str(p.role),
                        route=item.route,
                        query=item.query[:500],
                        lang=item.lang,
                        results=item.results,
                        top_ids=item.top_ids[:10],
                    )
                )
        return len(items)

    def start(self) -> None:
        def loop() -> None:
            while not self._stop.wait(self.interval):
                try:
                    self.flush()
                except Exception:  # noqa: BLE001 - retried with the next batch's rows lost; counted
                    self.errors += 1

        self._thread = threading.Thread(target=loop, name="kb-search-log", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self.flush()
