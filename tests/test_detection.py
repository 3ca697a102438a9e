"""torchvision detectors: Box targets, one row per detection without a target, boxes on panels.

The detectors are built with random weights (no downloads) and a 64 px
input size so they run in a fraction of a second. They take raw [0, 1]
pictures and normalise inside, so the tests pass a plain ``preprocess``.
"""

from __future__ import annotations

import json
import warnings
from typing import Any

import numpy as np
import pytest

import seewhy
from models import torchvision_detector
from seewhy.errors import InvalidInput, UnsupportedModel
from seewhy.targets import Box

torch = pytest.importorskip("torch")
tv = pytest.importorskip("torchvision")

PLAIN = seewhy.Preprocess(size=(64, 64), mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))


def _faster_rcnn(confident: bool) -> torch.nn.Module:
    model = torchvision_detector("fasterrcnn_mobilenet_v3_large_fpn", detections_per_img=3)
    if confident:  # every proposal scores class 1 at about 0.98: detections above 0.5
        with torch.no_grad():
            model.roi_heads.box_predictor.cls_score.bias.copy_(torch.tensor([0.0, 5.0, 0.0]))
    return model


@pytest.fixture(scope="module")
def x() -> np.ndarray:
    return np.random.default_rng(0).random((2, 64, 64, 3)).astype(np.float32)


def _snapshot(model: torch.nn.Module) -> list[Any]:
    hooks = [len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules()]
    return [[m.training for m in model.modules()], hooks, [p.grad for p in model.parameters()]]


def _explain(model: Any, x: np.ndarray, method: str = "gradcam", **kw: Any) -> Any:
    kw.setdefault("preprocess", PLAIN)  # None: the spec the model itself gives
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return seewhy.explain(model, x, method, **kw)


def test_each_detection_is_its_own_row_with_its_box_drawn(x: np.ndarray) -> None:
    model = _faster_rcnn(confident=True)
    before = _snapshot(model)
    ex = _explain(model, x)
    assert _snapshot(model) == before
    with torch.no_grad():
        found = model(torch.from_numpy(x).permute(0, 3, 1, 2))
    kept = [
        (i, (box, int(label), float(score)))
        for i, out in enumerate(found)
        for box, label, score in zip(out["boxes"], out["labels"], out["scores"], strict=True)
        if float(score) >= 0.5
    ]
    assert len(ex) == len(kept) and len(ex) > len(x)
    assert ex.layer is not None and ex.layer.startswith("backbone.")
    boxes = ex.params["target"]
    assert isinstance(boxes, list) and all(b["kind"] == "box" for b in boxes)
    for row, (image, (box, label, score)) in enumerate(kept):
        np.testing.assert_allclose(boxes[row]["xyxy"], box.tolist(), rtol=1e-6)
        assert ex.targets[row] == label and ex.target_labels[row].startswith("class 1 [")
        assert ex.extras["target_score"][row] == pytest.approx(score, rel=1e-5)
        np.testing.assert_array_equal(ex.images[row], ex.images[0 if image == 0 else -1])
    assert ex.logits.shape == (len(ex), 0) and ex.predictions[0] == ()
    picture = np.asarray(ex.panel(0))
    plain = np.asarray(_explain(model, x[:1], target=Box((0, 0, 1, 1), 1)).panel(0))
    red = (picture[..., 0] == 255) & (picture[..., 1] == 64) & (picture[..., 2] == 64)
    assert red.sum() > 20 and red.sum() > ((plain[..., 0] == 255) & (plain[..., 1] == 64)).sum()


def test_no_confident_detection_says_how_to_choose_and_cam_refuses(x: np.ndarray) -> None:
    model = _faster_rcnn(confident=False)
    with pytest.raises(InvalidInput, match=r"found nothing scoring >= 0.5 .*Box\(xyxy, label\)"):
        _explain(model, x)
    with pytest.raises(UnsupportedModel, match=r"cam: .*gradcam") as caught:
        _explain(model, x, "cam", target=Box((5, 5, 40, 40)))
    assert "\n" not in str(caught.value)


def test_a_box_that_overlaps_nothing_scores_zero(x: np.ndarray) -> None:
    model = _faster_rcnn(confident=True)
    ex = _explain(model, x[:1], "saliency", target=Box((0, 0, 64, 64), label=2))  # no label 2
    assert ex.extras["target_score"][0] == 0.0


