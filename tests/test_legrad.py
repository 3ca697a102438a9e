"""LeGrad (issue 26, point 2): equal to the authors' package and to the paper's loop.

References: ``legrad-torch``'s ``LeWrapper.compute_legrad`` on its own copy of tiny
random open_clip models (it rewrites the forwards of the model it wraps), and a
loop written from the paper: per block, its own forward and ``autograd.grad`` of
the score read through the head at that block, with respect to the attention
probabilities taken from the non-fused attention.
"""

from __future__ import annotations

import contextlib
import copy
import io
from typing import Any

import numpy as np
import pytest

import seewhy
from models import hf_vit, open_clip_siglip_tiny, open_clip_tiny, timm_vit, tiny_cnn
from seewhy.errors import InvalidInput, UnsupportedModel
from seewhy.targets import Similarity

torch = pytest.importorskip("torch")
F = torch.nn.functional


def pictures(n: int = 2, size: int = 32, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, size, size, 3)).astype(np.float32)


def min_max(maps: Any) -> np.ndarray:
    m = np.asarray(maps, dtype=np.float64)
    low = m.min(axis=(1, 2), keepdims=True)
    return (m - low) / (m.max(axis=(1, 2), keepdims=True) - low)


def legrad_torch(clip: Any, text: Any, x: np.ndarray, layer_index: int, **kw: Any) -> np.ndarray:
    """The authors' maps, one image at a time (their CLIP path mixes a batch's heads)."""
    legrad = pytest.importorskip("legrad")
    with contextlib.redirect_stdout(io.StringIO()):  # it prints while wrapping
        wrapped = legrad.LeWrapper(copy.deepcopy(clip), layer_index=layer_index)
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


def test_equals_legrad_torch_on_an_attention_pooled_siglip_tower(text: Any) -> None:
    """timm SigLIP tower inside open_clip: the pooler reads each block, which rollout refuses."""
    clip, x = open_clip_siglip_tiny(), pictures()
    theirs = legrad_torch(clip, text, x, -2, apply_correction=False)
    target = Similarity(text[0].numpy())
    ours = seewhy.explain(clip.visual, x, "legrad", target=target)
    assert ours.params["readout"] == "pooler"
    assert min(correlations(ours.maps, theirs)) >= 0.99
    with pytest.raises(UnsupportedModel):
        seewhy.explain(clip.visual, x, "attention-rollout", target=target)


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


def test_readouts_that_do_not_fit_the_model_are_refused_in_one_line() -> None:
    vit, x = timm_vit(32, seed=1), pictures(1)
    for readout, words in (("pooler", "no attention-pooling head"), ("sum", "readout")):
        with pytest.raises(InvalidInput, match=words) as info:
            seewhy.explain(vit, x, "legrad", readout=readout)
        assert "\n" not in str(info.value)
    with pytest.raises(InvalidInput, match=r"start_block must be in \[-2, 1\]"):
        seewhy.explain(vit, x, "legrad", start_block=5)


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
