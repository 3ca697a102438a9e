"""Several layers at once: ``layer=["a", "b"]`` fuses each layer's normalised map (mean or max),
for any CAM, through explain, Explainer and the command line; compared with pytorch-grad-cam's
``target_layers=[...]``."""

from __future__ import annotations

import argparse
import copy
import importlib.util

import numpy as np
import pytest

import seewhy
from models import tiny_cnn
from seewhy.adapters import Adapted
from seewhy.errors import InvalidInput, LayerNotFound
from seewhy.maps import normalise, upsample

torch = pytest.importorskip("torch")

LAYERS = ["1", "3"]  # tiny_cnn's two ReLUs: 16 x 16 and 8 x 8 at 16 px


@pytest.fixture(scope="module")
def net() -> torch.nn.Module:
    return tiny_cnn(classes=6, inplace=False)


@pytest.fixture(scope="module")
def x() -> np.ndarray:
    return np.random.default_rng(3).standard_normal((3, 16, 16, 3)).astype(np.float32)


@pytest.mark.parametrize("method", ["gradcam", "layercam", "eigencam", "scorecam"])
@pytest.mark.parametrize("fuse", ["mean", "max"])
def test_fused_map_combines_each_layers_normalised_map(net, x, method: str, fuse: str) -> None:
    settings = {"channels": 4} if method == "scorecam" else {}
    fused = seewhy.explain(net, x, method, layer=LAYERS, fuse=fuse, **settings)
    layer_maps = [seewhy.explain(net, x, method, layer=n, **settings).layer_maps for n in LAYERS]
    rectified = [np.maximum(m, 0) for m in layer_maps]  # every CAM rectifies
    each = np.stack([upsample(normalise(m), (16, 16)) for m in rectified])
    expected = normalise(each.mean(axis=0) if fuse == "mean" else each.max(axis=0))
    np.testing.assert_allclose(fused.maps, expected, atol=1e-5)
    assert not np.allclose(fused.maps, each[0], atol=1e-3), "both layers count"
    assert fused.params["layers"] == tuple(LAYERS) and fused.params["fuse"] == fuse
    assert fused.layer == "1,3"


def test_equals_pytorch_grad_cams_target_layers(net, x) -> None:
    pgc = pytest.importorskip("pytorch_grad_cam", reason="pytorch-grad-cam is not installed")
    ours = seewhy.explain(net, x, "gradcam", layer=LAYERS)
    reference = copy.deepcopy(net)
    cam = pgc.GradCAM(reference, [reference[int(n)] for n in LAYERS])
    theirs = cam(torch.from_numpy(x).permute(0, 3, 1, 2).contiguous(), targets=None)
    for i in range(len(x)):
        corr = np.corrcoef(ours.maps[i].ravel(), theirs[i].ravel())[0, 1]
        assert corr >= 0.99, f"image {i}: r = {corr:.4f}"


def test_the_recorded_layer_explains_again_and_batches_split(net, x) -> None:
    first = seewhy.Explainer(net, "gradcam++", layer=("3", "1"), batch_size=2).explain(x)
    again = seewhy.explain(net, x, "gradcam++", layer=first.layer)  # "3,1": the same layers
    np.testing.assert_allclose(again.maps, first.maps, atol=1e-6)
    single = seewhy.explain(net, x[2:], "gradcam++", layer=["3", "1"])
    np.testing.assert_allclose(single.maps[0], first.maps[2], atol=1e-5)


def test_smoothings_and_new_cams_fuse_too(net, x) -> None:
    e = seewhy.explain(net, x[:1], "finercam", layer=LAYERS, aug_smooth=True, fuse="max")
    assert e.maps.shape == (1, 16, 16) and np.ptp(e.maps) > 0
    assert e.params["aug_smooth"] is True and e.params["layers"] == tuple(LAYERS)


@pytest.mark.parametrize(
    ("settings", "says"),
    [
        ({"layer": ["1", "1"]}, "names a layer twice"),
        ({"layer": []}, "empty layer name"),
        ({"layer": "1,"}, "empty layer name"),
        ({"layer": ["1", 3]}, "layer: expected a layer name"),
        ({"layer": LAYERS, "fuse": "sum"}, "fuse: expected 'mean' or 'max'"),
        ({"layer": LAYERS, "method": "saliency"}, "saliency reads no layer"),
    ],
)
def test_bad_layer_lists_are_refused_in_one_line(net, x, settings, says) -> None:
    method = settings.pop("method", "gradcam")
    with pytest.raises(InvalidInput, match=says) as caught:
        seewhy.explain(net, x[:1], method, **settings)
    assert "\n" not in str(caught.value)


