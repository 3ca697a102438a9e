"""AttnLRP (issue 29, point 2): equal to ``lxt`` and to the paper's loop, conserving, harmless.

References: ``lxt``'s efficient AttnLRP (its own rule functions and patches, put on
the classes for one pass by ``monkeypatch`` and taken off after) on a copy of tiny
random timm and Hugging Face ViTs; and a loop written from the paper (Achtibat et
al., 2024, eqs. 7-9 and Prop. 3.1) on the timm ViT in float64 that keeps every
layer's relevance explicitly, with each bias's, class token's, position
embedding's and softmax's share of the score in a ledger (conservation).
"""

from __future__ import annotations

import copy
import types
from typing import Any

import numpy as np
import pytest

import seewhy
from models import hf_vit, timm_vit, tiny_cnn, tiny_transformer
from seewhy.errors import InvalidInput, UnsupportedModel

torch = pytest.importorskip("torch")
F = torch.nn.functional
#: The pictures go to the models as they are (the references see the same tensors).
AS_IS = seewhy.Preprocess(size=(32, 32), resize=None, mean=(0.0,) * 3, std=(1.0,) * 3, scale=1.0)


@pytest.fixture(scope="module")
def pictures() -> np.ndarray:
    return np.random.default_rng(0).normal(size=(2, 32, 32, 3)).astype(np.float32)


@pytest.fixture(scope="module")
def vit() -> Any:
    return timm_vit(32, seed=3)


def _as_is(size: tuple[int, int]) -> Any:
    return seewhy.Preprocess(size=size, resize=None, mean=(0.0,) * 3, std=(1.0,) * 3, scale=1.0)


def _explain(model: Any, x: np.ndarray, **settings: Any) -> Any:
    return seewhy.explain(model, x, "attnlrp", preprocess=AS_IS, target=1, **settings)


def _raw(e: Any) -> np.ndarray:
    """The signed map before display scaling: the input relevance summed over channels."""
    return np.asarray(e.extras["attributions"]).sum(-1)


def _corr(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a.ravel(), b.ravel())[0, 1])


# -- lxt, on a copy, with its patches on for one pass --------------------------------------


@pytest.fixture(scope="module")
def lxt_patches() -> Any:
    """``lxt.efficient.patches``, read without its package ``__init__``: lxt 2.1's package
    imports its BERT port, which needs a helper transformers 5 removed; the rule
    functions themselves need only torch."""
    import importlib
    import sys
    from pathlib import Path

    lxt = pytest.importorskip("lxt")
    saved = {
        name: sys.modules.get(name)
        for name in ("lxt.efficient", "lxt.efficient.rules", "lxt.efficient.patches")
    }
    package = types.ModuleType("lxt.efficient")
    package.__path__ = [str(Path(lxt.__path__[0]) / "efficient")]
    sys.modules["lxt.efficient"] = package
    try:
        yield importlib.import_module("lxt.efficient.patches")
    finally:
        for name, module in saved.items():
            if module is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = module


def _lxt_map(model: Any, x: np.ndarray, monkeypatch: pytest.MonkeyPatch, lxt: Any) -> np.ndarray:
    """``lxt``'s AttnLRP input relevance, summed over channels: its patches on the classes."""
    from seewhy.backends.torch.attn_lrp import _is_activation

    layer_norm_forward, non_linear_forward = lxt.layer_norm_forward, lxt.non_linear_forward

    for module in model.modules():
        kind = type(module)
        if isinstance(module, torch.nn.LayerNorm):
            monkeypatch.setattr(kind, "forward", layer_norm_forward)
        elif _is_activation(module) and not hasattr(kind, "original_forward"):
            monkeypatch.setattr(kind, "original_forward", kind.forward, raising=False)
            monkeypatch.setattr(kind, "forward", non_linear_forward)
    inputs = torch.from_numpy(x).permute(0, 3, 1, 2).contiguous().requires_grad_(True)
    logits = model(inputs)
    logits = getattr(logits, "logits", logits)
    logits[:, 1].sum().backward()
    return (inputs * inputs.grad).sum(1).detach().numpy()


