"""ChatClient against a real HTTP server on 127.0.0.1 (tests/fake_openai.py): real sockets, real timeouts."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from kb.assistant.llm import ChatClient, LLMConfig, LLMError
from kb.errors import KBError
from tests.fake_openai import FakeOpenAI, Reply

MESSAGES = [
    {"role": "system", "content": "Answer from the sources."},
    {"role": "user", "content": "打印机脱机怎么办? printer offline"},
]
TEXT = "Restart the print spooler, then clear the queue. 重启打印后台服务。"
KEY = "sk-test-0123456789-secret"


@pytest.fixture
def fake() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as server:
        yield server


def make_client(fake: FakeOpenAI, **overrides: Any) -> ChatClient:
    settings: dict[str, Any] = {"base_url": fake.base_url, "model": "test-model", "timeout_s": 1.0, "max_retries": 1}
    settings.update(overrides)
    return ChatClient(LLMConfig(**settings))


def collect(client: ChatClient) -> list[str]:
    return list(client.stream(MESSAGES))


# -- success ------------------------------------------------------------------------------------------------------


def test_llm_complete_returns_the_message_content(fake: FakeOpenAI) -> None:
    fake.script(Reply.ok(TEXT))
    with make_client(fake) as client:
        assert client.complete(MESSAGES) == TEXT
    [request] = fake.requests
    assert (request.method, request.path) == ("POST", "/v1/chat/completions")
    assert request.body["stream"] is False
    assert request.body["messages"] == MESSAGES


def test_llm_stream_yields_several_pieces_that_join_to_the_text(fake: FakeOpenAI) -> None:
    fake.script(Reply.ok(TEXT, chunks=5))
    with make_client(fake) as client:
        pieces = collect(client)
    assert len(pieces) == 5
    assert "".join(pieces) == TEXT
    assert fake.requests[0].body["stream"] is True


def test_llm_sends_model_max_tokens_and_temperature(fake: FakeOpenAI) -> None:
    with make_client(fake, model="qwen2.5-7b", max_tokens=77, temperature=0.3) as client:
        client.complete(MESSAGES)
        collect(client)
    for request in fake.requests:
        assert request.body["model"] == "qwen2.5-7b"
        assert request.body["max_tokens"] == 77
        assert request.body["temperature"] == 0.3
        assert request.headers["content-type"] == "application/json"
    assert [r.body["stream"] for r in fake.requests] == [False, True]


def test_llm_authorization_header_is_sent_only_with_a_key(fake: FakeOpenAI) -> None:
    with make_client(fake, api_key=KEY) as client:
        client.complete(MESSAGES)
        collect(client)
    with make_client(fake) as client:
        client.complete(MESSAGES)
    assert [r.headers.get("authorization") for r in fake.requests] == [f"Bearer {KEY}", f"Bearer {KEY}", None]


def test_llm_responder_computes_the_reply_from_the_request(fake: FakeOpenAI) -> None:
    fake.responder = lambda body: "echo: " + body["messages"][-1]["content"]
    with make_client(fake) as client:
        assert client.complete(MESSAGES) == "echo: " + MESSAGES[-1]["content"]
        assert "".join(collect(client)) == "echo: " + MESSAGES[-1]["content"]


def test_llm_stream_accepts_a_json_answer_when_the_server_ignores_stream(fake: FakeOpenAI) -> None:
    fake.script(Reply(text=TEXT, ignore_stream=True))
    with make_client(fake) as client:
        assert collect(client) == [TEXT]


@pytest.mark.parametrize("done, finish", [(True, False), (False, True)])
def test_llm_stream_needs_only_one_of_done_or_finish_reason(fake: FakeOpenAI, done: bool, finish: bool) -> None:
    fake.script(Reply(text=TEXT, done=done, finish=finish))
    with make_client(fake) as client:
        assert "".join(collect(client)) == TEXT


def test_llm_one_client_is_shared_by_threads(fake: FakeOpenAI) -> None:
    fake.responder = lambda body: "answer to " + body["messages"][-1]["content"]
    results: dict[int, str] = {}
    with make_client(fake, timeout_s=5.0) as client:

        def ask(i: int) -> None:
            results[i] = client.complete([{"role": "user", "content": f"q{i}"}])

        threads = [threading.Thread(target=ask, args=(i,)) for i in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=10)
    assert results == {i: f"answer to q{i}" for i in range(6)}


# -- output length ------------------------------------------------------------------------------------------------


def test_llm_output_is_cut_at_max_output_chars(fake: FakeOpenAI) -> None:
    text = "".join(chr(ord("a") + i % 26) for i in range(100))
    fake.script(Reply.ok(text), Reply.ok(text, chunks=10))
    with make_client(fake, max_output_chars=25) as client:
        assert client.complete(MESSAGES) == text[:25]
        pieces = collect(client)
    assert pieces == [text[:10], text[10:20], text[20:25]]  # the third piece is cut, the other seven never read


# -- deadlines ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("streaming", [False, True])
def test_llm_times_out_when_the_server_hangs_before_headers(fake: FakeOpenAI, streaming: bool) -> None:
    fake.script(Reply.hang(10))
    start = time.monotonic()
    with make_client(fake, timeout_s=0.5) as client, pytest.raises(LLMError, match=r"timed out after 0\.5 s"):
        collect(client) if streaming else client.complete(MESSAGES)
    assert time.monotonic() - start < 1.5
    assert fake.request_count == 1  # a timeout is not retried: the deadline is spent


def test_llm_trickling_stream_is_stopped_by_the_total_deadline(fake: FakeOpenAI) -> None:
    fake.script(Reply(text="tick " * 200, chunks=200, delay_s=0.05))  # 10 s of pieces, each in time
    got: list[str] = []
    start = time.monotonic()
    with make_client(fake, timeout_s=0.6) as client, pytest.raises(LLMError, match="timed out after 0.6 s"):
        for piece in client.stream(MESSAGES):
            got.append(piece)
    assert time.monotonic() - start < 1.6
    assert 2 <= len(got) < 200


@pytest.mark.parametrize("unit", [b":", b": keep-alive\n\n"], ids=["bytes-without-newline", "comments"])
def test_llm_stream_of_bytes_without_content_is_stopped_by_the_deadline(fake: FakeOpenAI, unit: bytes) -> None:
    fake.script(Reply(trickle=unit, delay_s=0.05, trickle_count=400))
    start = time.monotonic()
    with make_client(fake, timeout_s=0.5) as client, pytest.raises(LLMError, match="timed out"):
        collect(client)
    assert time.monotonic() - start < 1.5


def test_llm_stream_closed_early_by_the_caller_returns_promptly(fake: FakeOpenAI) -> None:
    fake.script(Reply(text="tick " * 100, chunks=100, delay_s=0.05))
    start = time.monotonic()
    with make_client(fake, timeout_s=5.0) as client:
        stream = client.stream(MESSAGES)
        first = next(stream)
        stream.close()  # type: ignore[attr-defined]
    assert first == "tick "
    assert time.monotonic() - start < 1.0


# -- HTTP errors and retries --------------------------------------------------------------------------------------


@pytest.mark.parametrize("streaming", [False, True])
@pytest.mark.parametrize("status", [500, 503, 429])
def test_llm_retryable_status_fails_after_all_retries(fake: FakeOpenAI, streaming: bool, status: int) -> None:
    fake.script(*[Reply.error(status, "overloaded")] * 3)
    with make_client(fake, max_retries=2, timeout_s=3.0) as client, pytest.raises(LLMError) as info:
        collect(client) if streaming else client.complete(MESSAGES)
    assert fake.request_count == 3
    assert info.value.status == status
    assert str(info.value) == f"HTTP {status} from the generator: overloaded"


@pytest.mark.parametrize("streaming", [False, True])
@pytest.mark.parametrize("status", [500, 429])
def test_llm_retry_after_a_retryable_status_succeeds(fake: FakeOpenAI, streaming: bool, status: int) -> None:
    fake.script(Reply.error(status), Reply.ok(TEXT))
    with make_client(fake, max_retries=1) as client:
        answer = "".join(collect(client)) if streaming else client.complete(MESSAGES)
    assert answer == TEXT
    assert fake.request_count == 2


def test_llm_no_retries_means_one_request(fake: FakeOpenAI) -> None:
    fake.script(Reply.error(500), Reply.ok(TEXT))
    with make_client(fake, max_retries=0) as client, pytest.raises(LLMError, match="HTTP 500"):
        client.complete(MESSAGES)
    assert fake.request_count == 1


def test_llm_client_error_status_is_not_retried(fake: FakeOpenAI) -> None:
    fake.script(Reply.error(400, "maximum context length is 4096 tokens"), Reply.ok(TEXT))
    with make_client(fake, max_retries=2) as client, pytest.raises(LLMError) as info:
        client.complete(MESSAGES)
    assert fake.request_count == 1
    assert info.value.status == 400
    assert "maximum context length" in str(info.value)
    assert isinstance(info.value, KBError)


def test_llm_unreachable_server_fails_after_retries() -> None:
    with socket.socket() as s:  # a port nobody listens on (bound, then released)
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    config = LLMConfig(base_url=f"http://127.0.0.1:{port}/v1", model="m", timeout_s=2.0, max_retries=1)
    start = time.monotonic()
    with ChatClient(config) as client, pytest.raises(LLMError, match="cannot reach the generator") as info:
        client.complete(MESSAGES)
    assert info.value.status is None
    assert time.monotonic() - start < 2.0


def test_llm_error_in_the_middle_of_a_stream_is_not_retried(fake: FakeOpenAI) -> None:
    fake.script(Reply(text=TEXT, chunks=4, bad_event_after=2), Reply.ok(TEXT))
    got: list[str] = []
    with make_client(fake, max_retries=2) as client, pytest.raises(LLMError, match="not JSON"):
        for piece in client.stream(MESSAGES):
            got.append(piece)
    assert len(got) == 2
    assert fake.request_count == 1


# -- malformed and empty answers ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body, match",
    [
        (b"<html>bad gateway</html>", "malformed response: not JSON"),
        (b'{"choices": [{"message": {"content": "cut', "malformed response: not JSON"),
        (b'{"choices": []}', r"malformed response: no choices\[0\]\.message\.content"),
        (b'{"object": "chat.completion"}', "malformed response"),
        (b'{"choices": [{"message": {"content": 42}}]}', "not a string"),
        (b'{"error": {"message": "model not loaded"}}', "generator error: model not loaded"),
    ],
)
def test_llm_complete_rejects_malformed_bodies(fake: FakeOpenAI, body: bytes, match: str) -> None:
    fake.script(Reply.raw(body))
    with make_client(fake) as client, pytest.raises(LLMError, match=match):
        client.complete(MESSAGES)


@pytest.mark.parametrize(
    "body, match",
    [
        (b"data: {not json\n\n", "a stream event is not JSON"),
        (b'data: {"id": "x"}\n\n', "a stream event has no choices"),
        (b'data: {"error": {"message": "boom"}}\n\n', "generator error in stream: boom"),
        (b"data: [1, 2]\n\n", "not a JSON object"),
    ],
)
def test_llm_stream_rejects_malformed_events(fake: FakeOpenAI, body: bytes, match: str) -> None:
    fake.script(Reply.raw(body, content_type="text/event-stream"))
    with make_client(fake) as client, pytest.raises(LLMError, match=match):
        collect(client)


def test_llm_stream_bad_event_after_content_raises(fake: FakeOpenAI) -> None:
    fake.script(Reply(text=TEXT, chunks=3, bad_event_after=3))
    with make_client(fake) as client, pytest.raises(LLMError, match="malformed response"):
        collect(client)


def test_llm_stream_cut_without_done_or_finish_reason_raises(fake: FakeOpenAI) -> None:
    fake.script(Reply(text=TEXT, done=False, finish=False))
    got: list[str] = []
    with make_client(fake) as client, pytest.raises(LLMError, match="stream ended early"):
        for piece in client.stream(MESSAGES):
            got.append(piece)
    assert "".join(got) == TEXT  # the pieces came; the end did not


def test_llm_stream_of_multiline_data_and_crlf_is_parsed(fake: FakeOpenAI) -> None:
    body = (
        b'event: message\r\ndata: {"choices": [{"delta": {"content": "Hi"},\r\n'
        b'data:  "finish_reason": null}]}\r\n\r\n'
        b'data:{"choices":[{"delta":{"content":" there"},"finish_reason":"stop"}]}\r\n\r\n'
    )
    fake.script(Reply.raw(body, content_type="text/event-stream"))
    with make_client(fake) as client:
        assert collect(client) == ["Hi", " there"]


@pytest.mark.parametrize("text", ["", "   \n "])
def test_llm_empty_content_raises(fake: FakeOpenAI, text: str) -> None:
    fake.script(Reply.ok(text), Reply.ok(text))
    with make_client(fake) as client:
        with pytest.raises(LLMError, match="empty response"):
            client.complete(MESSAGES)
        with pytest.raises(LLMError, match="empty response"):
            collect(client)


def test_llm_null_content_raises_empty_response(fake: FakeOpenAI) -> None:
    fake.script(Reply.raw(b'{"choices": [{"message": {"role": "assistant", "content": null}}]}'))
    with make_client(fake) as client, pytest.raises(LLMError, match="empty response"):
        client.complete(MESSAGES)


# -- secrets ------------------------------------------------------------------------------------------------------


def test_llm_errors_and_repr_never_contain_the_api_key_or_the_prompt(fake: FakeOpenAI) -> None:
    fake.script(
        Reply.error(401, f"Incorrect API key provided: {KEY}"),
        Reply.raw(f'{{"error": {{"message": "bad key {KEY}"}}}}'.encode()),
        Reply.raw(f'data: {{"error": {{"message": "key {KEY}"}}}}\n\n'.encode(), content_type="text/event-stream"),
        Reply.hang(5),
        Reply.raw(b"nonsense"),
    )
    messages: list[str] = []
    with make_client(fake, api_key=KEY, timeout_s=0.5, max_retries=0) as client:
        for streaming in (False, False, True, False, False):
            with pytest.raises(LLMError) as info:
                collect(client) if streaming else client.complete(MESSAGES)
            messages.append(str(info.value))
        assert KEY not in repr(client.config)
    assert fake.request_count == 5
    assert messages[0] == "HTTP 401 from the generator: Incorrect API key provided: ***"
    for message in messages:
        assert KEY not in message
        assert "printer offline" not in message and "Answer from the sources" not in message


# -- configuration ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "overrides, match",
    [
        ({"base_url": "127.0.0.1:8001/v1"}, "base_url"),
        ({"base_url": "ftp://host/v1"}, "base_url"),
        ({"base_url": "http:///v1"}, "base_url"),
        ({"model": " "}, "model"),
        ({"timeout_s": 0}, "timeout_s"),
        ({"timeout_s": -1.0}, "timeout_s"),
        ({"connect_timeout_s": 0}, "connect_timeout_s"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"max_retries": -1}, "max_retries"),
        ({"temperature": -0.1}, "temperature"),
        ({"max_output_chars": 0}, "max_output_chars"),
    ],
)
def test_llm_config_rejects_bad_values(overrides: dict[str, Any], match: str) -> None:
    settings: dict[str, Any] = {"base_url": "http://127.0.0.1:8001/v1", "model": "m"}
    settings.update(overrides)
    with pytest.raises(ValueError, match=match):
        LLMConfig(**settings)


def test_llm_config_builds_the_endpoint_url() -> None:
    assert LLMConfig("https://llm.example/v1/", "m").url == "https://llm.example/v1/chat/completions"
    assert LLMConfig("http://127.0.0.1:8001/v1", "m").url == "http://127.0.0.1:8001/v1/chat/completions"
