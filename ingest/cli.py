"""``kb ingest cases FILE`` and ``kb ingest articles FILE_OR_DIR``: registered into the ``kb`` command through the
``kb.commands`` entry point (``kb`` itself never imports ``ingest``).

With ``--json`` the run report is one line on stdout: ``{"read", "created", "merged", "linked", "skipped",
"failed": [{"record", "line", "error"}]}``. The exit status is 0 when every record was handled (failures are in
the report) and non-zero only when the run could not proceed (unreadable source, database error).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
from collections.abc import Callable
from pathlib import Path

from ingest.articles import read_article_files
from ingest.pipeline import STEPS, DupRule, IngestReport, Pipeline, StepHook, count_lines
from ingest.sources import read_cases
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

    c = isub.add_parser("cases", help="ingest resolved cases from a JSONL or CSV export")
    c.add_argument("source", help="cases.jsonl or cases.csv (format: docs/ingest-formats.md)")
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
    c.set_defaults(func=cmd_cases)
    a = isub.add_parser("articles", help="import an existing knowledge base (JSONL, Markdown, HTML; file or dir)")
    a.add_argument("source", help="a file or a directory (searched recursively)")
    add_state_options(a)
    options(a)
    a.set_defaults(
        func=cmd_articles, dup_lexical=rule.lexical, dup_vector=rule.vector, dup_lexical_only=rule.lexical_only
    )