def _lxt_sdpa(lxt: Any) -> Any:
    """torch's SDPA behind lxt's attention wrapper (its q/4, k/4, v/2), as timm calls it."""
    sdpa = F.scaled_dot_product_attention
    wrapped = lxt.wrap_attention_forward(lambda m, q, k, v, **kw: sdpa(q, k, v, **kw))
    return lambda q, k, v, **kw: wrapped(None, q, k, v, **kw)


def test_equals_lxt_on_a_timm_vit(
    vit: Any, pictures: np.ndarray, monkeypatch: Any, lxt_patches: Any
) -> None:
    ours = _raw(_explain(vit, pictures))
    monkeypatch.setattr(F, "scaled_dot_product_attention", _lxt_sdpa(lxt_patches))
    theirs = _lxt_map(copy.deepcopy(vit), pictures, monkeypatch, lxt_patches)
    for mine, reference in zip(ours, theirs, strict=True):
        assert _corr(mine, reference) >= 0.99
    np.testing.assert_allclose(ours, theirs, rtol=1e-3, atol=1e-4 * np.abs(theirs).max())


def _lxt_glu(lxt: Any) -> Any:
    """timm's GluMlp forward (SwiGLU) as lxt rules a gated MLP (its ``gated_mlp_forward``):
    the identity rule on the activation, the uniform rule on the product."""
    from lxt.efficient.rules import divide_gradient, identity_rule_implicit

    def forward(self: Any, x: Any) -> Any:
        x1, x2 = self.fc1(x).chunk(2, dim=self.chunk_dim)
        if self.gate_last:
            gated = x1 * identity_rule_implicit(self.act, x2)
        else:
            gated = identity_rule_implicit(self.act, x1) * x2
        return self.drop2(self.fc2(self.norm(self.drop1(divide_gradient(gated, 2)))))

    return forward


@pytest.mark.parametrize("family", ["timm-eva", "timm-swin"])
def test_equals_lxt_on_timm_eva_and_swin(
    family: str, pictures: np.ndarray, monkeypatch: Any, lxt_patches: Any
) -> None:
    """EVA-02: rotary positions, a SwiGLU gate, v computed without its module; Swin:
    windows, a relative position bias, q, k, v in one fused projection with no q norm,
    and timm's eager attention (matmuls and softmax) on seewhy's side."""
    from timm.layers.mlp import GluMlp

    model, size = tiny_transformer(family, seed=5)
    x = np.resize(pictures, (len(pictures), *size, 3)).astype(np.float32)  # Swin: 56 px
    ours = _raw(seewhy.explain(model, x, "attnlrp", target=1, preprocess=_as_is(size)))
    monkeypatch.setattr(F, "scaled_dot_product_attention", _lxt_sdpa(lxt_patches))
    monkeypatch.setattr(GluMlp, "forward", _lxt_glu(lxt_patches))
    reference = copy.deepcopy(model)
    for module in reference.modules():  # lxt wraps SDPA: Swin's own default is the eager path
        if hasattr(module, "fused_attn"):
            module.fused_attn = True
    theirs = _lxt_map(reference, x, monkeypatch, lxt_patches)
    for mine, reference_map in zip(ours, theirs, strict=True):
        assert _corr(mine, reference_map) >= 0.99
    np.testing.assert_allclose(ours, theirs, rtol=1e-3, atol=1e-4 * np.abs(theirs).max())


def test_equals_lxt_on_a_hugging_face_vit(
    pictures: np.ndarray, monkeypatch: Any, lxt_patches: Any
) -> None:
    from transformers.models.vit import modeling_vit

    model = hf_vit("sdpa", seed=4)
    ours = _raw(_explain(model, pictures))
    reference = hf_vit("eager", seed=4)  # lxt wraps the eager attention function
    reference.load_state_dict(model.state_dict())
    attention = lxt_patches.wrap_attention_forward(modeling_vit.eager_attention_forward)
    monkeypatch.setattr(modeling_vit, "eager_attention_forward", attention)
    theirs = _lxt_map(reference, pictures, monkeypatch, lxt_patches)
    for mine, ref in zip(ours, theirs, strict=True):
        assert _corr(mine, ref) >= 0.99
    np.testing.assert_allclose(ours, theirs, rtol=1e-3, atol=1e-4 * np.abs(theirs).max())