@pytest.mark.parametrize(
    ("build", "layer"),
    [
        (
            lambda: torchvision_detector("retinanet_resnet50_fpn", score_thresh=0.0),
            None,
        ),
        (
            lambda: torchvision_detector("fcos_resnet50_fpn", score_thresh=0.0),
            None,
        ),
        (  # SSD resizes to 320 itself; its first map has the boxes of every size
            lambda: torchvision_detector("ssdlite320_mobilenet_v3_large", size=None),
            "backbone.features.0",
        ),
    ],
    ids=["retinanet", "fcos", "ssd"],
)
def test_other_torchvision_detectors_take_box_targets(
    build: Any, layer: str | None, x: np.ndarray
) -> None:
    torch.manual_seed(0)
    model = build().eval()
    with torch.no_grad():
        found = model(torch.from_numpy(x[:1]).permute(0, 3, 1, 2))[0]
    boxes = found["boxes"]
    sized = torch.nonzero((boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1]))[:, 0]
    assert len(sized), "the random detector found no box with an area"
    first = int(sized[0])
    box, label = boxes[first].tolist(), int(found["labels"][first])
    before = _snapshot(model)
    ex = _explain(model, x[:1], layer=layer, target=Box(box, label))
    assert _snapshot(model) == before
    assert ex.extras["target_score"][0] == pytest.approx(float(found["scores"][first]), rel=1e-4)
    assert np.isfinite(ex.maps).all() and np.abs(ex.layer_maps).max() > 0  # a gradient arrived


def test_a_detector_is_fed_unit_pixels_without_being_told() -> None:
    """Detectors normalise inside: the spec read from the model feeds [0, 1] pictures."""
    from seewhy.spec import resolve_spec

    model = _faster_rcnn(confident=False)
    spec = resolve_spec(model)
    assert spec.preprocess.mean == (0.0, 0.0, 0.0) and spec.preprocess.std == (1.0, 1.0, 1.0)
    assert spec.preprocess.scale == pytest.approx(1 / 255)
    assert "normalises inside" in spec.source and spec.guessed == ("size",)
    picture = np.full((48, 40, 3), 255, np.uint8)  # smaller than the guess: kept as it is
    ex = _explain(model, picture, target=Box((0, 0, 20, 20), 1), preprocess=None)
    assert ex.input_spec["size"] == [48, 40]


def test_layers_marks_as_default_the_layer_explain_uses(x: np.ndarray) -> None:
    """One choice: ``seewhy.layers`` marks the backbone layer a detector's explanation reads."""
    model = _faster_rcnn(confident=True)
    infos, default = seewhy.layers(model, preprocess=PLAIN)
    assert default is not None and default.startswith("backbone.body.")
    assert any(info.name.startswith("roi_heads.") for info in infos)  # listed, not the default
    assert _explain(model, x[:1]).layer == default


def test_evaluate_and_sanity_commands_take_and_record_a_box_target(tmp_path: Any) -> None:
    from PIL import Image

    from seewhy.cli import main

    torch.save(_faster_rcnn(confident=True), tmp_path / "detector.pt")
    picture = (np.random.default_rng(0).random((64, 64, 3)) * 255).astype(np.uint8)
    Image.fromarray(picture).save(tmp_path / "img.png")
    common = [str(tmp_path / "img.png"), "--model", str(tmp_path / "detector.pt")]
    common += ["--trust-model", "--size", "64", "--target", "box:4,6,40,50:1"]
    evaluated, checked = tmp_path / "evaluate.json", tmp_path / "sanity.json"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        evaluate = ["--metrics", "deletion,average_drop", "--steps", "2", "--json", str(evaluated)]
        assert main(["evaluate", *common, *evaluate]) == 0
        sanity = ["--steps", "1", "--out", str(tmp_path / "s.png"), "--json", str(checked)]
        assert main(["sanity", *common, *sanity]) == 0
    spec = {"kind": "box", "xyxy": [4.0, 6.0, 40.0, 50.0], "label": 1}
    entry = json.loads(evaluated.read_text())["methods"]["gradcam"]
    assert entry["target_spec"] == spec and entry["targets"] == [1]
    for name, result in entry["metrics"].items():
        assert result["params"]["target"] == spec and result["targets"] == [1], name
    (result,) = json.loads(checked.read_text())["results"]
    assert result["params"]["target"] == spec and result["targets"] == [1]
