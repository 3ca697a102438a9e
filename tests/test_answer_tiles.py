"""seewhy.targets.Answer on VLMs that cut a picture into tiles (tiny random LLaVA-NeXT and
Idefics3, offline).

What a user would check by hand: the score is the model's own teacher-forced
log-probability from its own forward on the processor's inputs; Grad-CAM at
``tiles`` is the Grad-CAM one would write at the tower block the projector
reads, each tile's grid put where the tile lies; a change that only one tile
sees moves only that tile's part of the map, which lands on that part of the
photo; ``answer-attention`` reads the image tokens that tile the picture.
"""

from __future__ import annotations

import dataclasses
import warnings
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

import seewhy  # noqa: E402
from models import sharpen_language_attention, tiny_idefics3, tiny_llava_next  # noqa: E402
from seewhy.errors import SeewhyError  # noqa: E402
from seewhy.targets import Answer  # noqa: E402
from seewhy.viz.geometry import onto_photo  # noqa: E402
from seewhy.vlm import adapt  # noqa: E402

PROMPT = "what is this ?"
ANSWER = "a red cat"
RNG = np.random.default_rng(5)
PHOTO = RNG.integers(0, 256, (40, 60, 3), dtype=np.uint8)
WIDE = RNG.integers(0, 256, (30, 60, 3), dtype=np.uint8)  # as wide as a 1x2 layout of tiles


def _explain(model: Any, processor: Any, method: str = "gradcam", **kw: Any) -> Any:
    kw.setdefault("target", Answer(ANSWER, prompt=PROMPT))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return seewhy.explain(model, kw.pop("images", PHOTO), method, processor=processor, **kw)


def _own_inputs(processor: Any, picture: np.ndarray) -> tuple[dict[str, Any], list[int]]:
    """The processor's inputs for the prompt, the picture and the answer after it."""
    turn = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": PROMPT}]}]
    text = processor.apply_chat_template(turn, add_generation_prompt=True, tokenize=False)
    inputs = dict(processor(text=[text], images=[picture], return_tensors="pt"))
    answer = processor.tokenizer(ANSWER, add_special_tokens=False)["input_ids"]
    inputs["input_ids"] = torch.cat([inputs["input_ids"], torch.tensor([answer])], dim=1)
    inputs["attention_mask"] = torch.ones_like(inputs["input_ids"])
    return inputs, answer


def _log_probability(model: Any, inputs: dict[str, Any], answer: list[int], **kw: Any) -> Any:
    """The answer's teacher-forced log-probability from the model's own forward."""
    out = model(**inputs, **kw)
    logits = out.logits[0, -len(answer) - 1 : -1].float()
    return torch.log_softmax(logits, -1)[torch.arange(len(answer)), answer].sum(), out


def _answer_attention_by_hand(model: Any, processor: Any) -> tuple[Any, Any, Any]:
    """seewhy's answer-attention, and from the model's own eager forward on its processor's
    inputs: the answer rows of the attention (heads, then layers, averaged) and where the
    image tokens are."""
    found = _explain(model, processor, "answer-attention")
    inputs, answer = _own_inputs(processor, found.images[0])
    model.set_attn_implementation("eager")
    try:
        with torch.no_grad():
            _, out = _log_probability(model, inputs, answer, output_attentions=True)
    finally:
        model.set_attn_implementation("sdpa")
    layers = torch.stack([a[0].mean(dim=0) for a in out.attentions]).mean(dim=0)
    ids = inputs["input_ids"][0]
    rows = list(range(len(ids) - len(answer) - 1, len(ids) - 1))
    image = torch.nonzero(ids == model.config.image_token_id).flatten()
    return found, layers[rows], image


def _wide(model: Any, processor: Any) -> Any:
    """The preprocessing of a 1x2 layout of tiles (the 32x64 pinpoint)."""
    preset = adapt(model, processor=processor).preprocess  # type: ignore[union-attr]
    return dataclasses.replace(preset, size=(32, 64), resize=(32, 64))


# -- LLaVA-NeXT -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def llava_next() -> Any:
    return sharpen_language_attention(tiny_llava_next())


@pytest.fixture(scope="module")
def next_cam(llava_next: Any) -> Any:
    return _explain(*llava_next, preprocess=_wide(*llava_next), images=WIDE)


def test_llava_next_score_is_the_models_own_teacher_forced_log_probability(
    llava_next: Any,
) -> None:
    model, processor = llava_next
    with warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always")
        found = seewhy.explain(
            model, PHOTO, "gradcam", processor=processor, target=Answer(ANSWER, prompt=PROMPT)
        )
    # the picture the model saw: the photo fitted into the processor's 64x64 pinpoint
    assert found.images[0].shape == (64, 64, 3)
    inputs, answer = _own_inputs(processor, found.images[0])
    assert inputs["pixel_values"].shape[1] == 5  # the processor made a base image + 2x2 tiles
    with torch.no_grad():
        expected, _ = _log_probability(model, inputs, answer)
    assert found.extras["target_score"][0] == pytest.approx(float(expected), abs=1e-3)
    assert found.layer == "tiles" and found.layer_maps.shape == (1, 8, 8)
    line = next(str(w.message) for w in said if "LlavaNext" in str(w.message))
    assert "default layer tiles" in line and "base_image" in line and "64x64 canvas" in line


