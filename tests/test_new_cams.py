"""The CAMs of issue 29 (Finer-CAM, ShapleyCAM, KPCA-CAM, FullGrad, Eigen-Grad-CAM, Grad-CAM
element-wise) and the two smoothings, each against a slow loop of its paper's formula on a
tiny model and against pytorch-grad-cam at the same layer.

The loops take activations and gradients with an ordinary full backward pass on a copy of
the model (no seewhy code), in float64, position by position.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable

import numpy as np
import pytest

import seewhy
from models import bn_dropout_cnn, one_conv, tiny_cnn
from seewhy.errors import InvalidInput, UnsupportedModel

torch = pytest.importorskip("torch")

LAYER = 2  # tiny_cnn's second convolution (8 x 8 at 16 px)


@pytest.fixture(scope="module")
def x() -> np.ndarray:
    return np.random.default_rng(0).standard_normal((3, 16, 16, 3)).astype(np.float32)


@pytest.fixture(scope="module")
def net() -> torch.nn.Module:
    return tiny_cnn(classes=8, inplace=False)


@pytest.fixture(scope="module")
def curved() -> torch.nn.Module:
    """conv-SiLU-pool(2)-linear: the score is curved in the conv's output (ShapleyCAM)."""
    return one_conv(8, 5, activation=torch.nn.SiLU(), pool=2)


