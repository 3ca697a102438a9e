"""Attention rollout and generic attention against slow versions written from the papers.

The references read explicit attention matrices (timm with ``fused_attn``
off, Hugging Face ``eager`` attention with ``output_attentions``, a plain
re-implementation of torchvision's attention) and take d(score)/d(A) with an
ordinary backward pass, then loop over blocks and images in Python. seewhy
must give the same maps whether the model computes attention with a fused
kernel or not, without changing any attention setting of the model.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest

import seewhy
from attention_reference import CLASS_TOKEN, gae_reference, rollout_reference
from models import hf_vit, timm_vit, tiny_transformer

torch = pytest.importorskip("torch")
pytest.importorskip("timm")


# -- explicit attention matrices and their gradients -------------------------------------


def _score(logits: torch.Tensor, targets: np.ndarray) -> torch.Tensor:
    return logits[torch.arange(len(targets)), torch.as_tensor(targets)].sum()


def timm_explicit(model: torch.nn.Module, x: np.ndarray, targets: np.ndarray):  # type: ignore[no-untyped-def]
    """A and dS/dA from a copy of a timm model with explicit attention (its attn_drop output)."""
    model = copy.deepcopy(model)
    store: list[torch.Tensor] = []
    for m in model.modules():
        if hasattr(m, "fused_attn"):
            m.fused_attn = False
            m.attn_drop.register_forward_hook(lambda mod, a, out: store.append(out))
    logits = model(torch.from_numpy(x).permute(0, 3, 1, 2))
    grads = torch.autograd.grad(_score(logits, targets), store)
    return [a.detach().numpy() for a in store], [g.numpy() for g in grads]


def hf_explicit(model: torch.nn.Module, x: np.ndarray, targets: np.ndarray):  # type: ignore[no-untyped-def]
    """A and dS/dA from Hugging Face's own eager attention (``output_attentions``)."""
    out = model(torch.from_numpy(x).permute(0, 3, 1, 2), output_attentions=True)
    grads = torch.autograd.grad(_score(out.logits, targets), list(out.attentions))
    return [a.detach().numpy() for a in out.attentions], [g.numpy() for g in grads]