# -- the paper's rules, layer by layer, with a ledger of what the constants keep ---------


def _linear(x: Any, w: Any, b: Any, r: Any, ledger: list[float]) -> Any:
    """The epsilon rule at epsilon 0 (Eq. 4 of the paper): x (..., j) -> z (..., k)."""
    z = x @ w.T + (0 if b is None else b)
    share = r / z
    if b is not None:
        ledger.append(float((b * share).sum()))
    return x * (share @ w)


def _layer_norm(x: Any, norm: Any, r: Any, ledger: list[float]) -> Any:
    """The identity rule on the normalisation: the centring and the affine map, std constant."""
    d = x.shape[-1]
    std = (x.var(-1, unbiased=False, keepdim=True) + norm.eps).sqrt()
    w = norm.weight.double()
    y = (x - x.mean(-1, keepdim=True)) / std * w + norm.bias.double()
    share = r / y
    ledger.append(float((norm.bias.double() * share).sum()))
    centring = torch.eye(d, dtype=x.dtype) - 1.0 / d  # y - b = (w / std) * (C x)
    return x * ((share * w / std) @ centring)


def _attention(a: Any, attn: Any, r_out: Any, ledger: list[float]) -> Any:
    """One attention layer's relevance, from its output projection back to its input."""
    heads, t, c = attn.num_heads, a.shape[0], a.shape[1]
    w_qkv, b_qkv = attn.qkv.weight.double(), attn.qkv.bias.double()
    qkv = (a @ w_qkv.T + b_qkv).reshape(t, 3, heads, -1).permute(1, 2, 0, 3)
    q, k, v = qkv[0], qkv[1], qkv[2]  # (heads, T, d)
    s = attn.scale * q @ k.transpose(-1, -2)
    p = s.softmax(-1)
    o = p @ v
    r_o = _linear(
        o.transpose(0, 1).reshape(t, c),
        attn.proj.weight.double(),
        attn.proj.bias.double(),
        r_out,
        ledger,
    )
    r_o = r_o.reshape(t, heads, -1).transpose(0, 1)
    # A.v, the uniform rule (Eq. 7): term A_tu v_ud gets R_td A_tu v_ud / O_td, half each
    terms = p[..., :, :, None] * v[..., None, :, :] * (r_o / o)[..., :, None, :]  # (h, t, u, d)
    r_p, r_v = terms.sum(-1) / 2, terms.sum(-3) / 2
    # softmax (Prop. 3.1): R_in = s (R_out - A sum(R_out)); the rest is its bias's share
    r_s = s * (r_p - p * r_p.sum(-1, keepdim=True))
    ledger.append(float(r_p.sum() - r_s.sum()))
    # q.k^T, the uniform rule again
    terms = attn.scale * q[..., :, None, :] * k[..., None, :, :] * (r_s / s)[..., None]
    r_q, r_k = terms.sum(-2) / 2, terms.sum(-3) / 2
    r_qkv = torch.stack([r_q, r_k, r_v]).permute(2, 0, 1, 3).reshape(t, 3 * c)
    return _linear(a, w_qkv, b_qkv, r_qkv, ledger)


def _d(t: Any) -> Any:
    return t.detach().double()


