"""The search index as derived data: database rows -> search documents, and the outbox consumer that keeps the
on-disk index in step with the database.

Every change that affects search writes an ``Outbox`` row in the transaction of the change
(``kb.repository.write_outbox``). ``IndexSync`` applies them:

1. read the pending outbox rows (keyset pages in id order, skipping rows already applied in memory);
2. re-read the *current* database state of each entity they name and upsert or delete its document: applying a
   row twice, or an old row after a newer one, gives the same result, so the consumer is idempotent;
3. save a new index generation (atomic ``CURRENT`` switch, ``kb.search.store``);
4. only then delete the applied outbox rows.

A crash before 4 leaves the rows in place and the next ``catch_up`` applies them again; a row committed late
(a lower id committed after a higher one) is simply still there on the next pass. The whole cycle holds an
exclusive ``flock`` on the index directory, and a consumer whose generation is no longer current (another
process saved since) reloads it first, so two consumers never overwrite each other's work.
"""

from __future__ import annotations

import fcntl
import math
import os
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from sqlalchemy import delete, select
from sqlalchemy.orm import Session, sessionmaker

from kb.config import Settings
from kb.lifecycle import Confidence
from kb.models import Article, ArticleVersion, Case, Outbox
from kb.search import store
from kb.search.engine import SearchEngine
from kb.search.types import Document, Embedder
from kb.text import detect_lang

CASE_PREFIX: Final = "case:"
SECTIONS: Final = ("symptom", "environment", "cause", "resolution")
_PAGE: Final = 500
_DELTA_FLOOR: Final = 256


def case_doc_id(case_id: int) -> str:
    """The search document id of a case (article ids are their own: ``KB-...``)."""
    return f"{CASE_PREFIX}{case_id}"


def article_document(article: Article, version: ArticleVersion) -> Document:
    """The search document of an article's current version.

    The text is the human-written variants (a machine gloss adds nothing the analyzer's own gloss field and the
    embedding gloss do not already give, and would count English words twice). ``attrs`` carry what access
    control filters on: ``kind``, ``confidence``, ``audience`` and the first product.
    """
    variants = [lang for lang in ("zh", "en") if getattr(version, f"title_{lang}") is not None]
    human = [lang for lang in variants if not getattr(version, f"machine_translated_{lang}")] or variants
    title = " / ".join(str(getattr(version, f"title_{lang}")) for lang in human)
    parts = [getattr(version, f"{name}_{lang}") for lang in human for name in SECTIONS]
    text = "\n".join(p for p in parts if p and p.strip()) or title
    attrs = {
        "kind": "article",
        "confidence": str(article.confidence),
        "audience": str(article.audience),
        "governance": str(article.governance),
    }
    if article.products:
        attrs["product"] = article.products[0]
    return Document(article.id, title, text, detect_lang(f"{title}\n{text}"), attrs)


def case_document(case: Case) -> Document:
    """The search document of a case, for staff similar-case search: subject, description and resolution."""
    text = "\n".join(p for p in (case.description, case.resolution) if p.strip()) or case.subject
    attrs = {"kind": "case", "org": str(case.org_id), "state": str(case.state), "product": case.product}
    lang = case.lang if case.lang in ("zh", "en", "mixed") else detect_lang(f"{case.subject}\n{text}")
    return Document(case_doc_id(case.id), case.subject, text, lang, attrs)


def _current_versions(session: Session, articles: Sequence[Article]) -> dict[str, ArticleVersion]:
    if not articles:
        return {}
    wanted = {(a.id, a.current_version) for a in articles}
    stmt = select(ArticleVersion).where(ArticleVersion.article_id.in_([a.id for a in articles]))
    return {v.article_id: v for v in session.scalars(stmt) if (v.article_id, v.version) in wanted}


def searchable_documents(session: Session) -> Iterator[Document]:
    """Every document the index should hold: each article that is not archived, and each case."""
    articles = list(session.scalars(select(Article).where(Article.confidence != Confidence.ARCHIVED)))
    versions = _current_versions(session, articles)
    for article in sorted(articles, key=lambda a: a.id):
        yield article_document(article, versions[article.id])
    for case in session.scalars(select(Case).order_by(Case.id)):
        yield case_document(case)


