"""The Keras side of the trust tools: ``seewhy demo shortcut``, sanity checks, faithfulness.

Runs in the per-backend Keras subprocesses (test_keras_backends.py). The
metrics run on every backend, on a tiny CNN trained for one epoch by
``synthetic.train_keras``. The demo runs on one backend only (torch when
installed): its Keras path is the same backend-neutral code everywhere
(``synthetic.train_keras``, tested on each backend here, and seewhy's Keras
backend, tested by the other Keras files), and all it adds is training two
CNNs long enough to learn the shortcut, 9 s on the torch backend and over
20 s on JAX (which compiles every step shape).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from keras_helpers import (
    assert_same_state,
    current_backend,
    installed_backends,
    keras_or_skip,
    snapshot,
)

keras = keras_or_skip()
# Keras' own numpy conversions warn under numpy 2 (not seewhy's code paths).
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")

from seewhy import metrics, synthetic  # noqa: E402
from seewhy.demo import run_shortcut_demo  # noqa: E402

DEMO_BACKEND = "torch" if "torch" in installed_backends() else installed_backends()[0]


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """The demo on Keras, small: 400 pictures, 8 epochs.

    Measured on the torch backend: the shortcut model is right on 100% while
    the shortcut holds and 5% once it lies; its Grad-CAM energy in the object
    is 0.09 against a chance level of 0.14, the clean model's 0.35.
    """
    if current_backend() != DEMO_BACKEND:
        pytest.skip(
            f"the demo runs on the {DEMO_BACKEND} backend only: its Keras path is the same "
            "code on every backend, and training its two CNNs costs 10-20 s per backend"
        )
    out = tmp_path_factory.mktemp("keras_demo")
    return run_shortcut_demo(out, framework="keras", n_train=400, epochs=8, n_test=100, examples=2)


@pytest.fixture(scope="module")
def tiny() -> tuple[Any, Any]:
    """A tiny CNN trained for one epoch on 64 small pictures, and the pictures."""
    data = synthetic.make_shapes(64, size=32, seed=0, clutter=2)
    return synthetic.train_keras(data, epochs=1), data


def test_keras_demo_flags_the_shortcut_model(demo: Any) -> None:
    assert demo.framework == "keras"
    assert all(isinstance(m, keras.Model) for m in demo.models.values())
    assert demo.flagged["shortcut"], (current_backend(), demo.energy, demo.chance)
    assert demo.energy["shortcut"] < demo.chance < demo.energy["clean"]
    short = demo.accuracy["shortcut"]
    assert short["shortcut_holds"] > 0.8 > 0.3 > short["shortcut_broken"]  # it learnt the patch


def test_keras_demo_report_files(demo: Any) -> None:
    html = Path(demo.report).read_text(encoding="utf-8")
    assert "shortcut suspected" in html and "(keras)" in html
    assert {Path(p).name for p in demo.images} == {"examples.png", "scores.png"}
    for picture in demo.images:
        assert Path(picture).stat().st_size > 1000
    summary = json.loads(json.dumps(demo.to_dict()))  # JSON-ready
    assert summary["framework"] == "keras" and summary["flagged"]["shortcut"] is True


def test_sanity_check_on_a_keras_model_works_on_a_clone(tiny: tuple[Any, Any]) -> None:
    model, data = tiny
    before = snapshot(keras, model)
    res = metrics.sanity_check(model, data.images[:2], "gradcam", steps=2)
    assert res.steps == ("fc", "conv1") and res.params["framework"] == "keras"
    assert res.measures == tuple(metrics.SANITY_MEASURES)
    for name in res.measures:
        assert res.measure(name).shape == (2, 2) and np.isfinite(res.measure(name)).all()
    assert_same_state(before, snapshot(keras, model))
    shuffled = synthetic.train_keras(data.shuffled_labels(1), epochs=1, seed=1)
    again = metrics.data_randomization_check(model, data.images[:2], shuffled, "guided-backprop")
    assert again.mode == "data" and np.isfinite(again.hog).all()


def test_faithfulness_metrics_on_a_keras_model(tiny: tuple[Any, Any]) -> None:
    """Batched deletion equals one forward per step; ROAD and Average Drop run."""
    model, _ = tiny
    data = synthetic.make_shapes(2, size=32, seed=6)
    maps = data.masks.astype(np.float32)  # the object itself as the map
    curve = metrics.deletion(model, maps, images=data.images, steps=4, batch_size=3)
    x = data.inputs()
    order = np.argsort(-maps.reshape(2, -1), axis=1, kind="stable")
    for k, fraction in enumerate(curve.fractions):
        removed = np.zeros((2, x.shape[1] * x.shape[2]), bool)
        count = round(float(fraction) * removed.shape[1])
        np.put_along_axis(removed, order[:, :count], True, axis=1)
        step = np.where(removed.reshape(2, *x.shape[1:3], 1), 0.0, x).astype(np.float32)
        logits = np.asarray(model.predict(step, verbose=0), dtype=np.float64)
        probs = np.exp(logits - logits.max(1, keepdims=True))
        probs /= probs.sum(1, keepdims=True)
        np.testing.assert_allclose(
            curve.scores[:, k], probs[[0, 1], curve.targets], rtol=1e-4, atol=1e-5
        )
    road = metrics.road(model, maps, images=data.images, fractions=(0.2, 0.6))
    assert road.morf.shape == road.lerf.shape == (2, 2)
    drop = metrics.average_drop(model, maps, images=data.images)
    assert 0.0 <= drop.average_drop <= 100.0
