"""The method math against direct formulas, on the numpy backend: no framework at all.

The closed-form model of ``numpy_backend.py`` has exact activations and
gradients, so every map below has a formula written here from the paper, not
from seewhy's code: CAM variants from (A, dS/dA), pixel methods from finite
differences, occlusion and RISE from plain forward passes.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import seewhy
from numpy_backend import (
    ClosedForm,
    NumpyBackend,
    closed_form_model,
    logits_from,
    pool_weights,
    pre_activations,
)
from seewhy.errors import LayerNotFound, UnsupportedModel
from seewhy.methods.base import Context
from seewhy.registry import get


def _inputs(n: int = 3, size: int = 8, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, size, size, 3)).astype(np.float32)


def _scores(model: ClosedForm, x: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """float64 target logits straight from the model's formula."""
    logits = logits_from(model, np.maximum(pre_activations(model, x), 0.0))
    return logits[np.arange(len(x)), targets]


def _run(backend: NumpyBackend, x: np.ndarray, method: str, **params: Any) -> Any:
    """A method straight on model inputs (no io layer), explaining each image's top class."""
    layer = backend.resolve_layer(None, x) if get(method).uses_layer else None
    ctx = Context(backend=backend, inputs=x, targets=None, layer=layer)
    return get(method)(**params).run(ctx)


