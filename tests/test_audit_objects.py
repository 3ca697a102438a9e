"""Ground truth for the report: boxes and mask outlines in the model picture's pixels."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

import seewhy
from seewhy.audit import audit
from seewhy.audit.dataset import Item
from seewhy.audit.flags import object_mask
from seewhy.audit.objects import input_boxes, objects_record, outline_path
from seewhy.audit.worker import BatchWorker, Settings
from seewhy.inputs import resize_for_model

torch = pytest.importorskip("torch")


GEOMETRIES = [
    ((60, 80), seewhy.Preprocess(size=(64, 64))),  # stretched
    ((300, 451), seewhy.Preprocess(size=(224, 224), resize=256)),  # landscape, cropped
    ((451, 300), seewhy.Preprocess(size=(224, 224), resize=256)),  # portrait, cropped
    ((40, 300), seewhy.Preprocess(size=(64, 96), resize=64)),  # very wide, non-square crop
    ((97, 101), seewhy.Preprocess(size=(48, 64), resize=50)),  # scale raised to fit the crop
]


def _extent(mask: np.ndarray) -> tuple[int, int, int, int]:
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    return int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1


@pytest.mark.parametrize(("size", "pre"), GEOMETRIES)
def test_boxes_land_where_the_object_mask_lands(
    size: tuple[int, int], pre: seewhy.Preprocess
) -> None:
    """The drawn box and the mask the scores use come from the same resize and crop."""
    h, w = size
    rng = np.random.default_rng(h * w)
    for _ in range(6):
        x0, x1 = sorted(rng.uniform(0.15, 0.85, 2) * w)
        y0, y1 = sorted(rng.uniform(0.15, 0.85, 2) * h)
        box = (float(np.floor(x0)), float(np.floor(y0)), float(np.ceil(x1)), float(np.ceil(y1)))
        if box[2] - box[0] < 6 or box[3] - box[1] < 6:
            continue
        mask = object_mask(size, pre, boxes=[box])
        drawn = input_boxes([box], size, pre)
        if mask is None or not mask.any():
            assert drawn == []  # cropped away
            continue
        assert len(drawn) == 1
        np.testing.assert_allclose(drawn[0], _extent(mask), atol=1.01)


def test_box_geometry_matches_the_picture_pixels() -> None:
    """A bright square in the original sits under its box in the resized picture."""
    size, pre = (300, 451), seewhy.Preprocess(size=(224, 224), resize=256)
    rgb = np.zeros((*size, 3), np.uint8)
    rgb[100:200, 150:300] = 255
    picture = resize_for_model(rgb, pre)
    (box,) = input_boxes([(150, 100, 300, 200)], size, pre)
    np.testing.assert_allclose(box, _extent(picture[..., 0] >= 128), atol=1.01)


def test_fractions_clipping_and_boxes_cut_off_by_the_crop() -> None:
    pre = seewhy.Preprocess(size=(100, 100), resize=100)  # 100x200 -> the middle 100x100
    size = (100, 200)
    assert input_boxes([(0.25, 0.0, 0.75, 0.5)], size, pre) == [[0.0, 0.0, 100.0, 50.0]]
    assert input_boxes([(0, 0, 40, 100)], size, pre) == []  # left of the crop
    assert input_boxes([(40, 10, 60, 20)], size, pre) == [[0.0, 10.0, 10.0, 20.0]]


def test_outline_runs_along_the_mask_edges() -> None:
    mask = np.zeros((64, 64), bool)
    mask[10:30, 20:50] = True
    assert outline_path(mask) == "M20 10h30M20 30h30M20 10v20M50 10v20"
    cut = np.zeros((64, 64), bool)
    cut[:30, 20:] = True  # cut by the frame: no line along the frame
    assert outline_path(cut) == "M20 30h44M20 0v30"
    assert outline_path(np.ones((64, 64), bool)) == ""


def test_outline_of_a_large_mask_is_coarse_but_in_picture_pixels() -> None:
    yy, xx = np.mgrid[:224, :224]
    disc = (yy - 100) ** 2 + (xx - 120) ** 2 < 70**2
    path = outline_path(disc)
    assert re.fullmatch(r"(M\d+ \d+[hv]\d+)+", path)
    assert len(path) < 1500  # a 56x56 grid: a few hundred bytes in the page
    numbers = [int(v) for v in re.findall(r"\d+", path)]
    assert all(v % 4 == 0 for v in numbers)  # whole cells of 4 pixels
    starts = [tuple(map(int, m)) for m in re.findall(r"M(\d+) (\d+)", path)]
    xs, ys = [x for x, _ in starts], [y for _, y in starts]
    assert min(xs) == pytest.approx(50, abs=4) and min(ys) == pytest.approx(30, abs=4)
    assert max(xs) == pytest.approx(190, abs=4) and max(ys) == pytest.approx(170, abs=4)


def test_objects_record_is_none_without_ground_truth() -> None:
    pre = seewhy.Preprocess(size=(32, 32))
    assert objects_record((32, 32), pre, (), None) is None
    assert objects_record((32, 32), pre, (), np.zeros((32, 32), bool)) is None
    record = objects_record((64, 32), pre, [(0, 0, 32, 16)], None)
    assert record == {"size": [32, 32], "boxes": [[0.0, 0.0, 32.0, 8.0]], "outline": ""}


def test_boxes_and_a_mask_are_drawn_apart_but_scored_together(
    tmp_path: Path, audit_net: Any
) -> None:
    Image.fromarray(np.full((32, 32, 3), 90, np.uint8)).save(tmp_path / "p.png")
    shape = np.zeros((32, 32), np.uint8)
    shape[16:, 16:] = 255
    Image.fromarray(shape).save(tmp_path / "m.png")
    item = Item(
        0, str(tmp_path / "p.png"), "p.png", boxes=((0, 0, 8, 8),), mask=str(tmp_path / "m.png")
    )
    d = BatchWorker(audit_net, Settings()).decode(item)
    assert d.error is None and d.mask is not None and d.objects is not None
    assert d.mask[:8, :8].all() and d.mask[16:, 16:].all()  # the score sees both
    assert d.objects["boxes"] == [[0.0, 0.0, 8.0, 8.0]]
    assert d.objects["outline"] == "M16 16h16M16 16v16"  # the mask alone, open at the frame


def test_records_and_page_carry_the_objects(tmp_path: Path, audit_net: Any) -> None:
    data = tmp_path / "data"
    data.mkdir()
    for name in ("a.png", "b.png"):
        Image.fromarray(np.full((40, 40, 3), 120, np.uint8)).save(data / name)
    boxes = tmp_path / "boxes.json"
    boxes.write_text(json.dumps({"a.png": [10, 10, 20, 30]}))
    result = audit(data, audit_net, out=tmp_path / "out", object_boxes=boxes, title="t")
    records = {r["name"]: r for r in result_records(tmp_path / "out")}
    assert records["a.png"]["objects"] == {
        "size": [32, 32],
        "boxes": [[8.0, 8.0, 16.0, 24.0]],
        "outline": "",
    }
    assert records["b.png"]["objects"] is None
    page = result.report.read_text(encoding="utf-8")
    blob = page.split('id="seewhy-data">', 1)[1].split("</script>", 1)[0]
    items = {it["name"]: it for it in json.loads(blob)["items"]}
    assert items["a.png"]["objects"]["boxes"] == [[8.0, 8.0, 16.0, 24.0]]
    assert items["b.png"]["objects"] is None


def result_records(out: Path) -> list[dict[str, Any]]:
    from seewhy.audit import Store

    return Store(out).records()