def _paper_lrp(vit: Any, image: np.ndarray, target: int) -> tuple[np.ndarray, float, list[float]]:
    """A timm ViT's AttnLRP from the paper, per image in float64: (map, score, ledger)."""
    ledger: list[float] = []
    d = _d
    x = torch.from_numpy(image).double().permute(2, 0, 1)
    conv = vit.patch_embed.proj
    size = conv.kernel_size[0]
    patches = F.unfold(x[None], size, stride=size)[0].T  # (N, 3 * size * size)
    w_patch = d(conv.weight).reshape(conv.out_channels, -1)
    z = patches @ w_patch.T + d(conv.bias)
    constant = torch.cat([d(vit.cls_token)[0], torch.zeros_like(z)]) + d(vit.pos_embed)[0]
    h = torch.cat([torch.zeros_like(z[:1]), z]) + constant
    seen = [h]
    for block in vit.blocks:  # the forward, keeping each block's input
        h = _block_forward(block, h)[-1]
        seen.append(h)
    n = F.layer_norm(h, h.shape[-1:], d(vit.norm.weight), d(vit.norm.bias), vit.norm.eps)
    y = n[0] @ d(vit.head.weight).T + d(vit.head.bias)
    score = float(y[target])
    r = torch.zeros_like(n)
    start = torch.eye(len(y), dtype=y.dtype)[target] * y
    r[0] = _linear(n[0], d(vit.head.weight), d(vit.head.bias), start, ledger)
    r = _layer_norm(seen[-1], vit.norm, r, ledger)
    for block, h_in in zip(reversed(list(vit.blocks)), reversed(seen[:-1]), strict=True):
        r = _block(block, h_in, r, ledger)
    r_z = z * r[1:] / seen[0][1:]
    ledger.append(float((constant * r / seen[0]).sum()))  # class token and positions
    r_patches = _linear(patches, w_patch, d(conv.bias), r_z, ledger)
    image_r = F.fold(r_patches.T[None], x.shape[1:], size, stride=size)[0]
    return image_r.sum(0).numpy(), score, ledger


def _attn_out(attn: Any, a: Any) -> Any:
    t, c = a.shape
    qkv = F.linear(a, attn.qkv.weight.double(), attn.qkv.bias.double())
    q, k, v = qkv.reshape(t, 3, attn.num_heads, -1).permute(1, 2, 0, 3)
    return ((attn.scale * q @ k.transpose(-1, -2)).softmax(-1) @ v).transpose(0, 1).reshape(t, c)


def _block_forward(block: Any, h: Any) -> tuple[Any, ...]:
    """A pre-norm timm block in float64: (a, attended, h1, c, g, m, out)."""
    norm1, norm2, mlp, proj = block.norm1, block.norm2, block.mlp, block.attn.proj
    a = F.layer_norm(h, h.shape[-1:], _d(norm1.weight), _d(norm1.bias), norm1.eps)
    attended = F.linear(_attn_out(block.attn, a), _d(proj.weight), _d(proj.bias))
    h1 = h + attended
    c = F.layer_norm(h1, h1.shape[-1:], _d(norm2.weight), _d(norm2.bias), norm2.eps)
    g = F.gelu(F.linear(c, _d(mlp.fc1.weight), _d(mlp.fc1.bias)))
    m = F.linear(g, _d(mlp.fc2.weight), _d(mlp.fc2.bias))
    return a, attended, h1, c, g, m, h1 + m


def _block(block: Any, h: Any, r_out: Any, ledger: list[float]) -> Any:
    """One pre-norm block backwards: MLP branch, residual, attention branch, residual."""
    d, mlp = _d, block.mlp
    a, attended, h1, c, g, m, out = _block_forward(block, h)
    r_m, r_h1 = m * r_out / out, h1 * r_out / out  # a sum: each part its own share
    r_g = _linear(g, d(mlp.fc2.weight), d(mlp.fc2.bias), r_m, ledger)
    r_c = _linear(c, d(mlp.fc1.weight), d(mlp.fc1.bias), r_g, ledger)  # GELU: identity rule
    r_h1 = r_h1 + _layer_norm(h1, block.norm2, r_c, ledger)
    r_att, r_h = attended * r_h1 / h1, h * r_h1 / h1
    r_a = _attention(a, block.attn, r_att, ledger)
    return r_h + _layer_norm(h, block.norm1, r_a, ledger)


def test_equals_the_papers_rules_and_conserves(vit: Any, pictures: np.ndarray) -> None:
    e = _explain(vit, pictures)
    for i, image in enumerate(pictures):
        with torch.no_grad():
            expected, score, ledger = _paper_lrp(vit, image, 1)
        # conservation: the pixels' relevance and every constant's share make the logit
        assert expected.sum() + sum(ledger) == pytest.approx(score, rel=1e-9, abs=1e-9)
        assert float(e.extras["relevance_start"][i]) == pytest.approx(score, rel=1e-5)
        assert float(e.logits[i, 1]) == pytest.approx(score, rel=1e-5)
        atol = 1e-4 * np.abs(expected).max()
        np.testing.assert_allclose(_raw(e)[i], expected, rtol=1e-3, atol=atol)
        total = e.extras["attributions"][i].sum()
        assert total == pytest.approx(expected.sum(), rel=1e-3, abs=1e-5)
    assert e.params["epsilon"] == 0.0 and e.params["reduce"] == "sum"


