"""Index generations on disk: write a new generation directory with a manifest, then switch.

Layout under ``index_dir``::

    CURRENT                 name of the live generation (replaced atomically with os.replace)
    gen-000007/
      manifest.json         parameters, counts, sha256 of every other file
      docs.jsonl            every row (dead ones too, so row numbers stay valid), alive.npy
      native/ gloss/        sparse main segments (delta segments are rebuilt from docs on load)
      dense/                passage vectors + faiss index (when an embedding model is configured)

A load verifies checksums, counts, the analyzer fingerprint and the embedding model; any mismatch raises
``IndexNotReady`` so the caller rebuilds instead of serving wrong results (``open_engine`` does that).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from kb.config import Settings
from kb.errors import IndexNotReady
from kb.search.dense import DenseIndex
from kb.search.engine import SearchEngine, Segments, _analyze_all, _profile
from kb.search.sparse import BM25Params, SparseIndex
from kb.search.types import Document, Embedder
from kb.text import Analyzer

FORMAT = 1
KEEP_GENERATIONS = 2


def save(
    engine: SearchEngine, index_dir: Path, *, source: str | None = None, sync: Mapping[str, Any] | None = None
) -> Path:
    """Write ``engine`` as a new generation and make it current. Returns the generation directory.

    ``sync`` is stored as the manifest's ``sync`` entry (the database indexer records its progress there)."""
    index_dir.mkdir(parents=True, exist_ok=True)
    number = max((int(p.name[4:]) for p in index_dir.glob("gen-*") if p.name[4:].isdigit()), default=0) + 1
    final = index_dir / f"gen-{number:06d}"
    tmp = index_dir / f".tmp-{final.name}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    files: dict[str, str] = {}
    with open(tmp / "docs.jsonl", "w", encoding="utf-8") as out:
        for d in engine.docs:
            out.write(
                json.dumps(
                    {
                        "id": d.doc_id,
                        "title": d.title,
                        "text": d.text,
                        "lang": d.lang,
                        "attrs": dict(d.attrs),
                    },
                    ensure_ascii=False,
                )
                + "\n"
            )
    np.save(tmp / "alive.npy", engine.alive)
    files["docs.jsonl"] = _sha256(tmp / "docs.jsonl")
    files["alive.npy"] = _sha256(tmp / "alive.npy")
    for name, seg in (("native", engine.native), ("gloss", engine.gloss)):
        files.update({f"{name}/{k}": v for k, v in seg.main.save(tmp / name).items()})
    if engine.dense is not None:
        files.update({f"dense/{k}": v for k, v in engine.dense.save(tmp / "dense").items()})
    manifest = {
        "format": FORMAT,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "source": source,
        "sync": dict(sync or {}),
        "params": engine.params(),
        "counts": {
            "rows": len(engine.docs),
            "live": len(engine),
            "main_rows": engine.native.main.n_docs,
            "passages": engine.dense.n_vectors if engine.dense else 0,
        },
        "files": files,
    }
    (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2, ensure_ascii=False), encoding="utf-8")
    _fsync_dir(tmp)
    tmp.rename(final)
    _write_atomic(index_dir / "CURRENT", final.name)
    for old in sorted(index_dir.glob("gen-*"))[:-KEEP_GENERATIONS]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def current_generation(index_dir: Path) -> Path:
    try:
        name = (index_dir / "CURRENT").read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise IndexNotReady(index_dir, "no index here yet (run `kb index build`)") from exc
    return index_dir / name


