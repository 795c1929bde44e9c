"""``kb ingest cases FILE``, ``kb ingest cases --from-db`` and ``kb ingest articles FILE_OR_DIR``: registered into
the ``kb`` command through the ``kb.commands`` entry point (``kb`` itself never imports ``ingest``).

``--from-db`` reads the resolved and closed cases already in the database (``--state``, ``--since`` narrow it) and
attaches their drafts to those cases. ``--translator`` chooses how a draft's other language is made: ``gloss``
(the dictionary gloss, the default), ``none`` (left empty), or ``module:attr``, a factory returning an
``ingest.extract.Translator``.

With ``--json`` the run report is one line on stdout: ``{"read", "created", "merged", "linked", "skipped",
"failed": [{"record", "line", "error"}]}`` (``line`` is null for a case read from the database). The exit status
is 0 when every record was handled (failures are in the report) and non-zero only when the run could not proceed
(unreadable source, database error); a wrong combination of options is a usage error (status 2).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from ingest.articles import read_article_files
from ingest.extract import Translator, load_translator
from ingest.pipeline import (
    STEPS,
    DupRule,
    IngestReport,
    Pipeline,
    StepHook,
    count_lines,
    read_stored_cases,
    stored_case_ids,
)
from ingest.sources import STORED_STATES, read_cases
from kb.cli import make_embedder, settings_from_args
from kb.cli_db import add_state_options, default_state, open_database
from kb.indexer import IndexSync


def crash_hook(spec: str | None) -> StepHook | None:
    """For crash tests: ``STEP:N`` kills this process with SIGKILL the N-th time the pipeline reaches STEP."""
    if not spec:
        return None
    step, _, number = spec.partition(":")
    if step not in STEPS or not number.isdigit():
        raise argparse.ArgumentTypeError(f"--crash-at wants STEP:N with STEP one of {', '.join(STEPS)}")
    seen = {"count": 0}

    def hook(name: str, n: int) -> None:
        if name == step:
            seen["count"] += 1
            if seen["count"] == int(number):
                os.kill(os.getpid(), signal.SIGKILL)

    return hook


def translator_option(spec: str) -> Translator | str:
    """``--translator``: ``gloss`` or ``none`` as they are, ``module:attr`` loaded (``load_translator``)."""
    if spec in ("gloss", "none"):
        return spec
    try:
        return load_translator(spec)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def states_option(text: str) -> tuple[str, ...]:
    """``--state resolved,closed``: case states among ``STORED_STATES``."""
    states = tuple(dict.fromkeys(s.strip().lower() for s in text.split(",") if s.strip()))
    bad = [s for s in states if s not in STORED_STATES]
    if bad or not states:
        raise argparse.ArgumentTypeError(f"states are {' and/or '.join(STORED_STATES)}, comma-separated; got {text!r}")
    return states


def since_option(text: str) -> datetime:
    """``--since``: an ISO 8601 date or time; without an offset it is UTC."""
    try:
        at = datetime.fromisoformat(text.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 date or time: {text!r}") from None
    return at if at.utcoffset() is not None else at.replace(tzinfo=UTC)


def _pipeline(args: argparse.Namespace) -> Pipeline:
    settings = settings_from_args(args)
    _, factory = open_database(settings)
    embedder = None if args.no_embed else make_embedder(settings)
    sync = IndexSync.open(factory, settings, embedder=embedder, progress=not args.quiet)
    hook = crash_hook(args.crash_at)
    if hook is not None:
        sync.on_step = lambda name: hook(name, 0)
    return Pipeline(
        factory,
        sync,
        sync.engine.analyzer,  # reuse the index's analyzer: building another costs 2.4 s (lexicon load)
        translator=None if isinstance(args.translator, str) else args.translator,
        other_language=args.translator != "none",
        dup_rule=DupRule(args.dup_lexical, args.dup_vector, args.dup_lexical_only),
        save_every=args.save_every,
        on_step=hook,
        progress=not args.quiet,
    )


def _finish(report: IngestReport, args: argparse.Namespace) -> int:
    if args.json:
        print(json.dumps(report.as_json(), ensure_ascii=False))
    else:
        print(report.summary())
    return 0


def cmd_cases(args: argparse.Namespace) -> int:
    parser: argparse.ArgumentParser = args.cases_parser
    if args.from_db and args.source:
        parser.error("FILE and --from-db exclude each other: give one of them")
    if args.from_db:
        pipeline = _pipeline(args)
        states = args.state or STORED_STATES
        ids = stored_case_ids(pipeline.session_factory, states=states, since=args.since)
        items = read_stored_cases(pipeline.session_factory, ids)
        return _finish(pipeline.ingest_cases(items, total=len(ids)), args)
    if not args.source:
        parser.error("give the FILE to read, or --from-db for the resolved cases in the database")
    if args.state is not None or args.since is not None:
        parser.error("--state and --since go with --from-db")
    source = Path(args.source)
    items = read_cases(source)  # raises IngestError before any work when the source is unusable
    pipeline = _pipeline(args)
    return _finish(pipeline.ingest_cases(items, total=count_lines(source)), args)


def cmd_articles(args: argparse.Namespace) -> int:
    items = list(read_article_files(Path(args.source)))
    pipeline = _pipeline(args)
    return _finish(pipeline.ingest_articles(items, default_state=default_state(args)), args)


def register(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], common: Callable[[argparse.ArgumentParser], None]
) -> None:
    """Add ``kb ingest cases|articles``."""
    ing = sub.add_parser("ingest", help="turn resolved cases into knowledge drafts; import existing articles")
    isub = ing.add_subparsers(dest="ingest_command", required=True, metavar="SOURCE")

    def options(p: argparse.ArgumentParser) -> None:
        p.add_argument("--json", action="store_true", help="print the run report as one JSON line")
        p.add_argument("--db", help="database URL (default: $KB_DATABASE_URL or sqlite:///.kb/kb.db)")
        p.add_argument("--no-embed", action="store_true", help="BM25 only: skip the embedding model")
        p.add_argument("--save-every", type=int, default=100, help="save the index every N records (default 100)")
        p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
        p.add_argument("--crash-at", help=argparse.SUPPRESS)
        common(p)

    c = isub.add_parser("cases", help="ingest resolved cases from a JSONL or CSV export, or from the database")
    c.add_argument(
        "source", nargs="?", metavar="FILE", help="cases.jsonl or cases.csv (format: docs/ingest-formats.md)"
    )
    c.add_argument(
        "--from-db",
        action="store_true",
        help="instead of a FILE: the resolved/closed cases already in the database (drafts attach to those cases)",
    )
    c.add_argument(
        "--state",
        type=states_option,
        help=f"with --from-db: the case states to ingest, comma-separated (default {','.join(STORED_STATES)})",
    )
    c.add_argument(
        "--since",
        type=since_option,
        help="with --from-db: only cases resolved at or after this ISO 8601 date/time (no offset: UTC)",
    )
    c.add_argument(
        "--translator",
        type=translator_option,
        default="gloss",
        metavar="gloss|none|MODULE:ATTR",
        help="how the other language is made: dictionary gloss marked machine-made (default), none (left empty), "
        "or a factory returning an ingest.extract.Translator",
    )
    rule = DupRule()
    c.add_argument(
        "--dup-lexical",
        type=float,
        default=rule.lexical,
        help=f"near-duplicate floor: matched share of the query's BM25 weight (default {rule.lexical})",
    )
    c.add_argument(
        "--dup-vector",
        type=float,
        default=rule.vector,
        help=f"near-duplicate floor: best passage cosine (default {rule.vector})",
    )
    c.add_argument(
        "--dup-lexical-only",
        type=float,
        default=rule.lexical_only,
        help=f"near-duplicate floor without vectors (--no-embed; default {rule.lexical_only})",
    )
    options(c)
    c.set_defaults(func=cmd_cases, cases_parser=c)
    a = isub.add_parser("articles", help="import an existing knowledge base (JSONL, Markdown, HTML; file or dir)")
    a.add_argument("source", help="a file or a directory (searched recursively)")
    add_state_options(a)
    options(a)
    a.set_defaults(
        func=cmd_articles,
        dup_lexical=rule.lexical,
        dup_vector=rule.vector,
        dup_lexical_only=rule.lexical_only,
        translator="gloss",
    )
