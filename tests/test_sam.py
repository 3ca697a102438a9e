"""SAM (issue 27, point 3): segment_anything's Sam and Hugging Face SamModel prompted by Masks.

Tiny random models (tests/models.py); every number is checked against the model's
own pipeline: its predictor's mask logits, its preprocessing, Grad-CAM written out
from the definition at the image embedding and at an NHWC encoder block.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

import seewhy
from models import tiny_hf_sam, tiny_hf_sam2, tiny_sam
from seewhy.errors import InvalidInput, UnsupportedModel
from seewhy.inputs.batches import prepare
from seewhy.targets import Mask, from_json

pytest.importorskip("segment_anything")

SIDE = 64
PHOTO = np.random.default_rng(3).integers(0, 256, (40, 56, 3), dtype=np.uint8)  # not square
SQUARE = np.random.default_rng(4).integers(0, 256, (SIDE, SIDE, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def sam() -> torch.nn.Module:
    return tiny_sam()


@pytest.fixture(scope="module")
def hf_sam() -> torch.nn.Module:
    pytest.importorskip("transformers")
    return tiny_hf_sam()


def explain(model: object, photo: np.ndarray, target: object, **kw: object) -> seewhy.Explanation:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the one line SAM's adaptation says
        return seewhy.explain(model, photo, kw.pop("method", "gradcam"), target=target, **kw)


def own_logits(sam: torch.nn.Module, photo: np.ndarray, points: list[tuple[float, float]]):
    """segment_anything's own predictor: (3, h, w) low-resolution mask logits and IoU."""
    from segment_anything import SamPredictor

    predictor = SamPredictor(sam)
    predictor.set_image(photo)
    _, iou, low = predictor.predict(
        point_coords=np.asarray(points, np.float32),
        point_labels=np.ones(len(points), np.int64),
        multimask_output=True,
        return_logits=True,
    )
    return low, iou


def mask_score(logits: np.ndarray, iou: np.ndarray) -> float:
    chosen = logits[int(np.argmax(iou))]
    return float(chosen[chosen > 0].sum()) if (chosen > 0).any() else float(chosen.max())


# -- the Mask target ----------------------------------------------------------------------


def test_mask_json_caption_and_one_line_errors() -> None:
    mask = Mask(points=[(3, 4), (5, 6)], labels=[1, 0], multimask=2)
    assert from_json(mask.to_json()).to_json() == mask.to_json()
    assert mask.describe(str) == "mask +(3,4) -(5,6) mask 2"
    boxed = Mask(boxes=(1, 2, 30, 40), space="input")
    assert from_json(boxed.to_json()).boxes == ((1.0, 2.0, 30.0, 40.0),)
    for bad, words in [
        ({}, "at least one point or a box"),
        ({"points": [(1, 2, 3)]}, "(x, y) points"),
        ({"points": [(1, 2)], "labels": [1, 1]}, "one 1 (foreground) or 0"),
        ({"boxes": (5, 5, 1, 1)}, "x0 < x1"),
        ({"points": [(1, 2)], "multimask": 3}, "0, 1 or 2"),
        ({"points": [(1, float("nan"))]}, "finite"),
    ]:
        with pytest.raises(InvalidInput, match="Mask") as error:
            Mask(**bad)  # type: ignore[arg-type]
        assert words in str(error.value) and "\n" not in str(error.value)


def test_mask_alone_says_it_needs_sam() -> None:
    with pytest.raises(UnsupportedModel, match="promptable segmenter"):
        Mask(points=[(1, 2)]).score(torch.zeros(1, 3), None, probability=False, sigmoid=False)


# -- preprocessing: exactly the family's own ----------------------------------------------


def test_input_is_segment_anythings_resize_normalise_and_pad(sam: torch.nn.Module) -> None:
    from segment_anything.utils.transforms import ResizeLongestSide

    spec = seewhy.adapters.seen(sam).spec()
    batch, _ = prepare(PHOTO, spec.preprocess)
    resized = ResizeLongestSide(SIDE).apply_image(PHOTO)
    own = sam.preprocess(torch.as_tensor(resized).permute(2, 0, 1)[None].float())[0]
    ours = torch.as_tensor(batch.inputs[0]).permute(2, 0, 1)
    h, w = resized.shape[:2]
    assert (h, w) == (46, 64)  # 40 x 56 with its long side at 64
    torch.testing.assert_close(ours[:, :h, :w], own[:, :h, :w], atol=1e-5, rtol=0)
    # SAM pads with 0 after normalising; seewhy with the mean colour in whole grey levels
    assert float((ours[:, h:, :] - own[:, h:, :]).abs().max()) < 0.01
    assert float(own[:, h:, :].abs().max()) == 0.0  # the padding is at the bottom