def test_llava_next_gradcam_equals_a_hand_written_one_with_each_tile_where_it_lies(
    llava_next: Any, next_cam: Any
) -> None:
    model, processor = llava_next
    inputs, answer = _own_inputs(processor, next_cam.images[0])
    assert inputs["pixel_values"].shape[1] == 3  # base image, left tile, right tile
    block = model.model.vision_tower.encoder.layers[1]  # hidden state -2
    kept: list[Any] = []
    handle = block.register_forward_hook(
        lambda m, a, out: kept.append(out[0] if isinstance(out, tuple) else out)
    )
    try:
        score, _ = _log_probability(model, inputs, answer)
    finally:
        handle.remove()
    (gradient,) = torch.autograd.grad(score, kept[0])
    a, g = kept[0][1:, 1:].detach(), gradient[1:, 1:]  # the two tiles' patch tokens
    weights = g.reshape(-1, g.shape[-1]).mean(dim=0)  # over both tiles' patches
    cam = np.zeros((4, 8), np.float32)
    for column in range(2):  # tile 0 lies left, tile 1 right
        cam[:, 4 * column : 4 * column + 4] = (a[column] @ weights).reshape(4, 4).numpy()
    # within 0.2% of the map's scale: the processor resizes the base image on uint8 pixels
    np.testing.assert_allclose(next_cam.layer_maps[0], cam, rtol=0, atol=2e-3 * np.abs(cam).max())
    assert cam.max() > 0 > cam.min()  # a map with signs, so the comparison means something


def test_llava_next_a_change_one_tile_sees_stays_in_its_part_of_the_map_and_photo(
    llava_next: Any, next_cam: Any
) -> None:
    model, processor = llava_next
    path = adapt(model, processor=processor).model  # type: ignore[union-attr]
    kept: list[Any] = []
    handle = path.tiles.register_forward_hook(lambda m, a, out: kept.append(out))
    pixels = torch.from_numpy(RNG.normal(size=(1, 3, 32, 64)).astype(np.float32))
    changed = pixels.clone()
    changed[..., 40:56] += 1.0  # inside the right tile only
    try:
        with torch.no_grad():
            path(pixels), path(changed)
    finally:
        handle.remove()
    moved = (kept[1] - kept[0]).abs().amax(dim=1)[0]  # (4, 8) over the grid
    assert moved[:, :4].max() == 0 and moved[:, 4:].min() > 0
    # and that part of the map lands on the right half of the wide photo
    right = np.zeros((32, 64), np.float32)
    right[:, 32:] = 1
    values, inside = onto_photo(right, next_cam.photo(0))
    assert inside.all() and values[:, :30].max() == 0 and values[:, 30:].min() > 0


def test_llava_next_answer_attention_reads_the_tiles_tokens_not_newlines_or_base(
    llava_next: Any,
) -> None:
    found, answer_rows, image = _answer_attention_by_hand(*llava_next)
    assert len(image) == 16 + 8 * 9  # base 4x4, then 8 rows of 8 tile cells and a newline
    cells = image[16:].reshape(8, 9)[:, :8].flatten()
    expected = answer_rows[:, cells].mean(dim=0).reshape(8, 8).numpy()
    np.testing.assert_allclose(found.layer_maps[0], expected, rtol=0, atol=1e-5)
    assert np.ptp(expected) > 0.05 * expected.max()


def test_llava_next_refuses_a_layout_that_is_no_pinpoint(llava_next: Any) -> None:
    model, processor = llava_next
    odd = dataclasses.replace(_wide(model, processor), size=(64, 96), resize=(64, 96))
    with pytest.raises(SeewhyError, match="32x64, 64x32, 64x64") as caught:
        _explain(model, processor, preprocess=odd)
    assert "\n" not in str(caught.value)


# -- Idefics3 ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def idefics3() -> Any:
    return sharpen_language_attention(tiny_idefics3())


@pytest.fixture(scope="module")
def idefics_cam(idefics3: Any) -> Any:
    return _explain(*idefics3, preprocess=_wide(*idefics3), images=WIDE)


