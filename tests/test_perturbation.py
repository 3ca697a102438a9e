"""Perturbation methods: where they look, and against plain references."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pytest

import seewhy
from models import one_conv, pooled_cnn, tiny_cnn, trained_torch_cnn
from seewhy.errors import InvalidInput
from seewhy.maps import upsample
from seewhy.methods.base import Context
from seewhy.methods.perturbation import rise_masks, window_starts
from seewhy.registry import get
from seewhy.synthetic import STRIPES_PREPROCESS as PREPROCESS
from seewhy.synthetic import box_share, mass_inside, peak_inside
from seewhy.synthetic import make_stripes as make_dataset

torch = pytest.importorskip("torch", reason="needs torch (pip install seewhy[torch])")
from seewhy.backends.torch import TorchBackend  # noqa: E402  (imports torch)

nn = torch.nn


@pytest.fixture(scope="module")
def trained() -> Any:
    model, accuracy = trained_torch_cnn()
    assert accuracy > 0.95
    return model


@pytest.fixture(scope="module")
def data() -> Any:
    return make_dataset(16, seed=12)


def _run(
    model: Any,
    x: np.ndarray,
    method: str,
    targets: Any = None,
    layer: str | None = None,
    batch_size: int = 16,
    progress: Any = None,
    **params: Any,
) -> Any:
    ctx = Context(
        backend=TorchBackend(model),
        inputs=x,
        targets=targets,
        layer=layer,
        preprocess=PREPROCESS,
        batch_size=batch_size,
        forward_batch=batch_size,  # as an Explainer given batch_size
        progress=progress,
    )
    return get(method)(**params).run(ctx)


def _small(seed: int = 0, dtype: Any = torch.float64) -> Any:
    return tiny_cnn(3, seed, widths=(6, 5), stride=1, inplace=False, dtype=dtype)


def _inputs(n: int = 2, size: int = 10, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, size, size, 3)).astype(np.float32)


def _scores(model: Any, x: np.ndarray, target: int) -> np.ndarray:
    with torch.no_grad():
        t = torch.from_numpy(np.asarray(x, np.float64)).permute(0, 3, 1, 2)
        return model(t.to(next(model.parameters()).dtype))[:, target].double().numpy()


# -- where they look ---------------------------------------------------------------

METHODS = [
    ("occlusion", {}),
    ("rise", {"masks": 300}),
    ("scorecam", {}),
    ("ablationcam", {}),
]


@pytest.mark.parametrize(("method", "params"), METHODS, ids=[m for m, _ in METHODS])
def test_maps_fall_on_the_object(trained: Any, data: Any, method: str, params: Any) -> None:
    e = seewhy.explain(trained, data.images, method, preprocess=PREPROCESS, batch_size=64, **params)
    assert e.maps.shape == data.masks.shape
    assert peak_inside(e.maps, data.boxes).mean() >= 0.9
    assert mass_inside(e.maps, data.masks).mean() > 2.5 * box_share(data.masks).mean()


# -- occlusion -----------------------------------------------------------------------


def test_occlusion_matches_a_double_loop() -> None:
    model = _small()
    x = _inputs(2, size=11)
    res = _run(model, x, "occlusion", window=4, stride=3, fill=0.5, batch_size=7)
    for i in range(2):
        target = int(res.targets[i])
        base = _scores(model, x[i : i + 1], target)[0]
        total = np.zeros((11, 11))
        count = np.zeros((11, 11))
        for top in [0, 3, 6, 7]:  # stride 3, plus one window flush with the far edge
            for left in [0, 3, 6, 7]:
                patched = x[i : i + 1].copy()
                patched[0, top : top + 4, left : left + 4] = 0.5
                total[top : top + 4, left : left + 4] += base - _scores(model, patched, target)[0]
                count[top : top + 4, left : left + 4] += 1
        assert np.allclose(res.maps[i], total / count, atol=1e-5)


def test_window_starts_cover_every_pixel() -> None:
    assert window_starts(11, 4, 3).tolist() == [0, 3, 6, 7]
    assert window_starts(12, 4, 4).tolist() == [0, 4, 8]
    assert window_starts(3, 5, 1).tolist() == [0]


# -- RISE ------------------------------------------------------------------------------


def test_rise_masks_follow_the_paper() -> None:
    rng = np.random.default_rng(0)
    grid = rng.random((400, 4, 4)) < 0.3
    shifts = rng.integers(0, 5, (400, 2))
    masks = rise_masks(grid, shifts, (18, 18), (5, 5))
    assert masks.shape == (400, 18, 18)
    assert masks.min() >= 0 and masks.max() <= 1 + 1e-6
    assert masks.mean() == pytest.approx(0.3, abs=0.03)
    # with no shift, the centre of an enlarged cell carries the cell's value
    one = rise_masks(np.eye(4, dtype=bool)[None], np.zeros((1, 2), np.int64), (20, 20), (5, 5))
    assert one[0, 2, 2] == pytest.approx(1.0) and one[0, 2, 12] == pytest.approx(0.0)


@pytest.mark.parametrize("center", [False, True])
def test_rise_matches_the_formula(center: bool) -> None:
    model = _small()
    x = _inputs(2, size=12)
    count, p, cell, seed = 64, 0.4, 4, 5
    res = _run(
        model, x, "rise", masks=count, p=p, cell_size=cell, seed=seed, center=center, batch_size=10
    )
    rng = np.random.default_rng(seed)
    grids = rng.random((count, 3, 3)) < p
    shifts = np.stack([rng.integers(0, cell, count), rng.integers(0, cell, count)], axis=1)
    masks = rise_masks(grids, shifts, (12, 12), (cell, cell))
    for i in range(2):
        target = int(res.targets[i])
        s = np.array([_scores(model, x[i : i + 1] * m[None, :, :, None], target)[0] for m in masks])
        if center:
            s = s - s.mean()
        expected = sum(si * m for si, m in zip(s, masks, strict=True)) / (count * p)
        assert np.allclose(res.maps[i], expected, atol=1e-4)


def test_rise_same_seed_same_map() -> None:
    model = _small()
    x = _inputs(1)
    a = _run(model, x, "rise", masks=40, seed=1, batch_size=7).maps
    b = _run(model, x, "rise", masks=40, seed=1, batch_size=16).maps
    c = _run(model, x, "rise", masks=40, seed=2).maps
    assert np.allclose(a, b, atol=1e-6)
    assert not np.allclose(a, c)


# -- Score-CAM -------------------------------------------------------------------------


def _score_cam_loop(model: Any, x: np.ndarray, layer: int, target: int) -> np.ndarray:
    """Score-CAM for one image, channel by channel, as in the paper (softmax weights)."""
    with torch.no_grad():
        t = torch.from_numpy(x[None].astype(np.float64)).permute(0, 3, 1, 2)
        acts = model[: layer + 1](t)[0].numpy()
    scores = []
    for a in acts:
        up = upsample(a[None].astype(np.float32), x.shape[:2])[0].astype(np.float64)
        m = (up - up.min()) / (up.max() - up.min()) if up.max() > up.min() else up * 0
        scores.append(_scores(model, (x * m[:, :, None])[None], target)[0])
    w = np.exp(np.array(scores) - max(scores))
    w /= w.sum()
    return np.einsum("c,chw->hw", w, acts)


def test_score_cam_matches_a_channel_loop() -> None:
    model = pooled_cnn(3, seed=1, widths=(6, 5), dtype=torch.float64)
    x = _inputs(2, size=10)
    res = _run(model, x, "scorecam", layer="4", batch_size=3)
    for i in range(2):
        expected = _score_cam_loop(model, x[i], 4, int(res.targets[i]))
        assert np.allclose(res.maps[i], expected, atol=1e-6)


def test_score_cam_constant_channels_share_one_pass_and_top_channels() -> None:
    model = _small()
    x = _inputs(1)
    with torch.no_grad():
        model[2].weight[0] = 0.0  # channel 0 of layer "3" is now constant (ReLU of its bias)
    full = _run(model, x, "scorecam", layer="3")
    weights = full.extras["channel_weights"]
    assert weights.shape == (1, 5) and weights.sum() == pytest.approx(1.0, abs=1e-6)
    top = _run(model, x, "scorecam", layer="3", channels=2).extras["channel_weights"]
    assert (top != 0).sum() == 2
    everything = _run(model, x, "scorecam", layer="3", channels=99).extras["channel_weights"]
    assert np.allclose(everything, weights)
    raw = _run(model, x, "scorecam", layer="3", weighting="increase").extras["channel_weights"]
    assert raw.shape == (1, 5)
    with pytest.raises(InvalidInput):
        _run(model, x, "scorecam", layer="3", weighting="bogus")


def test_score_cam_against_pytorch_grad_cam() -> None:
    score_cam = pytest.importorskip("pytorch_grad_cam", reason="grad-cam is not installed")
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    model = _small(dtype=torch.float32)
    x = _inputs(2, size=10)
    # a layer at full resolution, so that no upsampling convention can differ
    ours = seewhy.explain(model, x, "scorecam", layer="3")
    t = torch.from_numpy(x).permute(0, 3, 1, 2).contiguous()
    targets = [ClassifierOutputTarget(int(c)) for c in ours.targets]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cam = score_cam.ScoreCAM(model=model, target_layers=[model[3]])
        theirs = cam(input_tensor=t, targets=targets)
    assert np.allclose(ours.maps, theirs, atol=1e-4)


# -- Ablation-CAM -----------------------------------------------------------------------


def _ablation_loop(model: Any, x: np.ndarray, layer: nn.Module, target: int) -> np.ndarray:
    """Ablation-CAM for one image: zero each channel with a hook, rerun the whole model."""
    t = torch.from_numpy(x[None].astype(np.float64)).permute(0, 3, 1, 2)
    saved: dict[str, Any] = {}
    h = layer.register_forward_hook(lambda m, a, o: saved.setdefault("a", o.detach().clone()))
    with torch.no_grad():
        base = float(model(t)[0, target])
    h.remove()
    acts = saved["a"][0].numpy()
    weights = []
    for k in range(acts.shape[0]):

        def zero(m: Any, a: Any, o: Any, k: int = k) -> Any:
            o = o.clone()
            o[:, k] = 0
            return o

        h = layer.register_forward_hook(zero)
        with torch.no_grad():
            weights.append((base - float(model(t)[0, target])) / base)
        h.remove()
    return np.einsum("c,chw->hw", np.array(weights), acts)


class _Residual(nn.Module):
    """A skip connection around the layer, and a reshape that reads the batch size early."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(2)
        self.stem = nn.Conv2d(3, 5, 3, padding=1)
        self.body = nn.Conv2d(5, 5, 3, padding=1)
        self.act = nn.ReLU()
        self.fc = nn.Linear(5, 3)
        self.early_batch = False

    def forward(self, x: Any) -> Any:
        n = x.shape[0]
        s = self.stem(x)
        y = self.act(self.body(s)) + s
        pooled = y.mean(dim=(2, 3))
        return self.fc(pooled.reshape(n, 5) if self.early_batch else pooled)