@pytest.mark.parametrize("kind", ["SamImageProcessor", "SamImageProcessorPil"])
def test_input_is_hugging_faces_sam_processor(hf_sam: torch.nn.Module, kind: str) -> None:
    import transformers

    if not hasattr(transformers, kind):
        pytest.skip(f"this transformers has no {kind}")
    processor = getattr(transformers, kind)(
        size={"longest_edge": SIDE}, pad_size={"height": SIDE, "width": SIDE}
    )
    spec = seewhy.adapters.seen(hf_sam, processor=processor).spec()
    batch, _ = prepare(PHOTO, spec.preprocess)
    own = processor(PHOTO, return_tensors="pt")["pixel_values"][0]
    ours = torch.as_tensor(batch.inputs[0]).permute(2, 0, 1)
    h, w = (int(v) for v in processor(PHOTO)["reshaped_input_sizes"][0])
    assert (h, w) == (46, 64)
    torch.testing.assert_close(ours[:, :h, :w], own[:, :h, :w], atol=1e-5, rtol=0)
    assert float((ours[:, h:] - own[:, h:]).abs().max()) < 0.01


# -- the score: the model's own mask logits ---------------------------------------------------


def test_score_is_the_predictors_chosen_mask_summed_where_on(sam: torch.nn.Module) -> None:
    points = [(20.0, 30.0), (50.0, 10.0)]
    found = explain(sam, SQUARE, [Mask(points=[p]) for p in points])
    for i, p in enumerate(points):
        low, iou = own_logits(sam, SQUARE, [p])
        assert found.extras["target_score"][i] == pytest.approx(mask_score(low, iou), rel=1e-4)


def test_photo_points_map_through_the_resize(sam: torch.nn.Module) -> None:
    """On a non-square photo, a point on the photo is where SAM's predictor puts it."""
    point = (30.0, 25.0)
    found = explain(sam, PHOTO, Mask(points=[point]))
    low, iou = own_logits(sam, PHOTO, [point])
    # the padding differs by < 0.01 (see above), so the embedding by a little
    assert found.extras["target_score"][0] == pytest.approx(mask_score(low, iou), rel=2e-2)
    recorded = from_json(found.params["target"])
    assert recorded.space == "input"
    # the input covers the photo from its top-left corner; the padding lies past its bottom
    assert found.photos[0].box == pytest.approx((0.0, 0.0, 64 * 40 / 46, 56.0))
    assert recorded.points[0] == pytest.approx((30 * 64 / 56, 25 * 46 / 40))


def test_hf_score_is_sam_models_own_forward(hf_sam: torch.nn.Module) -> None:
    point = (20.0, 30.0)
    found = explain(hf_sam, SQUARE, Mask(points=[point]))
    pre = seewhy.adapters.seen(hf_sam).spec().preprocess
    batch, _ = prepare(SQUARE, pre)
    pixels = torch.as_tensor(batch.inputs).permute(0, 3, 1, 2)
    with torch.no_grad():
        out = hf_sam(
            pixel_values=pixels,
            input_points=torch.tensor([[[point]]]),
            input_labels=torch.ones(1, 1, 1, dtype=torch.int64),
        )
    low, iou = out.pred_masks[0, 0].numpy(), out.iou_scores[0, 0].numpy()
    assert found.extras["target_score"][0] == pytest.approx(mask_score(low, iou), rel=1e-4)


# -- SAM 2: Hugging Face Sam2Model, checked against its own processor and forward ------------


@pytest.fixture(scope="module")
def sam2() -> tuple[torch.nn.Module, object]:
    transformers = pytest.importorskip("transformers")
    if not hasattr(transformers, "Sam2Model"):
        pytest.skip("this transformers has no Sam2Model")
    images = transformers.Sam2ImageProcessor(size={"height": SIDE, "width": SIDE})
    return tiny_hf_sam2(), transformers.Sam2Processor(image_processor=images, target_size=SIDE)


