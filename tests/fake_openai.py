"""A real OpenAI-compatible chat-completions server on 127.0.0.1 for tests (stdlib only, one background thread).

Usage::

    with FakeOpenAI() as fake:
        fake.script(Reply.error(500), Reply.ok("Restart the spooler.", chunks=3))  # one reply per request, in order
        fake.responder = lambda body: "an answer computed from the request"      # when the queue is empty
        client = ChatClient(LLMConfig(base_url=fake.base_url, model="m"))
        ...
        assert fake.requests[0].body["model"] == "m"

Each request takes the next scripted :class:`Reply`; with none left, it gets ``Reply()`` (status 200). A reply whose
``text`` is None uses ``fake.responder(body)`` when set, else ``FakeOpenAI.DEFAULT_TEXT``. Whether a reply is sent as
SSE or JSON follows the request's ``"stream"`` flag (unless ``ignore_stream``). Sleeps wait on a stop event, so
``close()`` ends hanging and trickling handlers at once; every join is bounded.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any


@dataclass(frozen=True)
class Reply:
    """What the fake answers to one request. Defaults: a normal answer, streamed in 3 pieces when asked to stream."""

    text: str | None = None  # None: fake.responder(body) or DEFAULT_TEXT
    status: int = 200
    chunks: int = 3  # content pieces in a streamed answer
    hang_s: float = 0.0  # sleep before sending anything (headers included)
    delay_s: float = 0.0  # sleep between streamed events
    body: bytes | None = None  # raw body instead of the normal one (status and content_type still apply)
    content_type: str | None = None
    done: bool = True  # streamed: send "data: [DONE]"
    finish: bool = True  # streamed: send a final chunk with finish_reason "stop"
    bad_event_after: int | None = None  # streamed: insert a non-JSON data line after this many content pieces
    keepalive: bool = True  # streamed: a role-only delta first and ": keep-alive" comment lines between events
    ignore_stream: bool = False  # answer with JSON even if the request asked for a stream
    trickle: bytes | None = None  # streamed: after the headers, send these bytes every delay_s, trickle_count times
    trickle_count: int = 1000

    @classmethod
    def ok(cls, text: str | None = None, chunks: int = 3) -> Reply:
        return cls(text=text, chunks=chunks)

    @classmethod
    def error(cls, status: int, message: str = "fake failure") -> Reply:
        body = json.dumps({"error": {"message": message, "type": "server_error"}}).encode()
        return cls(status=status, body=body, content_type="application/json")

    @classmethod
    def hang(cls, seconds: float) -> Reply:
        return cls(hang_s=seconds)

    @classmethod
    def raw(cls, body: bytes, content_type: str = "application/json", status: int = 200) -> Reply:
        return cls(status=status, body=body, content_type=content_type)


@dataclass
class Recorded:
    """One request as received: lower-cased header names; ``body`` is the parsed JSON (or the raw text if not JSON)."""

    method: str
    path: str
    headers: dict[str, str]
    body: Any = field(default=None)


class FakeOpenAI:
    """Serves ``POST /v1/chat/completions`` on an ephemeral 127.0.0.1 port until ``close()``."""

    DEFAULT_TEXT = "Hello from the fake generator."

    def __init__(self, model: str = "fake-model") -> None:
        self.model = model
        self.responder: Callable[[Any], str] | None = None
        self.requests: list[Recorded] = []
        self._queue: deque[Reply] = deque()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._server = _Server(("127.0.0.1", 0), _make_handler(self))
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def script(self, *replies: Reply) -> None:
        """Queue replies, one per coming request, in order."""
        with self._lock:
            self._queue.extend(replies)

    @property
    def request_count(self) -> int:
        with self._lock:
            return len(self.requests)

    def close(self) -> None:
        self._stop.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> FakeOpenAI:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # -- used by the handler ----------------------------------------------------------------------------------------

    def _take(self, recorded: Recorded) -> Reply:
        with self._lock:
            self.requests.append(recorded)
            return self._queue.popleft() if self._queue else Reply()

    def _text(self, reply: Reply, body: Any) -> str:
        if reply.text is not None:
            return reply.text
        if self.responder is not None:
            return self.responder(body)
        return self.DEFAULT_TEXT

    def _sleep(self, seconds: float) -> bool:
        """Sleep unless the server stops first; True if it is still running."""
        return not self._stop.wait(seconds) if seconds > 0 else not self._stop.is_set()


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        if isinstance(sys.exc_info()[1], ConnectionError):
            return  # the client hung up (timeout, cut): expected in these tests
        super().handle_error(request, client_address)


def _split(text: str, n: int) -> list[str]:
    if not text:
        return []
    n = max(1, min(n, len(text)))
    size, extra = divmod(len(text), n)
    pieces, start = [], 0
    for i in range(n):
        end = start + size + (1 if i < extra else 0)
        pieces.append(text[start:end])
        start = end
    return pieces


def _make_handler(fake: FakeOpenAI) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.0"  # close-delimited bodies: a stream "cut" is just the end of the connection

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_POST(self) -> None:
            raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            try:
                body: Any = json.loads(raw)
            except ValueError:
                body = raw.decode("utf-8", errors="replace")
            headers = {k.lower(): v for k, v in self.headers.items()}
            reply = fake._take(Recorded("POST", self.path, headers, body))
            if self.path.rstrip("/") != "/v1/chat/completions":
                self._send(404, b'{"error": {"message": "no such route"}}', "application/json")
                return
            if not fake._sleep(reply.hang_s):
                return
            try:
                if reply.body is not None:
                    self._send(reply.status, reply.body, reply.content_type or "application/json")
                elif isinstance(body, dict) and body.get("stream") and not reply.ignore_stream:
                    self._stream(reply, body)
                else:
                    self._json(reply, body)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up (timeout, cut): expected in these tests

        def _send(self, status: int, payload: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def _json(self, reply: Reply, body: Any) -> None:
            text = fake._text(reply, body)
            answer = {
                "id": "chatcmpl-fake",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": fake.model,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
            }
            self._send(reply.status, json.dumps(answer).encode(), reply.content_type or "application/json")

        def _event(self, delta: dict[str, str], finish: str | None = None) -> bytes:
            chunk = {
                "id": "chatcmpl-fake",
                "object": "chat.completion.chunk",
                "created": int(time.time()),
                "model": fake.model,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
            }
            return b"data: " + json.dumps(chunk).encode() + b"\n\n"

        def _stream(self, reply: Reply, body: Any) -> None:
            self.send_response(reply.status)
            self.send_header("Content-Type", reply.content_type or "text/event-stream")
            self.send_header("Cache-Control", "no-cache")
            self.end_headers()
            self.wfile.flush()
            if reply.trickle is not None:
                for _ in range(reply.trickle_count):
                    if not fake._sleep(reply.delay_s):
                        return
                    self.wfile.write(reply.trickle)
                    self.wfile.flush()
                return
            if reply.keepalive:
                self._write(self._event({"role": "assistant"}))
            pieces = _split(fake._text(reply, body), reply.chunks)
            for i, piece in enumerate(pieces):
                if not fake._sleep(reply.delay_s):
                    return
                if reply.keepalive:
                    self._write(b": keep-alive\n\n")
                if reply.bad_event_after is not None and i == reply.bad_event_after:
                    self._write(b'data: {"choices": [ not json\n\n')
                self._write(self._event({"content": piece}))
            if reply.bad_event_after is not None and reply.bad_event_after >= len(pieces):
                self._write(b"data: {oops\n\n")
            if reply.finish:
                self._write(self._event({}, finish="stop"))
            if reply.done:
                self._write(b"data: [DONE]\n\n")

        def _write(self, data: bytes) -> None:
            self.wfile.write(data)
            self.wfile.flush()

    return Handler
