"""seewhy.targets.Answer on generative VLMs (tiny random LLaVA and Qwen2-VL, offline).

Each test is what a user would check by hand: the score is the model's own
teacher-forced log-probability, Grad-CAM of it is the Grad-CAM one would write,
the model's greedy answer is the one ``generate`` gives, and the user's model
comes back as it went in.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

import seewhy  # noqa: E402
from models import tiny_cnn, tiny_llava, tiny_qwen2_vl  # noqa: E402
from seewhy.errors import SeewhyError  # noqa: E402
from seewhy.targets import Answer, from_json  # noqa: E402
from seewhy.viz.geometry import onto_photo  # noqa: E402

PROMPT = "what is this ?"
ANSWER = "a red cat"
# a non-square photo: LLaVA's processor resizes its short side and crops the middle
PHOTO = (np.random.default_rng(0).random((40, 60, 3)) * 255).astype(np.uint8)


def _explain(model: Any, processor: Any, method: str = "gradcam", **kw: Any) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return seewhy.explain(model, PHOTO, method, processor=processor, **kw)


def _chat(processor: Any) -> str:
    turn = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": PROMPT}]}]
    return str(processor.apply_chat_template(turn, add_generation_prompt=True, tokenize=False))


def _teacher_forced(model: Any, inputs: dict[str, Any], answer: list[int]) -> Any:
    """(answer,) each answer token's log-probability, from the model's own forward."""
    prompt = inputs["input_ids"]
    ids = torch.cat([prompt, torch.tensor([answer])], dim=1)
    extra = {k: v for k, v in inputs.items() if k != "input_ids"}
    for key in ("attention_mask", "mm_token_type_ids"):
        if key in extra:
            fill = 1 if key == "attention_mask" else 0
            extra[key] = torch.cat([extra[key], torch.full((1, len(answer)), fill)], dim=1)
    logits = model(input_ids=ids, **extra).logits[0, prompt.shape[1] - 1 : -1]
    return torch.log_softmax(logits.float(), -1)[torch.arange(len(answer)), answer]


@pytest.fixture(scope="module")
def llava() -> Any:
    return tiny_llava()


@pytest.fixture(scope="module")
def qwen() -> Any:
    return tiny_qwen2_vl()


@pytest.fixture(scope="module")
def llava_cam(llava: Any) -> Any:
    model, processor = llava
    return _explain(model, processor, target=Answer(ANSWER, prompt=PROMPT))


def test_llava_score_is_the_models_own_teacher_forced_log_probability(
    llava: Any, llava_cam: Any
) -> None:
    model, processor = llava
    inputs = dict(processor(text=[_chat(processor)], images=[PHOTO], return_tensors="pt"))
    answer = processor.tokenizer(ANSWER, add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        expected = _teacher_forced(model, inputs, answer).sum()
    assert llava_cam.extras["target_score"][0] == pytest.approx(float(expected), abs=1e-4)
    assert llava_cam.params["target"]["tokens"] == answer
    assert llava_cam.target_labels == (f"answer: {ANSWER}",)


def test_qwen2_vl_score_is_the_models_own_teacher_forced_log_probability(qwen: Any) -> None:
    model, processor = qwen
    found = _explain(model, processor, target=Answer(ANSWER, prompt=PROMPT))
    assert found.images[0].shape == (32, 64, 3)  # the size its own processor gives the photo
    inputs = dict(processor(text=[_chat(processor)], images=[PHOTO], return_tensors="pt"))
    assert inputs["image_grid_thw"].tolist() == [[1, 4, 8]]
    answer = processor.tokenizer(ANSWER, add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        expected = _teacher_forced(model, inputs, answer).sum()
    assert found.extras["target_score"][0] == pytest.approx(float(expected), abs=1e-3)
    assert found.layer == "merged_patches" and found.layer_maps.shape[1:] == (2, 4)


def test_llava_gradcam_equals_a_hand_written_gradcam(llava: Any, llava_cam: Any) -> None:
    model, processor = llava
    layer = model.model.vision_tower.get_submodule(llava_cam.layer.split("vision_tower.")[1])
    inputs = dict(processor(text=[_chat(processor)], images=[PHOTO], return_tensors="pt"))
    answer = processor.tokenizer(ANSWER, add_special_tokens=False)["input_ids"]
    kept: list[Any] = []

    def keep(module: Any, args: Any, output: Any) -> None:
        kept.append(output[0] if isinstance(output, tuple) else output)

    handle = layer.register_forward_hook(keep)
    try:
        score = _teacher_forced(model, inputs, answer).sum()
    finally:
        handle.remove()
    activation = kept[0]
    (gradient,) = torch.autograd.grad(score, activation)
    a, g = activation[0, 1:].detach(), gradient[0, 1:]  # the patch tokens, class token dropped
    cam = (a * g.mean(dim=0)).sum(dim=1).reshape(4, 4).numpy()  # the ReLU comes with the map
    np.testing.assert_allclose(llava_cam.layer_maps[0], cam, rtol=1e-3, atol=1e-6)
    assert cam.max() > 0 > cam.min()  # a map with signs, so the comparison means something
    assert llava_cam.layer == "model.vision_tower.encoder.layers.1"  # feature layer -2


def test_per_token_rows_name_their_token_and_add_up_to_the_answer(
    llava: Any, llava_cam: Any
) -> None:
    model, processor = llava
    per_token = Answer(ANSWER, prompt=PROMPT, per_token=True)
    rows = _explain(model, processor, "gradcam", target=per_token)
    assert rows.target_labels == tuple(
        f"answer token {i + 1}/3: {w}" for i, w in enumerate(ANSWER.split())
    )
    assert len(rows.maps) == 3 and rows.sources == (rows.sources[0],) * 3
    total = llava_cam.extras["target_score"][0]
    assert rows.extras["target_score"].sum() == pytest.approx(total, abs=1e-4)
    assert [r["token"] for r in rows.params["target"]] == [0, 1, 2]
    # Grad-CAM before its ReLU is linear in the score's gradient: the tokens' maps add up
    np.testing.assert_allclose(
        rows.layer_maps.sum(axis=0), llava_cam.layer_maps[0], rtol=1e-3, atol=1e-6
    )


def test_without_an_answer_the_models_greedy_answer_is_explained_and_recorded(
    llava: Any,
) -> None:
    model, processor = llava
    found = _explain(model, processor, "occlusion", prompt=PROMPT)
    inputs = dict(processor(text=[_chat(processor)], images=[PHOTO], return_tensors="pt"))
    with torch.no_grad():
        made = model.generate(**inputs, do_sample=False, max_new_tokens=32)
    new = made[0, inputs["input_ids"].shape[1] :].tolist()
    while new and new[-1] in (
        model.config.text_config.eos_token_id,
        processor.tokenizer.pad_token_id,
    ):
        new.pop()
    recorded = found.params["target"]
    assert recorded["generated"] is True and recorded["tokens"] == new
    assert found.target_labels[0] == f"answer: {recorded['text']}"
    assert np.isfinite(found.maps).all() and found.maps.std() > 0


def test_the_users_model_is_left_as_it_was_also_after_an_error(llava: Any) -> None:
    model, processor = llava
    before = {k: v.clone() for k, v in model.state_dict().items()}
    hooks = _hooks(model)  # transformers' own, installed by its first forward, stay as they are
    _explain(model, processor, "gradcam", target=Answer("a dog", prompt=PROMPT))
    with pytest.raises(SeewhyError):
        _explain(
            model,
            processor,
            "gradcam",
            layer="model.no_such",
            target=Answer("a dog", prompt=PROMPT),
        )
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert not model.training and all(p.grad is None for p in model.parameters())
    assert _hooks(model) == hooks
    assert getattr(model.model, "rope_deltas", None) is None


def _hooks(model: Any) -> list[Any]:
    return [(dict(m._forward_hooks), dict(m._forward_pre_hooks)) for m in model.modules()]


def test_a_bfloat16_model_stays_bfloat16(llava: Any) -> None:
    model, processor = tiny_llava(dtype=torch.bfloat16)
    found = _explain(model, processor, target=Answer(ANSWER, prompt=PROMPT))
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}
    assert np.isfinite(found.extras["target_score"]).all() and found.layer_maps.max() > 0


def test_the_map_lands_on_the_non_square_photo_through_the_processors_crop(
    llava: Any, llava_cam: Any
) -> None:
    processor = llava[1]
    pixels = processor(images=[PHOTO], return_tensors="pt")["pixel_values"][0]
    mean = torch.tensor(processor.image_processor.image_mean)[:, None, None]
    std = torch.tensor(processor.image_processor.image_std)[:, None, None]
    theirs = ((pixels * std + mean) * 255).round().permute(1, 2, 0).numpy()
    # seewhy's picture is the processor's: short side to 32, the middle 32 columns of 48
    assert np.abs(llava_cam.images[0].astype(np.float32) - theirs).max() <= 1.0
    values, inside = onto_photo(np.ones((32, 32), np.float32), llava_cam.photo(0))
    columns = np.flatnonzero(inside.any(axis=0))
    assert inside.shape == (40, 60) and (columns[0], columns[-1]) == (10, 49)
    assert values[:, :10].max() == 0 and values[:, 50:].max() == 0


def test_answers_round_trip_through_json_and_refuse_other_models() -> None:
    answer = Answer(ANSWER, prompt=PROMPT, per_token=True)
    back = from_json(answer.to_json())
    assert isinstance(back, Answer) and back.to_json() == answer.to_json()
    with pytest.raises(SeewhyError, match="vision-language model") as caught:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            seewhy.explain(tiny_cnn(), np.zeros((16, 16, 3), np.uint8), target=answer)
    assert "\n" not in str(caught.value)


def test_a_qwen2_vl_tower_block_is_refused_for_its_unbatched_rows(qwen: Any) -> None:
    """Qwen2-VL's vision blocks hold every picture's patches in one row without a batch
    dimension: a map there would be quietly wrong, so only ``merged_patches`` is taken."""
    model, processor = qwen
    block = next(name for name, _ in model.named_modules() if name.endswith("blocks.0"))
    with pytest.raises(SeewhyError, match="without a batch dimension") as refused:
        _explain(model, processor, layer=block, target=Answer(ANSWER, prompt=PROMPT))
    assert "\n" not in str(refused.value) and "use layer merged_patches" in str(refused.value)


def test_the_vision_paths_scored_forward_skips_the_sigmoid_watch(
    llava: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The vision path's output is image features for the Answer to score, never a sigmoid's:
    its forwards skip the watch for a final sigmoid (every torch call watched, 0.6 ms a call
    on the tiny model), and the map is the same."""
    from seewhy.backends.torch import structure

    model, processor = llava
    watched = _explain(model, processor, target=Answer(ANSWER, prompt=PROMPT)).maps
    calls: list[int] = []
    original = structure.sigmoid_calls

    def counted() -> Any:
        calls.append(1)
        return original()

    monkeypatch.setattr(structure, "sigmoid_calls", counted)
    again = _explain(model, processor, target=Answer(ANSWER, prompt=PROMPT)).maps
    assert calls == []
    np.testing.assert_allclose(again, watched, rtol=1e-6, atol=1e-9)
    seewhy.explain(tiny_cnn(), np.zeros((1, 16, 16, 3), np.float32), "gradcam")
    assert calls  # a plain classifier is still watched
