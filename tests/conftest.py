"""Shared fixtures. Unit tests may not open network connections (only loopback and unix sockets)."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "data"
SHARED_EVAL = ROOT.parent / "shared" / "eval"


@pytest.fixture(autouse=True)
def _block_network(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    if request.node.get_closest_marker("integration") is None:
        real_connect = socket.socket.connect

        def guarded(self: socket.socket, address: Any) -> Any:
            host = address[0] if isinstance(address, tuple) else address
            if self.family != socket.AF_UNIX and host not in ("127.0.0.1", "localhost", "::1"):
                raise RuntimeError(f"unit tests may not connect to {address!r}")
            return real_connect(self, address)

        monkeypatch.setattr(socket.socket, "connect", guarded)
    yield


@pytest.fixture(scope="session")
def analyzer() -> Any:
    from kb.text import Analyzer

    return Analyzer(DATA)
