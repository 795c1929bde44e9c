"""Command line: ``python -m eval DATASET_DIR [--mode bm25|vector|hybrid] [--json] ...``.

DATASET_DIR is a folder with corpus.jsonl, queries.jsonl and qrels.tsv; a bare name such as ``xquad-dev``
that is not a folder here is looked up in the shared evaluation data (``../shared/eval``). Exit status: 0 on
success, 1 for a bad dataset, setting or engine error, 2 for a bad option (argparse).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from eval.cache import CachedEmbedder
from eval.datasets import LANGS, SHARED_EVAL_DIR, DatasetError, load_dataset, resolve_dataset_dir
from eval.run import EngineFactory, SearchEngineLike, format_table, report_json, run_eval
from kb.config import Settings
from kb.errors import KBError
from kb.search.types import MODES, Document, Embedder


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The ``python -m eval`` argument parser."""
    parser = argparse.ArgumentParser(
        prog="python -m eval",
        description="Evaluate retrieval on a dataset folder (corpus.jsonl, queries.jsonl, qrels.tsv).",
    )
    parser.add_argument(
        "dataset", metavar="DATASET_DIR", help=f"dataset folder, or a folder name in {SHARED_EVAL_DIR}"
    )
    parser.add_argument("--mode", choices=MODES, default="hybrid", help="retrieval mode (default: hybrid)")
    parser.add_argument("--query-lang", choices=LANGS, help="keep only queries in this language")
    parser.add_argument("--doc-lang", choices=LANGS, help="keep only documents in this language")
    parser.add_argument("--k", type=_positive_int, default=100, help="hits per query (default: 100)")
    parser.add_argument("--json", action="store_true", help="print one line of JSON instead of a table")
    parser.add_argument("--no-cache", action="store_true", help="do not use the on-disk embedding cache")
    parser.add_argument("--model", metavar="NAME_OR_PATH", help="embedding model (default: KB_EMBED_MODEL)")
    return parser


class DefaultEngineFactory:
    """Builds ``kb.search.engine.SearchEngine`` (imported lazily: it pulls in faiss, jieba and torch).

    Modes other than bm25 get a ``SentenceTransformerEmbedder``, wrapped in a ``CachedEmbedder`` under
    ``settings.cache_dir`` unless ``use_cache`` is False; the wrapper is kept in ``cache`` for its stats.
    """

    def __init__(
        self, settings: Settings, mode: str, *, use_cache: bool = True, progress: bool = True
    ) -> None:
        self.settings = settings
        self.mode = mode
        self.use_cache = use_cache
        self.progress = progress
        self.cache: CachedEmbedder | None = None

    def __call__(self, docs: list[Document]) -> SearchEngineLike:
        """Build the engine over ``docs``."""
        from kb.search.engine import SearchEngine

        embedder: Embedder | None = None
        if self.mode != "bm25":
            from kb.search.embed import SentenceTransformerEmbedder

            embedder = SentenceTransformerEmbedder(
                self.settings.embed_model, threads=self.settings.embed_threads
            )
            if self.use_cache:
                self.cache = CachedEmbedder(embedder, self.settings.cache_dir)
                embedder = self.cache
        engine: SearchEngineLike = SearchEngine.build(
            docs, self.settings, embedder=embedder, progress=self.progress
        )
        return engine


def main(argv: Sequence[str] | None = None, *, engine_factory: EngineFactory | None = None) -> int:
    """Run the CLI; return the exit status. ``engine_factory`` replaces the real engine (tests)."""
    args = build_parser().parse_args(argv)

    def fail(message: str) -> int:
        print(f"python -m eval: error: {message}", file=sys.stderr)
        return 1

    cache: CachedEmbedder | None = None
    try:
        dataset = load_dataset(
            resolve_dataset_dir(args.dataset), query_lang=args.query_lang, doc_lang=args.doc_lang
        )
        if not dataset.queries:
            return fail(
                f"{dataset.name}: no query has a relevant document in the pool "
                f"({dataset.skipped_queries} skipped, {len(dataset.docs)} documents)"
            )
        if engine_factory is None:
            settings = Settings.from_env(embed_model=args.model) if args.model else Settings.from_env()
            default = DefaultEngineFactory(
                settings, args.mode, use_cache=not args.no_cache, progress=not args.json
            )
            engine_factory = default
        report = run_eval(dataset, args.mode, args.k, engine_factory, progress=not args.json)
        if isinstance(engine_factory, DefaultEngineFactory):
            cache = engine_factory.cache
    except (DatasetError, KBError, OSError) as exc:
        return fail(str(exc))
    except KeyboardInterrupt:
        print("python -m eval: interrupted", file=sys.stderr)
        return 130
    finally:
        if isinstance(engine_factory, DefaultEngineFactory) and engine_factory.cache is not None:
            try:
                engine_factory.cache.flush()
            except OSError as exc:
                print(f"python -m eval: warning: embedding cache not saved: {exc}", file=sys.stderr)

    if args.json:
        print(report_json(report))
    else:
        print(format_table(report))
        if cache is not None:
            print(f"embedding cache {cache.directory}: {cache.hits} hits, {cache.misses} misses")
    return 0


if __name__ == "__main__":
    sys.exit(main())