@pytest.mark.parametrize("early_batch", [False, True], ids=["shared-prefix", "fallback"])
def test_ablation_cam_matches_a_channel_loop(early_batch: bool) -> None:
    model = _Residual().double().eval()
    model.early_batch = early_batch
    x = _inputs(2, size=8)
    backend = TorchBackend(model)
    ctx = Context(backend=backend, inputs=x, targets=None, layer="act", batch_size=2)
    res = get("ablationcam")().run(ctx)
    for i in range(2):
        expected = _ablation_loop(model, x[i], model.act, int(res.targets[i]))
        assert np.allclose(res.maps[i], expected, atol=1e-8)
    assert backend.__dict__["_layer_edit_shared_prefix"]["act"] is (not early_batch)
    for m in model.modules():
        assert not m._forward_hooks


def test_ablation_cam_against_pytorch_grad_cam() -> None:
    gc = pytest.importorskip("pytorch_grad_cam", reason="grad-cam is not installed")
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    model = _small(dtype=torch.float32)
    x = _inputs(2, size=10)
    ours = seewhy.explain(model, x, "ablationcam", layer="3")
    t = torch.from_numpy(x).permute(0, 3, 1, 2).contiguous()
    targets = [ClassifierOutputTarget(int(c)) for c in ours.targets]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = gc.AblationCAM(model=model, target_layers=[model[3]])(
            input_tensor=t, targets=targets
        )
    assert np.allclose(ours.maps, theirs, atol=1e-4)