def test_sam2_input_score_and_gradcam_are_its_own(sam2: tuple[torch.nn.Module, object]) -> None:
    """On a non-square photo: seewhy's pixels are Sam2Processor's, a photo point lands where
    the processor puts it, the score is the model's own, Grad-CAM the definition's at the
    default Hiera block (NHWC)."""
    model, processor = sam2
    point = (30.0, 25.0)
    own: dict[str, torch.Tensor] = processor(  # type: ignore[operator]
        images=PHOTO, input_points=[[[list(point)]]], input_labels=[[[1]]], return_tensors="pt"
    )
    spec = seewhy.adapters.seen(model, processor=processor).spec()
    batch, _ = prepare(PHOTO, spec.preprocess)
    x = torch.as_tensor(batch.inputs).permute(0, 3, 1, 2)
    torch.testing.assert_close(x, own["pixel_values"], atol=1e-5, rtol=0)

    found = explain(model, PHOTO, Mask(points=[point]), processor=processor)
    assert found.layer == "vision_encoder.backbone.blocks.3"
    recorded = from_json(found.params["target"])
    np.testing.assert_allclose(recorded.points[0], own["input_points"][0, 0, 0], rtol=1e-5)

    block = model.get_submodule(found.layer)
    seen: list[torch.Tensor] = []
    handle = block.register_forward_hook(
        lambda m, i, o: seen.append(o.detach().requires_grad_(True)) or seen[-1]
    )
    try:
        out = model(
            pixel_values=x, input_points=own["input_points"], input_labels=own["input_labels"]
        )
    finally:
        handle.remove()
    low, iou = out.pred_masks[0, 0], out.iou_scores[0, 0]
    score = mask_score(low.detach().numpy(), iou.detach().numpy())
    assert found.extras["target_score"][0] == pytest.approx(score, rel=1e-4)
    chosen = low[int(iou.argmax())]
    on = chosen.detach() > 0
    total = (chosen * on).sum() if on.any() else chosen.max()
    (grad,) = torch.autograd.grad(total, seen[0])
    a, g = seen[0][0].detach().permute(2, 0, 1), grad[0].permute(2, 0, 1)
    want = torch.relu((g.mean(dim=(1, 2))[:, None, None] * a).sum(0)).numpy()
    got = np.maximum(found.layer_maps[0], 0)
    assert want.std() > 0
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6 * float(want.max()))


# -- Grad-CAM from the definition, on the image encoder --------------------------------------


def reference_gradcam(sam: torch.nn.Module, x: torch.Tensor, point, layer: str, nhwc: bool):
    """Grad-CAM written out: weights = spatial mean of d score / d A, map = relu(sum w A)."""
    module = sam.get_submodule(layer)
    seen: list[torch.Tensor] = []
    handle = module.register_forward_hook(
        lambda m, i, o: seen.append(o.detach().requires_grad_(True)) or seen[-1]
    )
    try:
        embedding = sam.image_encoder(x)
    finally:
        handle.remove()
    sparse, dense = sam.prompt_encoder(
        points=(torch.tensor([[point]]), torch.ones(1, 1, dtype=torch.int64)),
        boxes=None,
        masks=None,
    )
    masks, iou = sam.mask_decoder(
        embedding, sam.prompt_encoder.get_dense_pe(), sparse, dense, multimask_output=True
    )
    chosen = masks[0, int(iou.detach().argmax())]
    on = chosen.detach() > 0
    score = (chosen * on).sum() if on.any() else chosen.max()
    (grad,) = torch.autograd.grad(score, seen[0])
    a, g = seen[0][0].detach(), grad[0]
    if nhwc:
        a, g = a.permute(2, 0, 1), g.permute(2, 0, 1)
    weights = g.mean(dim=(1, 2))
    return torch.relu((weights[:, None, None] * a).sum(0)).numpy()


@pytest.mark.parametrize(
    ("layer", "nhwc"), [("image_encoder.neck", False), ("image_encoder.blocks.1", True)]
)
def test_gradcam_matches_the_definition(sam: torch.nn.Module, layer: str, nhwc: bool) -> None:
    point = (20.0, 30.0)
    found = explain(sam, SQUARE, Mask(points=[point]), layer=layer)
    pre = seewhy.adapters.seen(sam).spec().preprocess
    batch, _ = prepare(SQUARE, pre)
    x = torch.as_tensor(batch.inputs).permute(0, 3, 1, 2)
    want = reference_gradcam(sam, x, point, layer, nhwc)
    got = np.maximum(found.layer_maps[0], 0)  # the layer map before the method's ReLU
    assert got.shape == want.shape and want.std() > 0
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6 * float(want.max()))


