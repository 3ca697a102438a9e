"""Hugging Face segmenters and depth models (issue 27, point 4): what ``Region`` scores.

SegFormer and UperNet are scored on their own logits; Mask2Former on the
class maps its semantic post-processing makes (and each query's instance);
DPT and Depth Anything on their depth read as "nearer" / "farther". Each
score is checked against the model's own outputs (and post-processing), each
Grad-CAM against one written from its definition and against
pytorch-grad-cam's ``SemanticSegmentationTarget``, the input against the
image processor's, and the model is left as it was.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pytest

import seewhy
from models import (
    hf_depth_anything,
    hf_dpt_depth,
    hf_mask2former,
    hf_maskformer,
    hf_segformer,
    hf_upernet,
    output_picked,
)
from seewhy.errors import InvalidInput, SeewhyError
from seewhy.targets import Region

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

PLAIN = seewhy.Preprocess(size=(64, 64), mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))


def _explain(model: Any, image: np.ndarray, **settings: Any) -> Any:
    with warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always")
        found = seewhy.explain(model, image, "gradcam", **{"preprocess": PLAIN, **settings})
    return found, [str(w.message) for w in said]


def _pixels(image: np.ndarray) -> Any:
    """PLAIN's input for a 64 x 64 uint8 picture, as the model takes it."""
    x = (image.astype(np.float32) / 255.0 - 0.5) / 0.25
    return torch.from_numpy(x).permute(2, 0, 1)[None]


