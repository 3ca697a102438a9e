"""Vision transformers: token and channels-last layouts, the transformer default layer.

Grad-CAM on each family (timm, torchvision, Hugging Face) is checked against
pytorch-grad-cam given the reshape_transform a user would write by hand, at
the same layer; the model is checked untouched (attention settings, hooks,
training flags).
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pytest

import seewhy
from models import hf_segformer, output_picked, tiny_transformer
from seewhy.backends.layouts import Layout, guess_layout, parse_layout, to_maps, token_grid

torch = pytest.importorskip("torch")
pytest.importorskip("timm")
grad_cam = pytest.importorskip("pytorch_grad_cam")


# -- layouts, framework-free ----------------------------------------------------------


def test_guess_layout_reads_grids_tokens_and_channels_last() -> None:
    assert guess_layout((64, 8, 8), (32, 32)) == Layout("nchw")
    assert guess_layout((7, 7, 768), (224, 224)) == Layout("nhwc")  # Swin's last stage
    assert guess_layout((4, 700, 700), (32, 32)) is None  # no grid either way
    assert guess_layout((197, 384), (224, 224), [(14, 14)]) == Layout("tokens", 1, (14, 14))
    assert guess_layout((261, 384), (224, 224), [(16, 16)]) == Layout("tokens", 5, (16, 16))
    assert guess_layout((16, 32), (32, 32)) == Layout("tokens", 0, (4, 4))  # Swin stage
    assert guess_layout((32, 1), (32, 32)) is None  # a pooled (C, 1) vector
    assert token_grid(1 + 4 * 6, (32, 48)) == (1, (4, 6))  # non-square input


def test_to_maps_drops_leading_tokens_row_by_row() -> None:
    tokens = np.arange(2 * 7 * 3, dtype=np.float32).reshape(2, 7, 3)  # 1 + 2x3 tokens
    maps = to_maps(tokens, Layout("tokens", 1, (2, 3)))
    assert maps.shape == (2, 3, 2, 3)
    np.testing.assert_array_equal(maps[1, 2], tokens[1, 1:, 2].reshape(2, 3))
    with pytest.raises(seewhy.SeewhyError, match="tokens:K:HxW"):
        to_maps(tokens, Layout("tokens", 2, (2, 3)))


@pytest.mark.parametrize("bad", ["nhcw", "tokens:x", "tokens:1:4by4", 3, "tokens:-2"])
def test_parse_layout_refuses_in_one_line(bad: object) -> None:
    with pytest.raises(seewhy.SeewhyError, match=r"^layout: expected .*got") as info:
        parse_layout(bad)
    assert "\n" not in str(info.value)


# -- families against pytorch-grad-cam ------------------------------------------------


def _logits_only(model: torch.nn.Module) -> torch.nn.Module:
    return output_picked(model, lambda out: out.logits if hasattr(out, "logits") else out)


def _reshape(layout: Layout | None):  # type: ignore[no-untyped-def]
    """The reshape_transform a pytorch-grad-cam user writes for this layout (a callable
    layout is its own)."""

    def reshape(t: torch.Tensor) -> torch.Tensor:
        if layout is None:
            return t
        if callable(layout):
            return layout(t)
        if layout.kind == "nhwc":
            return t.permute(0, 3, 1, 2)
        h, w = layout.grid  # type: ignore[misc]
        return t[:, layout.prefix :, :].reshape(t.shape[0], h, w, t.shape[2]).permute(0, 3, 1, 2)

    return reshape


def _reference_gradcam(model, layer, layout, x, targets, method="GradCAM"):  # type: ignore[no-untyped-def]
    """pytorch-grad-cam's map (``method``: its class name) at the layer's resolution,
    before its ReLU; test_maxvit.py shares it."""
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    wrapped = _logits_only(model)
    module = dict(model.named_modules())[layer]
    reference = getattr(grad_cam, method)
    cam = reference(wrapped, target_layers=[module], reshape_transform=_reshape(layout))
    tensor = torch.from_numpy(x).permute(0, 3, 1, 2).contiguous()
    chosen = [ClassifierOutputTarget(int(t)) for t in targets]
    try:
        outputs = cam.activations_and_grads(tensor)
        sum(target(out) for target, out in zip(chosen, outputs, strict=True)).backward()
        acts = cam.activations_and_grads.activations[0].numpy()
        grads = cam.activations_and_grads.gradients[0].numpy()
        return cam.get_cam_image(tensor, module, chosen, acts, grads, False)
    finally:
        cam.activations_and_grads.release()
        wrapped.zero_grad(set_to_none=True)


FAMILIES = [
    "timm-vit",
    "timm-deit",
    "timm-dinov2",
    "timm-eva",
    "timm-swin",
    "timm-convnext",
    "timm-vit-wide",
    "torchvision-vit",
    "torchvision-swin",
    "hf-vit",
    "hf-deit",
    "hf-dinov2",
    "hf-swin",
]


def _state(model: torch.nn.Module) -> list[object]:
    """Everything a pass could leave behind: flags, attention settings, hooks, .grad."""
    out: list[object] = []
    for m in model.modules():
        out.append(
            (
                m.training,
                getattr(m, "fused_attn", None),
                len(m._forward_hooks),
                len(m._forward_pre_hooks),
                len(m._backward_hooks),
            )
        )
    out.append(getattr(getattr(model, "config", None), "_attn_implementation", None))
    out.extend(p.grad is None for p in model.parameters())
    return out


@pytest.mark.parametrize("family", FAMILIES)
def test_gradcam_equals_pytorch_grad_cam_at_the_default_layer(family: str) -> None:
    model, size = tiny_transformer(family)
    if family == "timm-convnext":
        model.train()  # left as the user had it
    pre = seewhy.Preprocess(size=size)
    infos, default = seewhy.layers(model, preprocess=pre)
    info = next(i for i in infos if i.name == default)
    x = np.random.default_rng(0).random((2, *size, 3), dtype=np.float32)
    before = _state(model)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", seewhy.ConstantMapWarning)  # random heads: maps < 0
        e = seewhy.explain(model, x, "gradcam", preprocess=pre)
    assert _state(model) == before
    assert e.layer == default
    assert np.abs(e.layer_maps).max() > 0  # the default gets gradients (not the last block)
    model.eval()
    ref = _reference_gradcam(model, default, info.layout, x, e.targets)
    ours = e.layer_maps
    assert ours.shape == ref.shape
    r = np.corrcoef(ours.ravel(), ref.ravel())[0, 1]
    assert r >= 0.999, (family, default, r)


def test_attention_heads_inside_attention_are_not_listed_as_maps() -> None:
    model, size = tiny_transformer("timm-vit")
    names = [i.name for i in seewhy.layers(model, preprocess=seewhy.Preprocess(size=size))[0]]
    assert "blocks.1.attn.qkv" in names  # tokens (N, T, 3C)
    assert "blocks.1.attn.q_norm" not in names  # (N, heads, T, d), read as CHW before


def test_transformer_defaults_are_the_last_attention_input() -> None:
    expected = {
        "timm-vit": "blocks.1.norm1",
        "timm-dinov2": "blocks.1.norm1",
        "torchvision-vit": "encoder.layers.encoder_layer_1.ln_1",
        "hf-vit": "vit.layers.1.layernorm_before",
    }
    for family, name in expected.items():
        model, size = tiny_transformer(family)
        infos, default = seewhy.layers(model, preprocess=seewhy.Preprocess(size=size))
        assert default == name, family
        assert next(i for i in infos if i.name == name).layout.kind == "tokens"  # type: ignore[union-attr]


def test_last_block_output_gets_no_gradient_which_is_why_the_default_differs() -> None:
    model, size = tiny_transformer("timm-vit")
    pre = seewhy.Preprocess(size=size)
    x = np.random.default_rng(1).random((1, *size, 3), dtype=np.float32)
    with pytest.warns(seewhy.ConstantMapWarning):
        last = seewhy.explain(model, x, "gradcam", layer="blocks.1", preprocess=pre)
    assert np.abs(last.layer_maps).max() == 0


def test_layout_override_by_name_and_callable() -> None:
    model, size = tiny_transformer("timm-vit")
    pre = seewhy.Preprocess(size=size)
    x = np.random.default_rng(2).random((2, *size, 3), dtype=np.float32)
    guessed = seewhy.explain(model, x, "gradcam", preprocess=pre)
    named = seewhy.explain(model, x, "gradcam", preprocess=pre, layout="tokens:1")
    np.testing.assert_allclose(named.layer_maps, guessed.layer_maps, rtol=1e-6)
    by_hand = seewhy.explain(
        model,
        x,
        "gradcam",
        preprocess=pre,
        layout=lambda a: a[:, 1:].reshape(len(a), 4, 4, -1).transpose(0, 3, 1, 2),
    )
    np.testing.assert_allclose(by_hand.layer_maps, guessed.layer_maps, rtol=1e-6)
    with pytest.raises(seewhy.SeewhyError, match=r"layout: 'blocks\.1\.norm1' has 17 tokens"):
        seewhy.explain(model, x, "gradcam", preprocess=pre, layout="tokens:2:4x4")


def test_ablation_cam_and_scorecam_run_on_token_layers() -> None:
    model, size = tiny_transformer("timm-deit")
    pre = seewhy.Preprocess(size=size)
    x = np.random.default_rng(3).random((1, *size, 3), dtype=np.float32)
    before = _state(model)
    ablation = seewhy.explain(model, x, "ablationcam", preprocess=pre)
    assert ablation.layer_maps.shape == (1, 4, 4)
    assert np.isfinite(ablation.layer_maps).all() and np.ptp(ablation.layer_maps) > 0
    # ablating every channel of the patch tokens (not the class tokens) changes the score
    backend = seewhy.backends.backend_for(model)
    logits = backend.predict_with_layer_edit(
        x, layer=ablation.layer or "", scales=np.zeros((1, 32), np.float32)
    )
    plain = backend.predict(x)
    assert not np.allclose(logits[:, 0], plain)
    assert _state(model) == before


# -- the command line ------------------------------------------------------------------


@pytest.fixture(scope="module")
def vit_file(tmp_path_factory: pytest.TempPathFactory) -> str:
    model, _ = tiny_transformer("timm-vit")
    path = tmp_path_factory.mktemp("vit") / "vit.pt"
    torch.save(model, path)
    return str(path)


def test_cli_layers_shows_each_layout_and_the_transformer_default(
    vit_file: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from seewhy.cli import main

    assert main(["layers", "--model", vit_file, "--trust-model", "--size", "32,32"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert any(line.startswith("* blocks.1.norm1") and "tokens 1+4x4" in line for line in lines)
    assert not any("q_norm" in line for line in lines)


def test_cli_bad_layer_layout_is_one_line_without_traceback(
    vit_file: str, tmp_path: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    from seewhy.cli import main

    args = ["explain", "sample:chelsea", "--model", vit_file, "--trust-model", "--size", "32,32"]
    code = main([*args, "--layer-layout", "tokens:x", "--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert code != 0
    assert "layout: expected" in err and "Traceback" not in err
    assert main([*args, "--layer-layout", "tokens:1", "--out", str(tmp_path)]) == 0


def test_segformer_default_is_the_last_feature_map_before_its_classifier() -> None:
    """issue 24, point 7: ``decode_head`` *is* the logits (its map would be the class-logit map)."""
    pytest.importorskip("transformers")
    from seewhy.backends import backend_for

    model = hf_segformer(3)
    x = np.random.default_rng(0).normal(size=(1, 64, 64, 3)).astype(np.float32)
    backend = backend_for(model)
    names = [info.name for info in backend.layers(x)]
    chosen = backend.resolve_layer(None, x)
    assert {"decode_head", "decode_head.classifier"} <= set(names)  # still listed, choosable
    assert chosen not in ("decode_head", "decode_head.classifier")
    assert names.index(chosen) == names.index("decode_head.classifier") - 1
    logits = model(torch.from_numpy(x).permute(0, 3, 1, 2)).logits
    seen: list[Any] = []
    layer = dict(model.named_modules())[chosen]
    handle = layer.register_forward_hook(lambda m, a, out: seen.append(out))
    try:
        model(torch.from_numpy(x).permute(0, 3, 1, 2))
    finally:
        handle.remove()
    assert seen[0].shape[1] == model.config.decoder_hidden_size != logits.shape[1]