def test_gradcam_matches_pytorch_grad_cam(sam: torch.nn.Module) -> None:
    cam_lib = pytest.importorskip("pytorch_grad_cam")
    point = (20.0, 30.0)
    found = explain(sam, SQUARE, Mask(points=[point]))
    pre = seewhy.adapters.seen(sam).spec().preprocess
    batch, _ = prepare(SQUARE, pre)
    x = torch.as_tensor(batch.inputs).permute(0, 3, 1, 2)

    def score(embedding: torch.Tensor) -> torch.Tensor:
        sparse, dense = sam.prompt_encoder(
            points=(torch.tensor([[point]]), torch.ones(1, 1, dtype=torch.int64)),
            boxes=None,
            masks=None,
        )
        masks, iou = sam.mask_decoder(
            embedding[None], sam.prompt_encoder.get_dense_pe(), sparse, dense, multimask_output=True
        )
        chosen = masks[0, int(iou.detach().argmax())]
        on = chosen.detach() > 0
        return (chosen * on).sum() if on.any() else chosen.max()

    cam = cam_lib.GradCAM(model=sam.image_encoder, target_layers=[sam.image_encoder.neck])
    theirs = cam(input_tensor=x, targets=[score])[0]
    ours = found.maps[0]
    r = np.corrcoef(theirs.ravel(), ours.ravel())[0, 1]
    assert r >= 0.99


# -- k prompts: one encoder pass, each map its own ------------------------------------------


def test_k_prompts_cost_one_encoder_pass_and_keep_their_own_maps(sam: torch.nn.Module) -> None:
    """k prompts on one picture: one image-encoder forward, k decoder passes (not k * k),
    and each row's map is the one its prompt gets alone."""
    prompts = [Mask(points=[(10, 12)]), Mask(points=[(50, 40)]), Mask(boxes=(5, 30, 40, 60))]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        explainer = seewhy.Explainer(sam, "gradcam")
        explainer.explain(SQUARE, target=prompts[0])  # the first call traces the layers
    calls = {"encoder": 0, "decoder": 0}

    def counter(name: str) -> object:
        return lambda *_: calls.__setitem__(name, calls[name] + 1)

    handles = [
        sam.image_encoder.patch_embed.register_forward_hook(counter("encoder")),
        sam.mask_decoder.register_forward_hook(counter("decoder")),
    ]
    try:
        many = explainer.explain(SQUARE, target=prompts)
    finally:
        for handle in handles:
            handle.remove()
    assert calls == {"encoder": 1, "decoder": 3}
    assert many.maps.shape[0] == 3
    assert many.target_labels[2] == "mask box 5,30,40,60"
    for i in range(3):
        single = explainer.explain(SQUARE, target=prompts[i])
        np.testing.assert_allclose(many.layer_maps[i], single.layer_maps[0], rtol=1e-5, atol=1e-7)
        assert many.extras["target_score"][i] == pytest.approx(single.extras["target_score"][0])


def test_one_list_of_prompts_per_picture(sam: torch.nn.Module) -> None:
    found = explain(
        sam,
        [SQUARE, PHOTO],
        [[Mask(points=[(1, 2)])], [Mask(points=[(3, 4)]), Mask(points=[(9, 9)])]],
    )
    assert found.maps.shape[0] == 3 and found.sources[1] == found.sources[2]


def test_occlusion_runs_on_the_pixels(sam: torch.nn.Module) -> None:
    found = explain(sam, SQUARE, Mask(points=[(20, 30)]), method="occlusion", window=16, stride=16)
    assert found.maps.shape == (1, SIDE, SIDE) and np.ptp(found.maps) > 0


# -- refusals and the model left alone --------------------------------------------------------


def test_no_target_and_other_targets_are_refused_in_one_line(sam: torch.nn.Module) -> None:
    for target, words in [(None, "SAM has no classes"), (3, "prompted by seewhy.targets.Mask")]:
        with pytest.raises(InvalidInput, match=words) as error:
            explain(sam, SQUARE, target)
        assert "\n" not in str(error.value)