def _mask(size: int) -> np.ndarray:
    mask = np.zeros((size, size), bool)
    mask[size // 4 : size // 2, size // 3 : size - 2] = True
    return mask


def _at(mask: np.ndarray, size: tuple[int, int]) -> torch.Tensor:
    """The mask at the output's size as Region resizes it (nearest, pixel centres)."""
    rows = ((np.arange(size[0]) + 0.5) * mask.shape[0] / size[0]).astype(int)
    cols = ((np.arange(size[1]) + 0.5) * mask.shape[1] / size[1]).astype(int)
    return torch.from_numpy(mask[rows][:, cols].astype(np.float32))


def _gradcam(model: Any, layer: str, pixels: Any, score: Any) -> np.ndarray:
    """Grad-CAM from its definition at ``layer``: sum_k mean(dS/dA_k) A_k (before the ReLU,
    as ``layer_maps`` hold it)."""
    seen: list[Any] = []
    module = dict(model.named_modules())[layer]
    handle = module.register_forward_hook(lambda m, a, out: seen.append(out))
    try:
        out = model(pixel_values=pixels)
    finally:
        handle.remove()
    activation = seen[-1]
    (gradient,) = torch.autograd.grad(score(out), activation)
    weights = gradient.mean(dim=(2, 3), keepdim=True)
    return (weights * activation).sum(dim=1).detach().numpy()


def _agree(ours: np.ndarray, theirs: np.ndarray, least: float) -> None:
    assert ours.shape == theirs.shape and ours.max() > 0 and theirs.max() > 0
    r = np.corrcoef(ours.ravel(), theirs.ravel())[0, 1]
    assert r >= least, f"correlation {r:.5f}"


def _defined(ours: np.ndarray, reference: np.ndarray) -> None:
    """A layer map equal to the definition's (not only alike), with both signs present."""
    assert reference.min() < 0 < reference.max()
    np.testing.assert_allclose(ours, reference, rtol=0, atol=1e-3 * np.abs(reference).max())


def _state(model: Any) -> list[Any]:
    return [
        (m.training, dict(m._forward_hooks), dict(m._forward_pre_hooks), type(m))
        for m in model.modules()
    ] + [(p.grad is None, p.requires_grad) for p in model.parameters()]


def _same(model: Any, before: list[Any], weights: dict[str, Any]) -> None:
    assert _state(model) == before
    for name, value in model.state_dict().items():
        assert torch.equal(value, weights[name]), name


def _run_once(model: Any, size: int = 64) -> Any:
    """One plain forward first: transformers installs its own output-capturing hooks on a
    model's first call, which are the model's, not seewhy's."""
    with torch.no_grad():
        model(pixel_values=torch.zeros(1, 3, size, size))
    return model


@pytest.fixture(scope="module")
def image() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def semantic() -> dict[str, Any]:
    return {"segformer": _run_once(hf_segformer(3)), "upernet": _run_once(hf_upernet(3))}


@pytest.fixture(scope="module")
def mask2former() -> Any:
    return _run_once(hf_mask2former(3, queries=6))


@pytest.fixture(scope="module")
def dpt() -> Any:
    return _run_once(hf_dpt_depth(), 32)


# -- SegFormer and UperNet: their own logits ----------------------------------------------


@pytest.mark.parametrize(
    ("family", "layer"),
    [("segformer", "decode_head.activation"), ("upernet", "decode_head.fpn_bottleneck")],
)
def test_semantic_region_scores_the_logits_its_post_processing_reads(
    semantic: dict[str, Any], image: np.ndarray, family: str, layer: str
) -> None:
    model = semantic[family]
    before, weights = _state(model), {k: v.clone() for k, v in model.state_dict().items()}
    mask = _mask(64)
    found, said = _explain(model, image, target=Region(2, mask))
    assert found.layer == layer and found.params["model_family"] == f"hf-{family}"
    assert any(layer in s and "sums its per-pixel class logits" in s for s in said)
    pixels = _pixels(image)
    with torch.no_grad():
        outputs = model(pixel_values=pixels)
    logits = outputs.logits[0]
    expected = float((logits[2] * _at(mask, logits.shape[1:])).sum())
    np.testing.assert_allclose(found.extras["target_score"][0], expected, rtol=1e-4, atol=1e-4)
    processor = transformers.SegformerImageProcessor()  # UperNet's checkpoints use it too
    classes = processor.post_process_semantic_segmentation(outputs)[0]
    assert torch.equal(classes, logits.argmax(0))  # the same logits, at the same size
    reference = _gradcam(
        model, layer, pixels, lambda out: (out.logits[0, 2] * _at(mask, logits.shape[1:])).sum()
    )
    _defined(found.layer_maps[0], reference[0])
    _same(model, before, weights)


def test_semantic_gradcam_matches_pytorch_grad_cams_segmentation_target(
    semantic: dict[str, Any], image: np.ndarray
) -> None:
    pgc = pytest.importorskip("pytorch_grad_cam", reason="pytorch-grad-cam is not installed")
    from pytorch_grad_cam.utils.model_targets import SemanticSegmentationTarget

    model = semantic["upernet"]
    mask = _mask(64)
    size = model(pixel_values=_pixels(image)).logits.shape[2:]
    target = SemanticSegmentationTarget(1, _at(mask, size).numpy())
    cam = pgc.GradCAM(
        model=output_picked(model, lambda out: out.logits),
        target_layers=[model.decode_head.fpn_bottleneck],
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = cam(input_tensor=_pixels(image), targets=[target])
    found, _ = _explain(model, image, target=Region(1, mask))
    _agree(found.maps[0], theirs[0], 0.99)


def test_the_input_is_the_image_processors_on_a_non_square_photo(tmp_path: Any) -> None:
    processor = transformers.SegformerImageProcessor(size={"height": 64, "width": 64})
    hf_segformer(3).save_pretrained(tmp_path)
    processor.save_pretrained(tmp_path)
    model = transformers.SegformerForSemanticSegmentation.from_pretrained(tmp_path).eval()
    photo = np.random.default_rng(1).integers(0, 256, (45, 83, 3), dtype=np.uint8)
    pixels = processor(images=photo, return_tensors="pt")["pixel_values"][0]
    mean = torch.tensor(processor.image_mean)[:, None, None]
    std = torch.tensor(processor.image_std)[:, None, None]
    theirs = ((pixels * std + mean) * 255).permute(1, 2, 0).numpy()
    for given in ({}, {"processor": processor}):  # saved beside it, or passed
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            found = seewhy.explain(model, photo, target=Region(0, _mask(64)), **given)
        assert found.images[0].shape == (64, 64, 3)
        assert np.abs(found.images[0].astype(np.float32) - theirs).max() <= 1.0
        assert "guessed" not in found.input_spec or not found.input_spec["guessed"]


# -- Mask2Former: the classes its post-processing combines, and each query's instance ------


def post_processor(kind: str = "mask2former") -> Any:
    """The model's own post-processing (a processor, not a model)."""
    from transformers import Mask2FormerImageProcessor, MaskFormerImageProcessor

    return Mask2FormerImageProcessor() if kind == "mask2former" else MaskFormerImageProcessor()


def _universal(out: Any) -> torch.Tensor:
    """The class maps written from Mask2Former's semantic post-processing, then each query's
    instance (class probability of its best class times its mask probability)."""
    probabilities = torch.softmax(out.class_queries_logits, dim=-1)[..., :-1]
    masks = torch.sigmoid(out.masks_queries_logits)
    classes = (probabilities[..., :, None, None] * masks[..., None, :, :]).sum(dim=1)
    instances = probabilities.max(dim=-1).values[..., None, None] * masks
    return torch.cat([classes, instances], dim=1)


def test_mask2former_regions_are_its_semantic_post_processing_and_its_instances(
    mask2former: Any, image: np.ndarray
) -> None:
    model = mask2former
    before, weights = _state(model), {k: v.clone() for k, v in model.state_dict().items()}
    pixels = _pixels(image)
    with torch.no_grad():
        outputs = model(pixel_values=pixels)
    size = tuple(outputs.masks_queries_logits.shape[2:])
    assert 384 % size[0] == 0  # nearest upsampling to the post-processor's 384 is then exact
    factor = 384 // size[0]
    outputs.masks_queries_logits = outputs.masks_queries_logits.repeat_interleave(
        factor, 2
    ).repeat_interleave(factor, 3)
    processor = post_processor()  # the model's own post-processing, not a model
    done = processor.post_process_semantic_segmentation(outputs, return_segmentation_scores=True)
    with torch.no_grad():
        ours = _universal(model(pixel_values=pixels))
    scores = done[0].segmentation_scores[:, ::factor, ::factor]
    torch.testing.assert_close(ours[0, :3], scores, rtol=1e-5, atol=1e-6)
    mask = _mask(64)
    at = _at(mask, size)
    for channel in (1, 3 + 4):  # class 1, then query 4's instance
        found, said = _explain(model, image, target=Region(channel, mask))
        expected = float((ours[0, channel] * at).sum())
        np.testing.assert_allclose(found.extras["target_score"][0], expected, rtol=1e-4)
    layer = "model.pixel_level_module.decoder.mask_projection"
    assert found.layer == layer and any("each query's instance" in s for s in said)
    assert found.target_labels == ("region of query 4",)
    reference = _gradcam(model, layer, pixels, lambda out: (_universal(out)[0, 7] * at).sum())
    _defined(found.layer_maps[0], reference[0])
    _same(model, before, weights)


def test_mask2former_gradcam_matches_pytorch_grad_cam(mask2former: Any, image: np.ndarray) -> None:
    pgc = pytest.importorskip("pytorch_grad_cam", reason="pytorch-grad-cam is not installed")
    from pytorch_grad_cam.utils.model_targets import SemanticSegmentationTarget

    mask = _mask(64)
    target = SemanticSegmentationTarget(2, _at(mask, (16, 16)).numpy())
    layer = mask2former.model.pixel_level_module.decoder.mask_projection
    cam = pgc.GradCAM(model=output_picked(mask2former, _universal), target_layers=[layer])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = cam(input_tensor=_pixels(image), targets=[target])
    found, _ = _explain(mask2former, image, target=Region(2, mask))
    _agree(found.maps[0], theirs[0], 0.99)


def test_maskformer_regions_are_its_semantic_post_processing(image: np.ndarray) -> None:
    model = _run_once(hf_maskformer(3, queries=6))
    pixels = _pixels(image)
    with torch.no_grad():
        outputs = model(pixel_values=pixels)
        ours = _universal(outputs)
    assert ours.shape[1] == 3 + 6
    classes = post_processor("maskformer").post_process_semantic_segmentation(outputs)[0]
    assert torch.equal(classes, ours[0, :3].argmax(0))  # at the mask resolution, as ours
    mask = _mask(64)
    found, said = _explain(model, image, target=Region(3 + 5, mask))
    expected = float((ours[0, 8] * _at(mask, tuple(ours.shape[2:]))).sum())
    np.testing.assert_allclose(found.extras["target_score"][0], expected, rtol=1e-4)
    assert found.target_labels == ("region of query 5",) and any("3..8" in s for s in said)


# -- depth: "nearer" and "farther" --------------------------------------------------------


def test_depth_regions_say_nearer_and_farther(dpt: Any) -> None:
    before, weights = _state(dpt), {k: v.clone() for k, v in dpt.state_dict().items()}
    image = np.random.default_rng(2).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    plain = seewhy.Preprocess(size=(32, 32), mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
    mask = _mask(32)
    nearer, said = _explain(dpt, image, target=Region(0, mask), preprocess=plain)
    farther, _ = _explain(dpt, image, target=Region(1, mask), preprocess=plain)
    x = (image.astype(np.float32) / 255.0 - 0.5) / 0.25
    pixels = torch.from_numpy(x).permute(2, 0, 1)[None]
    with torch.no_grad():
        depth = dpt(pixel_values=pixels).predicted_depth[0]
    inside = float((depth * _at(mask, tuple(depth.shape))).sum())
    # DPT (MiDaS-style) predicts relative inverse depth: larger is nearer
    np.testing.assert_allclose(nearer.extras["target_score"][0], inside, rtol=1e-4)
    np.testing.assert_allclose(farther.extras["target_score"][0], -inside, rtol=1e-4)
    assert nearer.target_labels == ("region of nearer",)
    assert nearer.model_name == "DPTForDepthEstimation"
    assert farther.target_labels == ("region of farther",)
    layer = "neck.fusion_stage.layers.3"
    assert nearer.layer == layer
    assert any("larger = nearer" in s and layer in s for s in said)
    at = _at(mask, tuple(depth.shape))
    reference = _gradcam(dpt, layer, pixels, lambda out: -(out.predicted_depth[0] * at).sum())
    _defined(farther.layer_maps[0], reference[0])
    _same(dpt, before, weights)


@pytest.mark.parametrize(("kind", "sign"), [("relative", 1.0), ("metric", -1.0)])
def test_depth_anything_reads_its_depth_type(kind: str, sign: float) -> None:
    model = hf_depth_anything(kind)
    image = np.random.default_rng(3).integers(0, 256, (28, 28, 3), dtype=np.uint8)
    plain = seewhy.Preprocess(size=(28, 28), mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
    mask = np.ones((28, 28), bool)
    found, _ = _explain(model, image, target=Region(0, mask), preprocess=plain)
    x = (image.astype(np.float32) / 255.0 - 0.5) / 0.25
    with torch.no_grad():
        depth = model(pixel_values=torch.from_numpy(x).permute(2, 0, 1)[None]).predicted_depth
    np.testing.assert_allclose(
        found.extras["target_score"][0], sign * float(depth.sum()), rtol=1e-4
    )
    assert found.layer == "neck.fusion_stage.layers.3"


# -- what is refused, in one line, and the model left as it was ----------------------------


def test_no_target_and_wrong_targets_are_refused_in_one_line_leaving_the_model(
    semantic: dict[str, Any], mask2former: Any, dpt: Any, image: np.ndarray
) -> None:
    for model in (semantic["segformer"], mask2former, dpt):
        before, weights = _state(model), {k: v.clone() for k, v in model.state_dict().items()}
        picture = image[:32, :32] if model is dpt else image
        with pytest.raises(InvalidInput, match=r"per-pixel \(segmentation\).*Region") as caught:
            _explain(model, picture)
        assert "\n" not in str(caught.value)
        with pytest.raises(InvalidInput, match="outside the model's") as caught:
            _explain(model, picture, target=Region(40, np.ones((8, 8), bool)))
        assert "\n" not in str(caught.value)
        _same(model, before, weights)
    with pytest.raises(SeewhyError, match="reads no text"):
        _explain(dpt, image, prompt="a cat")


def test_the_cli_explains_a_saved_depth_model_by_its_channel_names(tmp_path: Any) -> None:
    from PIL import Image

    from seewhy.cli import main

    hf_dpt_depth().save_pretrained(tmp_path / "dpt")
    transformers.DPTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(
        tmp_path / "dpt"
    )
    photo = np.random.default_rng(4).integers(0, 256, (24, 40, 3), dtype=np.uint8)
    Image.fromarray(photo).save(tmp_path / "photo.png")
    Image.fromarray(_mask(32).astype(np.uint8) * 255).save(tmp_path / "mask.png")
    args = ["explain", str(tmp_path / "photo.png"), "--model", str(tmp_path / "dpt")]
    out = ["--out", str(tmp_path / "out")]
    region = ["--target", f"region:farther:{tmp_path / 'mask.png'}"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert main([*args, *region, *out]) == 0
        assert (tmp_path / "out" / "photo.seewhy.png").is_file()
        assert main([*args, *out]) != 0  # no target: refused in one line, no traceback


def test_the_audit_explains_the_ground_truth_regions_of_a_hf_segmenter(
    semantic: dict[str, Any], tmp_path: Any
) -> None:
    from PIL import Image

    from seewhy.audit import audit
    from seewhy.audit.store import Store

    data, masks = tmp_path / "data", tmp_path / "masks"
    rng = np.random.default_rng(5)
    for label in ("class 1", "class 2"):
        (data / label).mkdir(parents=True)
        (masks / label).mkdir(parents=True)
        picture = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
        Image.fromarray(picture).save(data / label / "0.png")
        Image.fromarray(_mask(64).astype(np.uint8) * 255).save(masks / label / "0.png")
    model = semantic["segformer"]
    before, weights = _state(model), {k: v.clone() for k, v in model.state_dict().items()}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        done = audit(
            data,
            model,
            out=tmp_path / "report",
            object_masks=masks,
            target_from="region",
            preprocess=PLAIN,
            labels=["class 0", "class 1", "class 2"],
        )
    records = Store(done.out).records()
    assert [r["status"] for r in records] == ["ok", "ok"]
    assert {r["target"] for r in records} == {"region of class 1", "region of class 2"}
    _same(model, before, weights)
