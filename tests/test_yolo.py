"""ultralytics YOLO through seewhy (issue 27, point 1): letterbox, rows, Box, Grad-CAM, no trace.

Models are built from ultralytics' own YAML files with random weights (tests/models.py:
``tiny_yolo``), at 64 px. Each check compares with ultralytics' own pipeline: its
``LetterBox`` for the pixels, its ``scale_boxes`` for boxes on the photo, its model's raw
output for Box scores, ``predict`` (on a copy) for the rows, pytorch-grad-cam's
``FasterRCNNBoxScoreTarget`` for Grad-CAM, and a Grad-CAM written from the definition.
"""

from __future__ import annotations

import copy
import importlib.util
import warnings

import numpy as np
import pytest

if importlib.util.find_spec("ultralytics") is None:  # not imported here: see tiny_yolo
    pytest.skip(
        "ultralytics is not installed (pip install 'seewhy[detect]')", allow_module_level=True
    )
torch = pytest.importorskip("torch")

import seewhy  # noqa: E402
from models import tiny_yolo, ultralytics_offline, yolo_photo  # noqa: E402
from seewhy.adapters import adapt  # noqa: E402
from seewhy.errors import InvalidInput  # noqa: E402
from seewhy.inputs import resize_for_model  # noqa: E402
from seewhy.targets import Box  # noqa: E402

ultralytics_offline()

SIDE = 64


@pytest.fixture(scope="module")
def yolo8():
    return tiny_yolo("yolov8n.yaml", imgsz=SIDE)


@pytest.fixture(scope="module")
def yolo11():
    return tiny_yolo("yolo11n.yaml", imgsz=SIDE, seed=1)


@pytest.fixture(scope="module")
def photo():
    """A non-square photo: a bright block on noise, 40 x 72 (letterboxed top and bottom)."""
    return yolo_photo(40, 72)


