"""A small client for OpenAI-compatible chat-completions servers (vLLM, llama.cpp, Ollama, OpenAI).

``ChatClient.complete`` makes one non-streaming call; ``ChatClient.stream`` yields the answer piece by piece from
Server-Sent Events. Both translate every failure into :class:`LLMError` (timeout, HTTP status, malformed or
empty response), the one place where httpx errors become tac-kb errors (STYLE.md section 5).

Choices made here:

- ``timeout_s`` is a total deadline for one call. httpx only has per-operation timeouts, so every request gets
  ``read = write = pool = time left`` and the body is read chunk by chunk with a clock check after each chunk: a server
  that stalls stops at the deadline; one that trickles bytes stops at the first chunk after it (a read that started
  before the deadline may last up to the time that was left then, so the worst case is below ``2 * timeout_s``).
- Retries (``max_retries``, backoff ``0.2 s * attempt``) happen only on connection errors, HTTP 5xx and 429, only
  before any piece was yielded, and only while the deadline leaves time for them. ``Retry-After`` is not honoured.
- An answer longer than ``max_output_chars`` is cut at that length and returned (no error): the assistant verifies
  citations in what it got, and a runaway generation should cost a bounded amount, not fail the whole answer.
- The API key is sent as a bearer token and never appears in ``repr``, logs or error messages; error messages never
  contain the prompt. A server's own error text is kept (short, with the key masked) because it says what went wrong.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

import httpx

from kb.errors import KBError

__all__ = ["ChatClient", "LLMConfig", "LLMError"]

log = logging.getLogger(__name__)

_MAX_BODY_BYTES = 4 * 1024 * 1024  # a non-streaming answer or one SSE line larger than this is not a chat answer
_MAX_DETAIL_CHARS = 200
_BACKOFF_S = 0.2


@dataclass(frozen=True, slots=True)
class LLMConfig:
    """Where the generator is and how long and how much one call may take."""

    base_url: str
    model: str
    api_key: str = field(default="", repr=False)
    timeout_s: float = 30.0
    connect_timeout_s: float = 3.0
    max_tokens: int = 512
    max_retries: int = 1
    temperature: float = 0.0
    max_output_chars: int = 8000

    def __post_init__(self) -> None:
        parts = urlsplit(self.base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"base_url must be an http(s) URL with a host, got {self.base_url!r}")
        if not self.model.strip():
            raise ValueError("model must not be empty")
        if not self.timeout_s > 0:
            raise ValueError(f"timeout_s must be > 0, got {self.timeout_s!r}")
        if not self.connect_timeout_s > 0:
            raise ValueError(f"connect_timeout_s must be > 0, got {self.connect_timeout_s!r}")
        if self.max_tokens < 1:
            raise ValueError(f"max_tokens must be >= 1, got {self.max_tokens!r}")
        if self.max_retries < 0:
            raise ValueError(f"max_retries must be >= 0, got {self.max_retries!r}")
        if not self.temperature >= 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature!r}")
        if self.max_output_chars < 1:
            raise ValueError(f"max_output_chars must be >= 1, got {self.max_output_chars!r}")

    @property
    def url(self) -> str:
        """The chat-completions endpoint."""
        return f"{self.base_url.rstrip('/')}/chat/completions"


class LLMError(KBError):
    """The generator could not give an answer: ``reason`` says why (never the prompt, never the API key).

    ``status`` is the HTTP status when the server answered with one >= 400, else None.
    """

    def __init__(self, reason: str, *, status: int | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status


class _Retry(Exception):
    """Internal: this attempt failed in a way that another attempt may fix."""

    def __init__(self, error: LLMError) -> None:
        super().__init__(error.reason)
        self.error = error


class _Deadline:
    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.end = time.monotonic() + seconds

    def left(self) -> float:
        return self.end - time.monotonic()

    def error(self) -> LLMError:
        return LLMError(f"timed out after {self.seconds} s")

    def check(self) -> None:
        if self.left() <= 0:
            raise self.error()


class ChatClient:
    """Calls ``{base_url}/chat/completions``. Safe to share between threads (one pooled ``httpx.Client``)."""

    def __init__(self, config: LLMConfig, *, transport: httpx.BaseTransport | None = None) -> None:
        self.config = config
        headers = {"Accept": "application/json, text/event-stream"}
        if config.api_key:
            headers["Authorization"] = f"Bearer {config.api_key}"
        self._client = httpx.Client(transport=transport, headers=headers, follow_redirects=False)

    def __enter__(self) -> ChatClient:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection pool."""
        self._client.close()

    def complete(self, messages: list[dict[str, str]]) -> str:
        """One non-streaming call: the text of ``choices[0].message.content``, cut at ``max_output_chars``."""
        deadline = _Deadline(self.config.timeout_s)
        for attempt in range(self.config.max_retries + 1):
            try:
                with self._open(messages, stream=False, deadline=deadline) as response:
                    body = self._read_body(response, deadline)
                return self._cut(_message_content(body, self._mask))
            except _Retry as retry:
                self._backoff(retry.error, attempt, deadline)
            except httpx.HTTPError as exc:
                raise self._translate(exc, deadline) from exc
        raise AssertionError("unreachable")  # pragma: no cover - _backoff raises on the last attempt

    def stream(self, messages: list[dict[str, str]]) -> Iterator[str]:
        """Yield the answer in pieces as the server streams it (the deadline starts at the first ``next``).

        A server that ignores ``"stream": true`` and answers with JSON yields its whole content once.
        Raises :class:`LLMError` on timeout, HTTP errors, malformed events, an empty answer, or a stream that
        ends without ``[DONE]`` or a ``finish_reason`` (even after some pieces: the answer would be truncated).
        """
        deadline = _Deadline(self.config.timeout_s)
        for attempt in range(self.config.max_retries + 1):
            try:
                with self._open(messages, stream=True, deadline=deadline) as response:
                    content_type = response.headers.get("content-type", "")
                    if content_type.startswith("application/json"):
                        yield self._cut(_message_content(self._read_body(response, deadline), self._mask))
                    else:
                        yield from self._events(response, deadline)
                return
            except _Retry as retry:
                self._backoff(retry.error, attempt, deadline)
            except httpx.HTTPError as exc:
                raise self._translate(exc, deadline) from exc

    # -- one attempt ------------------------------------------------------------------------------------------------

    def _payload(self, messages: list[dict[str, str]], *, stream: bool) -> dict[str, Any]:
        return {
            "model": self.config.model,
            "messages": messages,
            "max_tokens": self.config.max_tokens,
            "temperature": self.config.temperature,
            "stream": stream,
        }

    def _open(self, messages: list[dict[str, str]], *, stream: bool, deadline: _Deadline) -> _Response:
        """Send the request; raise ``_Retry`` for retryable failures before any body was read."""
        left = deadline.left()
        if left <= 0:
            raise deadline.error()
        timeout = httpx.Timeout(left, connect=min(self.config.connect_timeout_s, left))
        request = self._client.build_request(
            "POST", self.config.url, json=self._payload(messages, stream=stream), timeout=timeout
        )
        try:
            response = self._client.send(request, stream=True)
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.RemoteProtocolError) as exc:
            # RemoteProtocolError here: the server closed the connection without answering (a restarting server)
            raise _Retry(LLMError(f"cannot reach the generator: {self._detail(exc)}")) from exc
        if response.status_code >= 400:
            try:
                error = LLMError(self._status_reason(response, deadline), status=response.status_code)
            finally:
                response.close()
            if response.status_code >= 500 or response.status_code == 429:
                raise _Retry(error)
            raise error
        return _Response(response)

    def _read_body(self, response: httpx.Response, deadline: _Deadline) -> Any:
        data = bytearray()
        for chunk in response.iter_bytes():
            data += chunk
            deadline.check()
            if len(data) > _MAX_BODY_BYTES:
                raise LLMError(f"malformed response: body larger than {_MAX_BODY_BYTES} bytes")
        try:
            return json.loads(data)
        except ValueError:
            raise LLMError(f"malformed response: not JSON (HTTP {response.status_code})") from None

    def _events(self, response: httpx.Response, deadline: _Deadline) -> Iterator[str]:
        """Parse SSE: ``data:`` lines joined until a blank line make one event; ``:`` lines are comments."""
        produced = 0
        said_something = False
        finished = False
        data_lines: list[str] = []
        for line in _lines(response, deadline):
            if line.startswith(":"):
                continue
            if line:
                name, _, value = line.partition(":")
                if name == "data":
                    data_lines.append(value[1:] if value.startswith(" ") else value)
                continue  # other fields (event, id, retry) carry nothing we use
            if not data_lines:
                continue
            data, data_lines = "\n".join(data_lines), []
            if data.strip() == "[DONE]":
                break
            piece, done = _delta(data, self._mask)
            finished = finished or done
            if piece:
                piece = piece[: self.config.max_output_chars - produced]
                produced += len(piece)
                said_something = said_something or bool(piece.strip())
                yield piece
                if produced >= self.config.max_output_chars:
                    return  # cut on purpose: see the module docstring
        else:
            if not finished:
                raise LLMError("stream ended early: no [DONE] and no finish_reason")
        if not said_something:
            raise LLMError("empty response")

    # -- errors and retries -----------------------------------------------------------------------------------------

    def _backoff(self, error: LLMError, attempt: int, deadline: _Deadline) -> None:
        pause = _BACKOFF_S * (attempt + 1)
        if attempt >= self.config.max_retries or deadline.left() <= pause:
            raise error
        log.warning("generator call failed (%s); retry %d of %d", error.reason, attempt + 1, self.config.max_retries)
        time.sleep(pause)

    def _translate(self, exc: httpx.HTTPError, deadline: _Deadline) -> LLMError:
        if isinstance(exc, httpx.TimeoutException) or deadline.left() <= 0:
            return deadline.error()
        return LLMError(f"connection to the generator failed: {self._detail(exc)}")

    def _status_reason(self, response: httpx.Response, deadline: _Deadline) -> str:
        reason = f"HTTP {response.status_code} from the generator"
        try:
            data = bytearray()
            for chunk in response.iter_bytes():
                data += chunk
                if len(data) > 65536 or deadline.left() <= 0:
                    break
            body = json.loads(data)
            error = body.get("error") if isinstance(body, dict) else None
            message = error.get("message") if isinstance(error, dict) else error
            if isinstance(message, str) and message.strip():
                reason += f": {self._mask(message)}"
        except (httpx.HTTPError, ValueError):
            pass  # the status alone says enough
        return reason

    def _detail(self, exc: Exception) -> str:
        text = str(exc)
        return self._mask(f"{type(exc).__name__}: {text}" if text else type(exc).__name__)

    def _mask(self, text: str) -> str:
        if self.config.api_key:
            text = text.replace(self.config.api_key, "***")
        text = " ".join(text.split())
        return text if len(text) <= _MAX_DETAIL_CHARS else text[: _MAX_DETAIL_CHARS - 3] + "..."

    def _cut(self, text: str) -> str:
        return text[: self.config.max_output_chars]


