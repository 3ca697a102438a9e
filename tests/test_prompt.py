"""Text prompts on dual encoders (issue 26): ``Prompt`` on open_clip, HF CLIP and SigLIP.

Every reference is written from the definition, with the model's own
encoders: the score is ``logit_scale.exp() * cos(image, text)`` (+ SigLIP's
bias), equal to the model's own ``forward`` logits; ``against`` is their
softmax; Grad-CAM of a Prompt is a hook-and-autograd Grad-CAM of that logit.
"""

from __future__ import annotations

import functools
import warnings
from typing import Any

import numpy as np
import pytest

import seewhy
from contract import SETTINGS
from models import hf_dual_encoder, open_clip_tiny, word_tokenizer
from seewhy import registry
from seewhy.errors import InvalidInput, SeewhyError, UnsupportedModel
from seewhy.targets import Prompt, from_json

torch = pytest.importorskip("torch")
pytest.importorskip("open_clip")
pytest.importorskip("transformers")

WORDS = "a photo of red car cat dog circle".split()
RNG = np.random.default_rng(0)
PICTURE = RNG.integers(0, 256, (32, 32, 3), dtype=np.uint8)  # at the models' own size


def quiet_explain(model: Any, *args: Any, **kwargs: Any) -> Any:
    """``seewhy.explain`` with the one adapted-model note silenced (tested on its own)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", seewhy.vlm.AdaptedModelNote)
        return seewhy.explain(model, *args, **kwargs)


def model_input(explanation: Any) -> Any:
    """The (1, 3, 32, 32) tensor the model was fed for PICTURE, from the recorded preprocessing."""
    record = explanation.input_spec
    assert record["size"] == [32, 32]  # PICTURE is at the model's size: only normalised
    pre = seewhy.Preprocess(size=(32, 32), mean=tuple(record["mean"]), std=tuple(record["std"]))
    return torch.from_numpy(pre.normalise(PICTURE)).permute(2, 0, 1)[None]


@pytest.fixture(scope="module")
def clip() -> Any:
    return open_clip_tiny("vit")


@pytest.fixture(scope="module")
def tokenizer() -> Any:
    return word_tokenizer(WORDS)


@pytest.fixture(scope="module", params=["clip", "siglip"])
def hf(request: Any) -> Any:
    return hf_dual_encoder(request.param)


@functools.cache
def clip_tokenizer(context_length: int) -> Any:
    """open_clip's own BPE tokenizer (reading its vocabulary takes 0.15 s: once)."""
    import open_clip

    return open_clip.tokenizer.SimpleTokenizer(context_length=context_length)


def open_clip_logits(model: Any, x: Any, texts: list[str]) -> Any:
    tokens = clip_tokenizer(model.context_length)(texts)
    with torch.no_grad():
        image = model.encode_image(x, normalize=True)
        text = model.encode_text(tokens, normalize=True)
        by_hand = model.logit_scale.exp() * image @ text.T
        own_image, own_text, own_scale = model(x, tokens)
    assert torch.allclose(by_hand, own_scale * own_image @ own_text.T, atol=1e-5)
    return by_hand


def test_open_clip_prompt_scores_the_models_own_logit(clip: Any) -> None:
    ex = quiet_explain(clip, PICTURE, "saliency", target=Prompt("a red car"))
    expected = open_clip_logits(clip, model_input(ex), ["a red car"])[:, 0]
    assert np.allclose(ex.extras["target_score"], expected.numpy(), atol=1e-4)
    assert np.allclose(ex.logits[:, 0], expected.numpy(), atol=1e-4)
    assert ex.target_labels == ("a red car",) and ex.predictions[0][0].label == "a red car"


