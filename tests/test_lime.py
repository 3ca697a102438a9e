"""LIME and Kernel SHAP on superpixels."""

from __future__ import annotations

import itertools
import warnings
from math import factorial
from typing import Any

import numpy as np
import pytest

import seewhy
from models import one_conv, trained_torch_cnn
from seewhy._kit import compiled
from seewhy._kit.superpixels import compose, label_runs, segment, segment_means
from seewhy.errors import InvalidInput
from seewhy.methods.base import Context
from seewhy.methods.lime import kernel_shap_fit, lime_weights, ridge_fit, shap_coalitions
from seewhy.registry import get
from seewhy.synthetic import STRIPES_PREPROCESS as PREPROCESS
from seewhy.synthetic import box_share, mass_inside
from seewhy.synthetic import make_stripes as make_dataset

torch = pytest.importorskip("torch", reason="needs torch (pip install seewhy[torch])")
from seewhy.backends.torch import TorchBackend  # noqa: E402  (imports torch)

nn = torch.nn

SLIC = {"segmentation": "slic", "segmentation_params": {"n_segments": 40, "compactness": 10}}


@pytest.fixture(scope="module")
def trained() -> Any:
    model, accuracy = trained_torch_cnn()
    assert accuracy > 0.95
    return model


def _small(seed: int = 0) -> Any:
    return one_conv(4, 3, seed, pool=2)


def _ctx(model: Any, pictures: np.ndarray, batch_size: int = 64, **kw: Any) -> Context:
    return Context(
        backend=TorchBackend(model),
        inputs=PREPROCESS.normalise(pictures),
        targets=None,
        layer=None,
        images=pictures,
        preprocess=PREPROCESS,
        batch_size=batch_size,
        **kw,
    )


