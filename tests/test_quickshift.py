"""The compiled quickshift gives scikit-image's labels exactly, ties and all."""

from __future__ import annotations

import numpy as np
import pytest
from skimage.segmentation import quickshift as skimage_quickshift

from seewhy import samples
from seewhy._kit import compiled
from seewhy._kit import quickshift as qs
from seewhy._kit.superpixels import segment
from seewhy.errors import InvalidInput

needs_numba = pytest.mark.skipif(
    not compiled.available(), reason="numba is not installed (seewhy[fast])"
)


def _pictures() -> dict[str, np.ndarray]:
    from PIL import Image

    out = {
        name: np.asarray(Image.fromarray(samples.load(name)).resize((96, 80)))
        for name in ("chelsea", "astronaut")
    }
    flat = np.full((40, 56, 3), 120, np.uint8)  # equal colours: ties everywhere
    flat[10:25, 20:40] = (10, 200, 30)
    out["flat"] = flat
    out["noise"] = np.random.default_rng(0).integers(0, 256, (30, 45, 3), dtype=np.uint8)
    return out


@needs_numba
@pytest.mark.parametrize(
    "params",
    [{"kernel_size": 4, "max_dist": 200, "ratio": 0.2}, {}, {"kernel_size": 2, "max_dist": 6}],
    ids=["lime-defaults", "skimage-defaults", "small"],
)
def test_labels_equal_scikit_image(params: dict[str, float]) -> None:
    counts = []
    for name, picture in _pictures().items():
        for seed in (0, 7):
            want = skimage_quickshift(picture, rng=seed, **params)
            got = qs.quickshift(picture, rng=seed, **params)
            assert got.shape == want.shape
            np.testing.assert_array_equal(got, want, err_msg=f"{name}, seed {seed}, {params}")
            counts.append(len(np.unique(got)))
    assert max(counts) >= 4, counts  # real segmentations, not one segment each


def test_without_numba_it_is_scikit_image(monkeypatch: pytest.MonkeyPatch) -> None:
    picture = _pictures()["noise"]
    monkeypatch.setattr(compiled, "available", lambda: False)
    got = qs.quickshift(picture, kernel_size=2, max_dist=6, rng=3)
    np.testing.assert_array_equal(
        got, skimage_quickshift(picture, kernel_size=2, max_dist=6, rng=3)
    )


def test_segment_uses_it_and_passes_other_options_to_scikit_image() -> None:
    picture = _pictures()["chelsea"]
    kernel = 4 * min(picture.shape[:2]) / 224  # the default 4 px at 224, scaled with the picture
    want = skimage_quickshift(picture, kernel_size=kernel, max_dist=200, ratio=0.2, rng=0)
    np.testing.assert_array_equal(segment(picture, "quickshift"), want)
    smoothed = segment(picture, "quickshift", {"sigma": 1.0})  # only scikit-image knows sigma
    want = skimage_quickshift(
        picture, kernel_size=kernel, max_dist=200, ratio=0.2, rng=0, sigma=1.0
    )
    np.testing.assert_array_equal(smoothed, want)
    with pytest.raises(InvalidInput, match="kernel_size"):
        segment(picture, "quickshift", {"kernel_size": 0.5})
