"""Deletion, insertion, Average Drop and ROAD on models whose answers are known."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

import seewhy  # noqa: E402
from models import one_conv, pooled_cnn  # noqa: E402
from seewhy import metrics  # noqa: E402
from seewhy._kit.fills import fill_values  # noqa: E402
from seewhy.errors import InvalidInput  # noqa: E402
from seewhy.metrics.faithfulness.curves import pixel_ranks, trapezoid  # noqa: E402
from seewhy.metrics.faithfulness.road import impute_system, noisy_linear_impute  # noqa: E402

SIZE = 12


class PixelSum(nn.Module):
    """Class 0's logit is sum(w * mean-over-channels(x)); class 1's is 0.

    With positive weights and an all-ones image, removing the pixels with the
    largest weights first lowers the logit fastest: ``w`` is the perfect map.
    """

    def __init__(self, weights: np.ndarray) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.from_numpy(weights.astype(np.float32)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = (x.mean(dim=1) * self.w).sum(dim=(1, 2)) - float(self.w.sum()) / 2
        return torch.stack([s, torch.zeros_like(s)], dim=1)


@pytest.fixture(scope="module")
def weights() -> np.ndarray:
    rng = np.random.default_rng(0)
    return (rng.random((SIZE, SIZE)) ** 3 * 0.5).astype(np.float32)


@pytest.fixture(scope="module")
def model(weights: np.ndarray) -> PixelSum:
    return PixelSum(weights).eval()


def ones(n: int = 2) -> np.ndarray:
    return np.ones((n, SIZE, SIZE, 3), np.float32)


def test_perfect_map_gives_the_best_deletion_and_insertion(model, weights):
    x = ones(1)
    perfect = metrics.deletion(model, weights, images=x, targets=[0], steps=12)
    inverse = metrics.deletion(model, -weights, images=x, targets=[0], steps=12)
    rng = np.random.default_rng(1)
    randoms = [
        metrics.deletion(model, rng.random((SIZE, SIZE)), images=x, targets=[0], steps=12).mean_auc
        for _ in range(5)
    ]
    assert perfect.mean_auc < min(randoms) < max(randoms) < inverse.mean_auc
    # the first step is the untouched image, the last has every pixel removed
    assert perfect.scores[0, 0] == pytest.approx(1 / (1 + np.exp(-weights.sum() / 2)), rel=1e-5)
    assert perfect.scores[0, -1] == pytest.approx(1 / (1 + np.exp(weights.sum() / 2)), rel=1e-5)
    assert perfect.fractions[0] == 0.0 and perfect.fractions[-1] == 1.0
    assert not perfect.higher_is_better

    ins = metrics.insertion(model, weights, images=x, targets=[0], steps=12, baseline="zeros")
    ins_inv = metrics.insertion(model, -weights, images=x, targets=[0], steps=12, baseline="zeros")
    assert ins.higher_is_better and ins.mean_auc > ins_inv.mean_auc


def _reference_curve(model, image, saliency, target, steps, fill, kind):
    """The paper's loop: one image, one step at a time, one forward per step."""
    h, w = saliency.shape
    order = np.argsort(-saliency.ravel(), kind="stable")
    current = image.copy() if kind == "deletion" else fill.copy()
    scores, fractions = [], []
    with torch.no_grad():
        for k in range(steps + 1):
            count = (k * h * w) // steps
            rows, cols = np.unravel_index(order[:count], (h, w))
            source = fill if kind == "deletion" else image
            current[rows, cols] = source[rows, cols]
            t = torch.from_numpy(current[None].copy()).permute(0, 3, 1, 2)
            p = torch.softmax(model(t), dim=1)[0, target]
            scores.append(float(p))
            fractions.append(count / (h * w))
    y, f = np.array(scores), np.array(fractions)
    area = sum((y[k] + y[k + 1]) / 2 * (f[k + 1] - f[k]) for k in range(steps))
    return float(area), y


