"""Map post-processing: upsampling matches torch's bilinear, normalisation is safe."""

from __future__ import annotations

import numpy as np
import pytest

from seewhy.maps import normalise, postprocess, upsample


@pytest.mark.parametrize(("h", "w", "H", "W"), [(7, 7, 224, 224), (3, 5, 17, 40), (1, 4, 8, 8)])
def test_upsample_matches_torch_bilinear(h: int, w: int, H: int, W: int) -> None:
    torch = pytest.importorskip("torch")
    maps = np.random.default_rng(1).random((2, h, w)).astype(np.float32)
    ours = upsample(maps, (H, W))
    ref = torch.nn.functional.interpolate(
        torch.from_numpy(maps)[:, None], size=(H, W), mode="bilinear", align_corners=False
    )[:, 0].numpy()
    np.testing.assert_allclose(ours, ref, atol=1e-5)


def test_normalise_range_and_constant_maps() -> None:
    maps = np.stack([np.arange(12, dtype=np.float32).reshape(3, 4), np.full((3, 4), 5.0)])
    out = normalise(maps)
    assert out[0].min() == 0.0 and out[0].max() == 1.0
    assert np.all(out[1] == 0.0), "a constant map must become zeros, not NaN or all-hot"


def test_normalise_nan_and_zero_maps() -> None:
    maps = np.zeros((2, 4, 4), np.float32)
    maps[1, 0, 0] = np.nan
    out = normalise(maps)
    assert np.isfinite(out).all() and np.all(out == 0.0)


def test_postprocess_rectifies_before_normalising() -> None:
    raw = np.array([[[-4.0, 2.0], [0.0, 1.0]]], np.float32)
    out = postprocess(raw, (2, 2), rectify=True)
    np.testing.assert_allclose(out[0], [[0.0, 1.0], [0.0, 0.5]])
    signed = postprocess(raw, (2, 2), rectify=False)
    np.testing.assert_allclose(signed[0], [[0.0, 1.0], [4 / 6, 5 / 6]], rtol=1e-6)
