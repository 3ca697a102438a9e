"""The ``answer-attention`` method on tiny random LLaVA and Qwen2-VL models (offline).

The reference is what a user would write by hand: the model's own forward with
eager attention and ``output_attentions=True``, the answer tokens' rows, the
image tokens' columns, heads and layers averaged (or rolled out). seewhy must
give it while the model stays on its SDPA kernel and comes back untouched.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

import seewhy  # noqa: E402
from contract import check_params_recorded  # noqa: E402
from models import sharpen_language_attention, tiny_cnn, tiny_llava, tiny_qwen2_vl  # noqa: E402
from seewhy.errors import SeewhyError  # noqa: E402
from seewhy.targets import Answer  # noqa: E402

PROMPT = "what is this ?"
ANSWER = "a red cat"
RNG = np.random.default_rng(3)
PHOTO = RNG.integers(0, 256, (40, 60, 3), dtype=np.uint8)  # non-square: cropped (LLaVA)
OTHER = RNG.integers(0, 256, (48, 48, 3), dtype=np.uint8)


def _explain(model: Any, processor: Any, images: Any = PHOTO, **kw: Any) -> Any:
    kw.setdefault("target", Answer(ANSWER, prompt=PROMPT))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        method = kw.pop("method", "answer-attention")
        return seewhy.explain(model, images, method, processor=processor, **kw)


def _reference(model: Any, processor: Any, picture: np.ndarray) -> tuple[Any, list[int], Any]:
    """(layers, T, T) head-averaged eager attention of the model's own forward, the answer rows
    and the image columns, for the picture the model saw."""
    turn = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": PROMPT}]}]
    text = processor.apply_chat_template(turn, add_generation_prompt=True, tokenize=False)
    inputs = dict(processor(text=[text], images=[picture], return_tensors="pt"))
    answer = processor.tokenizer(ANSWER, add_special_tokens=False)["input_ids"]
    ids = torch.cat([inputs.pop("input_ids"), torch.tensor([answer])], dim=1)
    for key in ("attention_mask", "mm_token_type_ids"):
        if key in inputs:
            fill = 1 if key == "attention_mask" else 0
            inputs[key] = torch.cat([inputs[key], torch.full((1, len(answer)), fill)], dim=1)
    model.set_attn_implementation("eager")
    try:
        with torch.no_grad():
            out = model(input_ids=ids, output_attentions=True, **inputs)
    finally:
        model.set_attn_implementation("sdpa")
    layers = torch.stack([a[0].mean(dim=0) for a in out.attentions])
    start = ids.shape[1] - len(answer)
    rows = list(range(start - 1, ids.shape[1] - 1))  # the queries that produced the answer
    image = torch.nonzero(ids[0] == model.config.image_token_id).flatten()
    return layers, rows, image


@pytest.fixture(scope="module")
def llava() -> Any:
    return sharpen_language_attention(tiny_llava(seed=1))


@pytest.fixture(scope="module")
def llava_mean(llava: Any) -> Any:
    return _explain(*llava)


def test_the_map_is_the_answer_rows_of_the_models_own_attention(
    llava: Any, llava_mean: Any
) -> None:
    model, processor = llava
    layers, rows, image = _reference(model, processor, llava_mean.images[0])
    expected = layers.mean(dim=0)[rows][:, image].mean(dim=0).reshape(4, 4).numpy()
    np.testing.assert_allclose(llava_mean.layer_maps[0], expected, rtol=0, atol=1e-5)
    assert np.ptp(expected) > 0.05 * expected.max()  # a map with a shape, not a flat one
    assert llava_mean.params["combine"] == "mean" and llava_mean.layer is None


def test_rollout_is_the_product_over_the_language_models_layers(llava: Any) -> None:
    model, processor = llava
    found = _explain(model, processor, combine="rollout")
    layers, rows, image = _reference(model, processor, found.images[0])
    eye = torch.eye(layers.shape[1])
    flow = eye
    for attention in layers:  # R = (A_L/2 + I/2) ... (A_1/2 + I/2), first layer applied first
        flow = (0.5 * attention + 0.5 * eye) @ flow
    expected = flow[rows][:, image].mean(dim=0).reshape(4, 4).numpy()
    np.testing.assert_allclose(found.layer_maps[0], expected, rtol=1e-4, atol=1e-6)


def test_per_token_rows_are_each_tokens_own_and_average_to_the_answer(
    llava: Any, llava_mean: Any
) -> None:
    model, processor = llava
    rows = _explain(*llava, target=Answer(ANSWER, prompt=PROMPT, per_token=True))
    layers, positions, image = _reference(model, processor, rows.images[0])
    for j, position in enumerate(positions):
        expected = layers.mean(dim=0)[position, image].reshape(4, 4).numpy()
        np.testing.assert_allclose(rows.layer_maps[j], expected, rtol=0, atol=1e-5)
    np.testing.assert_allclose(rows.layer_maps.mean(axis=0), llava_mean.layer_maps[0], atol=1e-6)
    assert rows.target_labels[1] == "answer token 2/3: red"


def test_the_users_model_keeps_its_kernel_hooks_and_weights_also_after_an_error(
    llava: Any, llava_mean: Any
) -> None:
    model, processor = llava
    before = {k: v.clone() for k, v in model.state_dict().items()}
    hooks = [(dict(m._forward_hooks), m.__dict__.get("config")) for m in model.modules()]
    block = model.model.language_model.layers[1]

    def broken(module: Any, args: Any, output: Any) -> None:
        raise RuntimeError("the user's hook fails")

    handle = block.register_forward_hook(broken)
    try:
        with pytest.raises(RuntimeError, match="the user's hook fails"):
            _explain(model, processor)
    finally:
        handle.remove()
    assert [(dict(m._forward_hooks), m.__dict__.get("config")) for m in model.modules()] == hooks
    assert model.config.text_config._attn_implementation == "sdpa"
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert not model.training and all(p.grad is None for p in model.parameters())


def test_a_batch_gives_the_maps_of_its_pictures_on_the_cams_geometry(
    llava: Any, llava_mean: Any
) -> None:
    both = _explain(*llava, images=[PHOTO, OTHER])
    other = _explain(*llava, images=OTHER)
    np.testing.assert_allclose(both.layer_maps[0], llava_mean.layer_maps[0], atol=1e-6)
    np.testing.assert_allclose(both.layer_maps[1], other.layer_maps[0], atol=1e-6)
    cam = _explain(*llava, method="gradcam")
    assert cam.layer_maps.shape == both.layer_maps[:1].shape
    assert cam.maps.shape == both.maps[:1].shape
    assert cam.photo(0).box == both.photo(0).box  # the same way back onto the photo
    check_params_recorded("answer-attention", both)


def test_qwen2_vl_map_is_its_merged_tokens_attention() -> None:
    model, processor = sharpen_language_attention(tiny_qwen2_vl(seed=1))
    found = _explain(model, processor)
    layers, rows, image = _reference(model, processor, found.images[0])
    h, w = found.images[0].shape[0] // 16, found.images[0].shape[1] // 16  # patch 8, merge 2
    expected = layers.mean(dim=0)[rows][:, image].mean(dim=0).reshape(h, w).numpy()
    np.testing.assert_allclose(found.layer_maps[0], expected, rtol=0, atol=1e-5)


def test_other_models_are_refused_in_one_line() -> None:
    with pytest.raises(SeewhyError, match="needs a generative vision-language model") as caught:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            seewhy.explain(tiny_cnn(), np.zeros((16, 16, 3), np.uint8), "answer-attention")
    assert "\n" not in str(caught.value) and "got a class target" in str(caught.value)
