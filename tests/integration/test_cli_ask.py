"""``kb ask`` over a database with the sample knowledge base: a cited answer (text and JSON), an abstention, and a
usage error for an empty question; the customer default never cites an internal article."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from kb.articles import Variant, create_article
from kb.cli_db import open_database
from kb.config import Settings
from kb.lifecycle import ArticleState, Audience, Confidence

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
INTERNAL = "KB-INT-ASK1"


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    tmp = tmp_path_factory.mktemp("ask")
    env = {
        **os.environ,
        "KB_INDEX_DIR": str(tmp / "index"),
        "KB_DATABASE_URL": f"sqlite:///{tmp / 'kb.db'}",
        "HF_HUB_OFFLINE": "1",
    }
    run = [sys.executable, "-m", "kb.cli"]
    subprocess.run([*run, "db", "upgrade"], env=env, cwd=ROOT, check=True, capture_output=True, timeout=300)
    corpus = str(ROOT / "data" / "samples" / "corpus.jsonl")
    ingest = ["ingest", "articles", corpus, "--confidence", "validated", "--audience", "public", "-q", "--no-embed"]
    out = subprocess.run([*run, *ingest], env=env, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    settings = Settings(database_url=env["KB_DATABASE_URL"], index_dir=tmp / "index")
    engine, factory = open_database(settings)
    with factory.begin() as session:  # an internal article that matches the question better than any other
        create_article(
            session,
            None,
            zh=Variant(
                "打印机脱机 内部处理 zqaskinternal", symptom="打印机总是显示脱机", resolution="1. zqaskinternal 步骤"
            ),
            article_id=INTERNAL,
            state=ArticleState(Confidence.VALIDATED, Audience.INTERNAL),
        )
    engine.dispose()
    return env


def ask(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "kb.cli", "ask", *args, "--no-embed"]
    return subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=300)


def test_ask_prints_a_cited_answer(db: dict[str, str]) -> None:
    out = ask(db, "打印机总是显示脱机，怎么办？")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert "sources:" in lines
    answer_lines = lines[: lines.index("sources:")]
    assert answer_lines and all(line.rstrip().endswith("]") for line in answer_lines)  # every sentence cited
    assert "zqaskinternal" not in out.stdout and INTERNAL not in out.stdout


def test_ask_json_and_the_engineer_sees_internal(db: dict[str, str]) -> None:
    customer = json.loads(ask(db, "打印机总是显示脱机，怎么办？", "--json").stdout)
    assert customer["status"] == "answered"
    assert all(c["ref"] != INTERNAL for c in customer["citations"])
    assert all(s["cites"] for s in customer["sentences"])
    engineer = json.loads(ask(db, "打印机脱机 内部处理 zqaskinternal", "--json", "--role", "engineer").stdout)
    assert [c["ref"] for c in engineer["citations"]] == [INTERNAL]


def test_ask_abstains_and_rejects_empty_questions(db: dict[str, str]) -> None:
    out = json.loads(ask(db, "What is the capital of France?", "--json").stdout)
    assert out["status"] == "abstained" and out["sentences"] == []
    assert out["actions"][0]["type"] == "open_case"
    empty = ask(db, "  ")
    assert empty.returncode == 1
    assert "ask a question first" in empty.stderr