@pytest.mark.parametrize("kind", ["deletion", "insertion"])
def test_batched_curves_equal_the_slow_reference_loop(kind):
    net = pooled_cnn()
    rng = np.random.default_rng(3)
    x = rng.normal(size=(3, 10, 10, 3)).astype(np.float32)
    maps = rng.random((3, 10, 10)).astype(np.float32)
    targets = np.array([0, 1, 2])
    steps = 7  # 100 pixels in 7 uneven steps
    func = metrics.deletion if kind == "deletion" else metrics.insertion
    baseline = "mean" if kind == "deletion" else "blur"
    curve = func(net, maps, images=x, targets=targets, steps=steps, baseline=baseline, batch_size=5)
    fill = fill_values(x, baseline, seewhy.IMAGENET)
    for i in range(3):
        auc, y = _reference_curve(net, x[i], maps[i], targets[i], steps, fill[i], kind)
        np.testing.assert_allclose(curve.scores[i], y, rtol=1e-5, atol=1e-6)
        assert curve.auc[i] == pytest.approx(auc, rel=1e-5)


def test_explanation_in_and_inputs_rebuilt_from_its_pictures():
    net = pooled_cnn()
    rng = np.random.default_rng(4)
    pictures = rng.integers(0, 256, size=(2, 16, 16, 3), dtype=np.uint8)
    pre = seewhy.Preprocess(size=(16, 16))
    ex = seewhy.explain(net, pictures, "gradcam", preprocess=pre)
    a = metrics.deletion(net, ex, steps=8, preprocess=pre)
    b = metrics.deletion(net, ex.maps, images=pictures, targets=ex.targets, steps=8, preprocess=pre)
    np.testing.assert_allclose(a.scores, b.scores, rtol=1e-6)
    np.testing.assert_array_equal(a.targets, ex.targets)
    assert a.to_dict()["metric"] == "deletion"
    with pytest.warns(UserWarning, match="images="):  # wrong preprocessing is noticed
        metrics.deletion(
            net, ex, steps=2, preprocess=seewhy.Preprocess(size=(16, 16), mean=(0.0,) * 3)
        )
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        metrics.insertion(net, ex, steps=2, preprocess=pre)


def test_average_drop_and_increase_in_confidence(model, weights):
    x = ones(2)
    full = metrics.average_drop(model, np.ones((2, SIZE, SIZE)), images=x, targets=[0, 0])
    assert full.average_drop == pytest.approx(0.0, abs=1e-9)  # image shown whole: no drop
    assert full.increase_in_confidence == 0.0
    empty = metrics.average_drop(
        model, np.zeros((2, SIZE, SIZE)), images=x, targets=[0, 0], baseline="zeros"
    )
    p1 = 1 / (1 + np.exp(-weights.sum() / 2))
    p0 = 1 / (1 + np.exp(weights.sum() / 2))
    assert empty.average_drop == pytest.approx(100 * (p1 - p0) / p1, rel=1e-5)
    # class 1 gains when class 0's evidence is hidden
    up = metrics.increase_in_confidence(
        model, np.zeros((2, SIZE, SIZE)), images=x, targets=[1, 1], baseline="zeros"
    )
    assert up.increase_in_confidence == 100.0 and up.average_drop == 0.0
    assert set(up.to_dict()) >= {"average_drop", "increase_in_confidence"}


