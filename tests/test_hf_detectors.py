"""Hugging Face DETR-style and open-vocabulary detectors (issue 27, point 2).

DETR, Conditional DETR, Deformable DETR and RT-DETR: a ``Box`` scores the
query of its label whose box overlaps most, by its class logit; no target
makes a row of each query past the family's 0.5. OWL-ViT / OWLv2: a
``Box(text=)`` scores the best-overlapping query's logit for the text, a
``Prompt`` explains the box scoring its text highest. Each score is checked
against the model's own forward, Grad-CAM against its definition,
``query-attention`` against the model's own ``output_attentions``, the input
against the image processor's, and the model is left as it was.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pytest

import seewhy
from models import tiny_grounding_dino, tiny_hf_detector, tiny_owl
from seewhy.errors import SeewhyError, UnsupportedModel
from seewhy.targets import Box, Prompt, from_json

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

PLAIN = seewhy.Preprocess(size=(64, 64), mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
SMALL = seewhy.Preprocess(size=(32, 32), mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
FAMILIES = ["detr", "conditional-detr", "deformable-detr", "rt-detr", "rt-detr-v2"]
LAST_STAGE = {
    "rt-detr": "model.backbone.model.encoder.stages.3",
    "detr": "model.backbone.model.encoder.stages.3",
}


def _explain(model: Any, image: np.ndarray, method: str = "gradcam", **settings: Any) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return seewhy.explain(model, image, method, **{"preprocess": PLAIN, **settings})


def _pixels(image: np.ndarray) -> Any:
    """PLAIN's (or SMALL's) input for a uint8 picture at its size, as the model takes it."""
    x = (image.astype(np.float32) / 255.0 - 0.5) / 0.25
    return torch.from_numpy(x).permute(2, 0, 1)[None]


def _xyxy(cxcywh: Any, size: int) -> np.ndarray:
    c = cxcywh.detach().numpy().astype(np.float64)
    return np.stack([c[:, 0] - c[:, 2] / 2, c[:, 1] - c[:, 3] / 2,
                     c[:, 0] + c[:, 2] / 2, c[:, 1] + c[:, 3] / 2], axis=1) * size  # fmt: skip


def _iou(boxes: np.ndarray, box: tuple[float, ...]) -> np.ndarray:
    """IoU of each row of ``boxes`` with ``box``, written out per box."""
    out = []
    for x0, y0, x1, y1 in boxes:
        iw = max(0.0, min(x1, box[2]) - max(x0, box[0]))
        ih = max(0.0, min(y1, box[3]) - max(y0, box[1]))
        union = (x1 - x0) * (y1 - y0) + (box[2] - box[0]) * (box[3] - box[1]) - iw * ih
        out.append(iw * ih / union)
    return np.asarray(out)


def _own(model: Any, image: np.ndarray, softmax: bool) -> tuple[np.ndarray, ...]:
    """The model's own (logits, real-class labels, probabilities, xyxy boxes) per query."""
    with torch.no_grad():
        out = model(pixel_values=_pixels(image))
    logits = out.logits[0].numpy()
    real = logits[:, :-1] if softmax else logits
    if softmax:
        e = np.exp(logits - logits.max(axis=1, keepdims=True))
        chance = (e / e.sum(axis=1, keepdims=True))[:, :-1].max(axis=1)
    else:
        chance = (1 / (1 + np.exp(-logits))).max(axis=1)
    return logits, real.argmax(axis=1), chance, _xyxy(out.pred_boxes[0], image.shape[0])


def _state(model: Any) -> list[Any]:
    return [
        (m.training, dict(m._forward_hooks), dict(m._forward_pre_hooks), type(m),
         getattr(getattr(m, "config", None), "_attn_implementation", None))
        for m in model.modules()
    ] + [(p.grad is None, p.requires_grad) for p in model.parameters()]  # fmt: skip


