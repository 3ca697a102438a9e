"""seewhy.targets.Answer on PaliGemma: a prefix LM with no chat template (tiny, random, offline).

The prompt is the processor's own (image tokens, <bos>, the prompt; the prefix
attends both ways), the answer a causal suffix. What a user would check by
hand: the score is the model's own teacher-forced log-probability, Grad-CAM is
the one written with a hook, the greedy answer is ``generate``'s, and the map
covers the whole photo, which SigLIP's processor squashes without a crop.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

import seewhy  # noqa: E402
from models import tiny_paligemma  # noqa: E402
from seewhy.targets import Answer  # noqa: E402
from seewhy.viz.geometry import onto_photo  # noqa: E402

PROMPT = "what is this ?"
ANSWER = "a red cat"
PHOTO = np.random.default_rng(5).integers(0, 256, (40, 60, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def paligemma() -> Any:
    return tiny_paligemma(seed=2)


@pytest.fixture(scope="module")
def cam(paligemma: Any) -> Any:
    model, processor = paligemma
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return seewhy.explain(
            model, PHOTO, "gradcam", processor=processor, target=Answer(ANSWER, prompt=PROMPT)
        )


def _inputs(processor: Any, picture: np.ndarray) -> tuple[Any, dict[str, Any], list[int]]:
    """The prompt, image and answer as the processor lays them out, the answer a suffix."""
    made = dict(processor(text=[f"<image>{PROMPT}"], images=[picture], return_tensors="pt"))
    made.pop("labels", None)
    answer = processor.tokenizer(ANSWER, add_special_tokens=False)["input_ids"]
    ids = torch.cat([made.pop("input_ids"), torch.tensor([answer])], dim=1)
    ones = torch.ones((1, len(answer)), dtype=torch.long)
    made["attention_mask"] = torch.cat([made["attention_mask"], ones], dim=1)
    made["token_type_ids"] = torch.cat([made["token_type_ids"], ones], dim=1)  # the suffix
    return ids, made, answer


def _log_probability(model: Any, ids: Any, made: dict[str, Any], answer: list[int]) -> Any:
    logits = model(input_ids=ids, **made).logits[0, ids.shape[1] - len(answer) - 1 : -1]
    return torch.log_softmax(logits.float(), -1)[torch.arange(len(answer)), answer].sum()


def test_the_score_is_the_models_own_teacher_forced_log_probability(
    paligemma: Any, cam: Any
) -> None:
    model, processor = paligemma
    ids, made, answer = _inputs(processor, PHOTO)
    with torch.no_grad():
        expected = _log_probability(model, ids, made, answer)
    assert cam.extras["target_score"][0] == pytest.approx(float(expected), abs=1e-4)
    assert cam.params["model_family"] == "paligemma"


def test_gradcam_equals_a_hand_written_gradcam_at_the_last_siglip_block(
    paligemma: Any, cam: Any
) -> None:
    model, processor = paligemma
    assert cam.layer == "model.vision_tower.encoder.layers.1"  # the user's own name for it
    block = model.get_submodule(cam.layer)
    ids, made, answer = _inputs(processor, PHOTO)
    kept: list[Any] = []
    handle = block.register_forward_hook(
        lambda m, a, out: kept.append(out[0] if isinstance(out, tuple) else out)
    )
    try:
        score = _log_probability(model, ids, made, answer)
    finally:
        handle.remove()
    (gradient,) = torch.autograd.grad(score, kept[0])
    a, g = kept[0][0].detach(), gradient[0]  # SigLIP: patch tokens only, no class token
    expected = (a * g.mean(dim=0)).sum(dim=1).reshape(4, 4).numpy()
    np.testing.assert_allclose(cam.layer_maps[0], expected, rtol=1e-3, atol=1e-6)
    assert expected.max() > 0 > expected.min()


def test_the_map_covers_the_whole_squashed_photo(cam: Any) -> None:
    values, inside = onto_photo(np.ones((32, 32), np.float32), cam.photo(0))
    assert inside.shape == (40, 60) and inside.all() and values.min() == 1


def test_the_greedy_answer_is_generates_own(paligemma: Any) -> None:
    model, processor = paligemma
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        found = seewhy.explain(model, PHOTO, "answer-attention", processor=processor, prompt=PROMPT)
    picture = found.images[0]
    made = dict(processor(text=[f"<image>{PROMPT}"], images=[picture], return_tensors="pt"))
    made.pop("labels", None)
    with torch.no_grad():
        placeholder = [model.config.image_token_id]  # never an answer (seewhy suppresses it)
        out = model.generate(
            **made, do_sample=False, max_new_tokens=32, suppress_tokens=placeholder
        )
    new = out[0, made["input_ids"].shape[1] :].tolist()
    stops = (model.config.text_config.eos_token_id, processor.tokenizer.pad_token_id)
    while new and new[-1] in stops:
        new.pop()
    assert found.params["target"]["tokens"] == new and found.params["target"]["generated"]
    assert found.layer_maps.shape == (1, 4, 4) and np.isfinite(found.layer_maps).all()
