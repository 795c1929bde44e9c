"""``kb ingest``, ``kb articles`` and ``kb db`` in a subprocess, as a user runs them (BM25 only: fast)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
SAMPLES = ROOT / "data" / "samples"


def kb(*args: str, home: Path, db: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "KB_INDEX_DIR": str(home / "index"),
        "KB_DATABASE_URL": db or f"sqlite:///{home / 'kb.db'}",
        "HF_HUB_OFFLINE": "1",
    }
    cmd = [sys.executable, "-m", "kb.cli", *args]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=home, timeout=900)


@pytest.mark.parametrize(
    "args",
    [["db"], ["db", "upgrade"], ["db", "current"], ["index", "sync"], ["index", "rebuild"], ["articles"],
     ["articles", "export"], ["articles", "import"], ["ingest"], ["ingest", "cases"], ["ingest", "articles"]],
)  # fmt: skip
def test_cli_database_subcommands_have_help(args: list[str], tmp_path: Path) -> None:
    out = kb(*args, "--help", home=tmp_path)
    assert out.returncode == 0 and "usage: kb" in out.stdout


def test_cli_ingest_report_and_round_trip(tmp_path: Path) -> None:
    articles = (SAMPLES / "corpus.jsonl").read_text(encoding="utf-8").splitlines()[:40]
    (tmp_path / "articles.jsonl").write_text("\n".join(articles) + "\n", encoding="utf-8")
    out = kb("ingest", "articles", "articles.jsonl", "--no-embed", "-q", "--json", "--audience", "public",
             home=tmp_path)  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == {"read": 40, "created": 40, "merged": 0, "linked": 0, "skipped": 0, "failed": []}
    cases = (SAMPLES / "cases.jsonl").read_text(encoding="utf-8").splitlines()[:10]
    bad = json.dumps({"id": "BAD-1", "subject": "x", "description": "y", "created_at": "not a date"})
    (tmp_path / "cases.jsonl").write_text("\n".join([*cases[:5], "{broken", bad, *cases[5:]]) + "\n", "utf-8")
    out = kb("ingest", "cases", "cases.jsonl", "--no-embed", "-q", "--json", home=tmp_path)
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert list(report) == ["read", "created", "merged", "linked", "skipped", "failed"]
    assert report["read"] == 12 and report["created"] + report["merged"] + report["linked"] == 10
    assert [(f["record"], f["line"]) for f in report["failed"]] == [(None, 6), ("BAD-1", 7)]
    assert "created_at" in report["failed"][1]["error"]
    again = json.loads(kb("ingest", "cases", "cases.jsonl", "--no-embed", "-q", "--json", home=tmp_path).stdout)
    assert (again["skipped"], again["created"], len(again["failed"])) == (10, 0, 2)

    exported = kb("articles", "export", home=tmp_path)
    lines = [json.loads(line) for line in exported.stdout.splitlines()]
    assert exported.returncode == 0 and len(lines) == 40 + report["created"]
    validated = kb("articles", "export", "--state", "validated", home=tmp_path).stdout.splitlines()
    assert len(validated) == 40 and all(json.loads(v)["confidence"] == "validated" for v in validated)
    (tmp_path / "export.jsonl").write_text(exported.stdout, encoding="utf-8")
    other = f"sqlite:///{tmp_path / 'other.db'}"
    imported = kb("articles", "import", "export.jsonl", "--json", home=tmp_path, db=other)
    assert imported.returncode == 0, imported.stderr
    assert json.loads(imported.stdout)["created"] == len(lines)
    assert _same_content(kb("articles", "export", home=tmp_path, db=other).stdout, exported.stdout)

    found = kb("search", "Outlook 0x800CCC0E", "--mode", "bm25", "--json", home=tmp_path)
    assert found.returncode == 0 and json.loads(found.stdout)["hits"], found.stderr
    assert kb("db", "current", home=tmp_path).returncode == 0


def _same_content(a: str, b: str) -> bool:
    def strip(text: str) -> list[dict[str, object]]:
        return [
            {k: v for k, v in json.loads(x).items() if k not in ("created_at", "updated_at", "version")}
            for x in text.splitlines()
        ]

    return strip(a) == strip(b)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["ingest", "cases", "missing.jsonl"], "missing.jsonl"),
        (["ingest", "cases", "cases.txt"], "unknown source format"),
        (["ingest", "articles", "nowhere"], "no such file or directory"),
        (["articles", "import", "missing.jsonl"], "cannot read"),
    ],
)
def test_cli_unusable_source_fails_cleanly(args: list[str], message: str, tmp_path: Path) -> None:
    (tmp_path / "cases.txt").write_text("x", encoding="utf-8")
    out = kb(*args, "--no-embed", home=tmp_path) if args[0] == "ingest" else kb(*args, home=tmp_path)
    assert out.returncode == 1
    assert out.stderr.startswith("kb: error:") and message in out.stderr
    assert "Traceback" not in out.stderr
