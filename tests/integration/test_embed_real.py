"""The real bundled all-MiniLM-L6-v2, loaded offline from site-packages (loads once per module)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from kb.config import DEFAULT_MODEL
from kb.errors import ConfigError
from kb.search.embed import BUNDLED, SentenceTransformerEmbedder, resolve_model
from kb.search.types import Embedder

pytestmark = [pytest.mark.slow, pytest.mark.integration]


@pytest.fixture(scope="module")
def embedder() -> SentenceTransformerEmbedder:
    return SentenceTransformerEmbedder(BUNDLED, threads=2)


def test_embed_bundled_name_resolves_to_a_local_directory() -> None:
    assert BUNDLED == DEFAULT_MODEL
    path = Path(resolve_model(BUNDLED))
    assert (path / "config.json").is_file()
    assert resolve_model("/some/other/model") == "/some/other/model"


def test_embed_is_lazy_and_satisfies_the_protocol(embedder: SentenceTransformerEmbedder) -> None:
    lazy = SentenceTransformerEmbedder()
    assert lazy._model is None and lazy.name == BUNDLED and "not loaded" in repr(lazy)
    # On Python 3.11 isinstance() against a runtime Protocol reads every property, which loads the model.
    assert isinstance(embedder, Embedder)


def test_embed_loads_offline_with_unit_rows(embedder: SentenceTransformerEmbedder) -> None:
    vecs = embedder.encode(["Outlook cannot connect to the Exchange server", "打印机缺纸"])
    assert embedder.dim == 384 and vecs.shape == (2, 384) and vecs.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-5)
    assert embedder.max_seq_length == 256
    assert embedder.encode([]).shape == (0, 384)


def test_embed_paraphrase_is_closer_than_unrelated(embedder: SentenceTransformerEmbedder) -> None:
    a, b, c = embedder.encode(
        [
            "Outlook cannot connect to the Exchange server",
            "Outlook fails to reach Exchange",
            "The printer is out of paper",
        ]
    )
    assert float(a @ b) > float(a @ c) + 0.3


def test_embed_cannot_read_chinese(embedder: SentenceTransformerEmbedder) -> None:
    assert embedder.cjk_capable is False  # 244 single CJK characters in its vocabulary


def test_embed_length_sorting_keeps_input_order(embedder: SentenceTransformerEmbedder) -> None:
    texts = [
        "short",
        "a considerably longer sentence about restarting the Exchange mailbox service after an update",
        "mid length text here",
        "x",
        "another long one: the VPN client drops the connection every ten minutes on Windows 11",
    ]
    together = embedder.encode(texts, batch_size=2)
    one_by_one = np.vstack([embedder.encode([t]) for t in texts])
    np.testing.assert_allclose(together, one_by_one, atol=1e-4)


def test_embed_bad_model_path_is_a_config_error(tmp_path: Path) -> None:
    missing = str(tmp_path / "no-such-model")
    with pytest.raises(ConfigError, match="no-such-model") as info:
        SentenceTransformerEmbedder(missing).encode(["x"])
    assert "local path or an installed model" in str(info.value)
    with pytest.raises(ConfigError, match="nothing is downloaded"):
        _ = SentenceTransformerEmbedder("no-such-org/no-such-model").dim