class _Response:
    """Context manager that closes the streamed response (also when the caller stops iterating early)."""

    def __init__(self, response: httpx.Response) -> None:
        self.response = response

    def __enter__(self) -> httpx.Response:
        return self.response

    def __exit__(self, *exc: object) -> None:
        self.response.close()


def _lines(response: httpx.Response, deadline: _Deadline) -> Iterator[str]:
    """Decoded lines (``\\n`` or ``\\r\\n`` endings), with a clock check after every received chunk.

    A lone ``\\r`` as line ending (allowed by the SSE spec, used by no generator we know) is not supported.
    """
    buffer = b""
    for chunk in response.iter_bytes():
        deadline.check()
        buffer += chunk
        if b"\n" not in chunk:
            if len(buffer) > _MAX_BODY_BYTES:
                raise LLMError(f"malformed response: a stream line longer than {_MAX_BODY_BYTES} bytes")
            continue
        *complete, buffer = buffer.split(b"\n")
        for raw in complete:
            yield raw.removesuffix(b"\r").decode("utf-8", errors="replace")
    if buffer:
        yield buffer.removesuffix(b"\r").decode("utf-8", errors="replace")
    yield ""  # the end of the stream ends the last event


def _delta(data: str, mask: Callable[[str], str]) -> tuple[str, bool]:
    """One streamed chunk -> (content piece or "", finished?)."""
    try:
        event = json.loads(data)
    except ValueError:
        raise LLMError("malformed response: a stream event is not JSON") from None
    if not isinstance(event, dict):
        raise LLMError("malformed response: a stream event is not a JSON object")
    if "error" in event and "choices" not in event:
        raise LLMError(f"generator error in stream: {_error_text(event['error'], mask)}")
    choices = event.get("choices")
    if not isinstance(choices, list):
        raise LLMError("malformed response: a stream event has no choices")
    if not choices:
        return "", False  # e.g. the usage-only chunk of stream_options.include_usage
    choice = choices[0]
    if not isinstance(choice, dict):
        raise LLMError("malformed response: choices[0] is not an object")
    delta = choice.get("delta") or {}
    content = delta.get("content") if isinstance(delta, dict) else None
    if content is not None and not isinstance(content, str):
        raise LLMError("malformed response: delta.content is not a string")
    return content or "", choice.get("finish_reason") is not None


def _message_content(body: Any, mask: Callable[[str], str]) -> str:
    if isinstance(body, dict) and "error" in body and "choices" not in body:
        raise LLMError(f"generator error: {_error_text(body['error'], mask)}")
    try:
        content = body["choices"][0]["message"]["content"]
    except (KeyError, IndexError, TypeError):
        raise LLMError("malformed response: no choices[0].message.content") from None
    if content is not None and not isinstance(content, str):
        raise LLMError("malformed response: message.content is not a string")
    if not content or not content.strip():
        raise LLMError("empty response")
    return content


def _error_text(error: Any, mask: Callable[[str], str]) -> str:
    message = error.get("message") if isinstance(error, dict) else error
    return mask(str(message))
