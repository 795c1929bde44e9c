"""Request limits applied before any route work: body size (413) and per-client rate (429 + Retry-After).

Pure ASGI middleware, so an over-limit request is answered before its body is read or a session is opened.
The rate limit is a token bucket per credential (the bearer token, API key or session cookie, hashed) or, with
none, per client address; each worker process keeps its own buckets (a per-process limit: with N workers a
client gets at most N times the rate, which ``kb serve`` documents).
"""

from __future__ import annotations

import hashlib
import json
import math
import threading
import time
from collections import OrderedDict
from typing import Any, Final

from starlette.types import ASGIApp, Message, Receive, Scope, Send

MAX_BUCKETS: Final = 10_000
EXEMPT_PATHS: Final = frozenset({"/health", "/ready", "/metrics", "/api/v1/health", "/api/v1/ready"})


async def _reply(send: Send, status: int, error: str, detail: str, headers: list[tuple[bytes, bytes]]) -> None:
    body = json.dumps({"error": error, "detail": detail}).encode("utf-8")
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())] + headers,
        }
    )
    await send({"type": "http.response.body", "body": body})


class BodyLimit:
    """413 when Content-Length (or the streamed body) exceeds ``max_bytes``."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    length = int(value)
                except ValueError:
                    await _reply(send, 400, "BadRequest", "invalid Content-Length", [])
                    return
                if length > self.max_bytes:
                    await _reply(send, 413, "PayloadTooLarge", f"request body over {self.max_bytes} bytes", [])
                    return
        seen = 0

        async def limited() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise _TooLarge()
            return message

        try:
            await self.app(scope, limited, send)
        except _TooLarge:
            await _reply(send, 413, "PayloadTooLarge", f"request body over {self.max_bytes} bytes", [])


class _TooLarge(Exception):
    pass


class RateLimit:
    """A token bucket of ``per_minute`` tokens per client; an empty bucket answers 429 with Retry-After."""

    def __init__(self, app: ASGIApp, per_minute: int) -> None:
        self.app = app
        self.rate = per_minute / 60.0
        self.capacity = float(per_minute)
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()
        self._lock = threading.Lock()

    def _key(self, scope: Scope) -> str:
        for name, value in scope.get("headers", []):
            if name in (b"authorization", b"x-api-key"):
                return "t:" + hashlib.sha256(value).hexdigest()[:32]
            if name == b"cookie" and b"kb_session=" in value:
                return "c:" + hashlib.sha256(value).hexdigest()[:32]
        client = scope.get("client")
        return "a:" + (client[0] if client else "-")

    def take(self, key: str, now: float | None = None) -> float:
        """Take one token for ``key``; 0.0 when allowed, else the seconds until a token is free."""
        now = time.monotonic() if now is None else now
        with self._lock:
            tokens, last = self._buckets.pop(key, (self.capacity, now))
            tokens = min(self.capacity, tokens + (now - last) * self.rate)
            wait = 0.0
            if tokens >= 1.0:
                tokens -= 1.0
            else:
                wait = (1.0 - tokens) / self.rate
            self._buckets[key] = (tokens, now)
            while len(self._buckets) > MAX_BUCKETS:
                self._buckets.popitem(last=False)
        return wait

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("path", "") in EXEMPT_PATHS:
            await self.app(scope, receive, send)
            return
        wait = self.take(self._key(scope))
        if wait > 0:
            retry = str(max(1, math.ceil(wait)))
            await _reply(
                send,
                429,
                "TooManyRequests",
                f"rate limit exceeded; retry in {retry} s",
                [(b"retry-after", retry.encode())],
            )
            return
        await self.app(scope, receive, send)


def configure(app: Any, *, max_body_bytes: int, per_minute: int) -> None:
    """Install both limits (the rate limit first, so a flood of large bodies is also rate limited)."""
    app.add_middleware(BodyLimit, max_bytes=max_body_bytes)
    app.add_middleware(RateLimit, per_minute=per_minute)
