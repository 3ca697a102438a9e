"""torchvision MaxViT: NCHW stages around window/grid attention, checked against pytorch-grad-cam.

MaxViT (Tu et al., 2022) alternates MBConv blocks with window and grid
attention that cut the (N, C, H, W) map into (N, windows, window tokens, C)
inside a ``PartitionAttentionLayer`` and stitch it back. Only what comes out
between those layers is a map; what is inside is listed nowhere. Its head
pools every position, so the last stage is the default layer; its attention
adds a relative position bias and has no class token, so the attention
methods refuse it. ``maxvit_t`` takes only the 224 px it was built for (each
attention layer fixes its grid), so the tests run it at 224 and also build a
small MaxViT at 32 px.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pytest

import seewhy
from models import timm_maxvit, torchvision_maxvit, torchvision_maxvit_t

torch = pytest.importorskip("torch")
pytest.importorskip("torchvision")
pytest.importorskip("pytorch_grad_cam")

from test_transformers import _reference_gradcam, _state  # noqa: E402  (after the skips)


@pytest.fixture(scope="module")
def maxvit_t() -> Any:
    return torchvision_maxvit_t()


@pytest.fixture(scope="module")
def images() -> np.ndarray:
    return np.random.default_rng(0).random((1, 224, 224, 3), dtype=np.float32)


def _outputs(model: Any, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """Every module's output for ``x``, by name: what each listed layer really hands out."""
    seen: dict[str, torch.Tensor] = {}
    handles = [
        module.register_forward_hook(lambda m, a, out, name=name: seen.setdefault(name, out))
        for name, module in model.named_modules()
        if name
    ]
    try:
        with torch.no_grad():
            model(x)
    finally:
        for handle in handles:
            handle.remove()
    return seen


def test_layers_lists_the_nchw_maps_and_none_of_the_windowed_internals(maxvit_t: Any) -> None:
    infos, default = seewhy.layers(maxvit_t)
    real = _outputs(maxvit_t, torch.zeros(1, 3, 224, 224))
    windowed = [n for n, m in maxvit_t.named_modules() if type(m).__name__.endswith("Partition")]
    assert windowed  # what the trace recognises a window/grid attention layer by
    listed = {i.name for i in infos}
    for info in infos:  # each listed layer is a real NCHW map: C x (224 / stride) squared
        assert info.layout is None, (info.name, info.layout)
        out = real[info.name]
        assert tuple(out.shape[1:]) == info.shape
        _, h, w = info.shape
        assert h == w and 224 // h in (1, 2, 4, 8, 16, 32, 224), info.name
    inner = [n for n in real if ".attn_layer" in n or ".mlp_layer" in n or "partition" in n]
    assert inner and not listed & set(inner)  # (N, windows, tokens, C): no layout reads them
    stitched = [n for n, m in maxvit_t.named_modules() if type(m).__name__.startswith("Partition")]
    assert len(stitched) == 2 * 11  # window + grid attention in each of its 2+2+5+2 layers
    assert set(stitched) <= listed  # their own outputs are maps again
    assert default == "blocks.3"  # the head pools every position: the last stage gets gradients
    assert next(i for i in infos if i.name == default).shape == (512, 7, 7)


@pytest.fixture(scope="module")
def small() -> Any:
    return torchvision_maxvit()


def _check_against_pytorch_grad_cam(
    model: Any, x: np.ndarray, method: str, reference: str, layer: str | None, default: str
) -> None:
    pre = seewhy.Preprocess(size=x.shape[1:3])
    before = _state(model)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", seewhy.ConstantMapWarning)  # random head: maps < 0
        e = seewhy.explain(model, x, method, layer=layer, preprocess=pre)
    assert _state(model) == before
    assert e.layer == (layer or default)
    assert np.ptp(e.layer_maps, axis=(1, 2)).min() > 0  # a real map for each image
    ref = _reference_gradcam(model, e.layer, None, x, e.targets, method=reference)
    assert e.layer_maps.shape == ref.shape
    r = np.corrcoef(e.layer_maps.ravel(), ref.ravel())[0, 1]
    assert r >= 0.999, (method, e.layer, r)


