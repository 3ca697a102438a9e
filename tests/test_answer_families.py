"""seewhy.targets.Answer on the families served through another's layout: Qwen2.5-VL (Qwen2-VL's
patch rows; its tower attends within windows, reordering the patches inside) and SmolVLM
(Idefics3's tiles) with their own model classes and processors (tiny, random, offline).

What a user would check by hand: the score is the model's own teacher-forced
log-probability from its own forward on its processor's inputs for the picture
seewhy fed; Grad-CAM at the default layer is the one written with a hook and
autograd; the note and ``params["model_family"]`` name the model's own family.
"""

from __future__ import annotations

import dataclasses
import warnings
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
# SmolVLM's processor refuses to be built without it (it words a video's frame count)
pytest.importorskip("num2words", reason="transformers' SmolVLMProcessor requires num2words")

import seewhy  # noqa: E402
from models import tiny_qwen2_5_vl, tiny_smolvlm  # noqa: E402
from seewhy.targets import Answer  # noqa: E402
from seewhy.vlm import adapt  # noqa: E402

PROMPT = "what is this ?"
ANSWER = "a red cat"
RNG = np.random.default_rng(7)
PHOTO = RNG.integers(0, 256, (40, 60, 3), dtype=np.uint8)
WIDE = RNG.integers(0, 256, (30, 60, 3), dtype=np.uint8)  # as wide as a 1x2 layout of tiles


def _explain(model: Any, processor: Any, photo: np.ndarray, **kw: Any) -> tuple[Any, list[str]]:
    """Grad-CAM of the answer, and what seewhy said while making it."""
    with warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always")
        found = seewhy.explain(
            model, photo, "gradcam", processor=processor, target=Answer(ANSWER, prompt=PROMPT), **kw
        )
    return found, [str(w.message) for w in said]


def _own_inputs(processor: Any, picture: np.ndarray) -> tuple[dict[str, Any], list[int]]:
    """The processor's inputs for the prompt and the picture, the answer's tokens after them."""
    turn = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": PROMPT}]}]
    text = processor.apply_chat_template(turn, add_generation_prompt=True, tokenize=False)
    inputs = dict(processor(text=[text], images=[picture], return_tensors="pt"))
    answer = processor.tokenizer(ANSWER, add_special_tokens=False)["input_ids"]
    tail = torch.tensor([answer])
    inputs["input_ids"] = torch.cat([inputs["input_ids"], tail], dim=1)
    inputs["attention_mask"] = torch.ones_like(inputs["input_ids"])
    if "mm_token_type_ids" in inputs:  # the answer is text
        inputs["mm_token_type_ids"] = torch.cat(
            [inputs["mm_token_type_ids"], torch.zeros_like(tail)], dim=1
        )
    return inputs, answer


def _log_probability(model: Any, inputs: dict[str, Any], answer: list[int]) -> Any:
    """The answer's teacher-forced log-probability from the model's own forward."""
    logits = model(**inputs).logits[0, -len(answer) - 1 : -1].float()
    return torch.log_softmax(logits, -1)[torch.arange(len(answer)), answer].sum()


def _gradcam(activation: Any, gradient: Any) -> Any:
    """Grad-CAM over (tokens, channels): each channel weighted by its mean gradient."""
    return activation.detach() @ gradient.reshape(-1, gradient.shape[-1]).mean(dim=0)


# -- Qwen2.5-VL ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def qwen() -> Any:
    model, processor = tiny_qwen2_5_vl(seed=1)
    found, said = _explain(model, processor, PHOTO)
    return model, processor, found, said


def test_qwen2_5_vl_score_is_the_models_own_teacher_forced_log_probability(qwen: Any) -> None:
    model, processor, found, said = qwen
    assert found.images[0].shape == (32, 64, 3)  # the size its processor gives the photo
    inputs, answer = _own_inputs(processor, PHOTO)  # the model's own pipeline on the photo
    assert inputs["image_grid_thw"].tolist() == [[1, 4, 8]]
    with torch.no_grad():
        expected = _log_probability(model, inputs, answer)
    assert found.extras["target_score"][0] == pytest.approx(float(expected), abs=1e-3)
    assert found.params["model_family"] == "qwen2.5-vl"
    line = next(s for s in said if "Qwen2_5_VL" in s)
    assert "(qwen2.5-vl, laid out as qwen2-vl)" in line and "default layer merged_patches" in line


