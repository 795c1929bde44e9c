"""``kb`` subcommands that work on the database: ``db upgrade|current``, ``index sync|rebuild`` and
``articles export|import``. Registered by ``kb.cli.parser``.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, inspect
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from kb import db
from kb.article_io import ArticleRecord, export_articles, import_article, read_articles
from kb.cli import make_embedder, settings_from_args
from kb.config import Settings
from kb.errors import KBError
from kb.indexer import IndexSync, rebuild
from kb.lifecycle import ArticleState, Audience, Confidence, Governance
from kb.search import store


def make_engine(settings: Settings) -> Engine:
    """The engine for ``settings.database_url``; a SQLite file's directory is created if needed."""
    url = make_url(settings.database_url)
    if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
        Path(url.database).parent.mkdir(parents=True, exist_ok=True)
    return db.make_engine(settings.database_url)


def open_database(settings: Settings, *, create: bool = True) -> tuple[Engine, sessionmaker[Session]]:
    """The engine and session factory for ``settings.database_url``. A database without any table is created
    at the newest schema; one at an older revision is refused (run ``kb db upgrade``)."""
    engine = make_engine(settings)
    try:
        revision = db.current_revision(engine)
        if revision is None and create and not inspect(engine).get_table_names():
            db.upgrade(engine)
        elif revision != db.head_revision():
            raise KBError(
                f"the database is at schema revision {revision or 'none'}, this version needs "
                f"{db.head_revision()}: run `kb db upgrade`"
            )
    except Exception:
        engine.dispose()
        raise
    return engine, db.make_session_factory(engine)


def cmd_db_upgrade(args: argparse.Namespace) -> int:
    engine = make_engine(settings_from_args(args))
    before = db.current_revision(engine)
    db.upgrade(engine)
    print(f"database schema: {before or 'empty'} -> {db.current_revision(engine)}")
    return 0


def cmd_db_current(args: argparse.Namespace) -> int:
    engine = make_engine(settings_from_args(args))
    current = db.current_revision(engine)
    print(f"{current or 'none'} (head {db.head_revision()})")
    return 0 if current == db.head_revision() else 1


def _sync(args: argparse.Namespace, settings: Settings, factory: sessionmaker[Session]) -> IndexSync:
    embedder = None if getattr(args, "no_embed", False) else make_embedder(settings)
    return IndexSync.open(factory, settings, embedder=embedder, progress=not args.quiet)


def cmd_index_sync(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)
    _, factory = open_database(settings)
    sync = _sync(args, settings, factory)
    report = sync.catch_up()
    print(
        f"index in step with the database: {len(sync.engine)} documents live "
        f"({report.applied} more changes applied; generation {sync.generation})"
    )
    return 0


def cmd_index_rebuild(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)
    _, factory = open_database(settings)
    embedder = None if args.no_embed else make_embedder(settings)
    engine = rebuild(factory, settings, embedder=embedder, progress=not args.quiet)
    gen = store.current_generation(settings.index_dir)
    print(f"rebuilt the index from the database: {len(engine)} documents in {gen}")
    return 0


def cmd_articles_export(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)
    _, factory = open_database(settings, create=False)
    with factory() as session:
        for line in export_articles(session, Confidence(args.state) if args.state else None):
            sys.stdout.write(json.dumps(line, ensure_ascii=False) + "\n")
    return 0


def default_state(args: argparse.Namespace) -> ArticleState:
    """The state of imported articles that do not carry one (``--confidence``, ``--audience``)."""
    return ArticleState(Confidence(args.confidence), Audience(args.audience), Governance.EXPERIENCE_BASED)


def cmd_articles_import(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)
    _, factory = open_database(settings)
    state = default_state(args)
    counts = {"read": 0, "created": 0, "updated": 0, "unchanged": 0}
    failed: list[dict[str, Any]] = []
    for line, item in read_articles(Path(args.source)):
        counts["read"] += 1
        if not isinstance(item, ArticleRecord):
            failed.append({"record": item[0], "line": line, "error": item[1]})
            continue
        try:
            with factory.begin() as session:
                outcome, _ = import_article(session, item, default_state=state)
        except (ValueError, KBError) as exc:
            failed.append({"record": item.article_id, "line": line, "error": str(exc)})
            continue
        counts[outcome] += 1
    if args.json:
        print(json.dumps({**counts, "failed": failed}, ensure_ascii=False))
    else:
        print(", ".join(f"{k} {v}" for k, v in counts.items()) + f", failed {len(failed)}")
        for f in failed:
            print(f"  line {f['line']} ({f['record'] or '?'}): {f['error']}", file=sys.stderr)
    print("run `kb index sync` to bring the search index up to date", file=sys.stderr)
    return 0


def add_state_options(parser: argparse.ArgumentParser) -> None:
    """``--confidence`` / ``--audience`` for articles that carry no state of their own."""
    parser.add_argument(
        "--confidence", choices=[c.value for c in Confidence], default="validated",
        help="confidence of articles that give none (default validated: an existing knowledge base)",
    )  # fmt: skip
    parser.add_argument(
        "--audience", choices=[a.value for a in Audience], default="internal",
        help="audience of articles that give none (default internal; public needs validated)",
    )  # fmt: skip


def register(
    sub: argparse._SubParsersAction[argparse.ArgumentParser],
    isub: argparse._SubParsersAction[argparse.ArgumentParser],
    common: Callable[[argparse.ArgumentParser], None],
) -> None:
    """Add the database subcommands to the ``kb`` parser (``sub``) and to ``kb index`` (``isub``)."""

    def with_db(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
        p.add_argument("--db", help="database URL (default: $KB_DATABASE_URL or sqlite:///.kb/kb.db)")
        return p

    dbp = sub.add_parser("db", help="database schema migrations")
    dsub = dbp.add_subparsers(dest="db_command", required=True, metavar="ACTION")
    with_db(dsub.add_parser("upgrade", help="migrate the database to the newest schema")).set_defaults(
        func=cmd_db_upgrade
    )
    with_db(dsub.add_parser("current", help="print the schema revision (exit 1 when not the newest)")).set_defaults(
        func=cmd_db_current
    )

    sy = with_db(isub.add_parser("sync", help="apply the database's pending changes to the index (catch up)"))
    sy.add_argument("--no-embed", action="store_true", help="BM25 only: skip the embedding model")
    sy.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    common(sy)
    sy.set_defaults(func=cmd_index_sync)
    rb = with_db(isub.add_parser("rebuild", help="build the index from the database from scratch"))
    rb.add_argument("--no-embed", action="store_true", help="BM25 only: skip the embedding model")
    rb.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    common(rb)
    rb.set_defaults(func=cmd_index_rebuild)

    art = sub.add_parser("articles", help="export and import knowledge articles as JSON lines")
    asub = art.add_subparsers(dest="articles_command", required=True, metavar="ACTION")
    ex = with_db(asub.add_parser("export", help="print every article (current version, zh and en) as JSONL"))
    ex.add_argument("--state", choices=[c.value for c in Confidence], help="only articles with this confidence")
    ex.set_defaults(func=cmd_articles_export)
    im = with_db(asub.add_parser("import", help="create or update articles from `kb articles export` JSONL"))
    im.add_argument("source", help="a JSONL file")
    im.add_argument("--json", action="store_true", help="print the report as one JSON line")
    add_state_options(im)
    im.set_defaults(func=cmd_articles_import)