def test_road_imputation_and_order(model, weights):
    yy, xx = np.mgrid[0:20, 0:20].astype(np.float32)
    ramp = np.stack([0.3 * yy + 0.1 * xx, xx, np.full_like(xx, 2.0)], axis=-1)
    hole = np.zeros((20, 20), bool)
    hole[4:15, 6:17] = True
    filled = noisy_linear_impute(ramp, hole, noise=0.0)
    np.testing.assert_allclose(filled, ramp, atol=1e-3)  # linear data is imputed exactly
    noisy = noisy_linear_impute(ramp, hole, noise=0.1, rng=np.random.default_rng(0))
    assert not np.allclose(noisy[hole], ramp[hole]) and np.array_equal(noisy[~hole], ramp[~hole])

    rng = np.random.default_rng(5)
    x = np.ones((1, SIZE, SIZE, 3), np.float32) + rng.normal(0, 0.05, (1, SIZE, SIZE, 3))
    x = x.astype(np.float32)
    x[0, :, : SIZE // 2] = 0.0  # imputing near dark pixels removes evidence
    res = metrics.road(model, weights, images=x, targets=[0], fractions=(0.2, 0.5, 0.8))
    assert res.morf.shape == res.lerf.shape == (1, 3)
    assert res.gap > 0 and res.morf_score < res.lerf_score


def _reference_impute(image: np.ndarray, removed: np.ndarray) -> np.ndarray:
    """ROAD's imputation written out pixel by pixel: a dense system, one row per removed pixel."""
    h, w, _ = image.shape
    pixels = list(zip(*np.nonzero(removed), strict=True))
    index = {p: k for k, p in enumerate(pixels)}
    a = np.zeros((len(pixels), len(pixels)))
    b = np.zeros((len(pixels), image.shape[2]))
    known = image[~removed].astype(np.float64)
    for k, (y, x) in enumerate(pixels):
        a[k, k] = 1e-6  # the pull towards the known pixels' mean
        b[k] = 1e-6 * known.mean(axis=0)
        for dy in (-1, 0, 1):
            for dx in (-1, 0, 1):
                qy, qx = y + dy, x + dx
                if (dy, dx) == (0, 0) or not (0 <= qy < h and 0 <= qx < w):
                    continue
                weight = 1 / 12 if dy and dx else 1 / 6
                a[k, k] += weight
                if (qy, qx) in index:
                    a[k, index[(qy, qx)]] -= weight
                else:
                    b[k] += weight * image[qy, qx]
    out = image.astype(np.float64).copy()
    if pixels:
        ys, xs = np.array(pixels).T
        out[ys, xs] = np.linalg.solve(a, b)
    return out


@pytest.mark.parametrize("shape", ["blob", "scattered", "edge"])
def test_imputation_equals_the_pixel_by_pixel_system(shape):
    rng = np.random.default_rng(6)
    image = rng.normal(size=(14, 17, 3)).astype(np.float32)
    yy, xx = np.mgrid[0:14, 0:17]
    removed = {
        "blob": (yy - 6) ** 2 + (xx - 9) ** 2 < 30,
        "scattered": rng.random((14, 17)) < 0.6,
        "edge": xx >= 5,  # a region that touches three borders
    }[shape]
    expected = _reference_impute(image, removed)
    np.testing.assert_allclose(noisy_linear_impute(image, removed, noise=0.0), expected, atol=1e-5)
    hole = impute_system(removed)
    assert abs(hole.matrix - hole.matrix.T).max() == 0  # symmetric, as the solver assumes
    # noise: Gaussian, scaled by each channel's spread, only where pixels were removed
    noisy = noisy_linear_impute(image, removed, noise=0.5, rng=np.random.default_rng(0))
    draws = (noisy - expected)[removed] / (0.5 * image.reshape(-1, 3).std(axis=0))
    assert np.array_equal(noisy[~removed], image[~removed])
    assert 0.7 < draws.std() < 1.3


def test_road_equals_a_plain_loop():
    """One image, fraction and order at a time, each imputed input its own forward pass."""
    net = pooled_cnn()
    rng = np.random.default_rng(7)
    x = rng.normal(size=(3, 12, 12, 3)).astype(np.float32)
    maps = rng.random((3, 12, 12)).astype(np.float32)
    maps[1] = np.round(maps[1], 1)  # ties, broken in raster order
    targets = np.array([2, 0, 1])
    fractions = (0.15, 0.5, 0.85)
    draws = np.random.default_rng(11)
    expected = np.empty((3, 2, 3))
    order = np.argsort(-maps.reshape(3, -1), axis=1, kind="stable")
    with torch.no_grad():
        for i in range(3):
            for j, fraction in enumerate(fractions):
                count = int(np.rint(fraction * 144))
                for k, chosen in enumerate((order[i, :count], order[i, 144 - count :])):
                    removed = np.zeros(144, bool)
                    removed[chosen] = True
                    removed = removed.reshape(12, 12)
                    filled = _reference_impute(x[i], removed)
                    noise = draws.normal(0.0, 1.0, (int(removed.sum()), 3))
                    filled[removed] += noise * 0.05 * x[i].reshape(-1, 3).std(axis=0)
                    t = torch.from_numpy(filled[None].astype(np.float32)).permute(0, 3, 1, 2)
                    expected[i, k, j] = float(torch.softmax(net(t), dim=1)[0, targets[i]])
    for batch_size in (1, 4, 64):  # however the batches are cut, the same draws
        res = metrics.road(
            net,
            maps,
            images=x,
            targets=targets,
            fractions=fractions,
            noise=0.05,
            seed=11,
            batch_size=batch_size,
        )
        np.testing.assert_allclose(res.morf, expected[:, 0], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(res.lerf, expected[:, 1], rtol=1e-5, atol=1e-6)
    assert res.to_dict()["params"] == {"noise": 0.05, "seed": 11, "precision": "float32"}


def test_helpers_and_validation(model, weights):
    ranks = pixel_ranks(np.array([[[0.1, 0.9], [0.5, 0.5]]]))
    np.testing.assert_array_equal(ranks, [[[3, 0], [1, 2]]])  # ties in raster order
    assert trapezoid(np.array([0.0, 1.0]), np.array([0.0, 1.0])) == pytest.approx(0.5)
    with pytest.raises(InvalidInput, match="steps"):
        metrics.deletion(model, weights, images=ones(1), steps=0)
    with pytest.raises(InvalidInput, match="baseline"):
        metrics.deletion(model, weights, images=ones(1), baseline="purple")
    with pytest.raises(InvalidInput, match="images"):
        metrics.deletion(model, weights)
    with pytest.raises(InvalidInput, match="one map per image"):
        metrics.deletion(model, np.ones((3, SIZE, SIZE)), images=ones(2))
    with pytest.raises(InvalidInput, match="fractions"):
        metrics.road(model, weights, images=ones(1), fractions=(0.0, 0.5))
    with pytest.raises(InvalidInput, match="target"):
        metrics.deletion(model, weights, images=ones(1), targets=[7], steps=2)
    fig = metrics.deletion(model, weights, images=ones(1), steps=4).figure()
    assert type(fig).__name__ == "Figure"


def test_reduced_precision_runs_in_bfloat16_and_stays_close():
    """precision="bfloat16" autocasts the forward passes; the curves move little."""
    net = pooled_cnn()
    rng = np.random.default_rng(5)
    pictures = rng.integers(0, 256, size=(3, 16, 16, 3), dtype=np.uint8)
    pre = seewhy.Preprocess(size=(16, 16))
    ex = seewhy.explain(net, pictures, "gradcam", preprocess=pre)
    dtypes: list[torch.dtype] = []
    handle = net[0].register_forward_hook(lambda m, a, out: dtypes.append(out.dtype))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # the looser check: no false "rebuilt" warning
            fast = {
                "deletion": metrics.deletion(
                    net, ex, steps=6, preprocess=pre, precision="bfloat16"
                ),
                "insertion": metrics.insertion(
                    net, ex, steps=6, preprocess=pre, precision="bfloat16"
                ),
                "road": metrics.road(
                    net, ex, fractions=(0.3,), preprocess=pre, precision="bfloat16"
                ),
            }
    finally:
        handle.remove()
    assert dtypes and set(dtypes) == {torch.bfloat16}
    assert not torch.is_autocast_enabled("cpu")
    exact = {
        "deletion": metrics.deletion(net, ex, steps=6, preprocess=pre),
        "insertion": metrics.insertion(net, ex, steps=6, preprocess=pre),
    }
    for name, curve in exact.items():
        assert fast[name].params["precision"] == "bfloat16"
        assert curve.params["precision"] == "float32"
        np.testing.assert_allclose(fast[name].scores, curve.scores, atol=0.03)
        assert not np.array_equal(fast[name].scores, curve.scores)
    assert fast["road"].to_dict()["params"]["precision"] == "bfloat16"
    confidence = metrics.average_drop(net, ex, preprocess=pre, precision="float16")
    reference = metrics.average_drop(net, ex, preprocess=pre)
    np.testing.assert_allclose(confidence.masked, reference.masked, atol=0.03)
    with pytest.raises(InvalidInput, match="precision: expected one of float32, bfloat16"):
        metrics.deletion(net, ex, steps=2, preprocess=pre, precision="int8")


def test_default_batch_size_is_the_backends_choice():
    """No batch_size: passes of the backend's preferred size, the same curve as any other."""
    wide = one_conv(64, 3)
    rng = np.random.default_rng(6)
    x = rng.normal(size=(3, 128, 128, 3)).astype(np.float32)
    maps = rng.random((3, 128, 128)).astype(np.float32)
    sizes: list[int] = []
    handle = wide.register_forward_pre_hook(lambda m, args: sizes.append(len(args[0])))
    try:
        auto = metrics.deletion(wide, maps, images=x, targets=[0, 1, 2], steps=7)
    finally:
        handle.remove()
    # one image traced for the layer sizes, one to see whether the scores come out of a
    # sigmoid (once per model and input shape), the clean pass, then 21 perturbed inputs 8 at
    # a time
    assert sizes == [1, 1, 3, 8, 8, 5]
    fixed = metrics.deletion(wide, maps, images=x, targets=[0, 1, 2], steps=7, batch_size=5)
    np.testing.assert_allclose(auto.scores, fixed.scores, rtol=1e-5, atol=1e-6)