def test_qwen2_5_vl_gradcam_equals_a_hand_written_one_at_the_merged_tokens(qwen: Any) -> None:
    """The merged tokens the language model reads: the tower's output, which it puts back in
    row-major order after attending within windows (a map read before that would be shuffled)."""
    model, processor, found, _ = qwen
    assert found.layer == "merged_patches"
    inputs, answer = _own_inputs(processor, PHOTO)
    kept: list[Any] = []
    handle = model.model.visual.register_forward_hook(
        lambda m, a, out: kept.append(out.pooler_output)
    )
    try:
        score = _log_probability(model, inputs, answer)
    finally:
        handle.remove()
    (gradient,) = torch.autograd.grad(score, kept[0])
    cam = _gradcam(kept[0], gradient).reshape(2, 4).numpy()  # 4x8 patches, merged 2x2
    np.testing.assert_allclose(found.layer_maps[0], cam, rtol=0, atol=2e-3 * np.abs(cam).max())
    assert cam.max() > 0 > cam.min()  # a map with signs, so the comparison means something


# -- SmolVLM ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def smolvlm() -> Any:
    model, processor = tiny_smolvlm(seed=1)
    preset = adapt(model, processor=processor).preprocess  # type: ignore[union-attr]
    wide = dataclasses.replace(preset, size=(32, 64), resize=(32, 64))  # 1x2 tiles
    found, said = _explain(model, processor, WIDE, preprocess=wide)
    return model, processor, found, said


def test_smolvlm_score_is_the_models_own_teacher_forced_log_probability(smolvlm: Any) -> None:
    model, processor, found, said = smolvlm
    assert found.images[0].shape == (32, 64, 3)
    inputs, answer = _own_inputs(processor, found.images[0])
    assert inputs["pixel_values"].shape[1] == 3  # its processor made 2 tiles + the global image
    with torch.no_grad():
        expected = _log_probability(model, inputs, answer)
    assert found.extras["target_score"][0] == pytest.approx(float(expected), abs=1e-3)
    assert found.params["model_family"] == "smolvlm"
    line = next(s for s in said if "SmolVLM" in s)
    assert "(smolvlm, laid out as idefics3)" in line and "default layer tiles" in line


def test_smolvlm_gradcam_equals_a_hand_written_one_with_each_tile_where_it_lies(
    smolvlm: Any,
) -> None:
    model, processor, found, _ = smolvlm
    assert found.layer == "tiles" and found.layer_maps.shape == (1, 4, 8)
    inputs, answer = _own_inputs(processor, found.images[0])
    kept: list[Any] = []
    norm = model.model.vision_model.post_layernorm  # what the connector reads
    handle = norm.register_forward_hook(lambda m, a, out: kept.append(out))
    try:
        score = _log_probability(model, inputs, answer)
    finally:
        handle.remove()
    (gradient,) = torch.autograd.grad(score, kept[0])
    tiles = _gradcam(kept[0][:2], gradient[:2])  # the tiles first, the global image last
    cam = torch.cat([tiles[0].reshape(4, 4), tiles[1].reshape(4, 4)], dim=1).numpy()
    np.testing.assert_allclose(found.layer_maps[0], cam, rtol=0, atol=2e-3 * np.abs(cam).max())
    assert cam.max() > 0 > cam.min()


def test_smolvlm_whole_picture_view_is_its_processors_to_one_8_bit_level(smolvlm: Any) -> None:
    """Its processor shrinks the picture to the global image with Lanczos on 8-bit pixels,
    whose overshoot at sharp edges is clipped: seewhy's view is the same to within one 8-bit
    level, the processor's rounding (a bicubic shrink, or no clip, misses by a tenth of the
    pixel range on this noise)."""
    model, processor, found, _ = smolvlm
    adapted = adapt(model, processor=processor)
    assert adapted is not None and adapted.preprocess is not None
    picture = np.asarray(found.images[0])
    prepared = adapted.preprocess.normalise(picture[None].astype(np.float32))
    pixels = torch.from_numpy(np.ascontiguousarray(np.asarray(prepared).transpose(0, 3, 1, 2)))
    ours = adapted.model.image_kwargs(pixels)["pixel_values"][0]
    theirs = processor.image_processor(images=[picture], return_tensors="pt")["pixel_values"][0]
    step = 2 / 255  # one 8-bit level, normalised by (x / 255 - 0.5) / 0.5
    assert ours.shape == theirs.shape == (3, 3, 32, 32)
    assert (ours[:2] - theirs[:2]).abs().max() < 1e-5  # the tiles: cut, not resized
    assert (ours[2] - theirs[2]).abs().max() <= step
