"""Explanation.to_dict serialises whatever parameters a method was given."""

from __future__ import annotations

import json

import numpy as np
import pytest

import seewhy
from seewhy.explanation import json_safe

torch = pytest.importorskip("torch")


def _model() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(1),
        torch.nn.Flatten(),
        torch.nn.Linear(4, 3),
    ).eval()


def test_to_dict_with_array_and_callable_parameters() -> None:
    x = np.random.default_rng(0).normal(size=(2, 16, 16, 3)).astype(np.float32)
    baseline = np.full((16, 16, 3), 0.5, np.float32)
    ig = seewhy.explain(_model(), x, method="ig", baseline=baseline, steps=4)
    summary = json.loads(json.dumps(ig.to_dict()))
    assert summary["params"]["baseline"] == {"array": [16, 16, 3], "dtype": "float32"}
    assert summary["params"]["steps"] == 4

    def quarters(picture: np.ndarray) -> np.ndarray:
        h, w = picture.shape[:2]
        return (np.arange(h)[:, None] >= h // 2) * 2 + (np.arange(w)[None] >= w // 2)

    lime = seewhy.explain(_model(), x[:1], method="lime", segmentation=quarters, samples=20)
    summary = json.loads(json.dumps(lime.to_dict()))
    assert summary["params"]["segmentation"].endswith("quarters")


def test_json_safe_values() -> None:
    assert json_safe(np.float32(1.5)) == 1.5
    assert json_safe(np.arange(3)) == [0, 1, 2]
    assert json_safe({"a": (1, np.int64(2))}) == {"a": [1, 2]}
    assert json_safe(len) == "builtins.len"
    assert json_safe(object()).startswith("<object object")