def test_epsilon_stabilises_linear_layers(vit: Any, pictures: np.ndarray) -> None:
    plain = _raw(_explain(vit, pictures[:1]))
    tiny = _raw(_explain(vit, pictures[:1], epsilon=1e-9))
    large = _raw(_explain(vit, pictures[:1], epsilon=10.0))
    np.testing.assert_allclose(tiny, plain, rtol=1e-3, atol=1e-4 * np.abs(plain).max())
    # a large epsilon absorbs relevance at every linear layer: less reaches the pixels
    assert np.abs(large).sum() < 0.5 * np.abs(plain).sum()
    with pytest.raises(InvalidInput, match="epsilon"):
        seewhy.explain(vit, pictures[:1], "attnlrp", preprocess=AS_IS, epsilon=-1.0)


# -- harmless, and refused where it does not apply ----------------------------------------


def _state(model: Any) -> tuple[Any, ...]:
    hooks = [
        (len(m._forward_hooks), len(m._forward_pre_hooks), len(m._backward_hooks), m.training)
        for m in model.modules()
    ]
    return (
        hooks,
        {k: v.clone() for k, v in model.state_dict().items()},
        [p.grad for p in model.parameters()],
        [type(m) for m in model.modules()],
        [type(m).forward for m in model.modules()],
    )


def _same(before: tuple[Any, ...], after: tuple[Any, ...]) -> None:
    assert before[0] == after[0]
    assert all(torch.equal(before[1][k], after[1][k]) for k in before[1])
    assert all(g is None for g in after[2])
    assert before[3] == after[3] and before[4] == after[4]


def test_leaves_the_model_as_it_was_also_after_an_error(vit: Any, pictures: np.ndarray) -> None:
    before = _state(vit)
    _explain(vit, pictures[:1])
    _same(before, _state(vit))

    def broken(module: Any, args: Any, output: Any) -> None:
        raise RuntimeError("boom in the MLP")

    handle = vit.blocks[1].mlp.fc2.register_forward_hook(broken)
    try:
        with_hook = _state(vit)
        with pytest.raises(Exception, match="boom"):
            _explain(vit, pictures[:1])
        _same(with_hook, _state(vit))
    finally:
        handle.remove()
    _same(before, _state(vit))


@pytest.mark.parametrize("family", ["torchvision-vit", "hf-vit"])
def test_torchvision_and_hugging_face_vits_are_served_and_left_as_they_were(
    family: str, pictures: np.ndarray
) -> None:
    model, _ = tiny_transformer(family, seed=2)
    before = _state(model)
    e = _explain(model, pictures)
    _same(before, _state(model))
    with torch.no_grad():
        logits = model(torch.from_numpy(pictures).permute(0, 3, 1, 2))
        logits = getattr(logits, "logits", logits)
    np.testing.assert_allclose(e.extras["relevance_start"], logits[:, 1].numpy(), rtol=1e-5)
    assert np.isfinite(e.maps).all() and np.abs(e.maps).sum() > 0


def _timm_copy_of(torchvision_vit: Any) -> Any:
    """timm's ViT with the torchvision ViT's weights, name by name: the same function."""
    tv = torchvision_vit.state_dict()
    names = {
        "cls_token": "class_token",
        "pos_embed": "encoder.pos_embedding",
        "patch_embed.proj": "conv_proj",
        "norm": "encoder.ln",
        "head": "heads.head",
    }
    for i in range(2):
        block, layer = f"blocks.{i}.", f"encoder.layers.encoder_layer_{i}."
        names.update(
            {
                block + "norm1": layer + "ln_1",
                block + "norm2": layer + "ln_2",
                block + "attn.proj": layer + "self_attention.out_proj",
                block + "mlp.fc1": layer + "mlp.0",
                block + "mlp.fc2": layer + "mlp.3",
            }
        )
        names[block + "attn.qkv.weight"] = layer + "self_attention.in_proj_weight"
        names[block + "attn.qkv.bias"] = layer + "self_attention.in_proj_bias"
    vit = timm_vit(32, mlp_ratio=2.0)
    state = {}
    for key in vit.state_dict():
        stem, _, leaf = key.rpartition(".")
        state[key] = tv[names[key]] if key in names else tv[f"{names[stem]}.{leaf}"]
    vit.load_state_dict(state)
    return vit