@pytest.fixture(scope="module")
def image() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def detectors() -> dict[str, Any]:
    return {family: tiny_hf_detector(family) for family in FAMILIES}


# -- DETR, Conditional DETR, Deformable DETR, RT-DETR --------------------------------------


@pytest.mark.parametrize("family", FAMILIES)
def test_a_box_scores_the_best_overlapping_query_of_its_label_by_its_logit(
    detectors: dict[str, Any], image: np.ndarray, family: str
) -> None:
    model = detectors[family]
    logits, labels, _, boxes = _own(model, image, family == "detr")
    label = int(labels[0])
    box = tuple(float(v) for v in boxes[0] + np.array([1.0, -1.0, 2.0, 1.0]))
    overlap = np.where(labels == label, _iou(boxes, box), 0.0)
    expected = logits[int(overlap.argmax()), label]
    found = _explain(model, image, target=Box(box, label))
    assert found.extras["target_score"][0] == pytest.approx(expected, abs=1e-4)
    assert found.params["model_family"] == f"hf-{family}"
    assert found.layer == "model.backbone.model.encoder.stages.3"  # the encoder's input
    if family == "detr":  # no query of the label overlapping: 0, nothing to explain there
        far = _explain(model, image, target=Box((0.0, 0.0, 0.5, 0.5), label))
        assert _iou(boxes, (0, 0, 0.5, 0.5)).max() == 0 and far.extras["target_score"][0] == 0


@pytest.mark.parametrize("family", ["detr", "conditional-detr"])
def test_without_a_target_each_query_past_the_threshold_is_a_row(
    detectors: dict[str, Any], image: np.ndarray, family: str
) -> None:
    model = detectors[family]
    logits, labels, chance, boxes = _own(model, image, family == "detr")
    kept = np.argsort(-chance, kind="stable")
    kept = kept[chance[kept] >= 0.5]
    assert len(kept) > 0  # the tiny model has detections to explain
    found = _explain(model, image)
    forms = found.params["target"]
    forms = forms if isinstance(forms, list) else [forms]
    assert len(found.maps) == len(kept) == len(forms)
    for form, q in zip(forms, kept, strict=True):
        assert form["label"] == int(labels[q])
        np.testing.assert_allclose(form["xyxy"], boxes[q], atol=1e-3)
    np.testing.assert_allclose(found.extras["target_score"], logits[kept, labels[kept]], atol=1e-4)


def test_gradcam_is_its_definition_at_the_backbone(
    detectors: dict[str, Any], image: np.ndarray
) -> None:
    model = detectors["detr"]
    _, labels, _, boxes = _own(model, image, True)
    label, box = int(labels[2]), tuple(boxes[2].tolist())
    q = int(np.where(labels == label, _iou(boxes, box), 0.0).argmax())
    seen: list[Any] = []
    layer = dict(model.named_modules())[LAST_STAGE["detr"]]
    handle = layer.register_forward_hook(lambda m, a, out: seen.append(out))
    try:
        out = model(pixel_values=_pixels(image).requires_grad_(True))  # DETR freezes its stem
    finally:
        handle.remove()
    (gradient,) = torch.autograd.grad(out.logits[0, q, label], seen[-1])
    reference = (gradient.mean(dim=(2, 3), keepdim=True) * seen[-1]).sum(dim=1)[0].detach()
    found = _explain(model, image, target=Box(box, label))
    ours = found.layer_maps[0]
    assert np.abs(reference.numpy()).max() > 0
    np.testing.assert_allclose(ours, reference.numpy(), atol=1e-3 * np.abs(ours).max())