def test_gradcam_on_maxvit_t_equals_pytorch_grad_cam_at_the_default(
    maxvit_t: Any, images: np.ndarray
) -> None:
    _check_against_pytorch_grad_cam(maxvit_t, images, "gradcam", "GradCAM", None, "blocks.3")


# LayerCAM rather than Grad-CAM++: random heads give gradients near 1e-5, where
# pytorch-grad-cam's eps (1e-6 in the Grad-CAM++ denominator) changes its map.
@pytest.mark.parametrize(
    ("method", "reference", "layer"),
    [
        ("gradcam", "GradCAM", None),  # the default layer, the last stage
        ("layercam", "LayerCAM", None),
        ("gradcam", "GradCAM", "blocks.1.layers.0.layers.window_attention"),
        ("layercam", "LayerCAM", "blocks.0.layers.0.layers.MBconv"),
    ],
)
def test_cam_equals_pytorch_grad_cam(
    small: Any, method: str, reference: str, layer: str | None
) -> None:
    x = np.random.default_rng(2).random((2, 32, 32, 3), dtype=np.float32)
    _check_against_pytorch_grad_cam(small, x, method, reference, layer, "blocks.1")


def test_a_training_model_is_left_as_it_was_after_success_and_after_a_refusal() -> None:
    model = torchvision_maxvit().train()  # left as the user had it (BatchNorm, dropout flags)
    pre = seewhy.Preprocess(size=(32, 32))
    infos, default = seewhy.layers(model, preprocess=pre)
    assert default == "blocks.1" and all(i.layout is None for i in infos)
    x = np.random.default_rng(1).random((2, 32, 32, 3), dtype=np.float32)
    before = _state(model)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", seewhy.ConstantMapWarning)
        e = seewhy.explain(model, x, "gradcam", preprocess=pre)
    assert e.layer == default and np.ptp(e.layer_maps, axis=(1, 2)).min() > 0
    assert _state(model) == before and model.training
    for method in ("attention-rollout", "generic-attention"):
        with pytest.raises(seewhy.SeewhyError, match=r"^attention: .*use gradcam"):
            seewhy.explain(model, x, method, preprocess=pre)
        assert _state(model) == before


def test_a_windowed_internal_asked_for_by_name_is_refused_with_suggestions(
    maxvit_t: Any, images: np.ndarray
) -> None:
    inner = "blocks.3.layers.1.layers.grid_attention.attn_layer.0"
    before = _state(maxvit_t)
    with pytest.raises(seewhy.SeewhyError, match=r"^layer: .*try one of") as info:
        seewhy.explain(maxvit_t, images, "gradcam", layer=inner)
    assert "\n" not in str(info.value) and "blocks.3" in str(info.value)
    assert _state(maxvit_t) == before


@pytest.mark.parametrize("method", ["attention-rollout", "generic-attention"])
def test_attention_methods_are_refused_in_one_line(
    maxvit_t: Any, images: np.ndarray, method: str
) -> None:
    before = _state(maxvit_t)
    with pytest.raises(seewhy.SeewhyError, match=r"^attention: .*use gradcam") as info:
        seewhy.explain(maxvit_t, images, method)
    assert "\n" not in str(info.value)
    assert "relative position bias" in str(info.value)  # why, not only that it cannot
    assert _state(maxvit_t) == before


def _departition(a: Any) -> Any:
    """(N, 2x2 windows, 4x4 tokens, C) -> (N, C, 8, 8), on numpy arrays and torch tensors."""
    n, _, _, c = a.shape
    grid = a.reshape(n, 2, 2, 4, 4, c)  # window row, window column, row, column in the window
    order = (0, 5, 1, 3, 2, 4)
    out = grid.permute(*order) if hasattr(grid, "permute") else grid.transpose(order)
    return out.reshape(n, c, 8, 8)


