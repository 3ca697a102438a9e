"""Every CAM variant against a slow, plain version of its paper's formula.

The references take activations and gradients with an ordinary full backward
pass on a copy of the model and loop over channels and positions in Python,
so a wrong shortcut in the fast code (a missing denominator, a wrong axis)
shows up as a mismatch, not as a plausible-looking map.
"""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest

import seewhy
from models import tiny_cnn

torch = pytest.importorskip("torch")


def _acts_grads(model: torch.nn.Module, x: np.ndarray, layer: int, targets: list[int]):
    """Activations (N,C,h,w) and d logit[target] / d activations, by a plain backward."""
    model = copy.deepcopy(model)
    store = {}

    def hook(module, args, out):  # type: ignore[no-untyped-def]
        out.retain_grad()
        store["a"] = out

    # the ReLU after this layer is in-place; swap it for a fresh one on the copy
    model[layer + 1] = torch.nn.ReLU()
    model[layer].register_forward_hook(hook)
    logits = model(torch.from_numpy(x))
    logits[torch.arange(len(x)), torch.tensor(targets)].sum().backward()
    return store["a"].detach().double().numpy(), store["a"].grad.double().numpy(), logits


def _loop_weights(name: str, a: np.ndarray, g: np.ndarray) -> np.ndarray:
    n, c, h, w = a.shape
    out = np.zeros((n, c))
    for i in range(n):
        for k in range(c):
            if name == "gradcam":
                out[i, k] = sum(g[i, k, y, x] for y in range(h) for x in range(w)) / (h * w)
            elif name == "gradcam++":
                total_a = sum(a[i, k, y, x] for y in range(h) for x in range(w))
                acc = 0.0
                for y in range(h):
                    for x in range(w):
                        gg = g[i, k, y, x]
                        den = 2 * gg**2 + total_a * gg**3
                        alpha = gg**2 / den if den != 0 else 0.0
                        acc += alpha * max(gg, 0.0)
                out[i, k] = acc
            elif name == "xgradcam":
                total_a = sum(a[i, k, y, x] for y in range(h) for x in range(w))
                out[i, k] = sum(
                    a[i, k, y, x] / (total_a + 1e-7) * g[i, k, y, x]
                    for y in range(h)
                    for x in range(w)
                )
    return out


def _loop_map(name: str, a: np.ndarray, g: np.ndarray) -> np.ndarray:
    n, c, h, w = a.shape
    out = np.zeros((n, h, w))
    if name in ("hirescam", "layercam"):
        for i in range(n):
            for y in range(h):
                for x in range(w):
                    gs = [g[i, k, y, x] for k in range(c)]
                    if name == "layercam":
                        gs = [max(v, 0.0) for v in gs]
                    out[i, y, x] = sum(gs[k] * a[i, k, y, x] for k in range(c))
        return out
    weights = _loop_weights(name, a, g)
    for i in range(n):
        for k in range(c):
            out[i] += weights[i, k] * a[i, k]
    return out


@pytest.mark.parametrize("name", ["gradcam", "gradcam++", "xgradcam", "hirescam", "layercam"])
def test_layer_maps_equal_the_paper_formula(name: str, batch: np.ndarray) -> None:
    model = tiny_cnn()
    targets = [0, 1, 2, 3]
    a, g, _ = _acts_grads(model, batch, layer=2, targets=targets)
    ex = seewhy.explain(model, batch, method=name, layer="2", target=targets)
    expected = _loop_map(name, a, g)
    np.testing.assert_allclose(ex.layer_maps, expected, rtol=1e-4, atol=1e-6)


def test_gradcam_plus_plus_keeps_the_full_denominator(batch: np.ndarray) -> None:
    """seewhy's Grad-CAM++ uses alpha = g^2 / (2 g^2 + sum(A) g^3), not the shortcut that drops
    the sum(A) g^3 term (alpha = 1/2, the numerator alone): with large gradients the two part."""
    model = tiny_cnn()
    with torch.no_grad():
        model[6].weight.mul_(1000.0)  # large gradients: the sum(A) g^3 term outweighs 2 g^2
    targets = [0, 1, 2, 3]
    a, g, _ = _acts_grads(model, batch, layer=2, targets=targets)
    ours = seewhy.explain(model, batch, method="gradcam++", layer="2", target=targets).layer_maps
    paper = _loop_map("gradcam++", a, g)
    shortcut = np.einsum("nc,nchw->nhw", 0.5 * np.maximum(g, 0).sum(axis=(2, 3)), a)
    np.testing.assert_allclose(ours, paper, rtol=1e-4, atol=1e-6)
    for i in range(len(batch)):  # the shortcut, on the same numbers, draws another map
        corr = np.corrcoef(shortcut[i].ravel(), ours[i].ravel())[0, 1]
        assert corr < 0.9, f"image {i}: the shortcut correlates {corr:.4f} with ours"