def test_a_torchvision_vit_equals_the_same_weights_in_timm(pictures: np.ndarray) -> None:
    """``nn.MultiheadAttention`` hides q, k, v in one kernel: its output is recomputed with
    AttnLRP's gradients; the map must be the timm ViT's with the same weights."""
    model, _ = tiny_transformer("torchvision-vit", seed=2)
    ours, same = _explain(model, pictures), _explain(_timm_copy_of(model), pictures)
    np.testing.assert_allclose(ours.logits, same.logits, rtol=1e-4, atol=1e-5)
    expected = _raw(same)
    np.testing.assert_allclose(_raw(ours), expected, rtol=1e-3, atol=1e-4 * np.abs(expected).max())


def test_refuses_a_cnn_naming_lrp(pictures: np.ndarray) -> None:
    with pytest.raises(UnsupportedModel, match=r"attnlrp: .*no self-attention.*use lrp") as info:
        seewhy.explain(tiny_cnn(), pictures[:1], "attnlrp", preprocess=AS_IS)
    assert "\n" not in str(info.value)


def test_refuses_attention_computed_outside_the_layers_it_hooks(pictures: np.ndarray) -> None:
    """torchvision's Swin runs q, k, v through a function on its weights, not its modules:
    the rules could not reach them, and a plain-gradient map would pass for AttnLRP."""
    model, size = tiny_transformer("torchvision-swin")
    x = np.resize(pictures[:1], (1, *size, 3)).astype(np.float32)
    with pytest.raises(UnsupportedModel, match=r"attnlrp: .* computed its q/k/o without") as info:
        seewhy.explain(model, x, "attnlrp", preprocess=_as_is(size))
    assert "\n" not in str(info.value)


def test_the_relevance_capability_refuses_other_transformer_rules(vit: Any, pictures: Any) -> None:
    from seewhy.backends import backend_for
    from seewhy.backends.relevance import Rule, RuleSet

    rules = RuleSet(
        "odd", convolution=Rule("epsilon"), linear=Rule("gamma"), kinds={"softmax": Rule("pass")}
    )
    backend: Any = backend_for(vit)
    with pytest.raises(UnsupportedModel, match="AttnLRP's"):
        backend.relevance(pictures[:1], targets=None, rules=rules)


def test_a_prompt_on_an_open_clip_tower_holds_the_embeddings_norm_constant(
    pictures: np.ndarray,
) -> None:
    """The identity rule on the score's L2 normalisation: a Prompt's relevance is that of
    the linear score scale * <e, t> / |e| with |e| a constant, which (relevance being
    linear in where it starts) is the sum of each embedding unit's relevance weighted."""
    import warnings

    from models import open_clip_tiny
    from seewhy.targets import Prompt

    open_clip = pytest.importorskip("open_clip")
    clip, x = open_clip_tiny("vit"), pictures[:1]
    tokens = open_clip.tokenizer.SimpleTokenizer(context_length=16)(["a red car"])
    with torch.no_grad():
        text = F.normalize(clip.encode_text(tokens), dim=-1)[0]
        e = clip.visual(torch.from_numpy(x).permute(0, 3, 1, 2))[0]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the adapter's note on what it guessed
        ours = seewhy.explain(clip, x, "attnlrp", target=Prompt("a red car"), preprocess=AS_IS)
    units = len(e)
    each = seewhy.explain(
        clip.visual, np.repeat(x, units, 0), "attnlrp", preprocess=AS_IS, target=list(range(units))
    )
    weights = (clip.logit_scale.exp() * text / e.norm()).detach().numpy()
    expected = np.tensordot(weights, _raw(each), axes=1)
    atol = 1e-4 * np.abs(expected).max()
    np.testing.assert_allclose(_raw(ours)[0], expected, rtol=1e-3, atol=atol)
    assert abs(expected.sum()) > 1e-3  # relevance reaches the pixels
