"""An app over a fresh SQLite database with the sample knowledge base (a slice), users of every role, and a
fake embedder (fast); tests that need the real model build their own app."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api.main import create_app
from kb.article_io import ArticleRecord, read_articles
from kb.articles import create_article
from kb.cli_db import open_database
from kb.cli_users import upsert_user
from kb.config import Settings
from kb.lifecycle import ArticleState, Audience, Confidence
from tests.fakes import HashEmbedder

ROOT = Path(__file__).resolve().parents[2]
PASSWORD = "correct-horse-battery"
USERS: dict[str, dict[str, Any]] = {
    "admin": {"role": "admin"},
    "engineer": {"role": "engineer"},
    "author": {"role": "author"},
    "reviewer": {"role": "reviewer"},
    "coach": {"role": "coach"},
    "partner": {"role": "partner", "org": "Partner Co"},
    "customer": {"role": "customer", "org": "ACME 有限公司"},
    "other_customer": {"role": "customer", "org": "Globex Ltd"},
}


@dataclass
class Env:
    app: Any
    client: TestClient
    settings: Settings
    tokens: dict[str, str]
    user_ids: dict[str, int]
    org_ids: dict[str, int]

    def headers(self, who: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[who]}"} if who in self.tokens else {}


def seed(settings: Settings, n_articles: int = 60) -> tuple[dict[str, int], dict[str, int]]:
    """Users of every role and the first ``n_articles`` sample articles (validated, public) in a new database."""
    engine, factory = open_database(settings)
    user_ids: dict[str, int] = {}
    org_ids: dict[str, int] = {}
    with factory.begin() as session:
        for who, spec in USERS.items():
            user, _ = upsert_user(session, {**spec, "email": f"{who}@test.example", "password": PASSWORD, "name": who})
            user_ids[who] = user.id
            if user.org_id:
                org_ids[who] = user.org_id
        records = [r for _, r in read_articles(ROOT / "data" / "samples" / "corpus.jsonl")][:n_articles]
        for rec in records:
            assert isinstance(rec, ArticleRecord)
            create_article(
                session,
                user_ids["reviewer"],
                zh=rec.variants.get("zh"),
                en=rec.variants.get("en"),
                keywords=rec.keywords,
                article_id=rec.article_id,
                products=rec.products,
                error_codes=rec.error_codes,
                state=ArticleState(Confidence.VALIDATED, Audience.PUBLIC),
            )
    engine.dispose()
    return user_ids, org_ids


def make_env(tmp_path: Path, *, embedder: Any = None, n_articles: int = 60, **overrides: Any) -> Iterator[Env]:
    settings = Settings(
        index_dir=tmp_path / "index",
        database_url=f"sqlite:///{tmp_path / 'kb.db'}",
        cache_dir=tmp_path / "cache",
        refresh_interval_ms=100,
        **overrides,
    )
    user_ids, org_ids = seed(settings, n_articles)
    app = create_app(settings, embedder=embedder)
    with TestClient(app) as client:
        tokens = {}
        for who in USERS:
            r = client.post("/api/v1/auth/token", json={"email": f"{who}@test.example", "password": PASSWORD})
            assert r.status_code == 200, r.text
            tokens[who] = r.json()["access_token"]
        client.cookies.clear()
        yield Env(app, client, settings, tokens, user_ids, org_ids)


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    """One app per test module (start-up costs ~4 s: analyzer, index, argon2); tests must not depend on
    each other's writes."""
    yield from make_env(tmp_path_factory.mktemp("api"), embedder=HashEmbedder())