def test_an_unknown_layer_in_the_list_is_named(net, x) -> None:
    with pytest.raises(LayerNotFound, match="nope"):
        seewhy.explain(net, x[:1], "gradcam", layer=["1", "nope"])


def test_the_command_line_takes_comma_separated_layers_and_fuse() -> None:
    from seewhy.cli.options import add_explainer_options, explainer_keywords

    parser = argparse.ArgumentParser()
    add_explainer_options(parser)
    args = parser.parse_args(["--layer", "layer3,layer4", "--fuse", "max"])
    chosen = explainer_keywords(args)
    assert chosen["layer"] == "layer3,layer4" and chosen["fuse"] == "max"
    with pytest.raises(SystemExit):
        parser.parse_args(["--fuse", "sum"])


def test_an_adapters_default_layer_may_be_several() -> None:
    adapted = Adapted(
        model=None,
        family="detector",
        said="",
        preprocess=None,
        bind=lambda t: t,
        layer=("a", "b"),
        layers=("a", "b"),
        layers_why="maps one per picture only there",
    )
    adapted.check_layer(("a", "b"), "gradcam")
    with pytest.raises(InvalidInput, match="'c' of this detector model"):
        adapted.check_layer(("a", "c"), "gradcam")


@pytest.mark.parametrize("inplace", [False, True])
def test_three_layers_share_one_forward_and_one_backward(x, monkeypatch, inplace: bool) -> None:
    model, layers = tiny_cnn(classes=6, inplace=inplace), ["0", "2", "3"]
    rows: list[int] = []  # rows through the first layer
    grad, grads = torch.autograd.grad, []
    monkeypatch.setattr(torch.autograd, "grad", lambda *a, **k: grads.append(1) or grad(*a, **k))

    def counted(layer: str | list[str]) -> tuple[seewhy.Explanation, tuple[int, int]]:
        rows.clear()
        grads.clear()
        handle = model[0].register_forward_hook(lambda m, a, out: rows.append(len(out)))
        try:
            return seewhy.explain(model, x, "gradcam", layer=layer), (sum(rows), len(grads))
        finally:
            handle.remove()

    expected = [counted(n)[0].layer_maps for n in layers]
    one, fused = counted("3")[1], counted(layers)
    assert fused[1] == one and one[1] == 1, f"one layer: {one}; three: {fused[1]}"
    each = np.stack([upsample(normalise(np.maximum(m, 0)), (16, 16)) for m in expected])
    np.testing.assert_allclose(fused[0].maps, normalise(each.mean(axis=0)), atol=1e-5)


def test_a_yolos_detections_share_one_forward_each_row_its_own_backward(monkeypatch) -> None:
    """k detections of one picture, P3-P5 fused: the picture runs once (after NMS's own
    forward) and each row is one backward; every row's map is that Box's alone."""
    if importlib.util.find_spec("ultralytics") is None:  # imported only through tiny_yolo
        pytest.skip("ultralytics is not installed (pip install 'seewhy[detect]')")
    from models import tiny_yolo, yolo_photo
    from seewhy.targets import Box

    yolo, photo = tiny_yolo("yolov8n.yaml", imgsz=64), yolo_photo(40, 72)
    seewhy.explain(yolo, photo, target=Box([0, 0, 9, 9], 0))  # the layers traced once
    rows: list[int] = []
    grad, grads = torch.autograd.grad, []
    monkeypatch.setattr(torch.autograd, "grad", lambda *a, **k: grads.append(1) or grad(*a, **k))
    handle = yolo.model.model[0].register_forward_hook(lambda m, a, out: rows.append(len(out)))
    try:
        every = seewhy.explain(yolo, photo)
    finally:
        handle.remove()
    forms = every.params["target"]
    assert len(every) == len(forms) >= 2 and (sum(rows), len(grads)) == (2, len(every))
    for i, form in enumerate(forms):
        alone = seewhy.explain(yolo, photo, target=Box(form["xyxy"], form["label"]))
        np.testing.assert_allclose(every.maps[i], alone.maps[0], atol=1e-5)
