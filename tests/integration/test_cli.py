"""The ``kb`` command in a subprocess, as a user runs it."""

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


def kb(*args: str, index: Path, check: bool = False) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "KB_INDEX_DIR": str(index), "HF_HUB_OFFLINE": "1"}
    cmd = [sys.executable, "-m", "kb.cli", *args]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT, check=check, timeout=600)


@pytest.mark.parametrize(
    "args",
    [
        [],
        ["index"],
        ["index", "build"],
        ["index", "add"],
        ["index", "delete"],
        ["index", "info"],
        ["search"],
        ["analyze"],
    ],
)
def test_cli_every_subcommand_has_help(args: list[str], tmp_path: Path) -> None:
    out = kb(*args, "--help", index=tmp_path)
    assert out.returncode == 0
    assert "usage: kb" in out.stdout


def test_cli_bm25_index_lifecycle(tmp_path: Path) -> None:
    index = tmp_path / "index"
    built = kb("index", "build", str(SAMPLES), "--no-embed", "-q", index=index, check=True)
    assert "indexed 210 documents" in built.stdout
    found = json.loads(kb("search", "０x８００ＣＣＣ０Ｅ outlook", "--json", index=index, check=True).stdout)
    assert found["mode"] == "bm25" and found["hits"][0]["doc_id"] == "KB-OUTL-0001"
    assert "bm25" in found["hits"][0]["signals"]
    only_printers = json.loads(
        kb("search", "driver", "--product", "printers", "-k", "50", "--json", index=index, check=True).stdout
    )
    assert only_printers["hits"] and all(h["doc_id"].startswith("KB-PRN-") for h in only_printers["hits"])

    new = tmp_path / "new.jsonl"
    new.write_text(
        json.dumps(
            {
                "id": "KB-NEW-1",
                "title": "Zorblax gateway timeout",
                "lang": "en",
                "text": "The zorblax gateway returns 504 after 30 seconds.",
            }
        )
        + "\n",
        encoding="utf-8",
    )
    kb("index", "add", str(new), "-q", index=index, check=True)
    assert (
        json.loads(kb("search", "zorblax", "--json", index=index, check=True).stdout)["hits"][0]["doc_id"] == "KB-NEW-1"
    )
    kb("index", "delete", "KB-NEW-1", "KB-OUTL-0001", index=index, check=True)
    after = json.loads(kb("search", "zorblax 0x800ccc0e", "-k", "100", "--json", index=index, check=True).stdout)
    assert not {"KB-NEW-1", "KB-OUTL-0001"} & {h["doc_id"] for h in after["hits"]}
    info = json.loads(kb("index", "info", "--verify", index=index, check=True).stdout)
    assert info["verified"] and info["counts"]["live"] == 209


def test_cli_bad_input_is_a_clear_error(tmp_path: Path) -> None:
    index = tmp_path / "index"
    missing = kb("index", "build", str(tmp_path / "nope.jsonl"), "--no-embed", index=index)
    assert missing.returncode == 1 and "kb: error:" in missing.stderr and "Traceback" not in missing.stderr
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "a", "text": "ok"}\n{"id": "b", "text": \n', encoding="utf-8")
    broken = kb("index", "build", str(bad), "--no-embed", index=index)
    assert broken.returncode == 1 and "bad.jsonl:2" in broken.stderr
    assert not (index / "CURRENT").exists()  # nothing half-written
    no_index = kb("search", "printer", index=index)
    assert no_index.returncode == 1 and "kb index build" in no_index.stderr
    assert kb("search", "x", "-k", "0", index=index).returncode == 2
    assert kb("search", "   ", index=index).returncode == 1
    assert kb("index", "delete", "nope", index=index).returncode == 1


def test_cli_rebuilds_a_corrupt_index(tmp_path: Path) -> None:
    index = tmp_path / "index"
    kb("index", "build", str(SAMPLES), "--no-embed", "-q", index=index, check=True)
    gen = index / (index / "CURRENT").read_text().strip()
    (gen / "gloss" / "weights.npy").write_bytes(b"garbage")
    out = kb("search", "printer offline", "--json", index=index, check=True)
    assert "rebuilding" in out.stderr
    assert json.loads(out.stdout)["hits"]
