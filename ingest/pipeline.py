"""Resolved cases -> knowledge drafts, and bulk article import: idempotent, resumable, one transaction a record.

For each case record the named steps run in order (``STEPS``; a test kills the process at each of them):

``read``     the source yields a ``CaseRecord`` or a per-record error (reported; the batch goes on)
``check``    already ingested (an ``IngestRecord`` exists), not resolved, or no resolution: skipped
``clean``    quoted replies, signatures, boilerplate and personal data removed (``ingest.clean``)
``extract``  symptom / environment / cause / resolution, error codes, keywords; the other language's variant
``dedupe``   near-duplicate search among existing articles with the retrieval core
``write``    in ONE transaction: the case and its timeline, the draft article (or the link to the duplicate),
             the case-article link, the ``IngestRecord``, and the search outbox rows. A record read from the
             database (``CaseRecord.db_case_id``, ``kb ingest cases --from-db``) has its case already: the
             draft or link is attached to that case and no case is created
``commit``   that transaction commits: the record is either wholly ingested or not at all
``apply``    the in-memory index applies the outbox, so later records of the same run see this draft

Every ``save_every`` records (and at the end) the index is saved (``save``) and then the applied outbox rows
are deleted (``purge``; both in ``kb.indexer.IndexSync.catch_up``). A crash anywhere loses nothing committed:
re-running skips what has an ``IngestRecord`` and the index catches up from the outbox.

Near-duplicates: the case's title and symptom are searched among articles; the best hit is a duplicate when
the share of the query's BM25 weight it matches (native or glossed field) and its passage cosine both reach
``DupRule``'s floors (calibrated on the labelled sample cases: ``python -m eval.dedupe``). A duplicate of a
draft that this pipeline created and nobody validated yet is *merged* (the case is linked to it as solving it,
its error codes are added); a duplicate of a reviewed article is *linked* (a "related" link proposes the reuse
to a reviewer) and no new article is made.

Cases already in the database (``kb ingest cases --from-db``): ``stored_case_ids`` selects the resolved / closed
ones, ``read_stored_cases`` yields their records (``ingest.sources.stored_case_record``) into ``ingest_cases``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Final, Literal

from sqlalchemy import and_, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker
from tqdm import tqdm

from ingest.clean import clean_case_text, record_names
from ingest.extract import Glosser, Sections, Translator, extract_sections, other_language_variant
from ingest.sources import STORED_STATES, CaseRecord, RecordError, SourceItem, TimelineEntry, stored_case_record
from kb import articles as kb_articles
from kb.article_io import ArticleRecord, import_article
from kb.errors import KBError
from kb.indexer import IndexSync
from kb.lifecycle import ArticleState, CaseState, Channel, Confidence, Priority
from kb.models import Article, Case, CaseEvent, EventKind, IngestRecord, Org, Relation, User, utcnow
from kb.repository import import_case, org_by_name
from kb.search.engine import SearchEngine
from kb.search.types import Filter, Mode

STEPS: Final = ("read", "check", "clean", "extract", "dedupe", "write", "commit", "apply", "save", "purge")


@dataclass(frozen=True, slots=True)
class DupRule:
    """When the best article hit is a near-duplicate: ``lexical`` floor on the matched share of the query's BM25
    weight (the better of the native and glossed fields) and ``vector`` floor on the best passage's cosine;
    ``lexical_only`` is the floor used when the index has no vectors."""

    lexical: float = 0.4
    vector: float = 0.5
    lexical_only: float = 0.45


def near_duplicate(engine: SearchEngine, query: str, rule: DupRule) -> tuple[str, float] | None:
    """``(article id, lexical share)`` of the article that ``query`` duplicates by ``rule``, else None."""
    if len(engine) == 0:
        return None
    mode: Mode = "hybrid" if engine.dense is not None else "bm25"
    only_articles = Filter.of(kind="article")
    hits = engine.search(query, k=1, mode=mode, filters=only_articles)
    if not hits:
        return None
    cands = engine.candidates(query, 1, mode, only_articles)
    i = cands.doc_ids.index(hits[0].doc_id)
    lexical = max(
        float(cands.signals[f][i]) / cands.bounds[f] if cands.bounds[f] > 0 else 0.0 for f in ("bm25", "gloss")
    )
    if "vector" in cands.signals:
        is_dup = lexical >= rule.lexical and float(cands.signals["vector"][i]) >= rule.vector
    else:
        is_dup = lexical >= rule.lexical_only
    return (hits[0].doc_id, lexical) if is_dup else None


RESOLVED_STATES: Final = {
    "resolved": CaseState.RESOLVED, "solved": CaseState.RESOLVED, "done": CaseState.RESOLVED,
    "已解决": CaseState.RESOLVED, "已解決": CaseState.RESOLVED, "解决": CaseState.RESOLVED,
    "closed": CaseState.CLOSED, "已关闭": CaseState.CLOSED, "已關閉": CaseState.CLOSED, "关闭": CaseState.CLOSED,
}  # fmt: skip
Outcome = Literal["created", "merged", "linked", "skipped"]
StepHook = Callable[[str, int], None]
_IMPORT_OUTCOMES: Final[Mapping[str, Outcome]] = {"created": "created", "updated": "merged", "unchanged": "skipped"}


@dataclass(frozen=True, slots=True)
class Failure:
    """A record that could not be ingested: ``record`` is its id when known, ``line`` 1-based in the input (None
    for a case read from the database)."""

    record: str | None
    line: int | None
    error: str


@dataclass(slots=True)
class IngestReport:
    """Counts of one run. ``skips`` says why records were skipped (reason -> count)."""

    read: int = 0
    created: int = 0
    merged: int = 0
    linked: int = 0
    skipped: int = 0
    failed: list[Failure] = field(default_factory=list)
    skips: dict[str, int] = field(default_factory=dict)

    def count(self, outcome: Outcome, reason: str = "") -> None:
        setattr(self, outcome, getattr(self, outcome) + 1)
        if outcome == "skipped":
            self.skips[reason] = self.skips.get(reason, 0) + 1

    def as_json(self) -> dict[str, Any]:
        """The one-line ``--json`` report: read, created, merged, linked, skipped, failed[{record, line, error}]."""
        return {
            "read": self.read,
            "created": self.created,
            "merged": self.merged,
            "linked": self.linked,
            "skipped": self.skipped,
            "failed": [asdict(f) for f in self.failed],
        }

    def summary(self) -> str:
        """A human summary with the skip reasons and the failures."""
        lines = [
            f"read {self.read}: created {self.created}, merged {self.merged}, linked {self.linked}, "
            f"skipped {self.skipped}, failed {len(self.failed)}"
        ]
        lines += [f"  skipped {n}: {reason}" for reason, n in sorted(self.skips.items())]
        lines += [
            f"  failed {f'line {f.line} ' if f.line is not None else ''}({f.record or '?'}): {f.error}"
            for f in self.failed
        ]
        return "\n".join(lines)


def record_hash(record: CaseRecord) -> str:
    """A stable digest of a record's content (tells a re-run whether the record changed); ``db_case_id`` says
    where the record came from, not what it holds, and is left out (file records keep their digests)."""
    content = asdict(record)
    del content["db_case_id"]
    data = json.dumps(content, sort_keys=True, default=str, ensure_ascii=False)
    return hashlib.sha256(data.encode("utf-8")).hexdigest()


def _event(entry: TimelineEntry, default_at: datetime) -> CaseEvent:
    internal = entry.visibility == "internal"
    kinds = {"call": EventKind.CALL, "email": EventKind.EMAIL, "state": EventKind.STATE_CHANGE}
    kind = kinds.get(entry.kind)
    if kind is None:
        if entry.kind == "escalation":
            kind, internal = EventKind.ESCALATION, True
        else:
            kind = EventKind.NOTE_INTERNAL if internal else EventKind.NOTE_PUBLIC
    from_state = to_state = None
    if kind == EventKind.STATE_CHANGE and "->" in entry.text:
        left, _, right = entry.text.partition("->")
        names = {s.value for s in CaseState}
        a, b = left.strip().split()[-1:] or [""], right.strip().split()[:1] or [""]
        if a[0] in names and b[0] in names:
            from_state, to_state = CaseState(a[0]), CaseState(b[0])
    return CaseEvent(
        kind=kind,
        author_id=None,
        at=entry.at or default_at,
        text=f"{entry.author}: {entry.text}" if entry.author else entry.text,
        internal=internal,
        from_state=from_state,
        to_state=to_state,
    )


@dataclass(frozen=True, slots=True)
class Draft:
    """What ``extract`` made of a case: the article variants plus its metadata."""

    variants: dict[kb_articles.Lang, kb_articles.Variant]
    sections: Sections
    query: str


class Pipeline:
    """Runs the steps for a stream of records against one database and one ``IndexSync``.

    A draft gets the case's language and a machine-made variant in the other language: by ``translator`` when
    given, else by the dictionary gloss (``glosser``); ``other_language=False`` leaves the other language empty.
    """

    def __init__(
        self,
        session_factory: sessionmaker[Session],
        sync: IndexSync,
        glosser: Glosser,
        *,
        translator: Translator | None = None,
        other_language: bool = True,
        dup_rule: DupRule = DupRule(),
        save_every: int = 100,
        on_step: StepHook | None = None,
        progress: bool = False,
    ) -> None:
        if save_every < 1:
            raise ValueError(f"save_every must be at least 1, got {save_every}")
        self.session_factory = session_factory
        self.sync = sync
        self.glosser = glosser
        self.translator = translator
        self.other_language = other_language
        self.dup_rule = dup_rule
        self.save_every = save_every
        self.on_step = on_step
        self.progress = progress

    def _step(self, name: str, n: int) -> None:
        if self.on_step is not None:
            self.on_step(name, n)

    # ---- cases --------------------------------------------------------------------------------------------------
    def ingest_cases(self, items: Iterable[SourceItem], *, total: int | None = None) -> IngestReport:
        """Ingest every case of ``items``; per-record problems go into the report, the run goes on."""
        report = IngestReport()
        unsaved = 0  # records applied since the last save
        bar = tqdm(items, total=total, desc="ingest cases", unit="case", disable=not self.progress)
        for n, (line, item) in enumerate(bar, start=1):
            self._step("read", n)
            report.read += 1
            if isinstance(item, RecordError):
                report.failed.append(Failure(item.record, line, item.reason))
                continue
            try:
                outcome, reason = self._one_case(item, n)
            except (ValueError, KBError, IntegrityError) as exc:
                report.failed.append(Failure(item.case_id, line, _message(exc)))
                continue
            report.count(outcome, reason)
            if outcome != "skipped":
                self._step("apply", n)
                self.sync.apply_pending()
                unsaved += 1
                if unsaved >= self.save_every:  # records, not outbox rows (a record writes two or three)
                    self.sync.catch_up()
                    unsaved = 0
        self.sync.catch_up()
        return report

    def _one_case(self, record: CaseRecord, n: int) -> tuple[Outcome, str]:
        self._step("check", n)
        digest = record_hash(record)
        with self.session_factory() as session:
            done = session.scalars(
                select(IngestRecord).where(IngestRecord.source == "case", IngestRecord.external_id == record.case_id)
            ).one_or_none()
            if done is not None:
                changed = " (the record changed since; not re-imported)" if done.content_hash != digest else ""
                return "skipped", f"already ingested{changed}"
        state = RESOLVED_STATES.get(record.state.strip().lower()) if record.state else None
        if state is None and not record.state and record.resolved_at is not None:
            state = CaseState.RESOLVED
        if state is None:
            return "skipped", f"not resolved (state {record.state or 'missing'!r})"
        if not record.resolution.strip():
            return "skipped", "no resolution"
        self._step("clean", n)
        names = record_names(record)
        title = clean_case_text(record.subject, names)[0] or record.case_id
        self._step("extract", n)
        draft = self._draft(record, title)
        self._step("dedupe", n)
        duplicate = self._duplicate(draft.query)
        self._step("write", n)
        with self.session_factory.begin() as session:
            outcome, article_id, detail = self._write(session, record, state, draft, duplicate, digest)
            self._step("commit", n)
        return outcome, detail if outcome == "skipped" else ""

    def _draft(self, record: CaseRecord, title: str) -> Draft:
        sections = extract_sections(record)
        lang = record.lang or "en"
        source: kb_articles.Lang = "en" if lang == "en" else "zh"
        native = kb_articles.Variant(title, sections.symptom, sections.environment, sections.cause, sections.resolution)
        query = f"{title}\n{sections.symptom}"
        if not self.other_language:
            return Draft({source: native}, sections, query)
        other = other_language_variant(sections, lang, self.glosser, translator=self.translator)
        title_other = other_language_variant(
            Sections(title, "", "", ""), lang, self.glosser, translator=self.translator
        ).sections.symptom
        variants = {
            source: native,
            other.lang: kb_articles.Variant(
                title_other,
                other.sections.symptom,
                other.sections.environment,
                other.sections.cause,
                other.sections.resolution,
                machine_translated=True,
            ),
        }
        return Draft(variants, sections, query)

    def _duplicate(self, query: str) -> tuple[str, float] | None:
        return near_duplicate(self.sync.engine, query, self.dup_rule)

    def _write(
        self,
        session: Session,
        record: CaseRecord,
        state: CaseState,
        draft: Draft,
        duplicate: tuple[str, float] | None,
        digest: str,
    ) -> tuple[Outcome, str | None, str]:
        created_at = record.created_at or utcnow()
        if record.db_case_id is not None:  # read from the database: attach to that case, never make a second one
            case = session.get(Case, record.db_case_id)
            if case is None:
                raise ValueError(f"case {record.db_case_id} is no longer in the database")
        else:
            case = _import_case(session, record, state, created_at)
        at = record.resolved_at or created_at
        codes = list(draft.sections.error_codes)
        outcome: Outcome
        if duplicate is not None and (article := session.get(Article, duplicate[0])) is not None:
            article_id, score = duplicate
            if _is_ingest_draft(session, article):
                outcome, relation = "merged", Relation.SOLVED_BY
                new_codes = [c for c in codes if c not in article.error_codes]
                if new_codes:
                    article.error_codes = [*article.error_codes, *new_codes]
                    kb_articles.outbox_article(session, article, at)
            else:
                outcome, relation = "linked", Relation.RELATED
            kb_articles.link_case_article(session, case.id, article_id, relation, at=at)
            detail = f"near-duplicate of {article_id} (matched share {score:.2f})"
        else:
            article = kb_articles.create_article(
                session,
                None,
                zh=draft.variants.get("zh"),
                en=draft.variants.get("en"),
                keywords=draft.sections.keywords,
                products=[record.product] if record.product else [],
                error_codes=codes,
                at=at,
            )
            article_id, outcome, detail = article.id, "created", ""
            kb_articles.link_case_article(session, case.id, article_id, Relation.SOLVED_BY, at=at)
        session.add(
            IngestRecord(
                source="case",
                external_id=record.case_id,
                content_hash=digest,
                outcome=outcome,
                case_id=case.id,
                article_id=article_id,
                detail=detail,
                at=utcnow(),
            )
        )
        session.flush()
        return outcome, article_id, detail

    # ---- articles -----------------------------------------------------------------------------------------------
    def ingest_articles(
        self, items: Iterable[tuple[int, ArticleRecord | Failure]], *, default_state: ArticleState
    ) -> IngestReport:
        """Import articles (created, or merged into the existing article of the same id; unchanged: skipped)."""
        report = IngestReport()
        changed = 0
        for n, (line, item) in enumerate(tqdm(items, desc="import articles", disable=not self.progress), start=1):
            self._step("read", n)
            report.read += 1
            if isinstance(item, Failure):
                report.failed.append(item)
                continue
            try:
                with self.session_factory.begin() as session:
                    self._step("write", n)
                    outcome, _ = import_article(session, item, default_state=default_state)
                    self._step("commit", n)
            except (ValueError, KBError, IntegrityError) as exc:
                report.failed.append(Failure(item.article_id, line, _message(exc)))
                continue
            report.count(_IMPORT_OUTCOMES[outcome], "unchanged")
            changed += outcome != "unchanged"
            if changed >= self.save_every:  # no dedupe between imported articles: index them in batches
                self._step("apply", n)
                self.sync.catch_up()
                changed = 0
        self.sync.catch_up()
        return report


def _import_case(session: Session, record: CaseRecord, state: CaseState, created_at: datetime) -> Case:
    """The case of a file record, with its timeline, as the export had it."""
    org = org_by_name(session, record.customer_org or "(unknown organisation)")
    return import_case(
        session,
        external_id=record.case_id,
        org_id=org.id,
        contact_name=record.contact_name,
        contact_email=record.contact_email,
        channel=Channel(record.channel or "web"),
        product=record.product,
        version=record.version,
        subject=record.subject,
        description=record.description,
        resolution=record.resolution,
        lang=record.lang or "en",
        priority=Priority((record.priority or "P3").lower()),
        state=state,
        opened_at=created_at,
        resolved_at=record.resolved_at,
        events=[_event(e, created_at) for e in record.timeline],
        meta=dict(record.meta),
    )


# ---- cases already in the database ------------------------------------------------------------------------------
def stored_case_ids(
    session_factory: sessionmaker[Session], *, states: Sequence[str] = STORED_STATES, since: datetime | None = None
) -> list[int]:
    """Ids of the database's cases in ``states`` (of ``STORED_STATES``), oldest resolution first; with ``since``
    (timezone-aware) only those resolved at or after it (closed, for a case closed without a resolved time).
    Raises ``ValueError`` for another state or a naive ``since``."""
    bad = [state for state in states if state not in STORED_STATES]
    if bad or not states:
        raise ValueError(f"states must be among {', '.join(STORED_STATES)}, got {', '.join(bad) or 'none'}")
    if since is not None and since.utcoffset() is None:
        raise ValueError(f"since {since.isoformat()} has no timezone")
    stmt = select(Case.id).where(Case.state.in_([CaseState(state) for state in states]))
    if since is not None:
        stmt = stmt.where(or_(Case.resolved_at >= since, and_(Case.resolved_at.is_(None), Case.closed_at >= since)))
    with session_factory() as session:
        return list(session.scalars(stmt.order_by(Case.resolved_at, Case.closed_at, Case.id)))


def read_stored_cases(session_factory: sessionmaker[Session], case_ids: Iterable[int]) -> Iterator[SourceItem]:
    """``SourceItem(None, record)`` for each case of ``case_ids`` (``stored_case_ids``), read in its own short
    session so that no read stays open while the pipeline writes; a case that is gone or cannot make a valid
    record is a ``RecordError``."""
    for case_id in case_ids:
        with session_factory() as session:
            item = _stored_item(session, case_id)
        yield item  # outside the session: the pipeline writes while this item is handled


def _stored_item(session: Session, case_id: int) -> SourceItem:
    case = session.get(Case, case_id)
    if case is None:
        return SourceItem(None, RecordError(f"db:{case_id}", None, "the case is no longer in the database"))
    org = session.get(Org, case.org_id)
    stmt = select(CaseEvent).where(CaseEvent.case_id == case_id).order_by(CaseEvent.at, CaseEvent.id)
    events = list(session.scalars(stmt))
    author_ids = {e.author_id for e in events if e.author_id is not None}
    authors = {uid: name for uid, name in session.execute(select(User.id, User.name).where(User.id.in_(author_ids)))}
    try:
        return SourceItem(None, stored_case_record(case, org.name if org is not None else "", events, authors))
    except ValueError as exc:
        return SourceItem(None, RecordError(case.external_id or f"db:{case_id}", None, str(exc)))


def _is_ingest_draft(session: Session, article: Article) -> bool:
    """An article this pipeline created that no reviewer has validated yet."""
    if article.confidence not in (Confidence.WIP, Confidence.NOT_VALIDATED):
        return False
    stmt = select(IngestRecord.id).where(IngestRecord.article_id == article.id, IngestRecord.outcome == "created")
    return session.scalars(stmt.limit(1)).first() is not None


def _message(exc: BaseException) -> str:
    if isinstance(exc, IntegrityError):
        return f"database constraint: {str(exc.orig).splitlines()[0]}"
    return str(exc)


def count_lines(path: Path) -> int | None:
    """Non-blank lines of a JSONL file (the progress bar's total), None for other formats."""
    if path.suffix.lower() not in (".jsonl", ".ndjson", ".json"):
        return None
    with open(path, "rb") as f:
        return sum(1 for line in f if line.strip())