def test_against_is_the_softmax_among_the_prompts_and_they_become_the_classes(clip: Any) -> None:
    texts = ["a red car", "a cat", "a dog"]
    ex = quiet_explain(clip, PICTURE, "saliency", target=Prompt("a red car", against=texts[1:]))
    logits = open_clip_logits(clip, model_input(ex), texts)
    assert np.allclose(ex.extras["target_score"], torch.softmax(logits, 1)[:, 0].numpy(), atol=1e-5)
    listed = {p.label: p.probability for p in ex.predictions[0]}
    assert set(listed) == set(texts)
    assert np.allclose([listed[t] for t in texts], torch.softmax(logits, 1)[0].numpy(), atol=1e-5)
    same = quiet_explain(clip, PICTURE, "saliency", target=Prompt(texts))  # a list: the first
    assert np.allclose(same.extras["target_score"], ex.extras["target_score"])


def test_hugging_face_prompt_is_logits_per_image(hf: Any, tokenizer: Any) -> None:
    texts = ["a red car", "a cat"]
    ex = quiet_explain(hf, PICTURE, "saliency", target=Prompt(texts), tokenizer=tokenizer)
    siglip = hf.config.model_type == "siglip"
    found = tokenizer(texts, padding="max_length" if siglip else True, return_tensors="pt")
    ids = {"input_ids": found["input_ids"]}
    if not siglip:
        ids["attention_mask"] = found["attention_mask"]
    x = model_input(ex)
    with torch.no_grad():
        image = hf.get_image_features(pixel_values=x).pooler_output
        text = hf.get_text_features(**ids).pooler_output
        cos = (
            torch.nn.functional.normalize(image, dim=1)
            @ torch.nn.functional.normalize(text, dim=1).T
        )
        by_hand = hf.logit_scale.exp() * cos + (hf.logit_bias if siglip else 0.0)
        own = hf(pixel_values=x, **ids).logits_per_image
    assert torch.allclose(by_hand, own, atol=1e-5)
    assert np.allclose(ex.logits, own.numpy(), atol=1e-4)
    assert np.allclose(ex.extras["target_score"], torch.softmax(own, 1)[:, 0].numpy(), atol=1e-5)


def test_prompt_gradcam_equals_a_hand_written_gradcam_on_the_users_layer(clip: Any) -> None:
    ex = quiet_explain(clip, PICTURE, "gradcam", target=Prompt("a cat"))
    layer = dict(clip.named_modules())[ex.layer]  # the user's own name: resblocks.1.ln_1
    assert ex.layer == "visual.transformer.resblocks.1.ln_1"
    kept: dict[str, Any] = {}

    def hook(module: Any, args: Any, output: Any) -> None:
        output.retain_grad()
        kept["a"] = output

    handle = layer.register_forward_hook(hook)
    try:
        logit = open_clip_logits_grad(clip, model_input(ex), "a cat")
        logit.sum().backward()
    finally:
        handle.remove()
        clip.zero_grad(set_to_none=True)
    a = kept["a"].transpose(0, 1)[:, 1:].detach()  # open_clip 2.23: (tokens, N, C); class token off
    g = kept["a"].grad.transpose(0, 1)[:, 1:]
    cam = (g.mean(dim=1, keepdim=True) * a).sum(-1).reshape(1, 4, 4)  # the ReLU comes later
    assert ex.layer_maps.shape == (1, 4, 4)
    assert np.allclose(ex.layer_maps, cam.numpy(), atol=1e-5)


def open_clip_logits_grad(model: Any, x: Any, text: str) -> Any:
    tokens = clip_tokenizer(model.context_length)([text])
    with torch.no_grad():
        t = model.encode_text(tokens, normalize=True)
    image = torch.nn.functional.normalize(model.encode_image(x), dim=1)
    return model.logit_scale.exp().detach() * (image @ t.T)[:, 0]


def test_the_text_tower_runs_once_per_prompt_not_once_per_pass(clip: Any) -> None:
    calls = []
    handle = clip.token_embedding.register_forward_hook(lambda *_: calls.append(1))
    try:
        explainer = seewhy.Explainer(clip, "occlusion", window=16, stride=8)
        target = Prompt("a red car", against=["a dog"])
        ex = explainer.explain([PICTURE, PICTURE], target=target)
        explainer.explain(PICTURE, target=Prompt("a dog", against=["a red car"]))
    finally:
        handle.remove()
    assert len(calls) == 1  # both texts in one call; the second explain reused them
    assert ex.maps.shape == (2, 32, 32)


