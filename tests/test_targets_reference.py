"""seewhy's targets against pytorch-grad-cam's at the same layer (Grad-CAM, r >= 0.999).

pytorch-grad-cam scores a target by calling it on each image's output and
back-propagating the sum; seewhy evaluates :mod:`seewhy.targets` inside its
own passes. Same layer, same score, so the maps must agree.
"""

from __future__ import annotations

import copy
import warnings

import numpy as np
import pytest

import seewhy
from models import lraspp, output_picked, tiny_cnn, torchvision_detector
from seewhy.targets import Box, Class, Region, Similarity

torch = pytest.importorskip("torch")
pgc = pytest.importorskip("pytorch_grad_cam", reason="pytorch-grad-cam is not installed")
from pytorch_grad_cam.utils import model_targets  # noqa: E402

PLAIN = seewhy.Preprocess(size=(64, 64), mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))


def _theirs(
    model: torch.nn.Module, layer: torch.nn.Module, x: np.ndarray, targets: list
) -> np.ndarray:
    cam = pgc.GradCAM(model=model, target_layers=[layer])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return cam(input_tensor=torch.from_numpy(x), targets=targets)


def _agree(ours: np.ndarray, theirs: np.ndarray) -> None:
    assert ours.shape == theirs.shape
    compared = 0
    for i in range(len(ours)):
        assert (ours[i].max() > 0) == (theirs[i].max() > 0), f"image {i}: one map is all zero"
        if ours[i].max() > 0:  # a GAP head's Grad-CAM can be all negative, so zero after ReLU
            r = np.corrcoef(ours[i].ravel(), theirs[i].ravel())[0, 1]
            assert r >= 0.999, f"image {i}: correlation {r:.5f}"
            compared += 1
    assert compared, "every map was all zero: nothing was compared"


def _plain_relus(model: torch.nn.Module) -> torch.nn.Module:
    """A copy whose ReLUs are not in place (their hooks cannot follow in-place ReLUs)."""
    ref = copy.deepcopy(model)
    for module in ref.modules():
        for child, sub in module.named_children():
            if isinstance(sub, torch.nn.ReLU) and sub.inplace:
                setattr(module, child, torch.nn.ReLU())
    return ref


@pytest.fixture(scope="module")
def nchw() -> np.ndarray:
    return np.random.default_rng(3).random((2, 3, 32, 32)).astype(np.float32)


def test_binary_classifier_output_target(nchw: np.ndarray) -> None:
    """A one-logit head's classes 1 and 0 are pytorch-grad-cam's positive and negative."""
    model = tiny_cnn(classes=1, seed=4)
    ref = _plain_relus(model)
    for category in (1, 0):
        theirs = _theirs(
            ref, ref[2], nchw, [model_targets.BinaryClassifierOutputTarget(category)] * 2
        )
        _agree(seewhy.explain(model, nchw, layer="2", target=Class(category)).maps, theirs)
        _agree(seewhy.explain(model, nchw, layer="2", target=category).maps, theirs)
    flipped = seewhy.explain(model, nchw, layer="2", target=lambda out: -out[:, 0])
    negative = seewhy.explain(model, nchw, layer="2", target=0)
    np.testing.assert_allclose(flipped.layer_maps, negative.layer_maps, rtol=1e-5, atol=1e-7)


def test_classifier_output_softmax_target(nchw: np.ndarray) -> None:
    model = tiny_cnn(classes=4, seed=5)
    ref = _plain_relus(model)
    theirs = _theirs(
        ref, ref[2], nchw, [model_targets.ClassifierOutputSoftmaxTarget(c) for c in (1, 3)]
    )
    ex = seewhy.explain(model, nchw, layer="2", target=[1, 3], score="probability")
    _agree(ex.maps, theirs)


def test_similarity_to_concept_target(nchw: np.ndarray) -> None:
    model = tiny_cnn(classes=8, seed=6)  # its 8 outputs read as an embedding
    concept = np.random.default_rng(1).normal(size=8).astype(np.float32)
    ref = _plain_relus(model)
    features = torch.from_numpy(concept)
    # the class lives in pytorch-grad-cam's tutorials, not in every release: the same score
    concept_target = getattr(model_targets, "SimilarityToConceptTarget", None)
    if concept_target is not None:
        target = concept_target(features)
    else:

        def target(output: torch.Tensor) -> torch.Tensor:
            return torch.nn.functional.cosine_similarity(output, features, dim=0)

    theirs = _theirs(ref, ref[2], nchw, [target] * 2)
    ex = seewhy.explain(model, nchw, layer="2", target=Similarity(concept))
    _agree(ex.maps, theirs)


@pytest.fixture(scope="module")
def segmenter() -> torch.nn.Module:
    pytest.importorskip("torchvision")
    return lraspp(3)


def test_semantic_segmentation_target(segmenter: torch.nn.Module) -> None:
    x = np.random.default_rng(4).random((1, 3, 64, 64)).astype(np.float32)
    mask = np.zeros((64, 64), bool)
    mask[10:40, 20:50] = True
    # pytorch-grad-cam's segmentation recipe: the model's "out" as a plain tensor
    ref = output_picked(copy.deepcopy(segmenter), lambda out: out["out"])
    layer = "backbone.16"
    target = model_targets.SemanticSegmentationTarget(1, mask.astype(np.float32))
    theirs = _theirs(ref, ref.model.backbone["16"], x, [target])
    ex = seewhy.explain(segmenter, x, layer=layer, target=Region(1, mask))
    _agree(ex.maps, theirs)
    assert ex.target_labels == ("region of class 1",)


@pytest.fixture(scope="module")
def detector() -> torch.nn.Module:
    pytest.importorskip("torchvision")
    model = torchvision_detector("fasterrcnn_mobilenet_v3_large_fpn")
    with torch.no_grad():  # random class scores are near-ties: give the score a real gradient
        model.roi_heads.box_predictor.cls_score.weight.mul_(300.0)
    return model


def test_faster_rcnn_box_score_target(detector: torch.nn.Module) -> None:
    x = np.random.default_rng(5).random((1, 3, 64, 64)).astype(np.float32)
    with torch.no_grad():
        found = detector(torch.from_numpy(x))[0]
    assert len(found["boxes"]) > 0, "the random detector found no box to explain"
    box, label = found["boxes"][0], int(found["labels"][0])
    ref = copy.deepcopy(detector)
    target = model_targets.FasterRCNNBoxScoreTarget([label], box[None])
    theirs = _theirs(ref, ref.backbone.body["12"], x, [target])
    ours = Box(box.tolist(), label, add_iou=True)
    ex = seewhy.explain(detector, x, layer="backbone.body.12", target=ours, preprocess=PLAIN)
    _agree(ex.maps, theirs)
    assert ex.logits.shape == (1, 0) and ex.predictions == ((),)