@pytest.mark.parametrize(
    ("name", "words"), [("Sam2VideoModel", "as Sam2Model"), ("SamHQModel", "intermediate")]
)
def test_sam_kinds_not_served_are_refused_in_one_line(name: str, words: str) -> None:
    fake = type(name, (torch.nn.Module,), {"__module__": "transformers.models.fake"})()
    with pytest.raises(UnsupportedModel, match=words) as error:
        explain(fake, SQUARE, Mask(points=[(1, 1)]))
    assert "\n" not in str(error.value)


def test_a_sam_predictor_is_explained_and_keeps_its_image(sam: torch.nn.Module) -> None:
    from segment_anything import SamPredictor

    predictor = SamPredictor(sam)
    predictor.set_image(PHOTO)
    features = predictor.features.clone()
    found = explain(predictor, SQUARE, Mask(points=[(20.0, 30.0)]))
    low, iou = own_logits(sam, SQUARE, [(20.0, 30.0)])
    assert found.extras["target_score"][0] == pytest.approx(mask_score(low, iou), rel=1e-4)
    assert predictor.is_image_set and torch.equal(predictor.features, features)


def _state(model: torch.nn.Module) -> tuple[object, ...]:
    return (
        {k: v.clone() for k, v in model.state_dict().items()},
        [m.training for m in model.modules()],
        [(len(m._forward_hooks), len(m._forward_pre_hooks)) for m in model.modules()],
        [p.grad is None and p.requires_grad for p in model.parameters()],
    )


def _same(a: tuple[object, ...], b: tuple[object, ...]) -> None:
    assert all(torch.equal(a[0][k], b[0][k]) for k in a[0])  # type: ignore[index]
    assert a[1:] == b[1:]


@pytest.mark.parametrize("build", [tiny_sam, tiny_hf_sam, tiny_hf_sam2], ids=lambda b: b.__name__)
def test_model_left_as_it_was_also_after_an_exception(build: object) -> None:
    if build is not tiny_sam:
        pytest.importorskip("transformers")
    sam = build(seed=1).train()  # type: ignore[operator]  # a model mid-training keeps its mode
    before = _state(sam)
    explain(sam, PHOTO, [Mask(points=[(3, 4)]), Mask(points=[(30, 20)])])
    _same(before, _state(sam))

    def broken(*_: object) -> None:
        raise RuntimeError("the user's hook fails")

    handle = sam.mask_decoder.register_forward_hook(broken)
    before = _state(sam)
    with pytest.raises(Exception, match="hook fails"):
        explain(sam, PHOTO, Mask(points=[(3, 4)]))
    _same(before, _state(sam))
    handle.remove()


# -- the command line --------------------------------------------------------------------------


def test_cli_point_target_on_a_hugging_face_folder(tmp_path, hf_sam: torch.nn.Module) -> None:
    from PIL import Image

    from seewhy.cli import main
    from seewhy.cli.target_text import parse_target

    folder = tmp_path / "sam"
    hf_sam.save_pretrained(folder)
    photo = tmp_path / "photo.png"
    Image.fromarray(PHOTO).save(photo)
    out = tmp_path / "out"
    code = main(
        [
            "explain",
            str(photo),
            "--model",
            str(folder),
            "--target",
            "point:20,10;-5,5",
            "--method",
            "gradcam",
            "--out",
            str(out),
            "--quiet",
        ]
    )
    assert code == 0 and list(out.glob("*.png"))
    parsed = parse_target("point:20,10;-5,5")
    assert isinstance(parsed, Mask) and parsed.labels == (1, 0)
    assert parse_target("mask-box:1,2,30,40").boxes == ((1.0, 2.0, 30.0, 40.0),)  # type: ignore[union-attr]
    with pytest.raises(InvalidInput, match="point:x,y"):
        parse_target("point:1,2,3")


def test_legrad_reads_no_decoder_block_as_if_it_held_the_pictures_tokens(
    sam: torch.nn.Module,
) -> None:
    """LeGrad once read SAM's mask-decoder layers (its last two 'blocks': a few prompt
    tokens) and drew them as a 2x2 map: finite, and meaningless. Blocks after the first
    stack belong to a decoder, so LeGrad is refused in one line."""
    from seewhy.backends.torch.layer_readout import readout_blocks
    from seewhy.errors import UnsupportedModel

    with pytest.raises(UnsupportedModel, match=r"decoder.*use gradcam") as refused:
        readout_blocks(sam)
    assert "mask_decoder" in str(refused.value) and "\n" not in str(refused.value)