class _ExplicitMHA(torch.nn.Module):
    """torchvision's self-attention written out: q, k, v, softmax, A kept for the reference."""

    def __init__(self, mha: torch.nn.MultiheadAttention, store: list[torch.Tensor]) -> None:
        super().__init__()
        self.mha, self.store = mha, store

    def forward(self, q, k, v, need_weights=False):  # type: ignore[no-untyped-def]
        b, t, c = q.shape
        heads = self.mha.num_heads
        qkv = q @ self.mha.in_proj_weight.T + self.mha.in_proj_bias
        qq, kk, vv = (z.reshape(b, t, heads, -1).transpose(1, 2) for z in qkv.chunk(3, -1))
        a = ((qq @ kk.transpose(-2, -1)) / (c // heads) ** 0.5).softmax(-1)
        self.store.append(a)
        o = (a @ vv).transpose(1, 2).reshape(b, t, c)
        return self.mha.out_proj(o), None


def torchvision_explicit(model: torch.nn.Module, x: np.ndarray, targets: np.ndarray):  # type: ignore[no-untyped-def]
    model = copy.deepcopy(model)
    store: list[torch.Tensor] = []
    for layer in model.encoder.layers:
        layer.self_attention = _ExplicitMHA(layer.self_attention, store)
    logits = model(torch.from_numpy(x).permute(0, 3, 1, 2))
    grads = torch.autograd.grad(_score(logits, targets), store)
    return [a.detach().numpy() for a in store], [g.numpy() for g in grads]


# -- the checks ---------------------------------------------------------------------------


def _settings(model: torch.nn.Module) -> list[object]:
    out: list[object] = [getattr(getattr(model, "config", None), "_attn_implementation", None)]
    for m in model.modules():
        out.append(
            (
                m.training,
                getattr(m, "fused_attn", None),
                len(m._forward_hooks),
                len(m._forward_pre_hooks),
                len(m._forward_pre_hooks_with_kwargs),
            )
        )
    out.extend(p.grad is None for p in model.parameters())
    return out


def _images(size: tuple[int, int], n: int = 3, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, *size, 3)).astype(np.float32)


def _check(model, size, explicit, prefix, fused_flags=(None,), readout=CLASS_TOKEN, patches=0.0):  # type: ignore[no-untyped-def]
    x = _images(size)
    pre = seewhy.Preprocess(size=size, resize=None, mean=(0.0,) * 3, std=(1.0,) * 3, scale=1.0)
    targets = np.array([0, 3, 1])
    attentions, grads = explicit(model, x, targets)
    want_rollout = rollout_reference(attentions, prefix, readout=readout, patches=patches)
    want_gae = gae_reference(attentions, grads, prefix, readout=readout, patches=patches)
    for fused in fused_flags:
        if fused is not None:
            for m in model.modules():
                if hasattr(m, "fused_attn"):
                    m.fused_attn = fused
        before = _settings(model)
        rollout = seewhy.explain(model, x, "attention-rollout", preprocess=pre)
        gae = seewhy.explain(model, x, "gae", preprocess=pre, target=list(targets))
        assert _settings(model) == before
        h, w = rollout.layer_maps.shape[1:]
        np.testing.assert_allclose(
            rollout.layer_maps, want_rollout.reshape(-1, h, w), rtol=2e-4, atol=1e-6
        )
        np.testing.assert_allclose(gae.layer_maps, want_gae.reshape(-1, h, w), rtol=2e-3, atol=1e-6)
        assert np.ptp(gae.layer_maps) > 0


@pytest.mark.parametrize("family,prefix", [("timm-vit", 1), ("timm-deit", 2), ("timm-dinov2", 5)])
def test_timm_equals_the_papers_with_fused_attention_on_and_off(family: str, prefix: int) -> None:
    model, size = tiny_transformer(family)
    # the distilled DeiT averages the heads of its class and distillation tokens
    readout = ((0, 0.5), (1, 0.5)) if family == "timm-deit" else CLASS_TOKEN
    _check(model, size, timm_explicit, prefix, fused_flags=(True, False), readout=readout)


@pytest.mark.parametrize("class_token", [True, False])
def test_a_head_that_averages_the_patches_is_read_at_their_mean(class_token: bool) -> None:
    """timm ``global_pool="avg"``: the class token (if any) never reaches the head, so its
    row would explain nothing; the mean of the patch tokens' rows is what the head reads."""
    model = timm_vit(32, seed=2, global_pool="avg", class_token=class_token, fc_norm=False)
    _check(model, (32, 32), timm_explicit, int(class_token), readout=(), patches=1.0)


def test_hugging_face_dinov2_reads_its_class_token_and_patch_mean_half_each() -> None:
    model, size = tiny_transformer("hf-dinov2")
    reference = copy.deepcopy(model)
    reference.config._attn_implementation = "eager"
    for module in reference.modules():
        if hasattr(module, "config"):
            module.config._attn_implementation = "eager"
    _check(
        model,
        size,
        lambda m, x, t: hf_explicit(reference, x, t),
        1,
        readout=((0, 0.5),),
        patches=0.5,
    )


def test_a_pooling_head_attention_methods_cannot_follow_is_refused_in_one_line() -> None:
    model = timm_vit(32, depth=1, global_pool="map")
    with pytest.raises(seewhy.SeewhyError, match=r"global_pool='map'.*use gradcam"):
        seewhy.explain(
            model, _images((32, 32), n=1), "rollout", preprocess=seewhy.Preprocess(size=(32, 32))
        )


@pytest.mark.parametrize("attention", ["sdpa", "eager"])
def test_hugging_face_equals_its_own_eager_attention(attention: str) -> None:
    model = hf_vit(attention)
    reference = hf_vit("eager")  # same seed: same weights, explicit attention
    _check(model, (32, 32), lambda m, x, t: hf_explicit(reference, x, t), 1)


def test_torchvision_equals_attention_written_out() -> None:
    model, size = tiny_transformer("torchvision-vit")
    _check(model, size, torchvision_explicit, 1)


def test_rollout_options_follow_the_paper() -> None:
    model, size = tiny_transformer("timm-vit", seed=3)
    x = _images(size, n=2, seed=4)
    pre = seewhy.Preprocess(size=size, resize=None, mean=(0.0,) * 3, std=(1.0,) * 3, scale=1.0)
    attentions, _ = timm_explicit(model, x, np.array([0, 0]))
    for options in (
        {"head_fusion": "max", "discard_ratio": 0.5},
        {"head_fusion": "min", "start_block": 1},
    ):
        e = seewhy.explain(model, x, "attention-rollout", preprocess=pre, **options)
        want = rollout_reference(
            attentions,
            1,
            options["head_fusion"],
            options.get("discard_ratio", 0.0),
            options.get("start_block", 0),
        )
        np.testing.assert_allclose(e.layer_maps.reshape(2, -1), want, rtol=2e-4, atol=1e-6)
        assert e.params["head_fusion"] == options["head_fusion"]


def test_generic_attention_is_class_specific_and_rollout_is_not() -> None:
    model, size = tiny_transformer("timm-vit", seed=5)
    x = _images(size, n=1)
    pre = seewhy.Preprocess(size=size)
    a, b = (seewhy.explain(model, x, "gae", preprocess=pre, target=t).layer_maps for t in (0, 1))
    assert not np.allclose(a, b)
    r0, r1 = (
        seewhy.explain(model, x, "rollout", preprocess=pre, target=t).layer_maps for t in (0, 1)
    )
    np.testing.assert_array_equal(r0, r1)


def test_the_heads_are_fused_in_torch_and_only_one_matrix_per_block_reaches_numpy(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from seewhy.backends import backend_for
    from seewhy.backends.torch import attention as torch_attention

    model, size = tiny_transformer("timm-vit")
    x = _images(size, n=2)
    seen: list[tuple[object, object]] = []

    def fuse(a, g):  # type: ignore[no-untyped-def]
        seen.append((a, g))
        return a.mean(1) if g is None else (g * a).mean(1)

    backend = backend_for(model)
    for gradients in (False, True):
        seen.clear()
        cap = backend.attention(x, targets=None, gradients=gradients, fuse=fuse)
        n, heads, t, _ = seen[0][0].shape  # type: ignore[attr-defined]
        assert n == 2 and heads > 1 and len(seen) == len(cap.fused) > 1
        for a, g in seen:
            assert isinstance(a, torch.Tensor) and (g is None) != gradients
            assert g is None or (isinstance(g, torch.Tensor) and g.shape == a.shape)
        assert all(f.shape == (n, t, t) and f.dtype == np.float32 for f in cap.fused)
        with monkeypatch.context() as m:  # one image at a time, as for a big model on a CPU
            m.setattr(torch_attention, "_CHUNK_FLOATS", 1)
            seen.clear()
            chunked = backend.attention(x, targets=None, gradients=gradients, fuse=fuse)
        assert len(seen) == n * len(cap.fused)
        for whole, parts in zip(cap.fused, chunked.fused, strict=True):
            np.testing.assert_allclose(parts, whole, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize(
    "family,match",
    [
        ("timm-swin", "relative position bias|no class token"),
        ("timm-eva", "rotary"),
        ("timm-convnext", "no self-attention layer"),
    ],
)
def test_models_attention_methods_cannot_read_are_refused_in_one_line(
    family: str, match: str
) -> None:
    model, size = tiny_transformer(family)
    before = _settings(model)
    with pytest.raises(seewhy.SeewhyError, match=match) as info:
        seewhy.explain(model, _images(size, 1), "gae", preprocess=seewhy.Preprocess(size=size))
    assert "\n" not in str(info.value)
    assert _settings(model) == before


@pytest.mark.parametrize(
    "settings,match",
    [
        ({"head_fusion": "median"}, "head_fusion: expected one of mean, max, min"),
        ({"discard_ratio": 1.0}, r"discard_ratio: expected a number in \[0, 1\)"),
        ({"start_block": 9}, "start_block: expected an integer below the model's 2 blocks"),
    ],
)
def test_bad_rollout_settings_say_what_was_expected(settings: dict, match: str) -> None:
    model, size = tiny_transformer("timm-vit")
    with pytest.raises(seewhy.SeewhyError, match=match):
        seewhy.explain(
            model, _images(size, 1), "rollout", preprocess=seewhy.Preprocess(size=size), **settings
        )


# -- a tiny ViT that has learnt something points at the object -----------------------------


@pytest.fixture(scope="module")
def trained_vit():  # type: ignore[no-untyped-def]
    from seewhy.synthetic.vit import train_torch_vit

    train = seewhy.synthetic.make_stripes(1200, seed=0)
    return train_torch_vit(train), seewhy.synthetic.make_stripes(100, seed=1)


def test_tiny_trained_vit_attention_points_at_the_object(trained_vit) -> None:  # type: ignore[no-untyped-def]
    model, test = trained_vit
    assert seewhy.synthetic.accuracy(model, test) >= 0.95
    fused = [m.fused_attn for m in model.modules() if hasattr(m, "fused_attn")]
    hits = {}
    for method in ("attention-rollout", "gae", "gradcam"):
        e = seewhy.explain(model, test.images, method, target=list(test.labels))
        hits[method] = seewhy.synthetic.peak_inside(e.maps, test.boxes, margin=4).mean()
    assert [m.fused_attn for m in model.modules() if hasattr(m, "fused_attn")] == fused
    assert hits["attention-rollout"] >= 0.9, hits
    assert hits["gae"] >= 0.9, hits
    assert hits["gradcam"] >= 0.5, hits