def test_layer_edit_keeps_the_model_untouched_after_an_exception() -> None:
    model = _Residual().eval()
    model.train()
    flags = [m.training for m in model.modules()]
    backend = TorchBackend(model)
    x = _inputs(1, size=8)
    with pytest.raises(InvalidInput):
        backend.predict_with_layer_edit(x, layer="act", scales=np.ones((2, 3, 5), np.float32))

    def boom(*_: Any) -> None:
        raise RuntimeError("boom")

    model.fc.forward = boom  # type: ignore[method-assign]
    with pytest.raises(RuntimeError, match="boom"):
        backend.predict_with_layer_edit(x, layer="act", scales=np.ones((3, 5), np.float32))
    del model.fc.forward
    assert [m.training for m in model.modules()] == flags
    assert all(not m._forward_hooks for m in model.modules())
    out = backend.predict_with_layer_edit(x, layer="act", scales=np.ones((3, 5), np.float32))
    assert np.allclose(out[0], backend.predict(x)[0], atol=1e-5)


# -- common ------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["occlusion", "rise", "scorecam", "ablationcam"])
def test_progress_counts_images(method: str) -> None:
    model = _small()
    calls: list[int] = []
    params: dict[str, Any] = {"masks": 8} if method == "rise" else {}
    _run(model, _inputs(3), method, layer="3", progress=calls.append, batch_size=4, **params)
    assert sum(calls) == 3


