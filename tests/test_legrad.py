"""LeGrad (issue 26, point 2): equal to the authors' package and to the paper's loop.

References: ``legrad-torch``'s ``LeWrapper.compute_legrad`` on its own copy of tiny
random open_clip models (it rewrites the forwards of the model it wraps), with its
defaults (SigLIP: the generic-text correction); and a loop written from the paper:
per block, its own forward and ``autograd.grad`` of the score read through the head
at that block, with respect to the attention probabilities taken from the non-fused
attention (Hugging Face SigLIP's pooling head written out by hand for it).
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import io
import warnings
from typing import Any

import numpy as np
import pytest

import seewhy
from models import (
    hf_dual_encoder,
    hf_vit,
    open_clip_siglip_tiny,
    open_clip_tiny,
    timm_vit,
    tiny_cnn,
    word_tokenizer,
)
from seewhy.errors import InvalidInput, UnsupportedModel
from seewhy.targets import Prompt, Similarity

torch = pytest.importorskip("torch")
F = torch.nn.functional
#: The pictures are fed to the models as they are (the references see the same tensors).
AS_IS = seewhy.Preprocess(size=(32, 32), resize=None, mean=(0.0,) * 3, std=(1.0,) * 3, scale=1.0)


def pictures(n: int = 2, size: int = 32, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, size, size, 3)).astype(np.float32)


def min_max(maps: Any) -> np.ndarray:
    m = np.asarray(maps, dtype=np.float64)
    low = m.min(axis=(1, 2), keepdims=True)
    return (m - low) / (m.max(axis=(1, 2), keepdims=True) - low)


def legrad_torch(
    clip: Any, text: Any, x: np.ndarray, layer_index: int, generic: Any = None, **kw: Any
) -> np.ndarray:
    """The authors' maps, one image at a time (their CLIP path mixes a batch's heads).

    ``generic``: the embedding of their correction's text, which they would encode
    with a tokenizer downloaded from the Hub (offline here: the model's own)."""
    legrad = pytest.importorskip("legrad")
    with contextlib.redirect_stdout(io.StringIO()):  # it prints while wrapping
        wrapped = legrad.LeWrapper(copy.deepcopy(clip), layer_index=layer_index)
    if generic is not None:
        wrapped.empty_embedding = generic.t()  # what its _init_empty_embedding would set
    images = torch.from_numpy(x).permute(0, 3, 1, 2)
    return np.concatenate(
        [
            wrapped.compute_legrad(text, image=images[i : i + 1], **kw)[:, 0].detach().numpy()
            for i in range(len(x))
        ]
    )


def correlations(a: np.ndarray, b: np.ndarray) -> list[float]:
    return [float(np.corrcoef(p.ravel(), q.ravel())[0, 1]) for p, q in zip(a, b, strict=True)]


@pytest.fixture(scope="module")
def text() -> Any:
    torch.manual_seed(3)
    return F.normalize(torch.randn(1, 32), dim=-1)


@pytest.mark.parametrize("layer_index", [-2, -1])
def test_equals_legrad_torch_on_an_open_clip_vit(text: Any, layer_index: int) -> None:
    """Class-token open_clip tower: the authors' mean-of-tokens readout, r >= 0.99 per image."""
    clip, x = open_clip_tiny("vit"), pictures()
    theirs = legrad_torch(clip, text, x, layer_index)
    target = Similarity(text[0].numpy())  # cosine: the logit up to a positive scale
    ours = seewhy.explain(clip.visual, x, "legrad", target=target, start_block=layer_index)
    assert ours.params["readout"] == "mean" and ours.params["start_block"] == layer_index
    assert min(correlations(ours.maps, theirs)) >= 0.99


def test_through_a_prompt_on_the_whole_open_clip_model_too() -> None:
    """``Prompt`` scores the logit (scale * cosine) through seewhy's tower adapter: the same map."""
    import warnings

    open_clip = pytest.importorskip("open_clip")
    from seewhy.targets import Prompt

    clip, x = open_clip_tiny("vit"), pictures()
    tokens = open_clip.tokenizer.SimpleTokenizer(context_length=16)(["a red car"])
    with torch.no_grad():
        text = F.normalize(clip.encode_text(tokens), dim=-1)
    theirs = legrad_torch(clip, text, x, -2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the adapter's one note, tested with Prompt
        ours = seewhy.explain(clip, x, "legrad", target=Prompt("a red car"))
    assert ours.params["readout"] == "mean"
    assert min(correlations(ours.maps, theirs)) >= 0.99


def open_clip_texts(clip: Any, texts: list[str]) -> Any:
    """Unit text embeddings from the model's own tower and open_clip's own tokenizer."""
    open_clip = pytest.importorskip("open_clip")
    tokens = open_clip.tokenizer.SimpleTokenizer(context_length=clip.context_length)(texts)
    with torch.no_grad():
        return F.normalize(clip.encode_text(tokens), dim=-1)


def quiet(model: Any, x: Any, target: Any, **settings: Any) -> Any:
    """``seewhy.explain(model, x, "legrad")`` with the adapted-model note (tested with Prompt)
    silenced."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", seewhy.vlm.AdaptedModelNote)
        return seewhy.explain(model, x, "legrad", target=target, **settings)


@pytest.fixture(scope="module")
def siglip() -> Any:
    """The tiny open_clip SigLIP (timm tower, attention pooler, logit bias) and its texts."""
    clip = open_clip_siglip_tiny()
    return clip, open_clip_texts(clip, ["a red car", "a photo of a"])


def test_equals_legrad_torch_with_its_defaults_on_an_open_clip_siglip(siglip: Any) -> None:
    """The authors correct SigLIP by default: the map is zeroed where the generic text's
    ("a photo of a") map is above 0.8. seewhy applies it to a Prompt on SigLIP, and the
    correction changes the map (so this test tells the two apart)."""
    clip, texts = siglip
    x = pictures()
    theirs = legrad_torch(clip, texts[:1], x, -2, generic=texts[1:])
    uncorrected = legrad_torch(clip, texts[:1], x, -2, apply_correction=False)
    ours = quiet(clip, x, Prompt("a red car"))
    assert ours.params["readout"] == "pooler" and ours.params["correction"] is True
    assert min(correlations(ours.maps, theirs)) >= 0.99
    assert max(correlations(theirs, uncorrected)) < 0.95  # the correction did something
    assert (ours.layer_maps == 0).mean() > 0.1  # the zeroed patches


def test_without_the_correction_equals_legrad_torch_without_it(siglip: Any) -> None:
    """``correction=False``, or a target with no text tower behind it (a Similarity on the
    tower alone): the authors' ``apply_correction=False``. Rollout refuses the pooler."""
    clip, texts = siglip
    x = pictures()
    theirs = legrad_torch(clip, texts[:1], x, -2, apply_correction=False)
    target = Similarity(texts[0].numpy())
    for ours in (
        seewhy.explain(clip.visual, x, "legrad", target=target),
        quiet(clip, x, Prompt("a red car"), correction=False),
    ):
        assert ours.params["correction"] is False and ours.params["readout"] == "pooler"
        assert min(correlations(ours.maps, theirs)) >= 0.99
    with pytest.raises(UnsupportedModel):
        seewhy.explain(clip.visual, x, "attention-rollout", target=target)


def test_the_generic_text_is_encoded_once_not_once_per_pass(siglip: Any) -> None:
    """Two calls, two images each: the text tower runs once for the prompt and once for
    "a photo of a", then never again."""
    clip, _ = siglip
    calls = []
    own = clip.encode_text
    clip.encode_text = lambda *a, **k: calls.append(1) or own(*a, **k)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", seewhy.vlm.AdaptedModelNote)
            explainer = seewhy.Explainer(clip, "legrad")
        for _ in range(2):
            assert explainer.explain(pictures(), target=Prompt("a red car")).params["correction"]
    finally:
        del clip.encode_text
    assert len(calls) == 2


def paper_loop(
    net: Any, x: np.ndarray, start: int, blocks: Any, read: Any, probs_of: Any, prefix: int
) -> np.ndarray:
    """The paper, plainly: per block l a forward, s_l = score(head(z_l)), autograd.grad to
    block l's attention probabilities, ReLU, mean over heads and queries; sum; min-max."""
    images = torch.from_numpy(x).permute(0, 3, 1, 2)
    with torch.no_grad():
        top = read(net, images, len(blocks) - 1)[0].argmax(1)
    total = 0
    for layer in range(start % len(blocks), len(blocks)):
        scores, probs = read(net, images, layer, probs_of)
        picked = scores.gather(1, top[:, None]).sum()
        (grad,) = torch.autograd.grad(picked, probs)
        total = total + grad.clamp(min=0).mean(1).mean(1)[:, prefix:]
    side = round(float(total.shape[1]) ** 0.5)
    return min_max(total.reshape(len(x), side, side).detach().numpy())


def timm_read(net: Any, images: Any, layer: int, probs_of: Any = None) -> tuple[Any, Any]:
    kept: dict[str, Any] = {}
    hooks = [net.blocks[layer].register_forward_hook(lambda m, i, o: kept.setdefault("z", o))]
    attn = net.blocks[layer].attn
    hooks.append(attn.attn_drop.register_forward_hook(lambda m, i, o: kept.setdefault("a", o)))
    try:
        net(images)
    finally:
        for h in hooks:
            h.remove()
    return net.forward_head(net.norm(kept["z"])), kept["a"]


def hf_read(net: Any, images: Any, layer: int, probs_of: Any = None) -> tuple[Any, Any]:
    out = net(pixel_values=images, output_hidden_states=True, output_attentions=True)
    z = out.hidden_states[layer + 1]
    return net.classifier(net.vit.layernorm(z)[:, 0]), out.attentions[layer]


@pytest.mark.parametrize("start", [-2, 0])
def test_equals_the_paper_loop_on_a_timm_vit(start: int) -> None:
    model, x = timm_vit(32, depth=3, seed=1), pictures(seed=1)
    reference = copy.deepcopy(model)
    for block in reference.blocks:
        block.attn.fused_attn = False  # the probabilities exist as a tensor to differentiate
    expected = paper_loop(reference, x, start, reference.blocks, timm_read, None, 1)
    ours = seewhy.explain(model, x, "legrad", start_block=start)
    assert ours.params["readout"] == "head"
    np.testing.assert_allclose(ours.layer_maps, expected, atol=1e-5)


def test_equals_the_paper_loop_on_a_hugging_face_vit() -> None:
    """seewhy reads the SDPA model's attention from its taps; the loop, the eager twin's."""
    model, reference, x = hf_vit("sdpa", seed=2), hf_vit("eager", seed=2), pictures(seed=2)
    layers = reference.vit.layers
    expected = paper_loop(reference, x, -2, layers, hf_read, None, 1)
    ours = seewhy.explain(model, x, "legrad")
    np.testing.assert_allclose(ours.layer_maps, expected, atol=1e-5)


def siglip_pool_by_hand(head: Any, z: Any) -> tuple[Any, Any]:
    """Hugging Face SigLIP's pooling head written out, its attention probabilities kept:
    the learned probe attends over the tokens, then the residual MLP; the pooled vector."""
    mha, n = head.attention, len(z)
    e, heads = mha.embed_dim, mha.num_heads
    w, b = mha.in_proj_weight, mha.in_proj_bias
    q, k, v = (
        F.linear(t, w[i * e : (i + 1) * e], b[i * e : (i + 1) * e])
        .reshape(n, t.shape[1], heads, -1)
        .transpose(1, 2)
        for i, t in enumerate((head.probe.expand(n, -1, -1), z, z))
    )
    probs = (q @ k.transpose(-1, -2) * (e // heads) ** -0.5).softmax(-1)
    pooled = mha.out_proj((probs @ v).transpose(1, 2).reshape(n, 1, e))
    return (pooled + head.mlp(head.layernorm(pooled)))[:, 0], probs


def hf_text(model: Any, tokenizer: Any, texts: list[str]) -> Any:
    """Unit text embeddings (SigLIP's texts padded to the full length, as it was trained)."""
    siglip = model.config.model_type == "siglip"
    tokens = tokenizer(texts, padding="max_length" if siglip else True, max_length=16,
                       truncation=True, return_tensors="pt")
    kept = {"input_ids": tokens["input_ids"]}
    if not siglip:
        kept["attention_mask"] = tokens["attention_mask"]
    with torch.no_grad():
        found = model.get_text_features(**kept)
    return F.normalize(getattr(found, "pooler_output", found), dim=-1)


def relevance_loop(read: Any, blocks: range, texts: Any, pooled: bool, prefix: int) -> list[Any]:
    """Per text, the sum over blocks of ReLU(d cos(read(l), text) / d A_l), averaged over
    heads and the queries (an attention pooler: its one query), at the patch tokens."""
    sums = []
    for text in texts:
        total = 0
        for layer in blocks:
            embedding, probs = read(layer)
            score = (F.normalize(embedding, dim=-1) @ text).sum()
            (grad,) = torch.autograd.grad(score, probs, retain_graph=True)
            signal = grad.clamp(min=0).mean(1)
            total = total + (signal[:, 0] if pooled else signal.mean(1))[:, prefix:]
        sums.append(total.detach().numpy().astype(np.float64))
    return sums


def corrected(sums: list[Any], threshold: float = 0.8) -> np.ndarray:
    """The authors' SigLIP correction: zero where the generic text's min-max map is above
    ``threshold``, then min-max."""
    side = round(sums[0].shape[1] ** 0.5)
    maps = sums[0].reshape(-1, side, side).copy()
    if len(sums) > 1:
        maps[min_max(sums[1].reshape(maps.shape)) > threshold] = 0
    return min_max(maps)


@pytest.fixture(scope="module")
def word_tokens() -> Any:
    return word_tokenizer("a photo of red car cat dog circle".split())


def test_a_prompt_on_hugging_face_siglip_equals_the_paper_loop_with_the_correction(
    word_tokens: Any,
) -> None:
    """``SiglipModel``: its own pooling head (nn.MultiheadAttention over a learned probe) reads
    each block's raw tokens, as the authors feed timm's pooler; corrected by default."""
    model, x = hf_dual_encoder("siglip", seed=4), pictures(seed=4)
    vision = model.vision_model
    images = torch.from_numpy(x).permute(0, 3, 1, 2)
    with torch.no_grad():
        hidden = vision(pixel_values=images, output_hidden_states=True).hidden_states
        z = hidden[-1]
        assert torch.allclose(siglip_pool_by_hand(vision.head, z)[0], vision.head(z), atol=1e-5)
    texts = hf_text(model, word_tokens, ["a red car", "a photo of a"])

    def read(layer: int) -> tuple[Any, Any]:
        return siglip_pool_by_hand(vision.head, hidden[layer + 1])

    sums = relevance_loop(read, range(len(hidden) - 3, len(hidden) - 1), texts, True, 0)
    ours = quiet(model, x, Prompt("a red car"), tokenizer=word_tokens, preprocess=AS_IS)
    assert ours.params["readout"] == "pooler" and ours.params["correction"] is True
    np.testing.assert_allclose(ours.layer_maps, corrected(sums), atol=1e-5)
    plain = quiet(model, x, Prompt("a red car"), tokenizer=word_tokens, preprocess=AS_IS,
                  correction=False, correction_threshold=0.5)
    np.testing.assert_allclose(plain.layer_maps, corrected(sums[:1]), atol=1e-5)
    assert plain.params["correction_threshold"] == 0.5


@pytest.mark.parametrize("readout", [None, "mean"])
def test_a_prompt_on_hugging_face_clip_equals_the_paper_loop(
    word_tokens: Any, readout: str | None
) -> None:
    """``CLIPModel``: by default each block's class token through the final norm and the
    projection (the model's own head); ``mean``: the mean of all tokens, as the authors read
    open_clip's CLIP. No correction (the authors apply it to SigLIP only)."""
    model, x = hf_dual_encoder("clip", seed=5), pictures(seed=5)
    reference = copy.deepcopy(model)
    reference.set_attn_implementation("eager")  # the probabilities exist as tensors
    vision = reference.vision_model
    images = torch.from_numpy(x).permute(0, 3, 1, 2)
    out = vision(pixel_values=images, output_hidden_states=True, output_attentions=True)

    def read(layer: int) -> tuple[Any, Any]:
        z = out.hidden_states[layer + 1]
        pooled = z.mean(1) if readout == "mean" else z[:, 0]
        return reference.visual_projection(vision.post_layernorm(pooled)), out.attentions[layer]

    texts = hf_text(model, word_tokens, ["a red car", "a photo of a"])
    blocks = range(len(out.attentions) - 2, len(out.attentions))
    sums = relevance_loop(read, blocks, texts, False, 1)
    ours = quiet(model, x, Prompt("a red car"), tokenizer=word_tokens, preprocess=AS_IS,
                 readout=readout)
    assert ours.params["readout"] == (readout or "head") and ours.params["correction"] is False
    np.testing.assert_allclose(ours.layer_maps, corrected(sums[:1]), atol=1e-5)
    asked = quiet(model, x, Prompt("a red car"), tokenizer=word_tokens, preprocess=AS_IS,
                  readout=readout, correction=True)  # asked for on CLIP: the same rule
    assert asked.params["correction"] is True
    np.testing.assert_allclose(asked.layer_maps, corrected(sums), atol=1e-5)


def test_correction_settings_are_checked_in_one_line_and_typed_by_set(siglip: Any) -> None:
    from seewhy.cli.settings import method_settings

    for bad in ({"correction": "yes"}, {"correction_threshold": 0}, {"correction_threshold": 2.0},
                {"correction_text": " "}):
        with pytest.raises(InvalidInput, match=next(iter(bad))) as info:
            seewhy.Explainer(timm_vit(32, seed=1), "legrad", **bad)
        assert "\n" not in str(info.value)
    with pytest.raises(InvalidInput, match="correction=True needs a text prompt") as info:
        seewhy.explain(timm_vit(32, seed=1), pictures(1), "legrad", correction=True)
    assert "\n" not in str(info.value)
    args = argparse.Namespace(settings=["correction=false", "correction_threshold=0.6",
                                        "correction_text=a picture of"])
    assert method_settings(args, ["legrad"])["legrad"] == {
        "correction": False, "correction_threshold": 0.6, "correction_text": "a picture of"
    }


def test_readouts_that_do_not_fit_the_model_are_refused_in_one_line() -> None:
    vit, x = timm_vit(32, seed=1), pictures(1)
    for readout, words in (("pooler", "no attention-pooling head"), ("sum", "readout")):
        with pytest.raises(InvalidInput, match=words) as info:
            seewhy.explain(vit, x, "legrad", readout=readout)
        assert "\n" not in str(info.value)
    with pytest.raises(InvalidInput, match=r"start_block 5 is past this model's 2 blocks"):
        seewhy.explain(vit, x, "legrad", start_block=5)


def test_more_blocks_from_the_last_than_the_model_has_reads_them_all() -> None:
    """The default -2 on a one-block model (a tiny CLIP) reads its one block, as legrad-torch
    does, instead of refusing the authors' default."""
    vit, x = timm_vit(32, seed=1), pictures(1)
    every = seewhy.explain(vit, x, "legrad", start_block=0).maps
    np.testing.assert_array_equal(seewhy.explain(vit, x, "legrad", start_block=-5).maps, every)


def test_a_cnn_is_refused_in_one_line_naming_what_works() -> None:
    with pytest.raises(UnsupportedModel, match="legrad: the model has no transformer") as info:
        seewhy.explain(tiny_cnn(), pictures(1, 16), "legrad")
    assert "\n" not in str(info.value) and "use gradcam" in str(info.value)


def test_an_onnx_model_is_refused_in_one_line_naming_what_works(tmp_path: Any) -> None:
    pytest.importorskip("onnxruntime")
    path = tmp_path / "cnn.onnx"  # refused by what the backend offers, before any pass
    torch.onnx.export(tiny_cnn(), torch.zeros(1, 3, 16, 16), str(path), dynamo=False)
    with pytest.raises(UnsupportedModel) as info:
        seewhy.explain(str(path), pictures(1, 16), "legrad")
    message = str(info.value)
    assert "\n" not in message and message.startswith("method: legrad needs")
    assert "occlusion" in message.split("methods that work with it:")[-1]


def test_the_model_is_left_as_it_was_also_after_an_error() -> None:
    """No hook, no .grad, the training flag and the attention kernel setting as they were."""
    model, x = timm_vit(32, depth=3, seed=1), pictures()
    model.train()
    model.blocks[1].attn.fused_attn = True

    def state() -> dict[str, Any]:
        return {
            "training": [m.training for m in model.modules()],
            "hooks": sum(
                len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules()
            ),
            "grads": [p.grad for p in model.parameters()],
            "fused": [b.attn.fused_attn for b in model.blocks],
            "weights": [p.detach().clone() for p in model.parameters()],
        }

    def same(a: dict[str, Any], b: dict[str, Any]) -> None:
        assert a["training"] == b["training"] and a["hooks"] == b["hooks"] == 0
        assert all(g is None for g in b["grads"]) and a["fused"] == b["fused"]
        assert all(torch.equal(p, q) for p, q in zip(a["weights"], b["weights"], strict=True))

    before = state()
    seewhy.explain(model, x, "legrad")
    same(before, state())
    with pytest.raises(seewhy.errors.SeewhyError):
        seewhy.explain(model, x, "legrad", target=99)
    same(before, state())
