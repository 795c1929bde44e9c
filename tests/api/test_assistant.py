"""The assistant over HTTP (extractive generator, fake embedder): cited answers that name the exact article version,
the question's language, abstention with the closest articles and an "open a case" action, request validation, the
SSE stream, and engineer mode (an internal article's steps never reach the draft customer reply)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest

from kb.articles import Variant, create_article, edit_article
from kb.cli_db import open_database
from kb.lifecycle import ArticleState, Audience, Confidence, Role
from kb.models import Article
from tests.api.conftest import Env, make_env
from tests.fakes import HashEmbedder

pytestmark = pytest.mark.integration

ANSWER = "/api/v1/assistant/answer"
STREAM = "/api/v1/assistant/stream"
INTERNAL_MARKER = "zqinternalstep91"

ZEBRA_EN = Variant(
    "Zebra ZT410 label printer prints blank labels",
    symptom="The Zebra ZT410 label printer feeds blank labels after the ribbon was replaced.",
    cause="The ribbon was loaded ink side in, so no ink reaches the labels.",
    resolution="1. Open the printhead and reload the ribbon ink side out.\n2. Run the media calibration.\n"
    "3. Print a configuration label to confirm.",
)
ZEBRA_ZH = Variant(
    "斑马 ZT410 标签打印机打印空白标签",
    symptom="更换碳带后，斑马 ZT410 标签打印机打印出空白标签。",
    cause="碳带装反，墨面朝内，墨无法转印到标签上。",
    resolution="1. 打开打印头，将碳带墨面朝外重新安装。\n2. 执行介质校准。\n3. 打印配置标签确认。",
)
KERBEROS_EN = Variant(
    "Kerberos error KRB_AP_ERR_MODIFIED on the file server after the service account password change",
    symptom="Users get KRB_AP_ERR_MODIFIED when they open shares on the file server FS01.",
    cause="The SPN cifs/FS01 is registered on the old service account, so tickets are encrypted with the wrong key.",
    resolution="1. Run setspn -Q cifs/FS01 to find the duplicate SPN.\n2. Remove the SPN from the old account.\n"
    "3. Run klist purge on the client and open the share again.",
)
INTERNAL_ZH = Variant(
    "斑马 ZT410 标签打印机 内部处理",
    symptom="斑马 ZT410 标签打印机打印空白标签（内部）。",
    resolution=f"1. 登录打印服务器执行内部脚本 {INTERNAL_MARKER}。\n2. 在内部工单系统中记录。",
)


def plant(env: Env) -> dict[str, Any]:
    """A bilingual public article (edited once: version 2), an English-only public one and an internal one."""
    _, factory = open_database(env.settings)
    public = ArticleState(Confidence.VALIDATED, Audience.PUBLIC)
    with factory.begin() as s:
        zebra = create_article(s, env.user_ids["reviewer"], zh=ZEBRA_ZH, en=ZEBRA_EN, state=public)
        kerberos = create_article(s, env.user_ids["reviewer"], en=KERBEROS_EN, state=public)
        internal = create_article(
            s,
            env.user_ids["reviewer"],
            zh=INTERNAL_ZH,
            state=ArticleState(Confidence.VALIDATED, Audience.INTERNAL),
        )
        s.flush()
        edited_en = replace(ZEBRA_EN, resolution=ZEBRA_EN.resolution + " Done.")
        edited_zh = replace(ZEBRA_ZH, resolution=ZEBRA_ZH.resolution + "完成。")
        edit_article(
            s,
            zebra.id,
            Role.REVIEWER,
            {"en": edited_en, "zh": edited_zh},
            expected_version=s.get_one(Article, zebra.id).version_id,
        )
        ids = {"zebra": zebra.id, "kerberos": kerberos.id, "internal": internal.id}
    env.app.state.live.refresh(force=True)
    return ids


@pytest.fixture(scope="module")
def planted(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Env, dict[str, Any]]]:
    gen = make_env(tmp_path_factory.mktemp("assistant"), embedder=HashEmbedder())
    env = next(gen)
    yield env, plant(env)
    next(gen, None)  # the app's shutdown


def ask(env: Env, question: str, who: str = "customer", **extra: Any) -> dict[str, Any]:
    r = env.client.post(ANSWER, json={"question": question, **extra}, headers=env.headers(who))
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


def sse(text: str) -> list[tuple[str, dict[str, Any]]]:
    """(event, data) of a Server-Sent Events body."""
    events = []
    for block in text.strip().split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.splitlines() if ": " in line)
        events.append((fields["event"], json.loads(fields["data"])))
    return events


def assert_well_cited(answer: dict[str, Any]) -> None:
    numbers = {c["n"] for c in answer["citations"]}
    assert numbers == set(range(1, len(numbers) + 1))
    assert answer["sentences"]
    for s in answer["sentences"]:
        assert s["cites"], s
        assert set(s["cites"]) <= numbers, s
    used = {n for s in answer["sentences"] for n in s["cites"]}
    assert used == numbers  # no citation without a sentence


def assert_current_versions(env: Env, answer: dict[str, Any], who: str = "customer") -> None:
    for c in answer["citations"]:
        if c["kind"] != "article":
            continue
        article = env.client.get(f"/api/v1/articles/{c['ref']}", headers=env.headers(who))
        assert article.status_code == 200, (c, article.text)
        assert c["version"] == article.json()["version"], c
        assert c["url"] == f"/articles/{c['ref']}"


# -- answers ----------------------------------------------------------------------------------------------------------


def test_assistant_answers_with_citations_of_the_current_version(planted: tuple[Env, dict[str, Any]]) -> None:
    env, ids = planted
    answer = ask(env, "Zebra ZT410 label printer prints blank labels after ribbon change")
    assert answer["status"] == "answered" and answer["lang"] == "en"
    assert answer["generator"] == "extractive" and answer["fallback"] == ""
    assert answer["citations"][0]["ref"] == ids["zebra"]
    assert answer["citations"][0]["version"] == 2
    assert_well_cited(answer)
    assert_current_versions(env, answer)
    assert "reload the ribbon ink side out" in answer["text"]
    assert answer["text"] == " ".join(s["text"] for s in answer["sentences"])


@pytest.mark.parametrize(
    "question",
    [
        "Windows Update fails with 0x80070005 access denied",
        "网卡驱动 rt640x64.sys 蓝屏 怎么办",
        "Outlook 无法连接 Exchange",
        "setspn duplicate SPN KRB_AP_ERR_MODIFIED",
    ],
)
def test_assistant_every_sentence_is_cited(planted: tuple[Env, dict[str, Any]], question: str) -> None:
    env, _ = planted
    answer = ask(env, question)
    assert answer["status"] == "answered", answer
    assert_well_cited(answer)
    assert_current_versions(env, answer)


def test_assistant_get_and_post_give_the_same_answer(planted: tuple[Env, dict[str, Any]]) -> None:
    env, _ = planted
    question = "Zebra ZT410 prints blank labels"
    got = env.client.get(ANSWER, params={"q": question}, headers=env.headers("customer"))
    assert got.status_code == 200
    assert got.json() == ask(env, question)


def test_assistant_chinese_question_answers_from_the_zh_variant(planted: tuple[Env, dict[str, Any]]) -> None:
    env, ids = planted
    answer = ask(env, "斑马 ZT410 标签打印机打印空白标签怎么办")
    assert answer["status"] == "answered" and answer["lang"] == "zh"
    assert answer["citations"][0]["ref"] == ids["zebra"] and answer["citations"][0]["lang"] == "zh"
    assert "碳带墨面朝外" in answer["text"]
    assert "ribbon" not in answer["text"].lower()
    assert not any("没有中文版本" in n for n in answer["notes"])
    assert_well_cited(answer)


def test_assistant_english_only_article_asked_in_chinese_says_so(planted: tuple[Env, dict[str, Any]]) -> None:
    env, ids = planted
    answer = ask(env, "文件服务器 FS01 报错 KRB_AP_ERR_MODIFIED 怎么办")
    assert answer["status"] == "answered" and answer["lang"] == "zh"
    assert answer["citations"][0]["ref"] == ids["kerberos"] and answer["citations"][0]["lang"] == "en"
    assert any(ids["kerberos"] in n and "没有中文版本" in n for n in answer["notes"]), answer["notes"]
    assert "setspn" in answer["text"]


@pytest.mark.parametrize(
    ("question", "lang"),
    [
        ("How many days of annual leave do I get?", "en"),
        ("What is the capital of France?", "en"),
        ("我每年有几天年假？", "zh"),
    ],
)
def test_assistant_abstains_when_the_knowledge_base_does_not_know(
    planted: tuple[Env, dict[str, Any]], question: str, lang: str
) -> None:
    env, _ = planted
    answer = ask(env, question)
    assert answer["status"] == "abstained", answer["text"]
    assert answer["lang"] == lang
    assert answer["sentences"] == [] and answer["citations"] == [] and answer["text"] == ""
    assert 1 <= len(answer["closest"]) <= 3
    for c in answer["closest"]:
        assert c["url"] == f"/articles/{c['ref']}" and c["version"] >= 1
    [action] = answer["actions"]
    assert action["type"] == "open_case"
    assert action["url"].startswith("/cases/new?subject=")
    assert "annual" in action["url"] or "capital" in action["url"] or "%E5%B9%B4" in action["url"]
    assert answer["notes"]


def test_assistant_never_cites_an_internal_article_to_a_customer(planted: tuple[Env, dict[str, Any]]) -> None:
    env, ids = planted
    probe = f"登录打印服务器执行内部脚本 {INTERNAL_MARKER}"
    for question in (probe, INTERNAL_MARKER, "斑马 ZT410 标签打印机 内部处理"):
        answer = ask(env, question)
        shown = {k: answer[k] for k in ("text", "sentences", "citations", "closest", "notes")}  # not the echo
        assert INTERNAL_MARKER not in json.dumps(shown, ensure_ascii=False)
        refs = {c["ref"] for c in answer["citations"]} | {c["ref"] for c in answer["closest"]}
        assert ids["internal"] not in refs
    staff = ask(env, probe, who="engineer")
    assert ids["internal"] in {c["ref"] for c in staff["citations"]}  # the same question does find it for staff


# -- validation -------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        {"question": ""},
        {"question": "x" * 1001},
        {},
        {"question": "printer", "k": 5},
        {"question": "printer", "generator": "gpt"},
        {"question": "printer", "mode": "vector"},
        {"question": 42},
    ],
)
def test_assistant_rejects_invalid_bodies(planted: tuple[Env, dict[str, Any]], body: dict[str, Any]) -> None:
    env, _ = planted
    for path in (ANSWER, STREAM):
        r = env.client.post(path, json=body, headers=env.headers("customer"))
        assert r.status_code == 422, (path, body, r.text[:200])


def test_assistant_rejects_invalid_queries(planted: tuple[Env, dict[str, Any]]) -> None:
    env, _ = planted
    h = env.headers("customer")
    assert env.client.get(ANSWER, params={"q": ""}, headers=h).status_code == 422
    assert env.client.get(ANSWER, params={"q": "x" * 1001}, headers=h).status_code == 422
    assert env.client.get(ANSWER, headers=h).status_code == 422
    assert env.client.post(ANSWER, json={"question": "printer"}).status_code == 401


def test_assistant_one_character_question_is_a_client_error(planted: tuple[Env, dict[str, Any]]) -> None:
    env, _ = planted
    r = env.client.post(ANSWER, json={"question": "  ?  "}, headers=env.headers("customer"))
    assert 400 <= r.status_code < 500, r.text


# -- stream -----------------------------------------------------------------------------------------------------------


def test_assistant_stream_sends_start_sentences_and_the_answer(planted: tuple[Env, dict[str, Any]]) -> None:
    env, ids = planted
    question = "Zebra ZT410 label printer prints blank labels"
    r = env.client.post(STREAM, json={"question": question}, headers=env.headers("customer"))
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/event-stream")
    assert r.headers["cache-control"] == "no-store"
    events = sse(r.text)
    names = [e for e, _ in events]
    assert names[0] == "start" and names[-1] == "answer"
    assert set(names[1:-1]) == {"sentence"}
    start, final = events[0][1], events[-1][1]
    assert start["lang"] == "en" and ids["zebra"] in [s["ref"] for s in start["sources"]]
    sentences = [d for e, d in events if e == "sentence"]
    assert [(s["text"], s["cites"]) for s in sentences] == [(s["text"], s["cites"]) for s in final["sentences"]]
    assert final == ask(env, question)


def test_assistant_stream_abstains_too(planted: tuple[Env, dict[str, Any]]) -> None:
    env, _ = planted
    r = env.client.post(STREAM, json={"question": "What is the capital of France?"}, headers=env.headers("customer"))
    events = sse(r.text)
    assert [e for e, _ in events] == ["start", "answer"]
    assert events[-1][1]["status"] == "abstained"


# -- engineer mode ----------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def case_id(planted: tuple[Env, dict[str, Any]]) -> int:
    """A customer's case about the Zebra printer, with the internal article linked by an engineer."""
    env, ids = planted
    r = env.client.post(
        "/api/v1/cases",
        json={
            "subject": "斑马 ZT410 标签打印机打印空白标签",
            "description": "更换碳带后标签全是空白。打印机型号 ZT410。",
            "product": "printing",
            "priority": "p3",
            "contact_name": "王工",
        },
        headers=env.headers("customer"),
    )
    assert r.status_code == 201, r.text
    cid = int(r.json()["id"])
    link = env.client.post(
        f"/api/v1/cases/{cid}/links",
        json={"article_id": ids["internal"], "relation": "related"},
        headers=env.headers("engineer"),
    )
    assert link.status_code == 201, link.text
    return cid


