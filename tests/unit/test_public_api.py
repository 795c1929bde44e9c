"""Pin the public surface and the layering (STYLE.md examples 10 and section 6)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import kb

ROOT = Path(__file__).resolve().parents[2]


def test_public_api_is_pinned() -> None:
    assert sorted(kb.__all__) == [
        "Analyzer",
        "ConfigError",
        "Document",
        "DocumentNotFound",
        "DuplicateDocument",
        "Filter",
        "Hit",
        "IndexNotReady",
        "InvalidInput",
        "KBError",
        "NotFound",
        "QueryError",
        "Settings",
        "detect_lang",
        "read_documents",
    ]
    for name in kb.__all__:
        assert getattr(kb, name) is not None


BANNED = {
    "kb": {"api", "ingest", "eval", "fastapi"},
    "ingest": {"api", "eval", "fastapi"},
    "eval": {"api"},
    "kb/search/sparse.py": {"sqlalchemy", "torch", "sentence_transformers"},
    "kb/search/fusion.py": {"sqlalchemy", "torch", "faiss"},
}


@pytest.mark.parametrize("target, banned", BANNED.items())
def test_import_boundaries(target: str, banned: set[str]) -> None:
    base = ROOT / target
    for path in [base] if target.endswith(".py") else base.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import | ast.ImportFrom) and getattr(node, "level", 0) == 0:
                names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
                assert not {n.split(".")[0] for n in names} & banned, f"{path}: {names}"


def test_importing_the_core_does_not_load_torch() -> None:
    code = "import sys, kb, kb.search.engine, kb.cli; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == "False"