def _quiet_explain(model, images, method="gradcam", **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return seewhy.explain(model, images, method, **kw)


def _input(photo, yolo):
    pre = adapt(yolo).preprocess
    return torch.from_numpy(pre.normalise(resize_for_model(photo, pre))).permute(2, 0, 1)[None]


def _raw(yolo, x):
    """The model's own decoded output (N, 4 + classes, anchors), on a copy in eval mode."""
    net = copy.deepcopy(yolo.model).eval()
    with torch.no_grad():
        return net(x)[0]


# -- letterbox ------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(40, 72), (72, 40), (33, 33), (17, 100)])
@pytest.mark.parametrize("imgsz", [64, (64, 96)])
def test_letterbox_is_ultralytics_own(shape, imgsz):
    """The pixels seewhy feeds equal ultralytics' LetterBox output (BGR in, RGB compared)."""
    from ultralytics.data.augment import LetterBox

    from seewhy.detection.letterbox import letterbox

    size = (imgsz, imgsz) if isinstance(imgsz, int) else imgsz
    rgb = (np.random.default_rng(sum(shape)).random((*shape, 3)) * 255).astype(np.uint8)
    own = LetterBox(size, auto=False, stride=32)(image=np.ascontiguousarray(rgb[..., ::-1]))
    np.testing.assert_array_equal(resize_for_model(rgb, letterbox(size)), own[..., ::-1])


def test_model_reads_its_letterbox(yolo8):
    """imgsz from the YOLO object's overrides (rounded up to the stride), else its args."""
    found = adapt(yolo8)
    assert found.preprocess.size == (SIDE, SIDE) and found.preprocess.fill == (114, 114, 114)
    assert found.layer == ("model.15", "model.18", "model.21")  # P3-P5 feeding Detect
    assert found.labels == ("class0", "class1", "class2")
    net = copy.deepcopy(yolo8.model)
    net.args = {"imgsz": 70}  # not a stride multiple: ultralytics' check_imgsz rounds up
    assert adapt(net).preprocess.size == (96, 96)


def test_boxes_and_maps_go_back_onto_the_photo(yolo8, photo):
    """A row's box in the photo's pixels equals ultralytics' scale_boxes of it."""
    from ultralytics.utils.ops import scale_boxes

    e = _quiet_explain(yolo8, photo, layer="model.15")
    box = np.asarray(e.params["target"][0]["xyxy"] if isinstance(e.params["target"], list)
                     else e.params["target"]["xyxy"], np.float32)  # fmt: skip
    top, left, bottom, right = e.photos[0].box
    sx, sy = (right - left) / SIDE, (bottom - top) / SIDE
    ours = np.array([left + box[0] * sx, top + box[1] * sy, left + box[2] * sx, top + box[3] * sy])
    theirs = scale_boxes((SIDE, SIDE), torch.tensor(box[None]), photo.shape[:2], padding=True)
    inside = np.clip(ours, 0, [photo.shape[1], photo.shape[0]] * 2)  # scale_boxes clips
    np.testing.assert_allclose(inside, theirs.numpy()[0], atol=1e-3)
    assert e.maps.shape[1:] == (SIDE, SIDE)


# -- rows and Box -----------------------------------------------------------------------------


def _rows(e):
    forms = e.params["target"] if isinstance(e.params["target"], list) else [e.params["target"]]
    boxes = np.array([f["xyxy"] for f in forms])
    order = np.lexsort(boxes.T[::-1])
    return boxes[order], np.array([f["label"] for f in forms])[order]


def test_rows_are_the_detections_predict_keeps(yolo8, photo):
    """No target: one row per detection of ultralytics' own predict (run on a copy, fed the
    same letterboxed tensor), same boxes (predict clips them) and classes."""
    e = _quiet_explain(yolo8, photo, layer="model.15")
    result = copy.deepcopy(yolo8).predict(_input(photo, yolo8), verbose=False, imgsz=SIDE)[0]
    theirs = result.boxes.xyxy.numpy()
    order = np.lexsort(theirs.T[::-1])
    boxes, labels = _rows(e)
    assert len(e) == len(theirs) > 0
    np.testing.assert_allclose(np.clip(boxes, 0, SIDE), theirs[order], atol=2e-2)
    np.testing.assert_array_equal(labels, result.boxes.cls.numpy()[order].astype(int))


def test_rows_follow_the_yolo_objects_own_thresholds(yolo11, photo):
    """YOLO11: the rows are ultralytics' NMS of the raw output at the predictor's defaults
    (conf 0.25, its cfg's iou), or at the thresholds set on the YOLO object."""
    from ultralytics.cfg import DEFAULT_CFG
    from ultralytics.utils.nms import non_max_suppression

    raw = _raw(yolo11, _input(photo, yolo11))
    for conf in (None, 0.4):
        yolo = copy.copy(yolo11)
        yolo.overrides = {**yolo11.overrides, "conf": conf}
        e = _quiet_explain(yolo, photo, layer="model.15")
        kept = non_max_suppression(raw.clone(), conf or 0.25, DEFAULT_CFG.iou, max_det=300)[0]
        theirs = kept[:, :4].numpy()
        order = np.lexsort(theirs.T[::-1])
        boxes, labels = _rows(e)
        assert len(e) == len(kept) > 0
        np.testing.assert_allclose(boxes, theirs[order], atol=1e-3)
        np.testing.assert_array_equal(labels, kept[:, 5].numpy()[order].astype(int))


def test_box_scores_the_best_overlapping_raw_prediction_of_its_label(yolo8, photo):
    """Box(xyxy, label) -> the class score of the raw (pre-NMS) prediction of that label
    overlapping it most, read from the model's own output."""
    x = _input(photo, yolo8)
    raw = _raw(yolo8, x)[0]  # (4 + classes, anchors)
    xywh, scores = raw[:4].T, raw[4:]
    boxes = torch.cat([xywh[:, :2] - xywh[:, 2:] / 2, xywh[:, :2] + xywh[:, 2:] / 2], 1)
    wanted = [12.0, 20.0, 40.0, 44.0]
    for label in range(3):
        from torchvision.ops import box_iou

        iou = box_iou(torch.tensor([wanted]), boxes)[0]
        iou[scores.argmax(0) != label] = 0
        expected = float(scores[label, iou.argmax()]) if iou.max() > 0 else 0.0
        e = _quiet_explain(yolo8, photo, target=Box(wanted, label), layer="model.15")
        assert e.extras["target_score"][0] == pytest.approx(expected, abs=1e-5)


def test_nothing_detected_says_how_to_choose(yolo8):
    blank = np.full((40, 40, 3), 114, np.uint8)
    net = copy.deepcopy(yolo8)
    net.overrides["conf"] = 0.9999
    with pytest.raises(InvalidInput, match=r"detected nothing.*Box"):
        _quiet_explain(net, blank)


# -- Grad-CAM -------------------------------------------------------------------------------


def _gradcam_by_hand(yolo, x, layer, box, label):
    """Grad-CAM from its definition on the raw output: w_k = mean(dS/dA_k), map = sum w_k A_k."""
    net = copy.deepcopy(yolo.model).eval()
    kept = {}
    index = int(layer.split(".")[1])
    hook = net.model[index].register_forward_hook(lambda m, i, o: kept.setdefault("a", o))
    raw = net(x)[0][0]
    hook.remove()
    xywh, scores = raw[:4].T, raw[4:]
    boxes = torch.cat([xywh[:, :2] - xywh[:, 2:] / 2, xywh[:, :2] + xywh[:, 2:] / 2], 1)
    from torchvision.ops import box_iou

    iou = box_iou(torch.tensor([box]), boxes.detach())[0]
    iou[scores.argmax(0) != label] = 0
    score = scores[label, iou.argmax()]
    (grad,) = torch.autograd.grad(score, kept["a"])
    weights = grad.mean(dim=(2, 3), keepdim=True)
    return (weights * kept["a"]).sum(1)[0].detach().numpy()


@pytest.mark.parametrize("layer", ["model.15", "model.18", "model.21"])
def test_gradcam_matches_its_definition_at_each_scale(yolo8, photo, layer):
    x = _input(photo, yolo8)
    e0 = _quiet_explain(yolo8, photo, layer="model.15")
    first = e0.params["target"][0] if isinstance(e0.params["target"], list) else e0.params["target"]
    box, label = first["xyxy"], first["label"]
    e = _quiet_explain(yolo8, photo, target=Box(box, label), layer=layer)
    expected = _gradcam_by_hand(yolo8, x, layer, box, label)
    assert e.layer_maps[0].shape == expected.shape
    scale = abs(expected).max()
    np.testing.assert_allclose(e.layer_maps[0], expected, rtol=1e-4, atol=1e-6 * scale)


def test_gradcam_matches_pytorch_grad_cam(yolo8, photo):
    """pytorch-grad-cam's FasterRCNNBoxScoreTarget (score + IoU) on the same module, P3."""
    pytest.importorskip("pytorch_grad_cam")
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import FasterRCNNBoxScoreTarget

    x = _input(photo, yolo8)
    e0 = _quiet_explain(yolo8, photo, layer="model.15")
    first = e0.params["target"][0] if isinstance(e0.params["target"], list) else e0.params["target"]
    box, label = first["xyxy"], first["label"]
    e = _quiet_explain(yolo8, photo, target=Box(box, label, add_iou=True), layer="model.15")
    module = copy.deepcopy(adapt(yolo8).model).eval()
    target = FasterRCNNBoxScoreTarget([label], np.array([box]), iou_threshold=0.0)
    with GradCAM(module, [module.model[15]]) as cam:
        theirs = cam(x, targets=[target])[0]
    ours = e.maps[0]
    assert np.corrcoef(ours.ravel(), theirs.ravel())[0, 1] >= 0.99


def test_default_layers_are_fused_across_scales(yolo8, photo):
    e = _quiet_explain(yolo8, photo)
    assert e.params["layers"] == ("model.15", "model.18", "model.21")
    assert e.maps.shape == (len(e), SIDE, SIDE) and np.isfinite(e.maps).all()


# -- segment ---------------------------------------------------------------------------------


def test_segmenter_region_scores_its_instance_mask(photo):
    """Region(class, mask) on a -seg model: the raw prediction of that class whose box overlaps
    the region's outline most; its mask logits (coefficients x prototypes) summed over the
    region, read from the model's own outputs. Rows without a target are still its boxes."""
    from torchvision.ops import box_iou

    yolo = tiny_yolo("yolov8n-seg.yaml", imgsz=SIDE, seed=2)
    assert adapt(yolo).family == "ultralytics-segment"
    region = np.zeros((SIDE, SIDE), bool)
    region[8:40, 12:48] = True  # whole cells of the 16 x 16 prototypes
    net = copy.deepcopy(yolo.model).eval()
    with torch.no_grad():
        (pred, proto), _ = net(_input(photo, yolo))
    pred, proto = pred[0], proto[0]
    xywh, scores = pred[:4].T, pred[4:7]
    boxes = torch.cat([xywh[:, :2] - xywh[:, 2:] / 2, xywh[:, :2] + xywh[:, 2:] / 2], 1)
    found = []
    for label in range(3):
        iou = box_iou(torch.tensor([[12.0, 8.0, 48.0, 40.0]]), boxes)[0]
        iou[scores.argmax(0) != label] = 0
        logits = torch.einsum("m,mhw->hw", pred[7:, iou.argmax()], proto)
        expected = float(logits[2:10, 3:12].sum()) if iou.max() > 0 else 0.0
        target = seewhy.targets.Region(label, region)
        e = _quiet_explain(yolo, photo, target=target, layer="model.15")
        assert e.extras["target_score"][0] == pytest.approx(expected, rel=1e-4, abs=1e-4)
        assert e.params["target"]["kind"] == "region"
        found.append(expected)
    assert any(found), "some class has a prediction overlapping the region"
    assert len(_quiet_explain(yolo, photo, layer="model.15")) >= 1


# -- classify --------------------------------------------------------------------------------


def test_classifier_explained_as_a_classifier():
    from ultralytics.data.augment import classify_transforms

    yolo = tiny_yolo("yolov8n-cls.yaml", imgsz=32, classes=4)
    found = adapt(yolo)
    assert found.labels == ("class0", "class1", "class2", "class3")
    rgb = (np.random.default_rng(0).random((40, 56, 3)) * 255).astype(np.uint8)
    from PIL import Image

    theirs = classify_transforms(32)(Image.fromarray(rgb))[None]
    ours = _input(rgb, yolo)
    np.testing.assert_allclose(ours.numpy(), theirs.numpy(), atol=1.01 / 255)
    e = _quiet_explain(yolo, rgb)
    net = copy.deepcopy(yolo.model).eval()
    with torch.no_grad():
        logits = net(ours)[1].numpy()
    np.testing.assert_allclose(e.logits, logits, rtol=1e-4, atol=1e-5)
    assert e.targets[0] == int(logits.argmax())


# -- the user's model left as it was --------------------------------------------------------


def _state(yolo):
    net = yolo.model
    return (
        yolo.training,
        [(n, type(m).__name__, m.training) for n, m in net.named_modules()],
        {k: v.clone() for k, v in net.state_dict().items()},
        sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in net.modules()),
        [p.grad is None for p in net.parameters()],
        yolo.predictor,
    )


