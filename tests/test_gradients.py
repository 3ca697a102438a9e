"""Gradient pixel attributions: where they look, and against plain references."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pytest

import seewhy
from models import gelu_cnn, tiny_cnn, trained_torch_cnn
from seewhy.errors import InvalidInput
from seewhy.maps import normalise, upsample
from seewhy.methods.base import Context
from seewhy.methods.gradients import path_points, reduce_channels
from seewhy.registry import get
from seewhy.synthetic import STRIPES_PREPROCESS as PREPROCESS
from seewhy.synthetic import box_share, mass_inside, peak_inside
from seewhy.synthetic import make_stripes as make_dataset

torch = pytest.importorskip("torch", reason="needs torch (pip install seewhy[torch])")
from seewhy.backends.torch import TorchBackend  # noqa: E402  (imports torch)

nn = torch.nn
F = torch.nn.functional


@pytest.fixture(scope="module")
def trained() -> Any:
    model, accuracy = trained_torch_cnn()
    assert accuracy > 0.95
    return model


@pytest.fixture(scope="module")
def data() -> Any:
    return make_dataset(20, seed=11)


def _explain(model: Any, pictures: np.ndarray, method: str, **params: Any) -> seewhy.Explanation:
    return seewhy.explain(model, pictures, method, preprocess=PREPROCESS, **params)


def _run(model: Any, x: np.ndarray, method: str, targets: Any = None, **params: Any) -> Any:
    """A method straight on model inputs, without the io layer."""
    ctx = Context(
        backend=TorchBackend(model),
        inputs=x,
        targets=targets,
        layer=params.pop("layer", None),
        preprocess=PREPROCESS,
        batch_size=16,
    )
    return get(method)(**params).run(ctx)


# -- where they look ------------------------------------------------------------

METHODS = [
    ("saliency", {}),
    ("gradient-x-input", {}),
    ("smoothgrad", {"samples": 8}),
    ("integrated-gradients", {"steps": 16}),
    ("guided-backprop", {}),
    ("guided-gradcam", {}),
]


@pytest.mark.parametrize(("method", "params"), METHODS, ids=[m for m, _ in METHODS])
def test_maps_fall_on_the_object(trained: Any, data: Any, method: str, params: Any) -> None:
    e = _explain(trained, data.images, method, **params)
    assert e.maps.shape == data.masks.shape
    assert e.extras["attributions"].shape == (*data.masks.shape, 3)
    assert peak_inside(e.maps, data.boxes).mean() >= 0.9
    assert mass_inside(e.maps, data.masks).mean() > 2.5 * box_share(data.masks).mean()


# -- against plain references ------------------------------------------------------


def _small(seed: int = 0, dtype: Any = torch.float64) -> Any:
    return tiny_cnn(3, seed, widths=(4, 4), stride=2, inplace=False, dtype=dtype)


def _inputs(n: int = 2, size: int = 8, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, size, size, 3)).astype(np.float32)


def _score(model: Any, x: np.ndarray, target: int) -> float:
    with torch.no_grad():
        t = torch.from_numpy(x.astype(np.float64)).permute(0, 3, 1, 2)
        return float(model(t.to(torch.float64))[0, target])


def test_saliency_equals_finite_differences() -> None:
    model = _small()
    x = _inputs(1)
    res = _run(model, x, "saliency", targets=np.array([1]))
    grad = res.extras["attributions"][0]
    rng = np.random.default_rng(1)
    eps = 1e-3
    for _ in range(12):
        i, j, c = (int(v) for v in rng.integers(0, [8, 8, 3]))
        up, down = x.copy(), x.copy()
        up[0, i, j, c] += eps
        down[0, i, j, c] -= eps
        numeric = (_score(model, up, 1) - _score(model, down, 1)) / (2 * eps)
        assert grad[i, j, c] == pytest.approx(numeric, abs=2e-4)
    assert np.allclose(res.maps[0], np.abs(grad).max(axis=-1))


def test_gradient_x_input_is_gradient_times_input() -> None:
    model = _small()
    x = _inputs()
    sal = _run(model, x, "saliency").extras["attributions"]
    gxi = _run(model, x, "gradient-x-input").extras["attributions"]
    assert np.allclose(gxi, sal * x, atol=1e-6)


def _riemann_ig(model: Any, x: np.ndarray, baseline: np.ndarray, target: int, steps: int) -> Any:
    """IG from the paper, one path point at a time, midpoint rule."""
    total = np.zeros(x.shape, np.float64)
    for k in range(steps):
        alpha = (k + 0.5) / steps
        point = (
            torch.tensor((baseline + alpha * (x - baseline))[None], dtype=torch.float64)
            .permute(0, 3, 1, 2)
            .requires_grad_(True)
        )
        (g,) = torch.autograd.grad(model(point)[0, target], point)
        total += g[0].permute(1, 2, 0).numpy() / steps
    return (x - baseline) * total


def test_integrated_gradients_matches_a_riemann_loop() -> None:
    model = _small()
    x = _inputs(1)
    res = _run(model, x, "ig", targets=np.array([2]), steps=20, rule="riemann_middle")
    expected = _riemann_ig(model, x[0], np.zeros_like(x[0]), 2, 20)
    assert np.allclose(res.extras["attributions"][0], expected, atol=1e-5)


@pytest.mark.parametrize(
    "baseline",
    ["zeros", "black", "blur", "noise", "mean", np.full((8, 8, 3), 0.3, np.float32)],
    ids=["zeros", "black", "blur", "noise", "mean", "custom"],
)
def test_integrated_gradients_is_complete(baseline: Any) -> None:
    model = _small()
    x = _inputs(3)
    res = _run(model, x, "ig", steps=64, baseline=baseline)
    diff = res.extras["score_difference"]
    err = res.extras["completeness_error"]
    assert np.allclose(
        res.extras["attribution_sum"], res.extras["attributions"].sum(axis=(1, 2, 3)), atol=1e-4
    )
    assert np.all(np.abs(err) <= 0.02 * np.abs(diff) + 1e-3)


def test_integrated_gradients_completeness_on_the_trained_model(trained: Any, data: Any) -> None:
    e = _explain(trained, data.images[:6], "ig", steps=48)
    diff, err = e.extras["score_difference"], e.extras["completeness_error"]
    assert np.all(np.abs(err) <= 0.05 * np.abs(diff) + 1e-2)


def test_several_noise_baselines_are_averaged() -> None:
    model = _small()
    x = _inputs(2)
    one = _run(model, x, "ig", steps=8, baseline="noise", seed=3).extras["attributions"]
    two = _run(model, x, "ig", steps=8, baseline="noise", baselines=2, seed=3).extras
    assert two["attributions"].shape == one.shape
    assert not np.allclose(one, two["attributions"])
    with pytest.raises(InvalidInput):
        _run(model, x, "ig", baselines=2)


@pytest.mark.parametrize(
    "rule",
    ["gausslegendre", "riemann_left", "riemann_right", "riemann_middle", "riemann_trapezoid"],
)
def test_quadrature_rules_integrate_polynomials(rule: str) -> None:
    alphas, weights = path_points(40, rule)
    assert weights.sum() == pytest.approx(1.0)
    assert np.sum(weights * alphas) == pytest.approx(0.5, abs=0.02)
    assert np.all((alphas >= 0) & (alphas <= 1))


def test_smoothgrad_without_noise_is_the_gradient_and_seeds_repeat() -> None:
    model = _small()
    x = _inputs(2)
    plain = _run(model, x, "saliency").extras["attributions"]
    still = _run(model, x, "smoothgrad", samples=3, noise=0.0).extras["attributions"]
    assert np.allclose(plain, still, atol=1e-6)
    a = _run(model, x, "smoothgrad", samples=5, seed=1, copies_per_pass=3).extras["attributions"]
    b = _run(model, x, "smoothgrad", samples=5, seed=1, copies_per_pass=7).extras["attributions"]
    c = _run(model, x, "smoothgrad", samples=5, seed=2).extras["attributions"]
    assert np.allclose(a, b, atol=1e-6)
    assert not np.allclose(a, c)
    sq = _run(model, x, "smoothgrad", samples=5, seed=1, squared=True).extras["attributions"]
    assert np.all(sq >= 0)


# -- Guided Backprop -----------------------------------------------------------------


class _GuidedRule(torch.autograd.Function):
    """The guided rule written out: ReLU/ReLU6 forward, positive gradient through active units."""

    @staticmethod
    def forward(ctx: Any, x: Any, upper: float | None) -> Any:
        ctx.save_for_backward(x)
        ctx.upper = upper
        return x.clamp(min=0) if upper is None else x.clamp(0, upper)

    @staticmethod
    def backward(ctx: Any, grad: Any) -> Any:
        (x,) = ctx.saved_tensors
        active = x > 0 if ctx.upper is None else (x > 0) & (x < ctx.upper)
        return grad * (grad > 0) * active, None


class MixedActivations(nn.Module):
    """Every way a ReLU is spelled: modules (in place too), functional, tensor methods, ReLU6."""

    def __init__(self, manual: bool = False) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.manual = manual
        self.c1 = nn.Conv2d(3, 6, 3, padding=1)
        self.r1 = nn.ReLU(inplace=True)
        self.c2 = nn.Conv2d(6, 6, 3, padding=1)
        self.c3 = nn.Conv2d(6, 6, 3, padding=1)
        self.r6 = nn.ReLU6(inplace=True)
        self.c4 = nn.Conv2d(6, 6, 3, padding=1)
        self.fc = nn.Linear(6, 3)
        self.fail = False

    def act(self, x: Any, kind: str) -> Any:
        if self.manual:
            return _GuidedRule.apply(x, 6.0 if kind in ("r6", "relu6", "hardtanh") else None)
        return {
            "r1": lambda: self.r1(x),
            "F.relu": lambda: F.relu(x),
            "torch.relu": lambda: torch.relu(x),
            "relu_": lambda: x.relu_(),
            "F.relu_inplace": lambda: F.relu(x, inplace=True),
            "r6": lambda: self.r6(x),
            "relu6": lambda: F.relu6(x),
            "hardtanh": lambda: F.hardtanh(x, 0.0, 6.0),
        }[kind]()

    def forward(self, x: Any) -> Any:
        x = self.act(self.c1(x), "r1")
        x = self.act(self.c2(x), "F.relu") + self.act(self.c2(x) * 0.5, "torch.relu")
        if self.fail:
            raise RuntimeError("boom inside the model")
        x = self.act(self.c3(x), "relu_")
        x = self.act(x * 2 - 0.2, "F.relu_inplace")
        x = self.act(self.c4(x) * 30, "r6") + self.act(self.c4(x) * 20, "relu6")
        x = self.act(x - 0.3, "hardtanh")
        return self.fc(x.mean(dim=(2, 3)))


def test_guided_backprop_matches_the_rule_written_out() -> None:
    model = MixedActivations().double().eval()
    manual = MixedActivations(manual=True).double().eval()
    manual.load_state_dict(model.state_dict())
    x = _inputs(2, size=10)
    got = _run(model, x, "guided-backprop", targets=np.array([0, 2])).extras["attributions"]
    t = torch.from_numpy(x.astype(np.float64)).permute(0, 3, 1, 2).requires_grad_(True)
    out = manual(t)
    (g,) = torch.autograd.grad(out[[0, 1], [0, 2]].sum(), t)
    expected = g.permute(0, 2, 3, 1).numpy()
    assert np.abs(expected).max() > 0
    assert np.allclose(got, expected, atol=1e-10)
    plain = _run(model, x, "saliency", targets=np.array([0, 2])).extras["attributions"]
    assert not np.allclose(got, plain)


def _snapshot(model: Any) -> dict[str, Any]:
    return {
        "state": {k: v.clone() for k, v in model.state_dict().items()},
        "modules": list(model.modules()),
        "training": [m.training for m in model.modules()],
        "inplace": [getattr(m, "inplace", None) for m in model.modules()],
        "requires_grad": [p.requires_grad for p in model.parameters()],
    }


def _assert_untouched(model: Any, before: dict[str, Any]) -> None:
    after = _snapshot(model)
    assert after["modules"] == before["modules"]  # same objects, same order
    assert all(a is b for a, b in zip(after["modules"], before["modules"], strict=True))
    assert after["training"] == before["training"]
    assert after["inplace"] == before["inplace"]
    assert after["requires_grad"] == before["requires_grad"]
    assert before["state"].keys() == after["state"].keys()
    assert all(torch.equal(before["state"][k], after["state"][k]) for k in before["state"])
    for m in model.modules():
        assert not m._forward_hooks and not m._backward_hooks
        assert not m._forward_pre_hooks and not getattr(m, "_full_backward_hooks", None)
    assert all(p.grad is None for p in model.parameters())
    assert torch._C._len_torch_function_stack() == 0


@pytest.mark.parametrize("method", ["guided-backprop", "guided-gradcam", "smoothgrad", "ig"])
def test_model_is_untouched_after_success_and_after_an_exception(method: str) -> None:
    model = MixedActivations()
    model.train()
    model.c3.eval()  # a mixed state must come back as it was
    before = _snapshot(model)
    x = _inputs(2, size=10)
    params: dict[str, Any] = {
        "guided-gradcam": {"layer": "c4"},
        "smoothgrad": {"samples": 2},
        "ig": {"steps": 2},
    }.get(method, {})
    _run(model, x, method, **dict(params))
    _assert_untouched(model, before)
    model.fail = True
    with pytest.raises(RuntimeError, match="boom"):
        _run(model, x, method, **dict(params))
    model.fail = False
    _assert_untouched(model, before)


def test_guided_backprop_warns_when_it_sees_no_relu() -> None:
    model = gelu_cnn(6)
    x = _inputs(1, size=6)
    with pytest.warns(UserWarning, match="no ReLU"):
        _run(model, x, "guided-backprop")


def test_guided_gradcam_is_guided_backprop_times_upsampled_gradcam(trained: Any, data: Any) -> None:
    x = data.inputs()[:4]
    layer = "features.7"
    ggc = _run(trained, x, "guided-gradcam", layer=layer)
    gb = _run(trained, x, "guided-backprop").extras["attributions"]
    cam = _run(trained, x, "gradcam", layer=layer).maps
    heat = normalise(upsample(np.maximum(cam, 0), (32, 32)))
    assert np.allclose(ggc.extras["attributions"], gb * heat[..., None], atol=1e-6)
    assert np.allclose(ggc.extras["gradcam"], heat)


def test_reductions_and_bad_parameters() -> None:
    a = np.array([[[[1.0, -3.0, 2.0]]]], np.float32)
    assert reduce_channels(a, "absmax")[0, 0, 0] == 3
    assert reduce_channels(a, "abssum")[0, 0, 0] == 6
    assert reduce_channels(a, "sum")[0, 0, 0] == 0
    assert reduce_channels(a, "positive")[0, 0, 0] == 0
    assert reduce_channels(a, "l2")[0, 0, 0] == pytest.approx(np.sqrt(14))
    model = _small()
    x = _inputs(1)
    for method, params in [
        ("saliency", {"reduce": "median"}),
        ("smoothgrad", {"samples": 0}),
        ("smoothgrad", {"noise": -1}),
        ("ig", {"rule": "simpson"}),
        ("ig", {"baseline": "purple"}),
        ("ig", {"steps": 2.5}),
    ]:
        with pytest.raises(InvalidInput):
            _run(model, x, method, **params)


def test_progress_counts_images() -> None:
    model = _small()
    x = _inputs(5)
    for method, params in [("saliency", {}), ("smoothgrad", {"samples": 3}), ("ig", {"steps": 4})]:
        calls: list[int] = []
        ctx = Context(
            backend=TorchBackend(model),
            inputs=x,
            targets=None,
            layer=None,
            batch_size=4,
            progress=calls.append,
        )
        get(method)(**params).run(ctx)
        assert sum(calls) == 5, method


# -- against reference libraries ------------------------------------------------------


def test_against_captum() -> None:
    captum_attr = pytest.importorskip("captum.attr", reason="captum is not installed")
    model = _small(dtype=torch.float32)
    x = _inputs(3)
    targets = np.array([0, 1, 2])
    t = torch.from_numpy(x).permute(0, 3, 1, 2).contiguous()
    tt = torch.from_numpy(targets)

    def nhwc(a: Any) -> np.ndarray:
        return a.detach().permute(0, 2, 3, 1).numpy()

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sal = nhwc(captum_attr.Saliency(model).attribute(t.clone(), target=tt, abs=False))
        ig = nhwc(
            captum_attr.IntegratedGradients(model).attribute(
                t.clone(), target=tt, n_steps=32, method="gausslegendre"
            )
        )
        gbp = nhwc(captum_attr.GuidedBackprop(model).attribute(t.clone(), target=tt))
    assert np.allclose(
        _run(model, x, "saliency", targets=targets).extras["attributions"], sal, atol=1e-6
    )
    ours_ig = _run(model, x, "ig", targets=targets, steps=32).extras["attributions"]
    assert np.allclose(ours_ig, ig, atol=1e-5)
    ours_gbp = _run(model, x, "guided-backprop", targets=targets).extras["attributions"]
    assert np.allclose(ours_gbp, gbp, atol=1e-6)


def test_smoothgrad_agrees_with_captum_noise_tunnel_in_expectation() -> None:
    captum_attr = pytest.importorskip("captum.attr", reason="captum is not installed")
    model = _small(dtype=torch.float32)
    x = _inputs(1)
    sigma = 0.2 * float(x.max() - x.min())
    t = torch.from_numpy(x).permute(0, 3, 1, 2).contiguous()
    torch.manual_seed(0)
    nt = captum_attr.NoiseTunnel(captum_attr.Saliency(model))
    theirs = nt.attribute(
        t, nt_type="smoothgrad", nt_samples=400, stdevs=sigma, target=1, abs=False
    )
    theirs_np = theirs.detach().permute(0, 2, 3, 1).numpy().ravel()
    ours = _run(model, x, "smoothgrad", targets=np.array([1]), samples=400, noise=0.2)
    ours_np = ours.extras["attributions"].ravel()
    assert np.corrcoef(theirs_np, ours_np)[0, 1] > 0.95
