from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from kb.errors import ConfigError
from kb.search.fusion import Weights, fuse, load_profile, minmax

DATA = Path(__file__).resolve().parents[2] / "data"


def test_fusion_minmax_constant_signal_carries_nothing() -> None:
    assert minmax(np.array([3.0, 3.0], dtype=np.float32)).tolist() == [0.0, 0.0]
    assert minmax(np.array([1.0, 3.0, 2.0], dtype=np.float32)).tolist() == [0.0, 1.0, 0.5]


def test_fusion_weights_and_tie_break() -> None:
    ids = ["b", "a", "c"]
    signals = {
        "bm25": np.array([1.0, 1.0, 0.0], dtype=np.float32),
        "vector": np.array([0.0, 0.5, 1.0], dtype=np.float32),
    }
    only_bm25 = fuse(signals, Weights(1.0, 0.0, 0.0), ids)
    assert [ids[i] for i, _ in only_bm25] == ["a", "b", "c"]  # tie on score broken by id
    mixed = fuse(signals, Weights(1.0, 0.0, 3.0), ids)  # a: 1 + 1.5, c: 3
    assert [ids[i] for i, _ in mixed] == ["c", "a", "b"]


def test_fusion_rejects_misaligned_signals() -> None:
    with pytest.raises(ValueError, match="2 scores for 3"):
        fuse({"bm25": np.zeros(2, dtype=np.float32)}, Weights(1, 1, 1), ["a", "b", "c"])


def test_fusion_profile_defaults_by_family(tmp_path: Path) -> None:
    en = load_profile(DATA / "fusion.json", "some/unknown-model", cjk_capable=False)
    cjk = load_profile(DATA / "fusion.json", "some/unknown-model", cjk_capable=True)
    assert en.name == "default-en" and cjk.name == "default-cjk"
    assert en.weights("xx") == en.weights("mixed")
    bad = tmp_path / "fusion.json"
    bad.write_text(json.dumps({"profiles": {"default-en": {"zh": {"bm25": 1}}}}))
    with pytest.raises(ConfigError, match="incomplete"):
        load_profile(bad, "m", cjk_capable=False)