def read_manifest(gen: Path) -> dict[str, Any]:
    try:
        manifest: dict[str, Any] = json.loads((gen / "manifest.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise IndexNotReady(gen, f"manifest missing or unreadable: {exc}") from exc
    if manifest.get("format") != FORMAT:
        raise IndexNotReady(gen, f"format {manifest.get('format')} is not {FORMAT}")
    return manifest


def verify(gen: Path) -> dict[str, Any]:
    """Check every file against the manifest's checksums; returns the manifest."""
    manifest = read_manifest(gen)
    for rel, digest in manifest["files"].items():
        path = gen / rel
        if not path.is_file():
            raise IndexNotReady(gen, f"file {rel} is missing")
        if _sha256(path) != digest:
            raise IndexNotReady(gen, f"file {rel} does not match its checksum (truncated or changed)")
    return manifest


def load(settings: Settings, *, embedder: Embedder | None = None, analyzer: Analyzer | None = None) -> SearchEngine:
    """Load the current generation, refusing one that is corrupt or built with other parameters."""
    gen = current_generation(settings.index_dir)
    manifest = verify(gen)
    analyzer = analyzer or Analyzer(settings.data_dir)
    params = manifest["params"]
    if params["analyzer"]["fingerprint"] != analyzer.fingerprint:
        raise IndexNotReady(gen, "the analyzer changed (stopwords, dictionary or glossary) since the index was built")
    built_model = params.get("embed_model")
    wanted = embedder.name if embedder else None
    if built_model != wanted:
        raise IndexNotReady(gen, f"built with embedding model {built_model!r}, configured {wanted!r}")
    docs = list(_read_docs(gen / "docs.jsonl"))
    alive = np.load(gen / "alive.npy")
    counts = manifest["counts"]
    bm25 = BM25Params(**params["bm25"])
    native = Segments(SparseIndex.load(gen / "native"))
    gloss = Segments(SparseIndex.load(gen / "gloss"))
    dense = DenseIndex.load(gen / "dense") if embedder is not None else None
    if (
        len(docs) != counts["rows"]
        or alive.shape != (len(docs),)
        or int(alive.sum()) != counts["live"]
        or native.main.n_docs != counts["main_rows"]
        or gloss.main.n_docs != counts["main_rows"]
        or (dense is not None and dense.n_vectors != counts["passages"])
    ):
        raise IndexNotReady(gen, "counts in the manifest do not match the files")
    main_rows = counts["main_rows"]
    if main_rows < len(docs):  # rebuild the small delta segments from the stored documents
        tail_native, tail_gloss = _analyze_all(analyzer, docs[main_rows:], progress=False)
        native.append(tail_native, bm25)
        gloss.append(tail_gloss, bm25)
    return SearchEngine(
        settings, analyzer, embedder, docs, alive, native, gloss, dense, bm25, _profile(settings, embedder)
    )


def open_engine(
    settings: Settings,
    *,
    embedder: Embedder | None = None,
    rebuild_from: Callable[[], Iterable[Document]] | None = None,
    progress: bool = False,
    on_rebuild: Callable[[str], None] | None = None,
) -> SearchEngine:
    """Load the index; if it is corrupt or mismatched, rebuild it (from the stored documents when
    they are intact, else from ``rebuild_from``) and save the rebuilt generation."""
    analyzer = Analyzer(settings.data_dir)
    try:
        return load(settings, embedder=embedder, analyzer=analyzer)
    except IndexNotReady as exc:
        reason = exc.reason
        source: Iterable[Document] | None = None
        try:
            gen = current_generation(settings.index_dir)
            manifest = read_manifest(gen)
            if _sha256(gen / "docs.jsonl") == manifest["files"]["docs.jsonl"]:
                alive = np.load(gen / "alive.npy")
                source = [d for d, a in zip(_read_docs(gen / "docs.jsonl"), alive, strict=True) if a]
        except (IndexNotReady, OSError, ValueError, KeyError):
            source = None
        if source is None:
            if rebuild_from is None:
                raise
            source = rebuild_from()
        if on_rebuild:
            on_rebuild(reason)
        engine = SearchEngine.build(source, settings, embedder=embedder, analyzer=analyzer, progress=progress)
        save(engine, settings.index_dir)
        return engine


def _read_docs(path: Path) -> Iterable[Document]:
    with open(path, encoding="utf-8") as lines:
        for line in lines:
            r = json.loads(line)
            yield Document(r["id"], r["title"], r["text"], r["lang"], r["attrs"])


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _fsync_dir(directory: Path) -> None:
    for path in directory.rglob("*"):
        if path.is_file():
            with open(path, "rb") as f:
                os.fsync(f.fileno())