def test_idefics3_score_is_the_models_own_teacher_forced_log_probability(idefics3: Any) -> None:
    model, processor = idefics3
    found = _explain(model, processor)
    assert found.images[0].shape == (64, 64, 3)  # fitted into its processor's longest edge
    inputs, answer = _own_inputs(processor, found.images[0])
    assert inputs["pixel_values"].shape[1] == 5  # 2x2 tiles and the global image
    with torch.no_grad():
        expected, _ = _log_probability(model, inputs, answer)
    assert found.extras["target_score"][0] == pytest.approx(float(expected), abs=1e-3)
    assert found.layer == "tiles" and found.layer_maps.shape == (1, 8, 8)


def test_idefics3_gradcam_equals_a_hand_written_one_with_each_tile_where_it_lies(
    idefics3: Any, idefics_cam: Any
) -> None:
    model, processor = idefics3
    inputs, answer = _own_inputs(processor, idefics_cam.images[0])
    assert inputs["pixel_values"].shape[1] == 3  # left tile, right tile, global image
    kept: list[Any] = []
    norm = model.model.vision_model.post_layernorm  # what the connector reads
    handle = norm.register_forward_hook(lambda m, a, out: kept.append(out))
    try:
        score, _ = _log_probability(model, inputs, answer)
    finally:
        handle.remove()
    (gradient,) = torch.autograd.grad(score, kept[0])
    a, g = kept[0][:2].detach(), gradient[:2]  # the tiles come first, the global image last
    weights = g.reshape(-1, g.shape[-1]).mean(dim=0)
    cam = np.zeros((4, 8), np.float32)
    for column in range(2):
        cam[:, 4 * column : 4 * column + 4] = (a[column] @ weights).reshape(4, 4).numpy()
    np.testing.assert_allclose(
        idefics_cam.layer_maps[0], cam, rtol=0, atol=2e-3 * np.abs(cam).max()
    )
    assert cam.max() > 0 > cam.min()


def test_idefics3_a_change_one_tile_sees_stays_in_its_part_of_the_map(idefics3: Any) -> None:
    model, processor = idefics3
    path = adapt(model, processor=processor).model  # type: ignore[union-attr]
    kept: list[Any] = []
    handle = path.tiles.register_forward_hook(lambda m, a, out: kept.append(out))
    pixels = torch.from_numpy(RNG.normal(size=(1, 3, 64, 64)).astype(np.float32))
    changed = pixels.clone()
    changed[..., 40:56, 8:24] += 1.0  # inside the bottom-left tile only
    try:
        with torch.no_grad():
            path(pixels), path(changed)
    finally:
        handle.remove()
    moved = (kept[1] - kept[0]).abs().amax(dim=1)[0]  # (8, 8)
    assert moved[4:, :4].min() > 0
    moved[4:, :4] = 0
    assert moved.max() == 0


def test_idefics3_answer_attention_reads_the_tiles_tokens_not_the_global_image(
    idefics3: Any,
) -> None:
    found, answer_rows, image = _answer_attention_by_hand(*idefics3)
    assert len(image) == 5 * 4  # 2x2 tokens (after the pixel shuffle) per tile and global
    read = answer_rows[:, image].mean(dim=0)
    expected = np.zeros((4, 4), np.float32)
    for tile in range(4):  # row-major tiles, each its 2x2 tokens row-major
        r, c = divmod(tile, 2)
        expected[2 * r : 2 * r + 2, 2 * c : 2 * c + 2] = read[4 * tile : 4 * tile + 4].reshape(2, 2)
    np.testing.assert_allclose(found.layer_maps[0], expected, rtol=0, atol=1e-5)
    assert np.ptp(expected) > 0.05 * expected.max()


def test_idefics3_refuses_a_one_tile_canvas_it_would_not_split(idefics3: Any) -> None:
    model, processor = idefics3
    one = dataclasses.replace(_wide(model, processor), size=(32, 32), resize=(32, 32))
    with pytest.raises(SeewhyError, match="unsplit") as caught:
        _explain(model, processor, preprocess=one)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize("family", ["llava-next", "idefics3"])
def test_a_layer_or_method_that_sees_tiles_not_pictures_is_refused(
    family: str, llava_next: Any, idefics3: Any
) -> None:
    """A block inside the vision tower holds one row per tile: a map read there would be
    quietly wrong, so it is refused in one line naming the layers that map onto the picture;
    so are the methods that read the tower's attention."""
    model, processor = llava_next if family == "llava-next" else idefics3
    block = next(
        name for name, _ in model.named_modules() if name.endswith("encoder.layers.0")
    )
    with pytest.raises(SeewhyError, match=r"one tile .* per row") as refused:
        _explain(model, processor, layer=block)
    message = str(refused.value)
    assert "\n" not in message and "use layer tiles or" in message
    for method in ("attention-rollout", "legrad"):
        with pytest.raises(SeewhyError, match=f"{method} reads the vision tower's attention"):
            _explain(model, processor, method)
    assert _explain(model, processor, layer="tiles").maps.shape[0] == 1  # the default's own