def _same(a, b):
    assert a[0] == b[0] and a[1] == b[1] and a[3:] == b[3:]
    assert a[2].keys() == b[2].keys() and all(torch.equal(a[2][k], b[2][k]) for k in a[2])


def test_model_left_as_it_was_also_after_an_error(yolo11, photo):
    """No fuse (Conv keeps its BatchNorm), no predictor built, training flag, hooks, .grad,
    weights and buffers unchanged; also when the user's own hook raises mid-pass."""
    before = _state(yolo11)
    _quiet_explain(yolo11, photo)
    _quiet_explain(yolo11, photo, target=Box([5, 5, 40, 40], 1), method="saliency")
    _same(before, _state(yolo11))
    assert any(type(m).__name__ == "BatchNorm2d" for m in yolo11.model.modules())

    def boom(module, args, out):
        raise RuntimeError("user hook")

    handle = yolo11.model.model[16].register_forward_hook(boom)
    try:
        during = _state(yolo11)
        with pytest.raises(Exception, match="user hook"):
            _quiet_explain(yolo11, photo, target=Box([5, 5, 40, 40], 1), layer="model.15")
        _same(during, _state(yolo11))
    finally:
        handle.remove()
    _same(before, _state(yolo11))


def test_obb_models_are_refused_in_one_line(yolo8):
    from seewhy.detection import yolo as recogniser

    class OBBModel(type(yolo8.model)):  # the name ultralytics' OBB class has, in its module
        pass

    OBBModel.__module__ = "ultralytics.nn.tasks"
    net = copy.copy(yolo8.model)
    net.__class__ = OBBModel
    with pytest.raises(seewhy.errors.UnsupportedModel, match="rotated"):
        recogniser.adapt_yolo(net, tokenizer=None, processor=None, prompt=None)


def test_importing_ultralytics_through_seewhy_leaves_the_process_as_it_was() -> None:
    """ultralytics replaces torch.save and PIL.Image.open on import (its open tries to pip
    install pi-heif on an unreadable file) and sets OMP_NUM_THREADS: when seewhy imports it
    (``--model yolo:``), none of that outlasts the import."""
    import os
    import subprocess
    import sys

    script = (
        "import os, torch, PIL.Image as I\n"
        "save, open_, env = torch.save, I.open, dict(os.environ)\n"
        "from seewhy.backends.torch.ultralytics_import import import_ultralytics\n"
        "import_ultralytics(); import ultralytics.utils\n"
        "assert torch.save is save and I.open is open_, 'patched'\n"
        "assert dict(os.environ) == env, set(os.environ.items()) ^ set(env.items())\n"
        "print('as it was')"
    )
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    env["YOLO_OFFLINE"] = "1"
    env.setdefault("YOLO_CONFIG_DIR", os.environ.get("YOLO_CONFIG_DIR", "/tmp"))
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0 and "as it was" in done.stdout, done.stderr[-800:]