@pytest.mark.parametrize("family", ["detr", "conditional-detr"])
def test_query_attention_is_the_models_own_last_cross_attention(
    detectors: dict[str, Any], image: np.ndarray, family: str
) -> None:
    model = detectors[family]
    with torch.no_grad():
        out = model(pixel_values=_pixels(image), output_attentions=True)
    _, labels, _, boxes = _own(model, image, family == "detr")
    box = tuple(boxes[1].tolist())
    q = int(np.where(labels == labels[1], _iou(boxes, box), 0.0).argmax())
    own = out.cross_attentions[-1][0, :, q].mean(dim=0).numpy()  # heads averaged, (h * w,)
    found = _explain(model, image, "query-attention", target=Box(box, int(labels[1])))
    h, w = found.layer_maps.shape[1:]
    assert h * w == own.size == 4  # 64 px at stride 32
    assert own.max() - own.min() > 0.05  # not uniform: the test can tell cells apart
    np.testing.assert_allclose(found.layer_maps[0], own.reshape(h, w), atol=1e-4)
    if family == "detr":  # the same weights on SDPA: read as eager, the user's setting kept
        sdpa = tiny_hf_detector("detr", eager=False)
        kernels = [getattr(m, "config", sdpa.config)._attn_implementation for m in sdpa.modules()]
        assert "sdpa" in kernels
        again = _explain(sdpa, image, "query-attention", target=Box(box, int(labels[1])))
        np.testing.assert_allclose(again.layer_maps[0], own.reshape(h, w), atol=1e-4)
        after = [getattr(m, "config", sdpa.config)._attn_implementation for m in sdpa.modules()]
        assert after == kernels


def test_deformable_query_attention_splats_the_sampling_points_where_they_sample(
    detectors: dict[str, Any], image: np.ndarray
) -> None:
    from seewhy.detection.decoder_attention import splat

    points = torch.tensor([[0.5, 0.5], [0.1, 0.9], [1.2, 0.3]])  # the last is off the grid
    weights = torch.tensor([1.0, 2.0, 4.0])
    grid = np.zeros((4, 8))
    for (x, y), a in zip(points.tolist(), weights.tolist(), strict=True):
        col, row = x * 8 - 0.5, y * 4 - 0.5
        for r in range(4):
            for c in range(8):
                share = max(0.0, 1 - abs(col - c)) * max(0.0, 1 - abs(row - r))
                grid[r, c] += a * share
    np.testing.assert_allclose(splat(points, weights, (4, 8)), grid, atol=1e-6)
    model = detectors["deformable-detr"]
    with torch.no_grad():
        out = model(pixel_values=_pixels(image), output_attentions=True)
    _, labels, _, boxes = _own(model, image, False)
    found = _explain(model, image, "query-attention", target=Box(tuple(boxes[0]), int(labels[0])))
    q = int(np.where(labels == labels[0], _iou(boxes, tuple(boxes[0])), 0.0).argmax())
    total = out.cross_attentions[-1][0, q].sum().item() / out.cross_attentions[-1].shape[2]
    assert found.layer_maps.shape == (1, 8, 8)  # the finest level: 64 px at stride 8
    assert 0 < found.layer_maps[0].sum() <= total + 1e-5 and found.layer_maps.min() >= 0