def test_open_clips_vocabulary_is_read_once_not_once_per_call(clip: Any, monkeypatch: Any) -> None:
    import open_clip

    built: list[int] = []
    original = open_clip.tokenizer.SimpleTokenizer.__init__

    def counting(self: Any, *args: Any, **kwargs: Any) -> None:
        built.append(1)
        original(self, *args, **kwargs)

    quiet_explain(clip, PICTURE, "saliency", target=Prompt("a cat"))  # built here, or before
    monkeypatch.setattr(open_clip.tokenizer.SimpleTokenizer, "__init__", counting)
    quiet_explain(clip, PICTURE, "saliency", target=Prompt("a dog"))  # a new Explainer, too
    assert built == []  # reading the vocabulary costs 0.15 s, more than this whole call


def test_a_training_step_between_two_calls_encodes_the_texts_again(clip: Any) -> None:
    explainer = seewhy.Explainer(clip, "saliency")
    first = explainer.explain(PICTURE, target=Prompt("a red car"))
    with torch.no_grad():
        clip.text_projection.mul_(-1.0)  # what an optimizer step does: the same tensor, in place
    try:
        after = explainer.explain(PICTURE, target=Prompt("a red car"))
        expected = open_clip_logits(clip, model_input(after), ["a red car"])[:, 0].numpy()
    finally:
        with torch.no_grad():
            clip.text_projection.mul_(-1.0)
    assert np.allclose(after.extras["target_score"], expected, atol=1e-4)
    assert np.allclose(after.extras["target_score"], -first.extras["target_score"], atol=1e-4)


#: Methods a dual encoder's tower cannot serve, and the fix their one-line refusal names.
REFUSED = {
    "cam": "use gradcam",
    "answer-attention": "generative vision-language model",
    "query-attention": "decoder queries",
    "finercam": "compares class logits",
}


@pytest.mark.parametrize("method", registry.names())
def test_every_method_takes_a_prompt(clip: Any, method: str) -> None:
    threads = torch.get_num_threads()
    settings = {**SETTINGS.get(method, {})}
    target = Prompt("a cat", against=["a dog"])
    if method in REFUSED:
        with pytest.raises(SeewhyError, match=REFUSED[method]) as refusal:
            quiet_explain(clip, PICTURE, method, target=target, **settings)
        assert "\n" not in str(refusal.value) and len(str(refusal.value)) < 400
        return
    ex = quiet_explain(clip, PICTURE, method, target=target, **settings)
    assert ex.maps.shape == (1, 32, 32) and np.isfinite(ex.maps).all()
    assert ex.params["target"] == {"kind": "prompt", "text": "a cat", "against": ["a dog"]}
    # numba's OpenMP layer (LIME, KernelSHAP) once set PyTorch's threads to every core
    assert torch.get_num_threads() == threads


@pytest.mark.parametrize("tower", ["resnet", "avgpool"])
def test_other_open_clip_towers_get_their_own_default_layer(tower: str) -> None:
    model = open_clip_tiny(tower, size=64 if tower == "resnet" else 32)
    picture = RNG.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    with pytest.warns(seewhy.vlm.AdaptedModelNote, match="default layer") as said:
        ex = seewhy.explain(model, picture, "gradcam", target=Prompt("a red car"))
    expected = {"resnet": "visual.layer4", "avgpool": "visual.transformer.resblocks.1"}[tower]
    assert ex.layer == expected and expected in str(said[0].message)
    assert expected in dict(model.named_modules())
    assert np.isfinite(ex.maps).all() and ex.maps.std() > 0