def _finite_difference(model: ClosedForm, x: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Central differences of the target logit, float64: the reference input gradient."""
    x = x.astype(np.float64)
    flat = x.reshape(len(x), -1)
    grads = np.zeros_like(flat)
    eps = 1e-6
    for j in range(flat.shape[1]):
        up, down = flat.copy(), flat.copy()
        up[:, j] += eps
        down[:, j] -= eps
        grads[:, j] = (
            _scores(model, up.reshape(x.shape), targets)
            - _scores(model, down.reshape(x.shape), targets)
        ) / (2 * eps)
    return grads.reshape(x.shape)


@pytest.fixture
def closed() -> ClosedForm:
    return closed_form_model()


@pytest.fixture
def x() -> np.ndarray:
    return _inputs()


def _acts_grads(model: ClosedForm, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A (N, K, h, w), dS/dA for the top class (W_tk P_ij), and the top classes."""
    acts = np.maximum(pre_activations(model, x), 0.0)
    targets = logits_from(model, acts).argmax(axis=1)
    pool = pool_weights(*acts.shape[2:], model.weighted_pool)
    grads = model.head[targets][:, :, None, None] * pool[None, None]
    return acts, grads, targets


def _gradcampp(a: np.ndarray, g: np.ndarray) -> np.ndarray:
    alpha = g**2 / (2 * g**2 + a.sum(axis=(2, 3), keepdims=True) * g**3)
    weights = (alpha * np.maximum(g, 0)).sum(axis=(2, 3))
    return np.einsum("nk,nkij->nij", weights, a)


CAM_FORMULAS = {
    "gradcam": lambda a, g: np.einsum("nk,nkij->nij", g.mean(axis=(2, 3)), a),
    "hirescam": lambda a, g: (g * a).sum(axis=1),
    "layercam": lambda a, g: (np.maximum(g, 0) * a).sum(axis=1),
    "xgradcam": lambda a, g: np.einsum(
        "nk,nkij->nij", (g * a).sum(axis=(2, 3)) / (a.sum(axis=(2, 3)) + 1e-7), a
    ),
    "gradcam++": _gradcampp,
}


@pytest.mark.parametrize("method", sorted(CAM_FORMULAS))
def test_cam_variants_match_their_formulas(closed: ClosedForm, x: np.ndarray, method: str) -> None:
    acts, grads, targets = _acts_grads(closed, x)
    raw = _run(NumpyBackend(closed), x, method)
    np.testing.assert_array_equal(raw.targets, targets)
    expected = CAM_FORMULAS[method](acts, grads)
    np.testing.assert_allclose(raw.maps, expected, rtol=1e-4, atol=1e-6)


def test_the_weighted_pool_makes_the_variants_differ(closed: ClosedForm, x: np.ndarray) -> None:
    """Otherwise the formula checks above could not tell the variants apart."""
    acts, grads, _ = _acts_grads(closed, x)
    grad = CAM_FORMULAS["gradcam"](acts, grads)
    hires = CAM_FORMULAS["hirescam"](acts, grads)
    assert np.abs(grad / np.abs(grad).max() - hires / np.abs(hires).max()).max() > 0.05


def test_cam_uses_the_head_weights_on_global_average_pooling(x: np.ndarray) -> None:
    closed = closed_form_model(weighted=False)
    acts, _, targets = _acts_grads(closed, x)
    raw = _run(NumpyBackend(closed), x, "cam")
    expected = np.einsum("nk,nkij->nij", closed.head[targets], acts)
    np.testing.assert_allclose(raw.maps, expected, rtol=1e-4, atol=1e-6)
    # on a global average pool Grad-CAM is CAM divided by the number of positions
    grad = _run(NumpyBackend(closed), x, "gradcam").maps
    np.testing.assert_allclose(grad * acts[0, 0].size, expected, rtol=1e-4, atol=1e-6)


def test_cam_refuses_a_head_that_is_not_average_pooling(closed: ClosedForm, x: np.ndarray) -> None:
    with pytest.raises(UnsupportedModel, match="global-average-pooling"):
        _run(NumpyBackend(closed), x, "cam")


def test_backend_gradients_match_finite_differences(closed: ClosedForm, x: np.ndarray) -> None:
    backend = NumpyBackend(closed)
    cap = backend.input_gradients(x, targets=None, score="logit")
    fd = _finite_difference(closed, x, cap.targets)
    np.testing.assert_allclose(cap.gradients, fd, rtol=1e-3, atol=1e-5)


def test_saliency_and_gradient_x_input(closed: ClosedForm, x: np.ndarray) -> None:
    backend = NumpyBackend(closed)
    targets = backend.predict(x).argmax(axis=1)
    fd = _finite_difference(closed, x, targets)
    saliency = _run(backend, x, "saliency")
    np.testing.assert_allclose(saliency.maps, np.abs(fd).max(axis=-1), rtol=1e-3, atol=1e-5)
    gxi = _run(backend, x, "gradient-x-input")
    np.testing.assert_allclose(gxi.maps, np.abs(fd * x).sum(axis=-1), rtol=1e-3, atol=1e-5)
    np.testing.assert_allclose(gxi.extras["attributions"], fd * x, rtol=1e-3, atol=1e-5)


def test_integrated_gradients_is_complete(closed: ClosedForm, x: np.ndarray) -> None:
    """sum of attributions = S(x) - S(0), up to the quadrature's error."""
    raw = _run(NumpyBackend(closed), x, "integrated-gradients", steps=64)
    expected = _scores(closed, x, raw.targets) - _scores(closed, np.zeros_like(x), raw.targets)
    total = raw.extras["attributions"].reshape(len(x), -1).sum(axis=1)
    np.testing.assert_allclose(total, expected, rtol=2e-2, atol=1e-3)
    np.testing.assert_allclose(raw.extras["score_difference"], expected, rtol=1e-5, atol=1e-5)


def test_occlusion_is_the_score_drop_of_each_window(closed: ClosedForm, x: np.ndarray) -> None:
    """Windows of 4 x 4 at stride 4 tile the 8 x 8 picture: each pixel has one window."""
    raw = _run(NumpyBackend(closed), x, "occlusion", window=4, stride=4)
    base = _scores(closed, x, raw.targets)
    expected = np.zeros(x.shape[:3])
    for top in (0, 4):
        for left in (0, 4):
            hidden = x.copy()
            hidden[:, top : top + 4, left : left + 4] = 0.0
            drop = base - _scores(closed, hidden, raw.targets)
            expected[:, top : top + 4, left : left + 4] = drop[:, None, None]
    np.testing.assert_allclose(raw.maps, expected, rtol=1e-4, atol=1e-5)


def test_rise_is_the_score_weighted_mask(closed: ClosedForm, x: np.ndarray) -> None:
    """With one mask M and no centring, RISE is s(x * M) M / p.

    M itself is read off a model whose score is the constant 1 (zero head,
    unit bias), so the check does not depend on how RISE draws its masks.
    """
    settings = {"masks": 1, "p": 0.5, "center": False, "seed": 3}
    constant = closed_form_model()
    constant.head = np.zeros_like(constant.head)
    constant.head_bias = np.ones_like(constant.head_bias)
    mask = _run(NumpyBackend(constant), x, "rise", **settings).maps[0] * 0.5
    assert 0.0 <= mask.min() and mask.max() <= 1.0 + 1e-6 and mask.std() > 0
    raw = _run(NumpyBackend(closed), x, "rise", **settings)
    shown = x * mask[None, :, :, None]
    expected = _scores(closed, shown, raw.targets)[:, None, None] * mask[None] / 0.5
    np.testing.assert_allclose(raw.maps, expected, rtol=1e-4, atol=1e-5)


def test_rise_centred_on_a_constant_score_is_zero(x: np.ndarray) -> None:
    constant = closed_form_model()
    constant.head = np.zeros_like(constant.head)
    raw = _run(NumpyBackend(constant), x, "rise", masks=8)
    np.testing.assert_allclose(raw.maps, 0.0, atol=1e-5)


def test_explain_runs_on_the_numpy_backend(closed: ClosedForm, x: np.ndarray) -> None:
    """A Backend instance is used as it is: no framework is imported for it."""
    backend = NumpyBackend(closed)
    assert seewhy.backends.backend_for(backend) is backend
    e = seewhy.explain(backend, x, "gradcam")
    assert e.maps.shape == (3, 8, 8) and e.maps.dtype == np.float32
    assert e.layer == "features"
    np.testing.assert_array_equal(e.targets, backend.predict(x).argmax(axis=1))
    assert np.isfinite(e.maps).all() and e.maps.max() <= 1.0


def test_the_numpy_backend_names_a_wrong_layer(numpy_backend: NumpyBackend) -> None:
    with pytest.raises(LayerNotFound, match="features"):
        seewhy.explain(numpy_backend, _inputs(1), "gradcam", layer="featurs")


def test_the_numpy_backend_is_a_backend(numpy_backend: NumpyBackend) -> None:
    assert isinstance(numpy_backend, seewhy.backends.Backend)
    copy = numpy_backend.copy_model()
    NumpyBackend(copy).randomize_layers(["head"], lambda v: np.zeros_like(v))
    assert not np.any(copy.head) and np.any(numpy_backend.model.head)
