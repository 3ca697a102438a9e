"""Explanation.to_dict serialises whatever parameters a method was given."""

from __future__ import annotations

import json

import numpy as np
import pytest

import seewhy
from models import one_conv
from seewhy.explanation import json_safe

torch = pytest.importorskip("torch")


def test_to_dict_with_array_and_callable_parameters() -> None:
    x = np.random.default_rng(0).normal(size=(2, 16, 16, 3)).astype(np.float32)
    baseline = np.full((16, 16, 3), 0.5, np.float32)
    ig = seewhy.explain(one_conv(4, 3), x, method="ig", baseline=baseline, steps=4)
    summary = json.loads(json.dumps(ig.to_dict()))
    assert summary["params"]["baseline"] == {"array": [16, 16, 3], "dtype": "float32"}
    assert summary["params"]["steps"] == 4

    def quarters(picture: np.ndarray) -> np.ndarray:
        h, w = picture.shape[:2]
        return (np.arange(h)[:, None] >= h // 2) * 2 + (np.arange(w)[None] >= w // 2)

    lime = seewhy.explain(one_conv(4, 3), x[:1], method="lime", segmentation=quarters, samples=20)
    summary = json.loads(json.dumps(lime.to_dict()))
    assert summary["params"]["segmentation"].endswith("quarters")


def test_json_safe_values() -> None:
    assert json_safe(np.float32(1.5)) == 1.5
    assert json_safe(np.arange(3)) == [0, 1, 2]
    assert json_safe({"a": (1, np.int64(2))}) == {"a": [1, 2]}
    assert json_safe(len) == "builtins.len"
    assert json_safe(object()).startswith("<object object")


# -- every setting recorded, and given back ---------------------------------------------


def _pictures(n: int = 2, side: int = 16) -> np.ndarray:
    return np.random.default_rng(1).normal(size=(n, side, side, 3)).astype(np.float32)


def test_params_record_every_setting_defaults_included() -> None:
    smooth = seewhy.explain(one_conv(4, 3), _pictures(), "smoothgrad", samples=3)
    assert smooth.params == {
        "reduce": "abssum",
        "samples": 3,
        "noise": 0.15,
        "squared": False,
        "copies_per_pass": None,
        "seed": 0,
    }
    assert seewhy.explain(one_conv(4, 3), _pictures(1), "smoothgrad").params["samples"] == 25
    assert seewhy.explain(one_conv(4, 3), _pictures(1), "gradcam").params == {
        "guided": False,
        "aug_smooth": False,
        "eigen_smooth": False,
    }
    shap = seewhy.explain(one_conv(4, 3), _pictures(1), "kernelshap", samples=8)
    assert shap.params["explainer"] == "shap"


def test_settings_left_to_the_input_size_record_the_value_used() -> None:
    occ = seewhy.explain(one_conv(4, 3), _pictures(side=32), "occlusion")
    assert occ.params["window"] == (4, 4) and occ.params["stride"] == (2, 2)
    given = seewhy.explain(one_conv(4, 3), _pictures(side=32), "occlusion", window=8)
    assert given.params["window"] == 8 and given.params["stride"] == (4, 4)
    rise = seewhy.explain(one_conv(4, 3), _pictures(side=32), "rise", masks=8)
    assert rise.params["cell_size"] == 5  # ceil(32 / 7)
    ig = seewhy.explain(one_conv(4, 3), _pictures(side=32), "ig", steps=2, baseline="blur")
    assert ig.params["blur_sigma"] == pytest.approx(5 * 32 / 224)


@pytest.mark.parametrize(
    ("method", "settings"),
    [
        ("occlusion", {"fill": "gray"}),
        ("rise", {"masks": 16, "fill": (10, 20, 30), "seed": 4}),
        ("ig", {"steps": 4, "baseline": "blur", "rule": "riemann_middle"}),
        ("lime", {"samples": 16, "segmentation": "slic", "segmentation_params": {"n_segments": 8}}),
        ("scorecam", {"channels": 2}),
    ],
)
def test_to_dict_params_round_trip(method: str, settings: dict) -> None:
    x = _pictures(side=32)
    first = seewhy.explain(one_conv(4, 3), x, method, layer="0", **settings)
    params = json.loads(json.dumps(first.to_dict()))["params"]
    again = seewhy.explain(one_conv(4, 3), x, method, layer="0", **params)
    np.testing.assert_array_equal(again.maps, first.maps)
    assert json.loads(json.dumps(again.to_dict()))["params"] == params