@pytest.mark.parametrize(
    "fill", ["zeros", "black", "gray", "mean", "blur", "noise", 0.25, (255, 0, 0)]
)
def test_occlusion_fills(fill: Any) -> None:
    model = _small()
    x = _inputs(1)
    a = _run(model, x, "occlusion", fill=fill, seed=3).maps
    b = _run(model, x, "occlusion", fill=fill, seed=3).maps
    assert np.array_equal(a, b) and np.isfinite(a).all()


def test_bad_parameters() -> None:
    model = _small()
    x = _inputs(1)
    for method, params in [
        ("occlusion", {"window": 0}),
        ("occlusion", {"fill": "sparkles"}),
        ("rise", {"p": 1.5}),
        ("rise", {"masks": -3}),
        ("scorecam", {"channels": 0}),
        ("occlusion", {"copies_per_pass": 0}),
    ]:
        with pytest.raises(InvalidInput):
            _run(model, x, method, layer="3", **params)


def _predicting(method: str, side: int, samples: int) -> dict[str, Any]:
    """Small settings of a method that only predicts, for a ``side`` px square image."""
    cell = side // 4
    return {
        "rise": {"masks": samples},
        "occlusion": {"window": cell, "stride": cell // 2},
        "scorecam": {},
        "lime": {
            "samples": samples,
            "segmentation": np.arange(16).reshape(4, 4).repeat(cell, 0).repeat(cell, 1),
        },
    }[method]


@pytest.mark.parametrize("method", ["rise", "occlusion", "scorecam", "lime"])
def test_perturbed_copies_go_in_the_backends_batches_unless_told(method: str) -> None:
    """Default: the backend's preferred batch (8 for 4 MiB activations); then the
    explainer's batch_size, then the method's own; the map never depends on it."""
    model = one_conv(64, 3)
    x = np.random.default_rng(0).normal(size=(1, 3, 128, 128)).astype(np.float32)
    params = _predicting(method, side=128, samples=20)
    runs = {"auto": {}, "explainer": {"batch_size": 5}, "method": {"copies_per_pass": 3}}
    largest, maps = {}, {}
    for name, how in runs.items():
        sizes: list[int] = []
        handle = model.register_forward_pre_hook(lambda m, a, sizes=sizes: sizes.append(len(a[0])))
        try:
            if name == "method":  # the method's own copies_per_pass
                explainer = seewhy.Explainer(model, method, batch_size=5, **params)
                explainer.method = get(method)(**params, **how)
            else:
                explainer = seewhy.Explainer(model, method, **params, **how)
            maps[name] = explainer.explain(x).maps
        finally:
            handle.remove()
        largest[name] = max(sizes)
    assert largest == {"auto": 8, "explainer": 5, "method": 3}
    np.testing.assert_allclose(maps["explainer"], maps["auto"], atol=1e-4)  # float rounding
    np.testing.assert_allclose(maps["method"], maps["auto"], atol=1e-4)


@pytest.mark.parametrize("method", ["rise", "occlusion", "scorecam", "lime"])
def test_reduced_precision_for_the_methods_that_only_predict(method: str) -> None:
    """precision="bfloat16": the masked passes run in bfloat16, the map barely moves."""
    model = one_conv(16, 3)
    x = np.random.default_rng(1).normal(size=(2, 3, 32, 32)).astype(np.float32)
    params = _predicting(method, side=32, samples=64)
    dtypes: list[torch.dtype] = []
    handle = model[0].register_forward_hook(lambda m, a, out: dtypes.append(out.dtype))
    try:
        fast = seewhy.explain(model, x, method, precision="bfloat16", **params)
    finally:
        handle.remove()
    exact = seewhy.explain(model, x, method, **params)
    assert torch.bfloat16 in dtypes and not torch.is_autocast_enabled("cpu")
    assert fast.params["precision"] == "bfloat16" and "precision" not in exact.params
    for a, b in zip(fast.maps, exact.maps, strict=True):
        assert np.corrcoef(a.ravel(), b.ravel())[0, 1] > 0.95
    assert not np.array_equal(fast.maps, exact.maps)


def test_reduced_precision_is_refused_where_gradients_are_needed() -> None:
    with pytest.raises(InvalidInput, match="gradcam needs gradients"):
        seewhy.Explainer(_small(), "gradcam", precision="bfloat16")
    with pytest.raises(InvalidInput, match="precision: expected one of"):
        seewhy.Explainer(_small(), "rise", precision="bf16")