def _nchw(x: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(x).permute(0, 3, 1, 2).contiguous().double()


def _acts_grads(
    model: torch.nn.Module, x: np.ndarray, layer: int, score: Callable[[torch.Tensor], torch.Tensor]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Activations, d score / d activations (float64, a plain backward), and the logits."""
    model = copy.deepcopy(model).double().eval()
    store = {}

    def hook(module, args, out):  # type: ignore[no-untyped-def]
        out.retain_grad()
        store["a"] = out

    model[layer].register_forward_hook(hook)
    logits = model(_nchw(x))
    score(logits).sum().backward()
    a = store["a"]
    return a.detach().numpy(), a.grad.numpy(), logits.detach().numpy()


def _top(logits: torch.Tensor) -> torch.Tensor:
    return logits.gather(1, logits.argmax(1, keepdim=True))[:, 0]


def _corr(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a.ravel(), b.ravel())[0, 1])


def _principal(matrix: np.ndarray) -> np.ndarray:
    """(P,) the centred (P, C) rows projected on their covariance's top eigenvector."""
    centred = matrix - matrix.mean(axis=0)
    _, vectors = np.linalg.eigh(np.cov(centred, rowvar=False))
    return centred @ vectors[:, -1]


# -- each method against its formula ---------------------------------------------------------


def test_gradcam_elementwise_sums_the_positive_products(net, x) -> None:
    a, g, _ = _acts_grads(net, x, LAYER, _top)
    n, c, h, w = a.shape
    expected = np.zeros((n, h, w))
    for i in range(n):
        for y in range(h):
            for z in range(w):
                expected[i, y, z] = sum(max(g[i, k, y, z] * a[i, k, y, z], 0.0) for k in range(c))
    ex = seewhy.explain(net, x, "gradcam-elementwise", layer=str(LAYER))
    np.testing.assert_allclose(ex.layer_maps, expected, rtol=1e-4, atol=1e-6)


def test_eigengradcam_is_the_first_component_of_gradient_times_activation(net, x) -> None:
    a, g, _ = _acts_grads(net, x, LAYER, _top)
    ex = seewhy.explain(net, x, "eigengradcam", layer=str(LAYER))
    for i in range(len(x)):
        product = (g[i] * a[i]).reshape(a.shape[1], -1).T  # positions x channels
        corr = _corr(_principal(product), ex.layer_maps[i])
        assert math.isclose(abs(corr), 1.0, abs_tol=1e-4), (i, corr)
        assert _corr(product.sum(axis=1), ex.layer_maps[i]) > 0, "sign agrees with sum g A"


@pytest.mark.parametrize("kernel", ["sigmoid", "rbf"])
def test_kpcacam_is_kernel_pca_of_the_activations(net, x, kernel: str) -> None:
    a, _, _ = _acts_grads(net, x, LAYER, _top)
    ex = seewhy.explain(net, x, "kpcacam", layer=str(LAYER), kernel=kernel, gamma=0.05)
    for i in range(len(x)):
        rows = a[i].reshape(a.shape[1], -1).T
        rows = rows - rows.mean(axis=0)
        p = len(rows)
        k = np.zeros((p, p))
        for s in range(p):
            for t in range(p):
                if kernel == "rbf":
                    k[s, t] = math.exp(-0.05 * float(((rows[s] - rows[t]) ** 2).sum()))
                else:
                    k[s, t] = math.tanh(0.05 * float(rows[s] @ rows[t]) + 1.0)
        one = np.full((p, p), 1.0 / p)
        centred = k - one @ k - k @ one + one @ k @ one
        values, vectors = np.linalg.eigh(centred)
        expected = vectors[:, -1] * math.sqrt(values[-1])
        ours = ex.layer_maps[i].ravel()
        np.testing.assert_allclose(np.abs(ours), np.abs(expected), rtol=1e-3, atol=1e-5)
        assert _corr(ours, a[i].mean(axis=0).ravel()) > 0, "sign agrees with the mean activation"
    assert ex.params["kernel"] == kernel and ex.params["gamma"] == 0.05


def _finer_score(target: int | None, ranks: tuple[int, ...], alpha: float):  # type: ignore[no-untyped-def]
    """pytorch-grad-cam's FinerWeightedTarget, with the nearest classes picked as there."""

    def score(logits: torch.Tensor) -> torch.Tensor:
        out = []
        for row in logits:
            main = int(row.argmax()) if target is None else target
            order = torch.argsort((row - row[main]).abs().detach(), stable=True)
            order = [int(c) for c in order if int(c) != main]
            compared = [order[r - 1] for r in ranks if r - 1 < len(order)]
            prob = torch.softmax(row, dim=0)
            num = sum(prob[c] * (row[main] - alpha * row[c]) for c in compared)
            out.append(num / sum(prob[c] for c in compared))
        return torch.stack(out)

    return score


@pytest.mark.parametrize(("alpha", "ranks"), [(1.0, (1, 2, 3)), (0.6, (1, 4))])
def test_finercam_is_gradcam_of_the_score_against_the_nearest_classes(
    net, x, alpha: float, ranks: tuple[int, ...]
) -> None:
    a, g, _ = _acts_grads(net, x, LAYER, _finer_score(None, ranks, alpha))
    weights = np.array([[g[i, k].mean() for k in range(a.shape[1])] for i in range(len(x))])
    expected = np.einsum("nc,nchw->nhw", weights, a)
    ex = seewhy.explain(
        net, x, "finercam", layer=str(LAYER), alpha=alpha, comparison_categories=ranks
    )
    np.testing.assert_allclose(ex.layer_maps, expected, rtol=1e-3, atol=1e-6)
    assert ex.params["alpha"] == alpha and ex.params["comparison_categories"] == ranks
    plain = seewhy.explain(net, x, "gradcam", layer=str(LAYER))
    assert not np.allclose(plain.layer_maps, ex.layer_maps, atol=1e-4)  # the score differs


def test_finercam_picks_the_nearest_classes_per_image_and_breaks_ties_by_index(net, x) -> None:
    """Each image of a batch its own target; two classes at the same distance: the lower first."""
    targets = [2, 7, 0]
    a, g, _ = _acts_grads(net, x, LAYER, _per_image(targets, (1, 2), 0.5))
    expected = np.einsum("nc,nchw->nhw", g.mean(axis=(2, 3)), a)
    ex = seewhy.explain(
        net, x, "finercam", layer=str(LAYER), target=targets, alpha=0.5,
        comparison_categories=(1, 2), batch_size=2,
    )  # fmt: skip
    np.testing.assert_allclose(ex.layer_maps, expected, rtol=1e-3, atol=1e-6)
    tied = torch.tensor([[0.0, 1.0, -1.0, 1.0, 5.0]], dtype=torch.float64, requires_grad=True)
    from seewhy.backends.torch.targets import TorchOps
    from seewhy.methods.cam_variants import _FinerScore

    ours = _FinerScore(0, (1,), 1.0).score(
        tied, TorchOps(tied.device), probability=False, sigmoid=False
    )
    (grad,) = torch.autograd.grad(ours.sum(), tied)  # class 1 (not 2 or 3) is rank 1
    np.testing.assert_allclose(grad.numpy()[0], [1.0, -1.0, 0.0, 0.0, 0.0], atol=1e-6)


def _per_image(targets, ranks, alpha):  # type: ignore[no-untyped-def]
    scores = [_finer_score(t, ranks, alpha) for t in targets]
    return lambda logits: torch.cat([scores[i](logits[i : i + 1]) for i in range(len(targets))])


def test_finercam_explains_the_class_asked_for(net, x) -> None:
    a, g, _ = _acts_grads(net, x, LAYER, _finer_score(5, (1, 2, 3), 1.0))
    expected = np.einsum("nc,nchw->nhw", g.mean(axis=(2, 3)), a)
    ex = seewhy.explain(net, x, "finercam", layer=str(LAYER), target=5)
    np.testing.assert_allclose(ex.layer_maps, expected, rtol=1e-3, atol=1e-6)
    assert (ex.targets == 5).all()


def test_shapleycam_subtracts_half_the_hessian_term(curved, x) -> None:
    model = copy.deepcopy(curved).double().eval()
    inputs = _nchw(x)
    acts = model[0](inputs).detach()
    tail = model[1:]
    top = tail(acts).argmax(1)

    def score(a: torch.Tensor) -> torch.Tensor:
        return tail(a).gather(1, top[:, None]).sum()

    _, grad = torch.autograd.functional.vjp(score, acts)
    _, hvp = torch.autograd.functional.hvp(score, acts, acts)
    weights = (grad - 0.5 * hvp).mean(dim=(2, 3)).numpy()
    expected = np.einsum("nc,nchw->nhw", weights, acts.numpy())
    ex = seewhy.explain(curved, x, "shapleycam", layer="0")
    np.testing.assert_allclose(ex.layer_maps, expected, rtol=1e-4, atol=1e-6)
    assert float(hvp.abs().max()) > 1e-5, "the SiLU makes the Hessian term count"
    plain = seewhy.explain(curved, x, "gradcam", layer="0")
    assert not np.allclose(plain.layer_maps, ex.layer_maps, atol=1e-5)


def test_shapleycam_is_gradcam_where_the_score_is_piecewise_linear(net, x) -> None:
    ours = seewhy.explain(net, x, "shapleycam", layer=str(LAYER))
    plain = seewhy.explain(net, x, "gradcam", layer=str(LAYER))
    np.testing.assert_allclose(ours.layer_maps, plain.layer_maps, rtol=1e-5, atol=1e-7)


def _normalised(maps: np.ndarray) -> np.ndarray:
    out = np.zeros_like(maps)
    for idx in np.ndindex(*maps.shape[:2]):
        m = maps[idx]
        span = m.max() - m.min()
        out[idx] = (m - m.min()) / span if span > 1e-12 * max(abs(m).max(), 1e-30) else 0.0
    return out


def test_fullgrad_sums_the_normalised_bias_gradients(x) -> None:
    model = bn_dropout_cnn()  # left in train mode, as mid-training
    ref = copy.deepcopy(model).double().eval()
    outputs = []
    for module in ref:
        if type(module) in (torch.nn.Conv2d, torch.nn.BatchNorm2d):
            module.register_forward_hook(lambda m, a, out: outputs.append(out))
    inputs = _nchw(x).requires_grad_(True)
    grads = torch.autograd.grad(_top(ref(inputs)).sum(), [inputs, *outputs])
    total = _normalised(np.abs((inputs * grads[0]).detach().numpy())).sum(axis=1)
    biased = [m for m in ref if type(m) in (torch.nn.Conv2d, torch.nn.BatchNorm2d)]
    for module, grad in zip(biased, grads[1:], strict=True):
        if isinstance(module, torch.nn.BatchNorm2d):
            std = torch.sqrt(module.running_var + module.eps)
            bias = module.bias - module.running_mean * module.weight / std
        else:
            bias = module.bias
        part = np.abs(bias.detach().numpy()[None, :, None, None] * grad.numpy())
        layer = torch.from_numpy(_normalised(part).sum(axis=1))[:, None]
        total += torch.nn.functional.interpolate(layer, size=x.shape[1:3], mode="bilinear")[
            :, 0
        ].numpy()
    expected = (total - total.min((1, 2), keepdims=True)) / np.ptp(total, (1, 2), keepdims=True)
    ex = seewhy.explain(model, x, "fullgrad")
    assert len(outputs) == 4 and ex.layer is None
    np.testing.assert_allclose(ex.maps, expected, atol=1e-4)
    assert model.training, "the user's train mode is left as it was"


# -- the smoothings ---------------------------------------------------------------------------


def test_eigen_smooth_is_the_first_component_of_the_weighted_activations(net, x) -> None:
    a, g, _ = _acts_grads(net, x, LAYER, _top)
    ex = seewhy.explain(net, x, "layercam", layer=str(LAYER), eigen_smooth=True)
    for i in range(len(x)):
        weighted = (np.maximum(g[i], 0) * a[i]).reshape(a.shape[1], -1).T
        corr = _corr(_principal(weighted), ex.layer_maps[i])
        assert math.isclose(abs(corr), 1.0, abs_tol=1e-4), (i, corr)
        assert _corr(weighted.sum(axis=1), ex.layer_maps[i]) > 0
    assert ex.params["eigen_smooth"] is True and ex.params["aug_smooth"] is False


def test_aug_smooth_averages_the_flipped_and_scaled_maps(net, x) -> None:
    ex = seewhy.explain(net, x, "gradcam", layer=str(LAYER), aug_smooth=True)
    targets = ex.targets
    maps = []
    for flip in (False, True):
        for factor in (0.9, 1.0, 1.1):
            seen = (x[:, :, ::-1] if flip else x) * np.float32(factor)
            one = seewhy.explain(net, seen, "gradcam", layer=str(LAYER), target=list(targets))
            maps.append(one.maps[:, :, ::-1] if flip else one.maps)
    mean = np.mean(maps, axis=0)
    lo, hi = mean.min((1, 2), keepdims=True), mean.max((1, 2), keepdims=True)
    np.testing.assert_allclose(ex.maps, (mean - lo) / (hi - lo), atol=1e-5)
    plain = seewhy.explain(net, x, "gradcam", layer=str(LAYER))
    np.testing.assert_array_equal(plain.targets, targets)
    assert not np.allclose(plain.maps, ex.maps, atol=1e-3)


# -- settings ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "settings", "says"),
    [
        ("finercam", {"alpha": float("nan")}, "alpha"),
        ("finercam", {"comparison_categories": (0, 1)}, "comparison_categories"),
        ("finercam", {"comparison_categories": "12"}, "comparison_categories"),
        ("kpcacam", {"kernel": "laplace"}, "kernel: expected one of linear"),
        ("gradcam++", {"aug_smooth": "yes"}, "aug_smooth"),
    ],
)
def test_bad_settings_are_refused_in_one_line(net, x, method, settings, says) -> None:
    with pytest.raises(InvalidInput, match=says) as caught:
        seewhy.explain(net, x[:1], method, **settings)
    assert "\n" not in str(caught.value)


def test_finercam_refuses_what_it_cannot_compare(net, x) -> None:
    with pytest.raises(InvalidInput, match="finercam: compares class logits; leave score"):
        seewhy.explain(net, x[:1], "finercam", score="probability")
    target = seewhy.targets.MultiLabel([1, 2])
    with pytest.raises(UnsupportedModel, match="not 'multilabel' targets; give a class"):
        seewhy.explain(net, x[:1], "finercam", target=target)


def test_the_command_line_types_the_new_settings() -> None:
    from seewhy.cli.settings import _typed
    from seewhy.registry import get

    assert _typed(get("finercam"), "comparison_categories", "1,2") == (1, 2)
    assert _typed(get("kpcacam"), "gamma", "none") is None
    assert _typed(get("layercam"), "eigen_smooth", "true") is True


# -- against pytorch-grad-cam -----------------------------------------------------------------


def _theirs(name: str, model: torch.nn.Module, layer: int):  # type: ignore[no-untyped-def]
    pgc = pytest.importorskip("pytorch_grad_cam", reason="pytorch-grad-cam is not installed")
    kinds = {
        "gradcam-elementwise": pgc.GradCAMElementWise,
        "eigengradcam": pgc.EigenGradCAM,
        "kpcacam": pgc.KPCA_CAM,
        "finercam": pgc.FinerCAM,
        "shapleycam": pgc.ShapleyCAM,
        "gradcam": pgc.GradCAM,
        "layercam": pgc.LayerCAM,
    }
    if name == "fullgrad":
        return pgc.FullGrad(model, [])
    return kinds[name](model, [model[layer]])


@pytest.mark.parametrize(
    ("method", "settings", "call"),
    [
        ("gradcam-elementwise", {}, {}),
        ("finercam", {"alpha": 0.6}, {"alpha": 0.6}),
        ("shapleycam", {}, {}),
        ("fullgrad", {}, {}),
        ("gradcam", {"aug_smooth": True}, {"aug_smooth": True}),
    ],
)
def test_equals_pytorch_grad_cam(method, settings, call, net, curved, x) -> None:
    model = {"shapleycam": curved, "fullgrad": bn_dropout_cnn()}.get(method, net)
    layer = 0 if method == "shapleycam" else LAYER
    ours = seewhy.explain(model, x, method, layer=str(layer), **settings)
    theirs, _ = _run_theirs(method, model, layer, x, call)
    for i in range(len(x)):
        corr = _corr(ours.maps[i], theirs[i])
        assert corr >= 0.99, f"{method} image {i}: r = {corr:.4f}"


def _run_theirs(method, model, layer, x, call):  # type: ignore[no-untyped-def]
    """pytorch-grad-cam's maps, and the activations and gradients its hooks kept."""
    reference = copy.deepcopy(model).eval()  # pytorch-grad-cam sets eval mode on what it gets
    cam = _theirs(method, reference, layer)
    tensor = torch.from_numpy(x).permute(0, 3, 1, 2).contiguous()
    maps = cam(tensor, **call) if method == "finercam" else cam(tensor, targets=None, **call)
    kept = (cam.base_cam if method == "finercam" else cam).activations_and_grads
    grads = kept.gradients[0].detach().numpy() if kept.gradients else None
    return maps, (kept.activations[0].detach().numpy(), grads)


@pytest.mark.parametrize(
    ("method", "settings"),
    [
        ("eigengradcam", {}),
        ("kpcacam", {}),
        ("gradcam", {"eigen_smooth": True}),
        ("layercam", {"eigen_smooth": True}),
    ],
)
def test_principal_components_equal_pytorch_grad_cams_up_to_sign(method, settings, net, x) -> None:
    """The projection is pytorch-grad-cam's; its sign is LAPACK's (or scikit-learn's) there,
    the one agreeing with the map it smooths here: where the two signs agree, so do the maps."""
    from pytorch_grad_cam.utils.svd_on_activations import (
        get_2d_projection,
        get_2d_projection_kernel,
    )

    ours = seewhy.explain(net, x, method, layer=str(LAYER), **settings)
    theirs, (a, g) = _run_theirs(method, net, LAYER, x, settings)
    if method == "kpcacam":
        projection = get_2d_projection_kernel(a, "sigmoid", None)
    else:
        weights = {
            "eigengradcam": g,
            "gradcam": g.mean(axis=(2, 3), keepdims=True),
            "layercam": np.maximum(g, 0),
        }[method]
        projection = get_2d_projection(weights * a)
    agreeing = 0
    for i in range(len(x)):
        corr = _corr(ours.layer_maps[i], projection[i])
        assert math.isclose(abs(corr), 1.0, abs_tol=1e-3), f"{method} image {i}: r = {corr:.4f}"
        if corr > 0:
            assert _corr(ours.maps[i], theirs[i]) >= 0.99, f"{method} image {i}"
            agreeing += 1
    assert 0 <= agreeing <= len(x)