def test_assistant_engineer_mode_is_cited_throughout(planted: tuple[Env, dict[str, Any]], case_id: int) -> None:
    env, _ = planted
    r = env.client.get(f"/api/v1/cases/{case_id}/assist", headers=env.headers("engineer"))
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["case_id"] == case_id and out["lang"] == "zh"
    numbers = {c["n"] for c in out["citations"]}
    assert numbers == set(range(1, len(numbers) + 1))
    parts = out["summary"] + out["next_steps"] + out["reply"] + [s["sentence"] for s in out["similar"]]
    for s in parts:
        assert s["cites"] and set(s["cites"]) <= numbers, s
    assert out["summary"] and out["next_steps"] and out["reply"]
    by_n = {c["n"]: c for c in out["citations"]}
    assert by_n[out["summary"][0]["cites"][0]]["ref"] == f"case:{case_id}"
    for c in out["citations"]:
        if c["kind"] == "article":
            assert_current_versions(env, {"citations": [c]}, who="engineer")


def test_assistant_engineer_reply_never_quotes_an_internal_article(
    planted: tuple[Env, dict[str, Any]], case_id: int
) -> None:
    env, ids = planted
    out = env.client.get(f"/api/v1/cases/{case_id}/assist", headers=env.headers("engineer")).json()
    by_n = {c["n"]: c for c in out["citations"]}
    assert INTERNAL_MARKER in " ".join(s["text"] for s in out["next_steps"])  # the engineer does get its steps
    reply = " ".join(s["text"] for s in out["reply"])
    assert INTERNAL_MARKER not in reply
    assert ids["internal"] not in {by_n[n]["ref"] for s in out["reply"] for n in s["cites"]}
    assert "碳带墨面朝外" in reply  # the public article's steps, in the case's language
    assert ids["zebra"] in {by_n[n]["ref"] for s in out["reply"] for n in s["cites"]}


def test_assistant_engineer_mode_is_staff_only(planted: tuple[Env, dict[str, Any]], case_id: int) -> None:
    env, _ = planted
    r = env.client.get(f"/api/v1/cases/{case_id}/assist", headers=env.headers("customer"))
    assert r.status_code == 403
    assert INTERNAL_MARKER not in r.text
    assert env.client.get(f"/api/v1/cases/{case_id}/assist").status_code == 401
    missing = env.client.get("/api/v1/cases/999999/assist", headers=env.headers("engineer"))
    assert missing.status_code == 404
    assert re.search(r"999999", missing.text)