def documents_for(session: Session, keys: Sequence[tuple[str, str]]) -> tuple[list[Document], list[str]]:
    """The current documents of the ``(entity, entity_id)`` keys: (upserts, doc ids to delete)."""
    article_ids = sorted({i for e, i in keys if e == "article"})
    case_ids = sorted({int(i) for e, i in keys if e == "case"})
    upserts: list[Document] = []
    deletes: list[str] = []
    articles = {a.id: a for a in session.scalars(select(Article).where(Article.id.in_(article_ids)))}
    live = [a for a in articles.values() if a.confidence != Confidence.ARCHIVED]
    versions = _current_versions(session, live)
    for article_id in article_ids:
        article = articles.get(article_id)
        if article is None or article.confidence == Confidence.ARCHIVED:
            deletes.append(article_id)
        else:
            upserts.append(article_document(article, versions[article_id]))
    cases = {c.id: c for c in session.scalars(select(Case).where(Case.id.in_(case_ids)))}
    for case_id in case_ids:
        case = cases.get(case_id)
        if case is None:
            deletes.append(case_doc_id(case_id))
        else:
            upserts.append(case_document(case))
    return upserts, deletes


@dataclass(frozen=True, slots=True)
class SyncReport:
    """What one ``catch_up`` did: outbox rows applied, documents upserted and deleted, the generation saved."""

    applied: int
    upserted: int
    deleted: int
    generation: str | None