def test_guided_gradcam_weights_follow_the_tutorial(batch: np.ndarray) -> None:
    model = tiny_cnn()
    a, g, _ = _acts_grads(model, batch, layer=0, targets=[1, 1, 1, 1])
    ex = seewhy.explain(model, batch, method="gradcam", layer="0", target=1, guided=True)
    gated = np.where((a > 0) & (g > 0), g, 0.0)
    weights = gated.mean(axis=(2, 3))
    expected = np.einsum("nc,nchw->nhw", weights, a)
    np.testing.assert_allclose(ex.layer_maps, expected, rtol=1e-4, atol=1e-6)


def test_cam_equals_classifier_weights_times_features(batch: np.ndarray) -> None:
    model = tiny_cnn()
    a, _, logits = _acts_grads(model, batch, layer=2, targets=[0] * 4)
    top = logits.argmax(1).numpy()
    weight = model[6].weight.detach().double().numpy()
    expected = np.einsum("nc,nchw->nhw", weight[top], a)
    ex = seewhy.explain(model, batch, method="cam", layer="3")
    assert not np.allclose(ex.layer_maps, expected)  # layer 3 is not layer 2 ...
    # ... layer 3 is the in-place ReLU after conv 2, so compare with relu(a)
    expected_relu = np.einsum("nc,nchw->nhw", weight[top], np.maximum(a, 0))
    np.testing.assert_allclose(ex.layer_maps, expected_relu, rtol=1e-4, atol=1e-6)


def _pooled_layer_model(scale: float) -> torch.nn.Module:
    """tiny_cnn whose two convolutions both have 16 channels, its classifier scaled by ``scale``."""
    model = tiny_cnn(widths=(16, 16), seed=9)
    with torch.no_grad():
        model[6].weight *= scale
        model[6].bias *= scale
    return model


@pytest.mark.parametrize("scale", [1.0, 1e-6], ids=["usual logits", "tiny logits"])
def test_cam_refuses_a_layer_the_pooling_does_not_read(scale: float, batch: np.ndarray) -> None:
    """Layer 1 has the classifier's 16 channels but is not the pooled one: refused, however
    small the logits (an absolute tolerance of 1e-3 took any layer of logits near 1e-6)."""
    model = _pooled_layer_model(scale)
    logits = model(torch.from_numpy(batch)).detach().numpy()
    assert np.abs(logits).max() < 10 * scale
    with pytest.raises(seewhy.errors.UnsupportedModel, match=r"not global-average-pooling of"):
        seewhy.explain(model, batch, method="cam", layer="1")
    a, _, _ = _acts_grads(model, batch, layer=2, targets=[0] * 4)
    ex = seewhy.explain(model, batch, method="cam", layer="3", target=2)
    weight = model[6].weight.detach().double().numpy()
    expected = np.einsum("c,nchw->nhw", weight[2], np.maximum(a, 0))
    np.testing.assert_allclose(ex.layer_maps, expected, rtol=1e-4, atol=1e-6 * scale)


def test_cam_accepts_a_logit_that_cancels_to_zero(batch: np.ndarray) -> None:
    """A class whose logit is 0 (its terms cancel) still matches its pooled layer."""
    model = _pooled_layer_model(1.0)
    a, _, _ = _acts_grads(model, batch, layer=2, targets=[0] * 4)
    pooled = np.maximum(a, 0).mean(axis=(2, 3))
    with torch.no_grad():
        model[6].bias[1] = -float(pooled[0] @ model[6].weight[1].double().numpy())
    logits = model(torch.from_numpy(batch)).detach().numpy()
    assert abs(logits[0, 1]) < 1e-6  # cancelled: only float32 rounding is left
    ex = seewhy.explain(model, batch, method="cam", layer="3", target=1)
    weight = model[6].weight.detach().double().numpy()
    expected = np.einsum("c,nchw->nhw", weight[1], np.maximum(a, 0))
    np.testing.assert_allclose(ex.layer_maps, expected, rtol=1e-4, atol=1e-6)


