"""Black-box functions: known answers, the same maps as the model behind them, clear refusals."""

from __future__ import annotations

import pickle
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

import seewhy
from models import tiny_cnn
from seewhy import metrics
from seewhy.backends import backend_for, unpack_model
from seewhy.backends.capabilities import Gradients, Layers, Weights
from seewhy.errors import BackendError, InvalidInput, UnsupportedModel

SIZE = (32, 32)
PRE = seewhy.Preprocess(size=SIZE)
REGION = (slice(8, 16), slice(16, 24))  # rows, columns the known-answer box reads
BLOCKS = (np.arange(32)[:, None] // 8) * 4 + np.arange(32)[None, :] // 8  # 16 superpixels


def region_score(batch: np.ndarray) -> np.ndarray:
    """Class 0: the mean of one 8x8 region; class 1: minus it. Reads nothing else."""
    mean = batch[:, REGION[0], REGION[1], :].mean(axis=(1, 2, 3))
    return np.stack([mean, -mean], axis=1)


@pytest.fixture(scope="module")
def pictures() -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.integers(60, 255, (2, *SIZE, 3), dtype=np.uint8)


# --------------------------------------------------------------------------- known answers


def test_a_box_that_reads_one_region_is_explained_there(pictures: np.ndarray) -> None:
    window = 4
    ex = seewhy.explain(
        region_score, pictures, "occlusion", preprocess=PRE, target=0, window=window, stride=2
    )
    assert ex.framework == "blackbox"
    reach = np.zeros(SIZE, bool)  # where a window can touch the region
    reach[8 - window + 1 : 16 + window - 1, 16 - window + 1 : 24 + window - 1] = True
    for m in ex.maps:
        assert m.max() > 0 and np.all(m[~reach] == 0)
        assert m[REGION].sum() / m.sum() > 0.7
    lime = seewhy.explain(
        seewhy.BlackBox(region_score, classes=("bright", "dark")),
        pictures,
        "lime",
        preprocess=PRE,
        target=0,
        segmentation=BLOCKS,
        fill="zeros",  # a superpixel's own mean would keep the region's mean
        samples=300,
    )
    assert lime.target_labels == ("bright", "bright")  # the BlackBox's class names
    region_block = BLOCKS[8, 16]
    for raw in lime.layer_maps:
        weights = {b: float(raw[BLOCKS == b].mean()) for b in range(16)}
        best = max(weights, key=lambda b: weights[b])
        assert best == region_block
        others = [abs(w) for b, w in weights.items() if b != region_block]
        assert max(others) < 0.05 * weights[region_block]


def test_channels_first_boxes_get_nchw_batches_of_the_size_asked(pictures: np.ndarray) -> None:
    seen: list[tuple[int, ...]] = []

    def nchw(batch: np.ndarray) -> np.ndarray:
        seen.append(batch.shape)
        assert batch.dtype == np.float32 and batch.flags.c_contiguous
        return region_score(batch.transpose(0, 2, 3, 1))

    box = seewhy.BlackBox(nchw, channels_first=True, batch_size=5)
    ex = seewhy.explain(box, pictures, "occlusion", preprocess=PRE, window=8, stride=8, target=0)
    assert all(shape[1:] == (3, *SIZE) and shape[0] <= 5 for shape in seen)
    assert max(shape[0] for shape in seen) == 5
    plain = seewhy.explain(
        region_score, pictures, "occlusion", preprocess=PRE, window=8, stride=8, target=0
    )
    np.testing.assert_allclose(ex.maps, plain.maps, atol=1e-6)
    seen.clear()
    seewhy.explain(box, pictures, "occlusion", preprocess=PRE, window=8, stride=8, batch_size=3)
    assert max(shape[0] for shape in seen) == 3  # explain's batch_size wins


# --------------------------------------------------------------------------- the model behind it


def _as_function(model: Any) -> Callable[[np.ndarray], np.ndarray]:
    import torch

    def scores(batch: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return model(torch.from_numpy(batch).permute(0, 3, 1, 2)).numpy()

    return scores


@pytest.mark.parametrize("method", ["occlusion", "kernelshap"])
def test_same_maps_and_metrics_as_the_pytorch_model(pictures: np.ndarray, method: str) -> None:
    pytest.importorskip("torch")
    model = tiny_cnn(4, seed=1, inplace=False)
    settings = {"window": 8, "stride": 4} if method == "occlusion" else {}
    settings = {"samples": 64, "segmentation": BLOCKS} if method == "kernelshap" else settings
    reference = seewhy.explain(model, pictures, method, preprocess=PRE, **settings)
    ex = seewhy.explain(_as_function(model), pictures, method, preprocess=PRE, **settings)
    np.testing.assert_allclose(ex.logits, reference.logits, atol=1e-5)
    for got, want in zip(ex.layer_maps, reference.layer_maps, strict=True):
        assert np.corrcoef(got.ravel(), want.ravel())[0, 1] >= 0.999
    if method == "occlusion":
        box = seewhy.BlackBox(_as_function(model))
        for metric in (metrics.deletion, metrics.insertion):
            a = metric(box, ex, steps=4, preprocess=PRE)
            b = metric(model, reference, steps=4, preprocess=PRE)
            np.testing.assert_allclose(a.scores, b.scores, atol=1e-4)
        drops = [
            metrics.average_drop(m, e, preprocess=PRE) for m, e in ((box, ex), (model, reference))
        ]
        np.testing.assert_allclose(drops[0].masked, drops[1].masked, atol=1e-5)
        roads = [
            metrics.road(m, e, fractions=(0.2, 0.6), preprocess=PRE)
            for m, e in ((box, ex), (model, reference))
        ]
        np.testing.assert_allclose(roads[0].morf, roads[1].morf, atol=1e-4)
        np.testing.assert_allclose(roads[0].lerf, roads[1].lerf, atol=1e-4)


# --------------------------------------------------------------------------- refusals


@pytest.mark.parametrize("method", ["gradcam", "integrated-gradients", "ablationcam"])
def test_gradient_and_layer_methods_are_refused_in_one_line(method: str) -> None:
    with pytest.raises(UnsupportedModel) as info:
        seewhy.explain(region_score, np.zeros((1, *SIZE, 3), np.uint8), method, preprocess=PRE)
    message = str(info.value)
    assert "\n" not in message and method in message and "black-box" in message
    assert "occlusion, rise" in message and "ROAD" in message


def test_sanity_checks_and_layers_are_refused_in_one_line() -> None:
    backend = backend_for(region_score)
    assert not isinstance(backend, (Weights, Layers, Gradients))  # no member to call by mistake
    images = np.zeros((1, *SIZE, 3), np.uint8)
    calls = (
        lambda: metrics.sanity_check(region_score, images, "occlusion", preprocess=PRE),
        lambda: metrics.randomization_steps(region_score),
        lambda: seewhy.layers(region_score, preprocess=PRE),
    )
    for call in calls:
        with pytest.raises(UnsupportedModel, match=r"black-box function gives only its scores"):
            call()
    with pytest.raises(UnsupportedModel) as info:
        seewhy.explain(region_score, images, "occlusion", preprocess=PRE, layout="NHWC")
    assert "\n" not in str(info.value) and "layout" in str(info.value)


@pytest.mark.parametrize(
    ("output", "says"),
    [
        (lambda b: b.mean(axis=(1, 2, 3)), r"got \(3,\); return scores\.reshape\(-1, 1\)"),
        (lambda b: np.zeros((len(b) + 1, 2)), r"shape \(N, K\) = \(3, K\), got \(4, 2\)"),
        (lambda b: [["a", "b"]] * len(b), r"real numbers, got list of dtype <U1"),
        (lambda b: None, r"real numbers, got NoneType"),
    ],
)
def test_bad_outputs_are_refused_in_one_line(output: Any, says: str) -> None:
    backend = backend_for(output)
    with pytest.raises(BackendError, match=says) as info:
        backend.predict(np.zeros((3, *SIZE, 3), np.float32))
    assert "\n" not in str(info.value)


def test_the_class_count_is_checked_on_every_call() -> None:
    backend = backend_for(seewhy.BlackBox(region_score, classes=3))
    with pytest.raises(BackendError, match=r"\(2, 3\), got \(2, 2\)"):
        backend.predict(np.zeros((2, *SIZE, 3), np.float32))
    widths = iter([2, 3])
    drifting = backend_for(lambda b: np.zeros((len(b), next(widths))))
    x = np.zeros((4, *SIZE, 3), np.float32)
    with pytest.raises(BackendError, match=r"\(2, 2\), got \(2, 3\)"):
        drifting.predict(x, batch_size=2)


def test_bad_arguments_are_refused_in_one_line() -> None:
    cases = [
        (lambda: seewhy.BlackBox(3), r"BlackBox: fn: expected a function"),
        (lambda: seewhy.BlackBox(region_score, batch_size=0), r"batch_size: expected a positive"),
        (lambda: seewhy.BlackBox(region_score, size=(32,)), r"size: expected an int or"),
        (lambda: seewhy.BlackBox(region_score, classes="cat"), r"classes: expected a number"),
        (lambda: seewhy.BlackBox(region_score, channels_first=1), r"channels_first: expected"),
    ]
    for build, says in cases:
        with pytest.raises(InvalidInput, match=says):
            build()
    box = backend_for(seewhy.BlackBox(region_score, size=16, channels=1))
    with pytest.raises(InvalidInput, match=r"takes 1 channel\(s\), got images with 3"):
        box.predict(np.zeros((1, 16, 16, 3), np.float32))
    with pytest.raises(InvalidInput, match=r"takes 16x16 images, got 32x32"):
        box.predict(np.zeros((1, *SIZE, 1), np.float32))
    with pytest.raises(InvalidInput, match=r"precision: .* use float32"):
        box.predict(np.zeros((1, 16, 16, 1), np.float32), precision="float16")


# --------------------------------------------------------------------------- the model left alone


def test_the_function_and_the_inputs_are_untouched(pictures: np.ndarray) -> None:
    calls = []

    def scribbles(batch: np.ndarray) -> np.ndarray:
        calls.append(1)
        out = region_score(batch)
        batch[:] = np.nan  # its own copy: nothing else may see this
        return out

    before = dict(vars(scribbles))
    x = PRE.normalise(pictures)
    kept = x.copy()
    backend = backend_for(scribbles)
    scores = backend.predict(x)
    np.testing.assert_array_equal(x, kept)
    np.testing.assert_allclose(scores, region_score(kept))
    ex = seewhy.explain(scribbles, pictures, "rise", preprocess=PRE, masks=64, target=0)
    assert np.isfinite(ex.maps).all() and calls
    assert vars(scribbles) == before and backend.place("cuda") is backend.model


def test_hints_and_packing(pictures: np.ndarray) -> None:
    box = seewhy.BlackBox(region_score, classes=("bright", "dark"), size=(32, 24), name="region")
    backend = backend_for(box)
    hints = backend.hints()
    assert (hints.size, hints.channels, hints.labels) == ((32, 24), 3, ("bright", "dark"))
    assert "region" in hints.source and repr(box) == "BlackBox(region, NHWC)"
    again = unpack_model(pickle.loads(pickle.dumps(backend.pack(pickle))))
    assert isinstance(again, seewhy.BlackBox) and again.labels == box.labels
    x = np.random.default_rng(2).normal(size=(2, 32, 24, 3)).astype(np.float32)
    np.testing.assert_allclose(backend_for(again).predict(x), region_score(x))
    assert box(x).shape == (2, 2)
    with warnings.catch_warnings():  # model inputs are fed as given: nothing is guessed
        warnings.simplefilter("error", UserWarning)
        ex = seewhy.explain(box, x, "occlusion", window=8, stride=8)
    picture = np.zeros((32, 24, 3), np.uint8)
    with pytest.warns(UserWarning, match="guessed"):  # the size is the box's, the range is not
        seewhy.explain(box, picture, "occlusion", window=8, stride=8)
    assert ex.model_name == "region" and ex.target_labels[0] in box.labels