def _quadrants(size: int = 16) -> np.ndarray:
    labels = np.zeros((size, size), np.int64)
    labels[: size // 2, size // 2 :] = 1
    labels[size // 2 :, : size // 2] = 2
    labels[size // 2 :, size // 2 :] = 3
    return labels


# -- the pieces, against their definitions ---------------------------------------------


def test_lime_kernel_is_the_seed_chapter_kernel() -> None:
    from sklearn.metrics import pairwise_distances

    on = np.random.default_rng(0).random((50, 9)) < 0.5
    on[0] = True
    on[1] = False
    d = pairwise_distances(on.astype(float), np.ones((1, 9)), metric="cosine").ravel()
    assert np.allclose(lime_weights(on, 0.25), np.sqrt(np.exp(-(d**2) / 0.25**2)))


def test_ridge_is_sklearn_ridge_with_sample_weight() -> None:
    from sklearn.linear_model import Ridge

    rng = np.random.default_rng(1)
    x = (rng.random((200, 7)) < 0.5).astype(float)
    y = x @ rng.normal(size=7) + rng.normal(scale=0.1, size=200)
    w = rng.random(200)
    coef, intercept, r2 = ridge_fit(x, y, w, 1.0)
    ref = Ridge(alpha=1.0).fit(x, y, sample_weight=w)
    assert np.allclose(coef, ref.coef_, atol=1e-8)
    assert intercept == pytest.approx(ref.intercept_)
    assert r2 == pytest.approx(ref.score(x, y, sample_weight=w))


@pytest.mark.parametrize("use_numba", [True, False], ids=["numba", "numpy"])
def test_compose_equals_where(use_numba: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    if use_numba and not compiled.available():
        pytest.skip("numba is not installed (seewhy[fast])")
    monkeypatch.setattr(compiled, "available", lambda: use_numba)
    rng = np.random.default_rng(2)
    labels = rng.integers(0, 6, (9, 7))
    x = rng.normal(size=(9, 7, 3)).astype(np.float32)
    fill = rng.normal(size=(9, 7, 3)).astype(np.float32)
    on = rng.random((5, 6)) < 0.5
    out = compose(on, labels, x, fill, np.empty((8, 9, 7, 3), np.float32))
    assert np.array_equal(out, np.where(on[:, labels][..., None], x, fill))
    given = compose(on, labels, x, fill, np.empty((8, 9, 7, 3), np.float32), label_runs(labels))
    assert np.array_equal(given, out)


def test_segment_means_and_relabelling() -> None:
    labels = np.array([[5, 5, 9], [9, 9, 5]])
    x = np.arange(18, dtype=np.float32).reshape(2, 3, 3)
    dense = segment(np.zeros((2, 3, 3), np.uint8), labels)
    assert dense.tolist() == [[0, 0, 1], [1, 1, 0]]
    means = segment_means(x, dense)
    assert np.allclose(means[0, 0], x[[0, 0, 1], [0, 1, 2]].mean(axis=0))
    with pytest.raises(InvalidInput):
        segment(np.zeros((2, 3, 3), np.uint8), "watershed-of-doom")
    with pytest.raises(InvalidInput):
        segment(np.zeros((2, 3, 3), np.uint8), np.zeros((3, 3), np.int64))


def _exact_shapley(value: Any, m: int) -> np.ndarray:
    phi = np.zeros(m)
    for j in range(m):
        others = [k for k in range(m) if k != j]
        for size in range(m):
            for subset in itertools.combinations(others, size):
                s = np.zeros(m, bool)
                s[list(subset)] = True
                with_j = s.copy()
                with_j[j] = True
                weight = factorial(size) * factorial(m - size - 1) / factorial(m)
                phi[j] += weight * (value(with_j) - value(s))
    return phi


def test_kernel_shap_with_every_coalition_gives_exact_shapley_values() -> None:
    rng = np.random.default_rng(3)
    table = rng.normal(size=2**5)

    def value(z: np.ndarray) -> float:  # any set function at all
        return float(table[int((z * (1 << np.arange(5))).sum())])

    z, w = shap_coalitions(5, 100, rng)
    assert len(z) == 30
    y = np.array([value(row) for row in z])
    phi = kernel_shap_fit(z, y, w, value(np.zeros(5, bool)), value(np.ones(5, bool)))
    assert np.allclose(phi, _exact_shapley(value, 5), atol=1e-10)


def test_kernel_shap_end_to_end_is_exact_on_four_superpixels() -> None:
    model = _small()
    pictures = np.random.default_rng(4).integers(0, 256, (2, 16, 16, 3), dtype=np.uint8)
    ctx = _ctx(model, pictures)
    labels = _quadrants()
    res = get("kernelshap")(segmentation=labels, samples=64, fill="gray").run(ctx)
    x = ctx.inputs
    grey = PREPROCESS.normalise(np.full((16, 16, 3), 128, np.uint8))
    for i in range(2):
        target = int(res.targets[i])

        def value(z: np.ndarray, i: int = i, target: int = target) -> float:
            img = np.where(z[labels][..., None], x[i], grey)[None]
            return float(ctx.backend.predict(img)[0, target])

        phi = res.extras["superpixel_weights"][i]
        assert np.allclose(phi, _exact_shapley(value, 4), atol=1e-4)
        assert phi.sum() == pytest.approx(
            value(np.ones(4, bool)) - value(np.zeros(4, bool)), abs=1e-4
        )


def test_kernel_shap_sampling_keeps_efficiency() -> None:
    model = _small()
    pictures = make_dataset(1, seed=5).images
    res = get("lime")(explainer="shap", samples=200, **SLIC).run(_ctx(model, pictures))
    phi = res.extras["superpixel_weights"][0]
    assert len(phi) > 8  # more than 2^8 coalitions: sampled, not enumerated
    full = res.logits[0, res.targets[0]]
    assert phi.sum() == pytest.approx(full - res.extras["intercept"][0], abs=1e-4)


# -- behaviour -----------------------------------------------------------------------------


def test_same_seed_same_result_other_seed_differs() -> None:
    model = _small()
    pictures = make_dataset(2, seed=6).images
    a = get("lime")(samples=100, seed=1, **SLIC).run(_ctx(model, pictures, batch_size=7))
    b = get("lime")(samples=100, seed=1, **SLIC).run(_ctx(model, pictures, batch_size=64))
    c = get("lime")(samples=100, seed=2, **SLIC).run(_ctx(model, pictures))
    assert np.allclose(a.maps, b.maps, atol=1e-5)
    assert not np.allclose(a.maps, c.maps)


def test_extras_mask_and_picture() -> None:
    model = _small()
    pictures = make_dataset(2, seed=7).images
    res = get("lime")(samples=60, top_superpixels=2, positive_only=False, **SLIC).run(
        _ctx(model, pictures)
    )
    ex = res.extras
    assert ex["segments"].shape == (2, 32, 32) and ex["mask"].dtype == bool
    assert ex["picture"].shape == (2, 32, 32, 3) and ex["picture"].dtype == np.uint8
    for i in range(2):
        weights = ex["superpixel_weights"][i]
        assert weights.dtype == np.float32 and len(weights) == ex["segments"][i].max() + 1
        assert np.allclose(res.maps[i], weights[ex["segments"][i]])
        top = set(np.argsort(-weights)[:2].tolist())
        assert set(np.unique(ex["segments"][i][ex["mask"][i]]).tolist()) == top
        assert np.isfinite(ex["fit_score"][i]) and ex["fit_score"][i] <= 1.0


@pytest.mark.parametrize("fill", ["mean", "blur", "black", (0, 255, 0), 0.0, "noise"])
def test_fills(fill: Any) -> None:
    model = _small()
    pictures = make_dataset(1, seed=8).images
    res = get("lime")(samples=40, fill=fill, **SLIC).run(_ctx(model, pictures))
    assert np.isfinite(res.maps).all()


@pytest.mark.parametrize("how", ["quickshift", "felzenszwalb"])
def test_default_segmentations_run(how: str) -> None:
    model = _small()
    pictures = make_dataset(1, size=64, seed=3).images
    calls: list[int] = []
    res = get("lime")(samples=30, segmentation=how).run(
        _ctx(model, pictures, progress=calls.append)
    )
    assert res.extras["segments"].max() >= 1
    assert sum(calls) == 1


def test_bad_parameters() -> None:
    model = _small()
    pictures = np.zeros((1, 12, 12, 3), np.uint8)
    for params in [
        {"samples": 0},
        {"explainer": "anchor"},
        {"p": 0.0},
        {"kernel_width": -1.0},
        {"segmentation_params": {"bogus": 1}},
        {"fill": "glitter"},
    ]:
        with pytest.raises(InvalidInput):
            get("lime")(**SLIC | params).run(_ctx(model, pictures))


# -- where it looks, and against the lime package ------------------------------------------


def test_lime_finds_the_object(trained: Any) -> None:
    data = make_dataset(10, seed=13)
    for explainer in ("lime", "shap"):
        e = seewhy.explain(
            trained,
            data.images,
            "lime",
            preprocess=PREPROCESS,
            batch_size=128,
            samples=250,
            explainer=explainer,
            fill="blur",
            **SLIC,
        )
        assert mass_inside(e.maps, data.masks).mean() > 2.5 * box_share(data.masks).mean()
        overlaps = (e.extras["mask"] & data.masks).reshape(len(data), -1).any(axis=1)
        assert overlaps.mean() >= 0.9, explainer


def test_with_the_object_as_a_superpixel_it_ranks_first(trained: Any) -> None:
    """With an oracle segmentation (object + four background quarters) LIME picks the object."""
    data = make_dataset(10, seed=14)
    quarters = _quadrants(32)
    oracle = {
        data.images[i].tobytes(): np.where(data.masks[i], 4, quarters) for i in range(len(data))
    }
    for explainer in ("lime", "shap"):
        e = seewhy.explain(
            trained,
            data.images,
            "lime",
            preprocess=PREPROCESS,
            batch_size=128,
            samples=100,
            explainer=explainer,
            top_superpixels=1,
            segmentation=lambda pic: oracle[pic.tobytes()],
        )
        assert np.array_equal(e.extras["mask"], data.masks), explainer


def test_agrees_with_the_lime_package() -> None:
    lime_image = pytest.importorskip("lime.lime_image", reason="the lime package is not installed")
    model = _small()
    pictures = make_dataset(1, seed=9).images
    ctx = _ctx(model, pictures)
    ours = get("lime")(samples=1500, **SLIC).run(ctx)
    labels = ours.extras["segments"][0]
    target = int(ours.targets[0])

    def classify(batch: np.ndarray) -> np.ndarray:
        return ctx.backend.predict(batch.astype(np.float32))

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = lime_image.LimeImageExplainer(random_state=0).explain_instance(
            ctx.inputs[0].astype(np.float64),
            classify,
            labels=(target,),
            top_labels=None,
            num_samples=1500,
            segmentation_fn=lambda _: labels,
            batch_size=100,
        )
    weights = np.zeros(labels.max() + 1)
    for k, v in theirs.local_exp[target]:
        weights[k] = v
    assert np.corrcoef(weights, ours.extras["superpixel_weights"][0])[0, 1] > 0.9