def test_the_input_is_the_image_processors_on_a_non_square_photo(
    detectors: dict[str, Any], tmp_path: Any
) -> None:
    from seewhy.adapters import adapt
    from seewhy.inputs.batches import resize_for_model

    photo = np.random.default_rng(1).integers(0, 256, (45, 70, 3), dtype=np.uint8)

    def same(pre: Any, processor: Any) -> None:
        ours = pre.normalise(resize_for_model(photo, pre))
        theirs = np.moveaxis(processor(images=photo, return_tensors="np")["pixel_values"][0], 0, -1)
        assert ours.shape == theirs.shape
        level = float(np.min(pre.scale / np.asarray(pre.std)))
        assert np.abs(ours - theirs).max() <= 0.25 * level

    detr = transformers.DetrImageProcessor(size={"shortest_edge": 40, "longest_edge": 56})
    adapted = adapt(detectors["detr"], processor=detr)
    assert adapted is not None and adapted.sizes is not None
    same(adapted.sizes(45, 70), detr)  # each photo at the processor's own size: 36 x 56
    assert adapted.sizes(45, 70).size == (36, 56)
    fitted = adapted.preprocess  # one size for all: fitted into 40 x 40, padded with 0
    assert fitted is not None and fitted.size == (40, 40)
    padded = fitted.normalise(resize_for_model(photo, fitted))
    assert np.abs(padded[:6]).max() < 0.02  # the padding normalises to (about) 0, as HF pads
    rt = transformers.RTDetrImageProcessor(size={"height": 48, "width": 48})
    found = adapt(detectors["rt-detr"], processor=rt)
    assert found is not None and found.preprocess is not None
    same(found.preprocess, rt)
    rt.save_pretrained(tmp_path)  # saved beside the model: read from there
    config = detectors["rt-detr"].config
    where, config._name_or_path = config._name_or_path, str(tmp_path)
    try:
        beside = adapt(detectors["rt-detr"])
    finally:
        config._name_or_path = where
    assert beside is not None and "beside the model" in beside.said
    same(beside.preprocess, rt)
    owl, _ = tiny_owl("owlvit")
    images = transformers.OwlViTImageProcessor(size={"height": 32, "width": 32},
                                               crop_size={"height": 32, "width": 32})  # fmt: skip
    found = adapt(owl, processor=images, tokenizer=None)
    assert found is not None and found.preprocess is not None
    same(found.preprocess, images)


@pytest.mark.parametrize("method", ["gradcam", "query-attention"])
def test_the_model_is_left_as_it_was_also_when_it_raises(
    detectors: dict[str, Any], image: np.ndarray, method: str
) -> None:
    model = detectors["detr"]
    before = _state(model)
    weights = {k: v.clone() for k, v in model.state_dict().items()}
    model.train()  # a user's model in training mode stays so
    _explain(model, image, method, target=Box((8, 8, 40, 40), 0))
    assert all(m.training for m in model.modules())
    model.eval()
    with pytest.raises((RuntimeError, SeewhyError, ValueError)):
        _explain(model, np.zeros((1, 64, 64, 2), np.float32), method, target=Box((8, 8, 40, 40)))
    assert _state(model) == before
    for name, value in model.state_dict().items():
        assert torch.equal(value, weights[name]), name


def test_wrong_targets_and_models_are_refused_in_one_line(
    detectors: dict[str, Any], image: np.ndarray
) -> None:
    model = detectors["rt-detr"]
    for target, said in [
        (2, "is a detector"),
        (Box((0, 0, 9, 9), 7), "outside"),
        (Box((0, 0, 9, 9), text="a cat"), "fixed classes"),
    ]:
        with pytest.raises(SeewhyError, match=said) as caught:
            _explain(model, image, target=target)
        assert "\n" not in str(caught.value)
    with pytest.raises(UnsupportedModel, match="cannot read RTDetrV2ForObjectDetection") as refused:
        _explain(detectors["rt-detr-v2"], image, "query-attention", target=Box((0, 0, 9, 9)))
    assert "\n" not in str(refused.value)
    owl, tokenizer = tiny_owl("owlvit")
    with pytest.raises(UnsupportedModel, match="decoder queries") as refused:
        _explain(owl, image[:32, :32], "query-attention", target=Box((0, 0, 9, 9), text="a cat"),
                 tokenizer=tokenizer, preprocess=SMALL)  # fmt: skip
    assert "\n" not in str(refused.value)


# -- OWL-ViT, OWLv2 ---------------------------------------------------------------------