def test_cam_of_a_one_logit_head_weighs_class_0_by_minus_the_weights(batch: np.ndarray) -> None:
    """From the definition: z = w . mean(A) + b; class 1 scores z, class 0 -z, so CAM's
    class-0 map is -(w . A) and class 1's w . A, before the ReLU and the normalisation."""
    model = tiny_cnn(classes=1, seed=4)
    a, _, logits = _acts_grads(model, batch, layer=2, targets=[0] * 4)
    w = model[6].weight.detach().double().numpy()[0]
    features = np.maximum(a, 0)  # layer "3": the ReLU after conv 2
    for target, sign in ((1, 1.0), (0, -1.0)):
        ex = seewhy.explain(model, batch, method="cam", layer="3", target=target)
        expected = sign * np.einsum("c,nchw->nhw", w, features)
        np.testing.assert_allclose(ex.layer_maps, expected, rtol=1e-4, atol=1e-6)
    z = logits.detach().numpy()[:, 0]
    default = seewhy.explain(model, batch, method="cam", layer="3")
    assert default.targets.tolist() == (z > 0).astype(int).tolist()


def test_gradcam_equals_cam_on_a_gap_linear_head(batch: np.ndarray) -> None:
    """Selvaraju et al.: on GAP + linear heads Grad-CAM is CAM up to a scale."""
    model = tiny_cnn()
    cam = seewhy.explain(model, batch, method="cam")
    grad = seewhy.explain(model, batch, method="gradcam")
    h, w = cam.layer_maps.shape[1:]
    np.testing.assert_allclose(grad.layer_maps * (h * w), cam.layer_maps, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(grad.maps, cam.maps, atol=1e-5)


def test_eigencam_is_the_first_principal_component(batch: np.ndarray) -> None:
    model = tiny_cnn()
    ex = seewhy.explain(model, batch, method="eigencam", layer="3")
    a, _, _ = _acts_grads(model, batch, layer=2, targets=[0] * 4)
    a = np.maximum(a, 0)
    for i in range(len(batch)):
        flat = a[i].reshape(a.shape[1], -1).T  # positions x channels
        cov = np.cov(flat, rowvar=False)
        _, vecs = np.linalg.eigh(cov)
        proj = flat @ vecs[:, -1]
        corr = np.corrcoef(proj, ex.layer_maps[i].ravel())[0, 1]
        assert math.isclose(abs(corr), 1.0, abs_tol=1e-4)
        mean_map = flat.mean(axis=1)
        agree = np.corrcoef(mean_map, ex.layer_maps[i].ravel())[0, 1]
        assert agree > 0, "the sign is chosen to agree with the mean activation"


@pytest.mark.parametrize(
    ("ours", "theirs"),
    [
        ("gradcam", "GradCAM"),
        ("gradcam++", "GradCAMPlusPlus"),
        ("xgradcam", "XGradCAM"),
        ("hirescam", "HiResCAM"),
        ("layercam", "LayerCAM"),
    ],
)
def test_against_pytorch_grad_cam(ours: str, theirs: str, batch: np.ndarray) -> None:
    pgc = pytest.importorskip("pytorch_grad_cam", reason="pytorch-grad-cam is not installed")
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    model = tiny_cnn()
    with torch.no_grad():  # large gradients, so their eps (1e-6 in Grad-CAM++) is negligible
        model[6].weight.mul_(1000.0)
    ref_model = copy.deepcopy(model)
    ref_model[3] = torch.nn.ReLU()  # their hooks cannot follow in-place ReLUs
    targets = [0, 1, 2, 3]
    cam = getattr(pgc, theirs)(model=ref_model, target_layers=[ref_model[2]])
    ref = cam(
        input_tensor=torch.from_numpy(batch),
        targets=[ClassifierOutputTarget(t) for t in targets],
    )
    ex = seewhy.explain(model, batch, method=ours, layer="2", target=targets)
    compared = 0
    for i in range(len(batch)):
        blank = (ref[i].max() == 0, ex.maps[i].max() == 0)
        assert blank[0] == blank[1], f"image {i}: blank only in {'theirs' if blank[0] else 'ours'}"
        if not blank[0]:  # a blank map has no correlation; both blank is agreement
            corr = np.corrcoef(ref[i].ravel(), ex.maps[i].ravel())[0, 1]
            assert corr > 0.999, f"image {i}: correlation {corr:.5f}"
            compared += 1
    assert compared >= len(batch) - 1, f"{compared} of {len(batch)} maps compared, the rest blank"
