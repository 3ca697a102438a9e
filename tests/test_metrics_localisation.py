"""Pointing game, energy and IoU on maps whose answers are known."""

from __future__ import annotations

import numpy as np
import pytest

from seewhy import metrics
from seewhy.errors import InvalidInput
from seewhy.metrics.localisation import boxes_to_masks, object_masks, threshold_maps


def blob(h: int, w: int, cy: float, cx: float, sigma: float = 3.0) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w]
    return np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * sigma**2)).astype(np.float32)


def square_mask(h: int, w: int, y0: int, x0: int, side: int) -> np.ndarray:
    m = np.zeros((h, w), bool)
    m[y0 : y0 + side, x0 : x0 + side] = True
    return m


def test_pointing_game_hits_misses_and_tolerance():
    mask = square_mask(32, 32, 10, 10, 8)
    on = blob(32, 32, 13, 13)
    near = blob(32, 32, 13, 20)  # 3 px right of the object
    far = blob(32, 32, 28, 28)
    maps = np.stack([on, near, far])
    masks = np.stack([mask] * 3)
    assert metrics.pointing_game(maps, masks=masks, tolerance=0).values.tolist() == [1, 0, 0]
    assert metrics.pointing_game(maps, masks=masks, tolerance=3).values.tolist() == [1, 1, 0]
    # default: 15 px at 224 px, i.e. ~2 px at 32 px
    result = metrics.pointing_game(maps, masks=masks)
    assert result.params["tolerance"] == pytest.approx(15 * 32 / 224)
    assert result.mean == pytest.approx(1 / 3)
    assert float(result) == result.mean


def test_pointing_game_flat_maps_and_ties():
    mask = square_mask(16, 16, 0, 0, 8)
    flat = np.full((16, 16), 0.5)
    assert metrics.pointing_game(flat, masks=mask).mean == 0.0  # points nowhere
    tie = np.zeros((16, 16))
    tie[2, 2] = tie[3, 3] = tie[12, 12] = 1.0  # two of three peaks on the object
    assert metrics.pointing_game(tie, masks=mask, tolerance=0).mean == 1.0
    tie[13, 13] = tie[14, 14] = 1.0
    assert metrics.pointing_game(tie, masks=mask, tolerance=0).mean == 0.0


def test_energy_inside_is_one_and_uniform_is_area_share():
    mask = square_mask(20, 20, 5, 5, 10)
    inside = np.where(mask, 0.7, 0.0)
    assert metrics.energy_pointing_game(inside, masks=mask).mean == pytest.approx(1.0)
    uniform = np.ones((20, 20))
    assert metrics.energy_pointing_game(uniform, masks=mask).mean == pytest.approx(0.25)
    outside = np.where(mask, 0.0, 1.0)
    assert metrics.energy_pointing_game(outside, masks=mask).mean == 0.0
    assert metrics.energy_pointing_game(np.zeros((20, 20)), masks=mask).mean == 0.0
    # negative values do not count
    signed = np.where(mask, 1.0, -5.0)
    assert metrics.energy_pointing_game(signed, masks=mask).mean == pytest.approx(1.0)


def test_energy_in_box_uses_bounding_boxes():
    ring = square_mask(20, 20, 4, 4, 12) & ~square_mask(20, 20, 6, 6, 8)
    centre = np.where(square_mask(20, 20, 8, 8, 4), 1.0, 0.0)
    assert metrics.energy_pointing_game(centre, masks=ring).mean == 0.0
    assert metrics.energy_in_box(centre, masks=ring).mean == pytest.approx(1.0)
    assert metrics.energy_in_box(centre, boxes=[4, 4, 16, 16]).mean == pytest.approx(1.0)


def test_iou_modes():
    mask = square_mask(10, 10, 0, 0, 5)  # 25 pixels
    m = np.where(mask, 1.0, 0.2)
    assert metrics.iou(m, masks=mask).mean == pytest.approx(1.0)
    assert metrics.iou(m, masks=mask, threshold=0.1).mean == pytest.approx(0.25)
    assert metrics.iou(m, masks=mask, mode="top", threshold=0.25).mean == pytest.approx(1.0)
    assert metrics.iou(m, masks=mask, mode="top", threshold=0.5).mean == pytest.approx(0.5)
    assert metrics.iou(m, masks=mask, mode="absolute", threshold=0.5).mean == pytest.approx(1.0)
    assert metrics.iou(np.zeros((10, 10)), masks=mask).mean == 0.0
    chosen = threshold_maps(m[None], 0.5, "relative")
    assert chosen.sum() == 25


def test_box_and_mask_inputs():
    a = boxes_to_masks([[0, 0, 2, 3]], 1, (4, 4))
    assert a.sum() == 6 and a[0, :3, :2].all()
    several = boxes_to_masks([[[0, 0, 1, 1], [3, 3, 4, 4]], [0, 0, 4, 4]], 2, (4, 4))
    assert several[0].sum() == 2 and several[1].sum() == 16
    clipped = boxes_to_masks(np.array([[-3, -3, 2.5, 99]]), 1, (4, 4))
    assert clipped[0].sum() == 12
    small = square_mask(8, 8, 0, 0, 4)
    big = object_masks(1, (16, 16), masks=small)
    assert big.shape == (1, 16, 16) and big.sum() == 64
    with pytest.raises(InvalidInput, match="exactly one"):
        metrics.pointing_game(np.ones((4, 4)))
    with pytest.raises(InvalidInput, match="boxes"):
        boxes_to_masks([[0, 0, 1]], 1, (4, 4))
    with pytest.raises(InvalidInput, match="x0 <= x1"):
        boxes_to_masks([[3, 0, 1, 1]], 1, (4, 4))
    with pytest.raises(InvalidInput, match="masks"):
        metrics.iou(np.ones((2, 4, 4)), masks=np.ones((3, 4, 4)))
    with pytest.raises(InvalidInput, match="tolerance"):
        metrics.pointing_game(np.ones((4, 4)), masks=np.ones((4, 4)), tolerance=-1)
    with pytest.raises(InvalidInput, match="mode"):
        metrics.iou(np.ones((4, 4)), masks=np.ones((4, 4)), mode="best")
    assert metrics.iou(np.ones((4, 4)), masks=np.ones((4, 4))).to_dict()["metric"] == "iou"