@contextmanager
def index_lock(index_dir: Path) -> Iterator[None]:
    """An exclusive advisory lock on ``index_dir`` (released by the OS if the holder dies)."""
    index_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(index_dir / ".lock", os.O_CREAT | os.O_RDWR, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def generation_name(index_dir: Path) -> str | None:
    try:
        return (index_dir / "CURRENT").read_text(encoding="utf-8").strip() or None
    except OSError:
        return None


class RWLock:
    """Many readers or one writer (searches read the engine while a catch-up may mutate it in place)."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._readers = 0
        self._writer = False

    @contextmanager
    def read(self) -> Iterator[None]:
        with self._cond:
            while self._writer:
                self._cond.wait()
            self._readers += 1
        try:
            yield
        finally:
            with self._cond:
                self._readers -= 1
                if not self._readers:
                    self._cond.notify_all()

    @contextmanager
    def write(self) -> Iterator[None]:
        with self._cond:
            while self._writer:
                self._cond.wait()
            self._writer = True  # new readers wait from here; then wait for the current ones to finish
            while self._readers:
                self._cond.wait()
        try:
            yield
        finally:
            with self._cond:
                self._writer = False
                self._cond.notify_all()


class IndexSync:
    """Keeps one in-memory ``SearchEngine`` and its on-disk generations in step with the database.

    ``lock`` guards the engine: readers (searches in other threads) take ``lock.read()``; a catch-up takes
    ``lock.write()`` only while it swaps or mutates the engine, not while it reads the database or saves.
    """

    def __init__(
        self, session_factory: sessionmaker[Session], settings: Settings, engine: SearchEngine, generation: str | None
    ) -> None:
        self.session_factory = session_factory
        self.settings = settings
        self.engine = engine
        self.generation = generation
        self._applied: set[int] = set()
        self._max_applied = 0
        self._counts = [0, 0]  # documents upserted, deleted since the last save
        self.on_step: Callable[[str], None] | None = None  # called with "save" and "purge" (crash tests)
        self.lock = RWLock()

    @classmethod
    def open(
        cls,
        session_factory: sessionmaker[Session],
        settings: Settings,
        *,
        embedder: Embedder | None,
        progress: bool = False,
    ) -> IndexSync:
        """Load the current generation (rebuilding from the database if there is none or it is unusable) and
        catch up with the outbox."""
        with index_lock(settings.index_dir):
            if generation_name(settings.index_dir) is None:
                engine = rebuild(session_factory, settings, embedder=embedder, progress=progress, locked=True)
            else:

                def from_db() -> list[Document]:
                    with session_factory() as session:
                        return list(searchable_documents(session))

                engine = store.open_engine(settings, embedder=embedder, rebuild_from=from_db, progress=progress)
            sync = cls(session_factory, settings, engine, generation_name(settings.index_dir))
            sync._catch_up_locked()
        return sync

    @property
    def pending(self) -> int:
        """Outbox rows applied in memory but not yet saved."""
        return len(self._applied)

    def apply_pending(self) -> int:
        """Apply every committed outbox row not applied yet to the in-memory engine (not saved); returns how many.
        Compacts the engine when its delta segment or its dead rows have grown too large (``_delta_limit``)."""
        applied = 0
        after = 0
        while True:
            with self.session_factory() as session:
                stmt = select(Outbox.id, Outbox.entity, Outbox.entity_id).where(Outbox.id > after)
                rows = list(session.execute(stmt.order_by(Outbox.id).limit(_PAGE)))
                if not rows:
                    break
                after = rows[-1][0]
                fresh = [r for r in rows if r[0] not in self._applied]
                if not fresh:
                    continue
                keys = list(dict.fromkeys((str(e), str(i)) for _, e, i in fresh))
                upserts, deletes = documents_for(session, keys)
            with self.lock.write():
                self._counts[1] += self.engine.delete(deletes)
            self.engine.upsert(upserts, guard=self.lock.write())
            self._counts[0] += len(upserts)
            self._applied.update(r[0] for r in fresh)
            self._max_applied = max(self._max_applied, max(r[0] for r in fresh))
            applied += len(fresh)
        if applied and (self.engine.needs_compaction() or _delta_rows(self.engine) > _delta_limit(self.engine)):
            compacted = self.engine.compact()
            with self.lock.write():
                self.engine = compacted
        return applied

    def catch_up(self) -> SyncReport:
        """Apply the outbox, save a generation and delete the applied rows (all under the index lock)."""
        with index_lock(self.settings.index_dir):
            return self._catch_up_locked()

    def _catch_up_locked(self) -> SyncReport:
        current = generation_name(self.settings.index_dir)
        if current != self.generation:  # another process saved since we loaded: start from its generation
            loaded = store.load(self.settings, embedder=self.engine.embedder, analyzer=self.engine.analyzer)
            with self.lock.write():
                self.engine = loaded
            self.generation = current
            self._applied.clear()
            self._counts = [0, 0]
        applied = self.apply_pending()
        if not self._applied:
            return SyncReport(applied, 0, 0, None)
        if self.on_step:
            self.on_step("save")
        gen = store.save(self.engine, self.settings.index_dir, sync={"outbox_applied_max": self._max_applied})
        self.generation = gen.name
        done = sorted(self._applied)
        if self.on_step:
            self.on_step("purge")
        with self.session_factory.begin() as session:
            for start in range(0, len(done), _PAGE):
                session.execute(delete(Outbox).where(Outbox.id.in_(done[start : start + _PAGE])))
        self._applied.clear()
        (upserted, deleted), self._counts = self._counts, [0, 0]
        return SyncReport(applied, upserted, deleted, gen.name)


def _delta_rows(engine: SearchEngine) -> int:
    return len(engine.docs) - engine.native.main.n_docs


def _delta_limit(engine: SearchEngine) -> int:
    """Delta rows above which ``apply_pending`` compacts: ~sqrt(16 n) for n rows, at least 256.

    Each upsert rebuilds the whole delta segment (cost ~ delta rows) and each load re-analyses it, while a
    compaction re-analyses every live row (cost ~ n); folding the delta back every ~sqrt(n) rows balances the
    two. Ingesting the 2,000 cases of ``tests/integration/test_crash.py`` (``--no-embed --save-every 25``, two
    runs at a time on 2 cores): 460 s when only ``needs_compaction`` compacted (delta up to 2,000 rows; the last
    index took 3.1 s to load), 192 s with this limit (0.27 s); 2x, 8x and 16x sqrt(n): 195, 212, 249 s.
    """
    return max(_DELTA_FLOOR, 4 * math.isqrt(len(engine.docs)))


def rebuild(
    session_factory: sessionmaker[Session],
    settings: Settings,
    *,
    embedder: Embedder | None,
    progress: bool = False,
    locked: bool = False,
) -> SearchEngine:
    """Build the index from the database from scratch, save it, and drop the outbox rows the snapshot covers.

    Documents and outbox ids are read in one transaction (one snapshot), so a row committed later stays pending.
    """
    if not locked:
        with index_lock(settings.index_dir):
            return rebuild(session_factory, settings, embedder=embedder, progress=progress, locked=True)
    with session_factory() as session:
        if session.get_bind().dialect.name == "postgresql":
            session.connection(execution_options={"isolation_level": "REPEATABLE READ"})
        covered = list(session.scalars(select(Outbox.id)))
        docs = list(searchable_documents(session))
    engine = SearchEngine.build(docs, settings, embedder=embedder, progress=progress)
    store.save(engine, settings.index_dir, source="database", sync={"outbox_applied_max": max(covered, default=0)})
    with session_factory.begin() as session:
        for start in range(0, len(covered), _PAGE):
            session.execute(delete(Outbox).where(Outbox.id.in_(covered[start : start + _PAGE])))
    return engine