def test_preprocessing_is_read_from_the_model(clip: Any) -> None:
    clip.visual.preprocess_cfg = {
        "size": 32,
        "mean": (0.5,) * 3,
        "std": (0.25,) * 3,
        "interpolation": "bilinear",
        "resize_mode": "squash",
    }
    try:
        ex = quiet_explain(
            clip,
            RNG.integers(0, 256, (20, 50, 3), dtype=np.uint8),
            "saliency",
            target=Prompt("a cat"),
        )
    finally:
        del clip.visual.preprocess_cfg
    pre = ex.input_spec
    assert tuple(pre["mean"]) == (0.5,) * 3 and pre["interpolation"] == "bilinear"
    assert pre["resize"] is None and tuple(pre["size"]) == (32, 32)


def test_the_users_model_is_untouched_also_when_it_fails(clip: Any) -> None:
    clip.train()
    before = {k: v.clone() for k, v in clip.state_dict().items()}
    try:
        quiet_explain(clip, PICTURE, "gradcam", target=Prompt("a cat"))
        with pytest.raises(SeewhyError, match="no layer"):
            quiet_explain(clip, PICTURE, "gradcam", target=Prompt("a cat"), layer="visual.nope")
        assert all(m.training for m in clip.modules())
        assert all(p.grad is None for p in clip.parameters())
        assert not any(m._forward_hooks or m._forward_pre_hooks for m in clip.modules())
        assert all(torch.equal(v, before[k]) for k, v in clip.state_dict().items())
        assert type(clip.visual.transformer.resblocks[0]).__name__ == "ResidualAttentionBlock"
    finally:
        clip.eval()


def test_json_form_round_trips_and_captions_name_the_text(clip: Any) -> None:
    prompt = Prompt("a cat", against=["a dog", "a cat", "a dog"], tokenizer=object())
    assert prompt.texts == ("a cat", "a dog")
    back = from_json(prompt.to_json())
    assert isinstance(back, Prompt) and back.texts == prompt.texts and back.tokenizer is None
    ex = quiet_explain(clip, [PICTURE, PICTURE], "saliency", target=[Prompt("a cat"), "a dog"])
    assert ex.target_labels == ("a cat", "a dog")
    again = quiet_explain(clip, PICTURE, "saliency", target=from_json(ex.params["target"][1]))
    assert np.allclose(again.extras["target_score"], ex.extras["target_score"][1], atol=1e-5)


@pytest.mark.parametrize(
    ("call", "words"),
    [
        (lambda m: quiet_explain(m, PICTURE), "Prompt("),
        (lambda m: quiet_explain(m, PICTURE, target=3), "no classes"),
        (lambda m: quiet_explain(m, PICTURE, target=Prompt("a cat"), prompt="hi"), "target="),
        (lambda m: quiet_explain(m.visual, PICTURE, target=Prompt("a cat")), "dual encoder"),
        (lambda m: Prompt(""), "non-empty"),
        (lambda m: Prompt(["a cat", 3]), "non-empty"),
    ],
)
def test_bad_use_is_one_line_naming_the_fix(clip: Any, call: Any, words: str) -> None:
    with pytest.raises(SeewhyError) as caught:
        call(clip)
    assert "\n" not in str(caught.value) and words in str(caught.value)


def test_hugging_face_without_a_tokenizer_says_how_to_pass_one() -> None:
    model = hf_dual_encoder("clip")
    with pytest.raises(InvalidInput, match="pass tokenizer=") as caught:
        quiet_explain(model, PICTURE, target=Prompt("a cat"))
    assert "\n" not in str(caught.value)


def test_siglip2_is_refused_in_one_line() -> None:
    import transformers

    config = transformers.Siglip2Config(
        text_config={
            "vocab_size": 16,
            "hidden_size": 16,
            "intermediate_size": 16,
            "num_hidden_layers": 1,
            "num_attention_heads": 2,
        },
        vision_config={
            "hidden_size": 16,
            "intermediate_size": 16,
            "num_hidden_layers": 1,
            "num_attention_heads": 2,
            "num_patches": 16,
            "patch_size": 8,
        },
    )
    with pytest.raises(UnsupportedModel, match="variable number of patches"):
        seewhy.Explainer(transformers.Siglip2Model(config))