def test_a_windowed_internal_is_read_with_a_callable_layout(small: Any) -> None:
    from torchvision.models.maxvit import WindowPartition

    t = torch.randn(1, 16, 8, 8)
    assert torch.equal(_departition(WindowPartition()(t, 4)), t)  # undoes MaxViT's own cut
    layer = "blocks.0.layers.0.layers.window_attention.attn_layer.0"  # the input of attention
    x = np.random.default_rng(3).random((2, 32, 32, 3), dtype=np.float32)
    pre = seewhy.Preprocess(size=(32, 32))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", seewhy.ConstantMapWarning)
        e = seewhy.explain(small, x, "gradcam", layer=layer, layout=_departition, preprocess=pre)
    assert e.params["layout"] == "callable" and e.layer_maps.shape == (2, 8, 8)
    ref = _reference_gradcam(small, layer, _departition, x, e.targets)
    assert np.corrcoef(e.layer_maps.ravel(), ref.ravel())[0, 1] >= 0.999


def test_cli_layers_marks_the_last_stage_and_keeps_its_columns(
    small: Any, tmp_path: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    from seewhy.cli import main

    path = tmp_path / "maxvit.pt"
    torch.save(small, path)
    assert main(["layers", "--model", str(path), "--trust-model", "--size", "32,32"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert any(line.startswith("* blocks.1 ") for line in lines)
    assert not any("attn_layer" in line or "partition" in line for line in lines)
    column = lines[0].index("layout")  # the longest type (PartitionAttentionLayer) fits its column
    rows = [line for line in lines[1:-1] if "PartitionAttentionLayer" in line]
    assert rows and all(row[column:].startswith("NCHW") for row in rows)


def test_a_maxvit_built_for_32_px_is_fed_32_px_without_being_told(small: Any) -> None:
    """Its size is fixed when it is built (the attention grids): read from the first grid."""
    from seewhy.backends import backend_for

    hints = backend_for(small).hints()
    assert hints is not None and hints.size == (32, 32)
    photo = np.random.default_rng(4).random((48, 40, 3), dtype=np.float32)  # resized and cropped
    e = seewhy.explain(small, photo, "gradcam")
    assert e.maps.shape == (1, 32, 32) and e.input_spec["size"] == [32, 32]


def test_timm_maxvit_lists_no_window_internals_and_its_nhwc_blocks_equal_pytorch_grad_cam() -> None:
    """timm's MaxViT cuts maps into windows inside ``PartitionAttentionCl``: (N * windows,
    p, p, C) there is no image's map (it was listed as one); the block's own output is
    the NHWC map again."""
    pytest.importorskip("timm")
    model = timm_maxvit(64)
    infos, default = seewhy.layers(model)
    windowed = [n for n, m in model.named_modules() if "Partition" in type(m).__name__]
    assert windowed and not [
        i.name for i in infos if any(i.name.startswith(w + ".") for w in windowed)
    ]
    listed = {i.name: i for i in infos}
    layer = windowed[-1]
    assert listed[layer].layout is not None and listed[layer].layout.kind == "nhwc"
    assert default == "norm"
    x = np.random.default_rng(5).random((2, 64, 64, 3), dtype=np.float32)
    e = seewhy.explain(
        model, x, "gradcam", layer=layer, preprocess=seewhy.Preprocess(size=(64, 64))
    )
    ref = _reference_gradcam(model, layer, listed[layer].layout, x, e.targets)
    assert np.corrcoef(e.layer_maps.ravel(), ref.ravel())[0, 1] >= 0.999


@pytest.mark.parametrize("method", ["attention-rollout", "generic-attention"])
def test_timm_maxvit_attention_methods_are_refused_saying_why(method: str) -> None:
    pytest.importorskip("timm")
    model = timm_maxvit(64)
    x = np.random.default_rng(6).random((1, 64, 64, 3), dtype=np.float32)
    before = _state(model)
    with pytest.raises(seewhy.SeewhyError, match=r"relative position bias.*use gradcam"):
        seewhy.explain(model, x, method, preprocess=seewhy.Preprocess(size=(64, 64)))
    assert _state(model) == before