@pytest.mark.parametrize("family", ["owlvit", "owlv2"])
def test_a_text_box_and_a_prompt_score_the_models_own_text_logits(
    image: np.ndarray, family: str
) -> None:
    model, tokenizer = tiny_owl(family)
    picture = image[:32, :32]
    tokens = tokenizer(["a cat"], padding=True, return_tensors="pt")
    with torch.no_grad():
        out = model(pixel_values=_pixels(picture), **tokens)
    logits = out.logits[0, :, 0].numpy()
    boxes = _xyxy(out.pred_boxes[0], 32)
    box = (2.0, 3.0, 20.0, 18.0)
    expected = logits[int(_iou(boxes, box).argmax())]
    found = _explain(model, picture, target=Box(box, text="a cat"), tokenizer=tokenizer,
                     preprocess=SMALL)  # fmt: skip
    assert found.extras["target_score"][0] == pytest.approx(expected, abs=1e-4)
    assert found.params["target"] == {"kind": "box", "xyxy": list(box), "label": None,
                                      "text": "a cat"}  # fmt: skip
    best = int(logits.argmax())
    prompted = _explain(model, picture, target=Prompt("a cat"), tokenizer=tokenizer,
                        preprocess=SMALL)  # fmt: skip
    np.testing.assert_allclose(prompted.params["target"]["xyxy"], boxes[best], atol=1e-3)
    assert prompted.extras["target_score"][0] == pytest.approx(logits[best], abs=1e-4)
    assert prompted.target_labels[0].startswith("a cat [")
    with pytest.raises(SeewhyError, match="finds what a text names") as caught:
        _explain(model, picture, tokenizer=tokenizer, preprocess=SMALL)
    assert "\n" not in str(caught.value)


def test_grounding_dino_reads_the_texts_as_one_prompt_its_text_backbone_run_once(
    image: np.ndarray,
) -> None:
    model, tokenizer = tiny_grounding_dino()
    before = _state(model)
    calls: list[int] = []
    handle = model.model.text_backbone.register_forward_hook(lambda *a: calls.append(1))
    try:
        box = (5.0, 5.0, 40.0, 40.0)
        found = _explain(model, image, target=Box(box, text="a cat"), tokenizer=tokenizer)
        prompted = _explain(model, image, target=Prompt("a cat"), tokenizer=tokenizer)
    finally:
        handle.remove()
    assert _state(model) == before  # its text backbone cached on seewhy's mirror, not on it
    assert len(calls) == 2  # once per explain (each adapts the model anew), not per pass
    ids = torch.tensor([tokenizer("a cat .", add_special_tokens=False)["input_ids"]])
    with torch.no_grad():
        out = model(pixel_values=_pixels(image), input_ids=ids, attention_mask=torch.ones_like(ids))
    logits = out.logits[0, :, 0:2].max(dim=-1).values.numpy()  # the text's two tokens
    boxes = _xyxy(out.pred_boxes[0], 64)
    expected = logits[int(_iou(boxes, box).argmax())]
    assert found.extras["target_score"][0] == pytest.approx(expected, abs=1e-4)
    assert found.layer == "model.backbone.conv_encoder.model.encoder.stages.3"
    best = int(logits.argmax())
    np.testing.assert_allclose(prompted.params["target"]["xyxy"], boxes[best], atol=1e-3)
    assert prompted.extras["target_score"][0] == pytest.approx(logits[best], abs=1e-4)
    looked = _explain(model, image, "query-attention", target=Box(box, text="a cat"),
                      tokenizer=tokenizer)  # fmt: skip
    assert looked.layer_maps.shape == (1, 8, 8) and looked.layer_maps.max() > 0  # finest level


def test_a_box_text_has_a_json_and_a_command_line_form() -> None:
    from seewhy.cli.target_text import parse_target

    box = Box((1, 2, 30, 40), text="a red car")
    assert from_json(box.to_json()).to_json() == box.to_json()
    parsed = parse_target("box:1,2,30,40:a red car")
    assert isinstance(parsed, Box) and parsed.text == "a red car" and parsed.label is None
    labelled = parse_target("box:1,2,30,40:cat", labels=["dog", "cat"])
    assert isinstance(labelled, Box) and labelled.label == 1 and labelled.text is None
    with pytest.raises(SeewhyError, match="not both"):
        Box((1, 2, 30, 40), 1, text="a cat")
