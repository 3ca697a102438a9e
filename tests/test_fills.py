"""The one meaning of a fill (what a hidden pixel becomes), shared by methods and metrics."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter

import seewhy
from seewhy._kit.fills import FILLS, blur, check_fill, default_blur_sigma, fill_values
from seewhy.errors import InvalidInput

PRE = seewhy.IMAGENET


def _x(n: int = 2, h: int = 8, w: int = 10, c: int = 3) -> np.ndarray:
    return np.random.default_rng(0).normal(size=(n, h, w, c)).astype(np.float32)


def _pixel(rgb: float) -> np.ndarray:
    return PRE.normalise(np.full((1, 1, 3), rgb, np.float32))[0, 0]


@pytest.mark.parametrize("fill", [*FILLS, "grey", "zero", "uniform", "BLUR", 0.5, (1, 2, 3)])
def test_every_fill_is_float32_shaped_like_the_inputs(fill):
    x = _x()
    out = fill_values(x, fill, PRE)
    assert out.shape == x.shape and out.dtype == np.float32
    assert np.isfinite(out).all()


def test_numbers_zeros_and_arrays():
    x = _x()
    np.testing.assert_array_equal(fill_values(x, 0.5, PRE), np.full(x.shape, 0.5, np.float32))
    np.testing.assert_array_equal(fill_values(x, "zeros", None), np.zeros_like(x))
    row = np.arange(3, dtype=np.float64)
    out = fill_values(x, row, None)
    np.testing.assert_array_equal(out[1, 4, 7], row.astype(np.float32))
    out[0, 0, 0] = 9.0  # a fresh array, not a read-only view of the caller's
    assert row[0] == 0.0


def test_colours_go_through_the_preprocess():
    x = _x()
    np.testing.assert_allclose(fill_values(x, "black", PRE)[0, 0, 0], _pixel(0.0))
    np.testing.assert_allclose(fill_values(x, "white", PRE)[1, 3, 3], _pixel(255.0))
    np.testing.assert_allclose(fill_values(x, "gray", PRE)[0, 1, 2], _pixel(128.0))
    rgb = fill_values(x, (255, 0, 0), PRE)[0, 0, 0]
    expected = PRE.normalise(np.array([[[255.0, 0.0, 0.0]]], np.float32))[0, 0]
    np.testing.assert_allclose(rgb, expected)


def test_mean_is_each_images_colour():
    x = _x()
    out = fill_values(x, "mean", PRE)
    np.testing.assert_allclose(out[1, 5, 2], x[1].mean(axis=(0, 1)), rtol=1e-6)


def test_the_one_blur_reflects_and_scales_with_the_shorter_side():
    assert default_blur_sigma(224, 224) == pytest.approx(5.0)
    assert default_blur_sigma(112, 448) == pytest.approx(2.5)
    x = _x(h=32, w=40)
    s = default_blur_sigma(32, 40)
    expected = gaussian_filter(x, sigma=(0, s, s, 0), mode="reflect", truncate=3.0)
    np.testing.assert_allclose(fill_values(x, "blur", PRE), expected, rtol=1e-6)
    np.testing.assert_allclose(fill_values(x, "blur", PRE, sigma=2.0), blur(x, 2.0), rtol=1e-6)
    np.testing.assert_array_equal(blur(x, 0.0), x)  # sigma 0: no blur
    flat = np.full((1, 9, 9, 3), 0.25, np.float32)  # reflecting borders keep a flat colour
    np.testing.assert_allclose(blur(flat, 3.0), flat, rtol=1e-6)


def test_noise_follows_the_seed():
    x = _x()
    a = fill_values(x, "noise", PRE, seed=3)
    np.testing.assert_array_equal(a, fill_values(x, "noise", PRE, seed=3))
    assert not np.array_equal(a, fill_values(x, "noise", PRE, seed=4))
    raw = fill_values(x, "noise", None, seed=3)  # no preprocess: uniform in each input's range
    assert raw.min() >= x.min() and raw.max() <= x.max()


@pytest.mark.parametrize("preprocess", [PRE, None])
def test_a_batch_fills_with_noise_as_its_images_would_alone(preprocess):
    x = _x(n=3)
    x[1] *= 10  # a wider range, which must not leak into the others
    batch = fill_values(x, "noise", preprocess, seed=5)
    for i in range(len(x)):
        alone = fill_values(x[i : i + 1], "noise", preprocess, seed=5)
        np.testing.assert_array_equal(batch[i : i + 1], alone)


def test_inputs_that_are_not_rgb():
    gray = _x(c=1)
    np.testing.assert_array_equal(fill_values(gray, "black", PRE), np.zeros_like(gray))
    with pytest.raises(InvalidInput, match="fill: expected a fill for 1-channel"):
        fill_values(gray, "white", PRE)


@pytest.mark.parametrize(
    ("fill", "kwargs", "message"),
    [
        ("purple", {}, "fill: expected a number, an RGB triple, an array or one of zeros"),
        (np.zeros((3, 3)), {}, "fill: expected an array that broadcasts"),
        (float("nan"), {}, "fill: expected a finite number"),
        ("blur", {"sigma": -1.0}, "fill: sigma: expected a finite number >= 0"),
        ("black", {"preprocess": None}, "needs no preprocess"),
        ("purple", {"where": "deletion: baseline"}, "deletion: baseline: expected"),
    ],
)
def test_bad_fills_are_one_line_errors(fill, kwargs, message):
    preprocess = kwargs.pop("preprocess", PRE)
    with pytest.raises(InvalidInput, match=message):
        fill_values(_x(), fill, preprocess, **kwargs)


def test_check_fill_accepts_what_fill_values_reads_and_nothing_else():
    from seewhy._kit.fills import check_fill

    for fill in [*FILLS, "Grey", "uniform", 0, -1.5, (0, 128, 255), np.zeros(3)]:
        assert check_fill(fill) is fill
    for bad in ["purple", None, True, (1, 2), ("a", 1, 2), float("inf")]:
        with pytest.raises(InvalidInput, match="occlusion: fill: expected"):
            check_fill(bad, "occlusion: fill")


@pytest.mark.parametrize("fill", ["blur", "mean", "noise", "white"])
def test_methods_hide_pixels_with_the_same_fill(fill, numpy_backend):
    """A word and the array fill_values makes of it give the same occlusion map."""
    from seewhy.methods.base import Context
    from seewhy.registry import get

    x = _x(n=2, h=8, w=8)
    ctx = Context(backend=numpy_backend, inputs=x, targets=None, layer=None, preprocess=PRE)
    occlusion = get("occlusion")
    by_word = occlusion(window=3, fill=fill, seed=2).run(ctx).maps
    values = fill_values(x, fill, PRE, seed=2)
    by_array = occlusion(window=3, fill=values).run(ctx).maps
    np.testing.assert_array_equal(by_word, by_array)


@pytest.mark.parametrize(
    "bad", [np.array([np.nan]), np.full((1, 1, 1, 3), np.inf), np.array(["a"])]
)
def test_fill_arrays_must_be_finite_numbers(bad):
    with pytest.raises(InvalidInput, match="baseline: expected an array of"):
        fill_values(_x(), bad, PRE, where="baseline")
    with pytest.raises(InvalidInput, match="fill: expected an array of"):
        check_fill(bad)
