"""The ``kb`` command line.

``kb index build SOURCE`` indexes a JSONL file or a dataset directory; ``kb search QUERY`` prints ranked
titles with their scores and the signals that found them. Every subcommand has ``--help``; user errors
print one line on stderr and exit with status 1 (2 for bad usage).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

from sqlalchemy.exc import SQLAlchemyError

from kb.config import Settings
from kb.documents import read_documents
from kb.errors import KBError
from kb.search import store
from kb.search.engine import SearchEngine
from kb.search.types import MODES, Document, Embedder, Filter, Mode


def make_embedder(settings: Settings, *, batch: bool = True) -> Embedder:
    from kb.search.embed import SentenceTransformerEmbedder

    threads = settings.embed_threads if batch else settings.query_threads
    return SentenceTransformerEmbedder(settings.embed_model, threads=threads)


def settings_from_args(args: argparse.Namespace) -> Settings:
    overrides: dict[str, Any] = {}
    if getattr(args, "index_dir", None):
        overrides["index_dir"] = Path(args.index_dir)
    if getattr(args, "model", None):
        overrides["embed_model"] = args.model
    if getattr(args, "db", None):
        overrides["database_url"] = args.db
    return Settings.from_env(**overrides)


def cmd_build(args: argparse.Namespace) -> int:
    from kb.search.engine import SearchEngine

    settings = settings_from_args(args)
    started = time.perf_counter()
    docs = list(read_documents(Path(args.source)))
    embedder = None if args.no_embed else make_embedder(settings)
    engine = SearchEngine.build(docs, settings, embedder=embedder, progress=not args.quiet)
    gen = store.save(engine, settings.index_dir, source=str(Path(args.source).resolve()))
    print(
        f"indexed {len(engine)} documents into {gen} in {time.perf_counter() - started:.1f}s"
        f" (model: {embedder.name if embedder else 'none, BM25 only'})"
    )
    return 0


def _open(settings: Settings, quiet: bool = False, *, batch: bool = False) -> SearchEngine:
    built_with: str | None = settings.embed_model
    try:
        manifest = store.read_manifest(store.current_generation(settings.index_dir))
        built_with = manifest["params"].get("embed_model")
        source = manifest.get("source")
    except KBError:
        source = None
    embedder = make_embedder(settings, batch=batch) if built_with is not None else None

    def rebuild_from() -> list[Document]:
        if not source or not Path(source).exists():
            raise KBError(f"the index in {settings.index_dir} is unusable and its source is gone; run `kb index build`")
        return list(read_documents(Path(source)))

    def note(reason: str) -> None:
        print(f"kb: index not usable ({reason}); rebuilding", file=sys.stderr)

    return store.open_engine(
        settings, embedder=embedder, rebuild_from=rebuild_from, progress=not quiet, on_rebuild=note
    )


def _title(engine: SearchEngine, doc_id: str) -> str:
    doc = engine.get(doc_id)
    return doc.title if doc else ""


def cmd_search(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)
    if not args.query.strip():
        raise KBError("the query is empty")
    engine = _open(settings, quiet=args.json)
    mode: Mode = args.mode or ("hybrid" if engine.dense is not None else "bm25")
    allowed = {}
    if args.lang:
        allowed["lang"] = args.lang
    if args.product:
        allowed["product"] = args.product
    if engine.embedder is not None:  # the first forward pass pays one-off set-up; keep it out of took_ms
        engine.embedder.encode(["warm up"])
    started = time.perf_counter()
    hits = engine.search(args.query, k=args.k, mode=mode, filters=Filter.of(**allowed) if allowed else None)
    took = (time.perf_counter() - started) * 1000
    if args.json:
        print(
            json.dumps(
                {
                    "query": args.query,
                    "mode": mode,
                    "took_ms": round(took, 2),
                    "hits": [
                        {
                            "rank": i,
                            "doc_id": h.doc_id,
                            "title": _title(engine, h.doc_id),
                            "score": round(h.score, 4),
                            "signals": {k: round(v, 4) for k, v in h.signals.items()},
                        }
                        for i, h in enumerate(hits, start=1)
                    ],
                },
                ensure_ascii=False,
            )
        )
        return 0
    print(f"{len(hits)} results for {args.query!r} ({mode}, {took:.1f} ms)")
    for i, h in enumerate(hits, start=1):
        doc = engine.get(h.doc_id)
        signals = ", ".join(f"{k} {v:.3g}" for k, v in h.signals.items()) or "-"
        print(f"{i:>3}. {h.score:6.3f}  {h.doc_id:<14} {doc.title if doc else ''}  [{signals}]")
    return 0


def cmd_add(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)
    docs = list(read_documents(Path(args.source)))
    engine = _open(settings, quiet=args.quiet, batch=True)
    engine.upsert(docs, progress=not args.quiet)
    if engine.needs_compaction():
        engine = engine.compact(progress=not args.quiet)
    gen = store.save(engine, settings.index_dir)
    print(f"added or replaced {len(docs)} documents; {len(engine)} live in {gen}")
    return 0


def cmd_delete(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)
    engine = _open(settings, quiet=True)
    removed = engine.delete(args.doc_ids)
    gen = store.save(engine, settings.index_dir)
    print(f"deleted {removed} of {len(args.doc_ids)} documents; {len(engine)} live in {gen}")
    return 0 if removed == len(args.doc_ids) else 1


def cmd_info(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)
    gen = store.current_generation(settings.index_dir)
    manifest = store.verify(gen) if args.verify else store.read_manifest(gen)
    print(
        json.dumps(
            {
                "generation": gen.name,
                "verified": bool(args.verify),
                **{k: manifest[k] for k in ("created", "source", "counts", "params")},
            },
            indent=2,
            ensure_ascii=False,
        )
    )
    return 0


def cmd_analyze(args: argparse.Namespace) -> int:
    from kb.text import Analyzer

    analyzer = Analyzer(Settings.from_env().data_dir)
    a = analyzer.analyze(args.text)
    print(
        json.dumps(
            {
                "lang": a.lang,
                "native": a.native,
                "gloss": a.gloss,
                "embed_text": analyzer.embed_text(args.text),
            },
            ensure_ascii=False,
        )
    )
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="kb", description="tac-kb: bilingual knowledge search for support centers")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def common(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--index-dir", help="index directory (default: $KB_INDEX_DIR or .kb/index)")
        sp.add_argument("--model", help="sentence-transformers model name or local path (default: bundled MiniLM)")

    index = sub.add_parser("index", help="build and maintain the search index")
    isub = index.add_subparsers(dest="index_command", required=True, metavar="ACTION")
    b = isub.add_parser("build", help="index a JSONL file or dataset directory from scratch")
    b.add_argument("source", help="corpus.jsonl, or a directory holding one (e.g. data/samples)")
    b.add_argument("--no-embed", action="store_true", help="BM25 only: skip the embedding model")
    b.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    common(b)
    b.set_defaults(func=cmd_build)
    a = isub.add_parser("add", help="add or replace the documents of a JSONL file without a rebuild")
    a.add_argument("source")
    a.add_argument("-q", "--quiet", action="store_true")
    common(a)
    a.set_defaults(func=cmd_add)
    d = isub.add_parser("delete", help="remove documents by id")
    d.add_argument("doc_ids", nargs="+", metavar="DOC_ID")
    common(d)
    d.set_defaults(func=cmd_delete)
    i = isub.add_parser("info", help="show the current generation's manifest")
    i.add_argument("--verify", action="store_true", help="also check every file's checksum")
    common(i)
    i.set_defaults(func=cmd_info)

    s = sub.add_parser("search", help="search the index and print ranked results")
    s.add_argument("query")
    s.add_argument("-k", type=int, default=10, help="number of results (1-100, default 10)")
    s.add_argument("--mode", choices=MODES, help="default: hybrid (bm25 when built with --no-embed)")
    s.add_argument("--lang", action="append", choices=("zh", "en", "mixed"), help="only documents in this language")
    s.add_argument("--product", action="append", help="only documents of this product (repeatable)")
    s.add_argument("--json", action="store_true", help="one JSON line")
    common(s)
    s.set_defaults(func=cmd_search)

    an = sub.add_parser("analyze", help="show how a text is tokenised (native, gloss, embedding text)")
    an.add_argument("text")
    an.set_defaults(func=cmd_analyze)

    from kb import cli_ask, cli_db, cli_users  # imported here as they use this module's helpers

    cli_db.register(sub, isub, common)
    cli_users.register(sub, common)
    cli_ask.register(sub, common)
    for entry in entry_points(group="kb.commands"):  # e.g. `kb ingest` from the ingest package (kb never imports it)
        entry.load()(sub, common)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    p = parser()
    args = p.parse_args(argv)
    if getattr(args, "k", 1) is not None and not 1 <= getattr(args, "k", 1) <= 100:
        p.error("-k must be between 1 and 100")
    from kb.search.dense import set_faiss_threads

    set_faiss_threads(1)  # one query at a time: OpenMP threads only contend on 2 cores (dense.py notes)
    try:
        return int(args.func(args))
    except KBError as exc:
        print(f"kb: error: {exc}", file=sys.stderr)
        return 1
    except SQLAlchemyError as exc:  # the database is unreachable, locked or broken: the run cannot proceed
        print(f"kb: error: database: {str(exc).splitlines()[0]}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
