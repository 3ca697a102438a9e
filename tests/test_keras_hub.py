"""keras-hub's ViT (``ViTImageClassifier``): token layers, the default layer, attention methods.

Runs once per Keras backend in its own process (see test_keras_backends.py).
keras-hub's encoder is a plain ``Layer`` holding its blocks, so the walker
has to step into composite layers to see the norms and attentions at all.
The reference is the same ViT written out by hand in PyTorch (float64) with
the keras-hub weights and explicit attention matrices (autograd gives the
Grad-CAM gradients and dS/dA), and the papers' loops of attention_reference.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from attention_reference import gae_reference, rollout_reference
from keras_helpers import assert_same_state, keras_or_skip, snapshot, to_numpy

keras = keras_or_skip()
keras_hub = pytest.importorskip(
    "keras_hub", reason="keras-hub is not installed (scripts/test.sh installs it with --no-deps)"
)
torch = pytest.importorskip("torch", reason="the PyTorch twin needs torch")
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")

import seewhy  # noqa: E402
from seewhy.backends.keras.hints import model_hints  # noqa: E402

SIZE, PATCH, GRID = 32, 8, 4
PRE = seewhy.Preprocess(size=(SIZE, SIZE), resize=None, mean=(0.0,) * 3, std=(1.0,) * 3, scale=1.0)
LAST_NORM = "vi_t_backbone/vit_encoder/transformer_block_2/ln_1"


@pytest.fixture(scope="module")
def vit() -> Any:
    """A tiny keras-hub ViT classifier (about 8k weights) with its own image converter."""
    keras.utils.set_random_seed(0)
    backbone = keras_hub.models.ViTBackbone(
        image_shape=(SIZE, SIZE, 3),
        patch_size=PATCH,
        num_layers=2,
        num_heads=2,
        hidden_dim=16,
        mlp_dim=32,
    )
    converter = keras_hub.layers.ViTImageConverter(
        image_size=(SIZE, SIZE), scale=1 / 127.5, offset=-1.0
    )
    preprocessor = keras_hub.models.ViTImageClassifierPreprocessor(image_converter=converter)
    return keras_hub.models.ViTImageClassifier(
        backbone=backbone, num_classes=5, preprocessor=preprocessor
    )


def _every_layer(model: Any) -> list[Any]:
    return list(model._flatten_layers(include_self=False))  # composite layers' parts too


def _state(model: Any) -> dict[str, Any]:
    """The shared snapshot plus every part of a composite layer (its flags, no ``call`` left)."""
    layers = _every_layer(model)
    return {
        **snapshot(keras, model),
        "deep": [(layer.name, layer.trainable, sorted(vars(layer))) for layer in layers],
    }


def _assert_untouched(before: dict[str, Any], model: Any) -> None:
    after = _state(model)
    assert_same_state(before, after)
    assert before["deep"] == after["deep"]


def _w(variable: Any) -> torch.Tensor:
    return torch.from_numpy(to_numpy(keras, variable))


def twin(model: Any, x: np.ndarray, targets: np.ndarray) -> dict[str, Any]:
    """The keras-hub ViT in torch (float64): logits, each block's A and dS/dA, the last ln_1."""
    f = torch.nn.functional
    backbone = model.backbone
    embed = backbone.get_layer("vit_patching_and_embedding")
    encoder = backbone.get_layer("vit_encoder")
    t = torch.from_numpy(x.astype(np.float64)).permute(0, 3, 1, 2).requires_grad_(True)
    conv = embed.patch_embedding
    h = f.conv2d(t, _w(conv.kernel).permute(3, 2, 0, 1), _w(conv.bias), stride=PATCH)
    h = h.flatten(2).transpose(1, 2)
    h = torch.cat([_w(embed.class_token).expand(len(x), 1, -1), h], 1)
    h = h + _w(embed.position_embedding.embeddings)

    def norm(ln: Any, z: torch.Tensor) -> torch.Tensor:
        return f.layer_norm(z, z.shape[-1:], _w(ln.gamma), _w(ln.beta), eps=ln.epsilon)

    def dense(layer: Any, z: torch.Tensor, pattern: str = "ntc,ce->nte") -> torch.Tensor:
        return torch.einsum(pattern, z, _w(layer.kernel)) + _w(layer.bias)

    attentions, inputs = [], []
    for block in encoder.encoder_layers:
        y = norm(block.layer_norm_1, h)
        inputs.append(y)
        mha = block.mha
        projections = (mha._query_dense, mha._key_dense, mha._value_dense)
        q, k, v = (dense(d, y, "ntc,chd->nthd") for d in projections)
        a = (torch.einsum("nihd,njhd->nhij", q, k) / q.shape[-1] ** 0.5).softmax(-1)
        attentions.append(a)
        h = h + dense(mha._output_dense, torch.einsum("nhij,njhd->nihd", a, v), "nthd,hde->nte")
        y = f.gelu(dense(block.mlp.dense_1, norm(block.layer_norm_2, h)))
        h = h + dense(block.mlp.dense_2, y)
    head = model.get_layer("predictions")
    logits = norm(encoder.layer_norm, h)[:, 0] @ _w(head.kernel) + _w(head.bias)
    score = logits[torch.arange(len(x)), torch.as_tensor(targets)].sum()
    grads = torch.autograd.grad(score, attentions + inputs[-1:])
    return {
        "logits": logits.detach().numpy(),
        "attentions": [a.detach().numpy() for a in attentions],
        "grads": [g.numpy() for g in grads[:-1]],
        "norm_act": inputs[-1].detach().numpy(),
        "norm_grad": grads[-1].numpy(),
    }


def _images(n: int = 2) -> np.ndarray:
    return np.random.default_rng(0).normal(size=(n, SIZE, SIZE, 3)).astype(np.float32)


def _r(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a.ravel(), b.ravel())[0, 1])


def test_layers_show_the_blocks_with_token_layouts_and_the_default_is_the_last_ln_1(
    vit: Any,
) -> None:
    infos, default = seewhy.layers(vit, preprocess=PRE)
    assert default == LAST_NORM
    by_name = {i.name: i for i in infos}
    tokens = seewhy.backends.layouts.Layout("tokens", 1, (GRID, GRID))
    for block in ("transformer_block_1", "transformer_block_2"):
        for part in ("ln_1", "mha", "ln_2", "mlp"):
            assert by_name[f"vi_t_backbone/vit_encoder/{block}/{part}"].layout == tokens
    assert by_name[LAST_NORM].shape == (16, GRID, GRID)
    embedding = "vi_t_backbone/vit_patching_and_embedding"
    assert by_name[f"{embedding}/patch_embedding"].layout.kind == "nhwc"  # type: ignore[union-attr]
    assert f"{embedding}/position_embedding" not in by_name  # fixed ids: no image in it
    assert not any("/mha/" in name for name in by_name)  # Keras's own layer stays whole


def test_gradcam_at_the_default_layer_equals_a_hand_written_gradcam(vit: Any) -> None:
    x = _images()
    targets = np.array([1, 3])
    before = _state(vit)
    e = seewhy.explain(vit, x, "gradcam", preprocess=PRE, target=list(targets))
    _assert_untouched(before, vit)
    assert e.layer == LAST_NORM
    ref = twin(vit, x, targets)
    np.testing.assert_allclose(e.logits, ref["logits"], rtol=1e-4, atol=1e-4)
    acts = ref["norm_act"][:, 1:].reshape(2, GRID, GRID, -1)
    grads = ref["norm_grad"][:, 1:].reshape(2, GRID, GRID, -1)
    want = np.einsum("nc,nhwc->nhw", grads.mean(axis=(1, 2)), acts)
    assert _r(e.layer_maps, want) >= 0.999
    np.testing.assert_allclose(e.layer_maps, want, rtol=1e-3, atol=1e-6)
    assert all(np.ptp(m) > 0 for m in e.maps)


def test_rollout_and_generic_attention_equal_the_papers(vit: Any) -> None:
    x = _images()
    targets = np.array([0, 2])
    ref = twin(vit, x, targets)
    before = _state(vit)
    rollout = seewhy.explain(vit, x, "attention-rollout", preprocess=PRE)
    gae = seewhy.explain(vit, x, "generic-attention", preprocess=PRE, target=list(targets))
    _assert_untouched(before, vit)
    want = rollout_reference(ref["attentions"], 1).reshape(2, GRID, GRID)
    assert _r(rollout.layer_maps, want) >= 0.999
    np.testing.assert_allclose(rollout.layer_maps, want, rtol=1e-4, atol=1e-6)
    want = gae_reference(ref["attentions"], ref["grads"], 1).reshape(2, GRID, GRID)
    assert _r(gae.layer_maps, want) >= 0.999
    np.testing.assert_allclose(gae.layer_maps, want, rtol=1e-3, atol=1e-6)


def test_a_raising_block_leaves_no_shadowed_call(vit: Any, monkeypatch: Any) -> None:
    seewhy.layers(vit, preprocess=PRE)  # the trace is cached; rollout's forward is eager
    before = _state(vit)
    mlp = vit.backbone.get_layer("vit_encoder").encoder_layers[1].mlp

    def fails(self: Any, inputs: Any) -> Any:
        raise RuntimeError("the block failed on purpose")

    monkeypatch.setattr(type(mlp), "call", fails)
    with pytest.raises(RuntimeError, match="on purpose"):
        seewhy.explain(vit, _images(), "attention-rollout", preprocess=PRE)
    monkeypatch.undo()
    _assert_untouched(before, vit)


def test_the_image_converter_is_the_preprocessing(vit: Any) -> None:
    pictures = np.random.default_rng(1).integers(0, 256, (2, SIZE, SIZE, 3)).astype(np.uint8)
    e = seewhy.explain(vit, list(pictures), "gradcam")  # pictures, not model inputs
    assert "ViTImageConverter" in e.input_spec["source"] and not e.input_spec["guessed"]
    fed = vit.preprocessor.image_converter(pictures)  # what keras-hub's predict() feeds
    own = keras.ops.convert_to_numpy(vit(fed, training=False))
    np.testing.assert_allclose(e.logits, own, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize(
    ("size", "crop", "resize"),
    [((24, 24), True, 24), ((24, 24), False, None), ((24, 32), True, None)],
    ids=["square-crop", "square-stretch", "oblong"],
)
def test_a_per_channel_converter_becomes_the_same_normalisation(
    size: tuple[int, int], crop: bool, resize: int | None
) -> None:
    scale, offset = (1 / 58.4, 1 / 57.1, 1 / 57.4), (-2.1, -2.0, -1.8)
    converter = keras_hub.layers.ViTImageConverter(
        image_size=size, scale=scale, offset=offset, crop_to_aspect_ratio=crop
    )

    class Task:  # what seewhy reads of a keras-hub task: its preprocessor's converter
        preprocessor = keras_hub.models.ViTImageClassifierPreprocessor(image_converter=converter)

    hints = model_hints(Task())
    assert hints.preprocess is not None and hints.preprocess.size == size
    assert hints.preprocess.resize == resize
    assert ("plain resize" in hints.source) == (crop and resize is None)  # says what it changed
    picture = np.random.default_rng(2).integers(0, 256, (*size, 3)).astype(np.uint8)
    want = keras.ops.convert_to_numpy(converter(picture[None]))[0]
    np.testing.assert_allclose(hints.preprocess.normalise(picture), want, rtol=1e-5, atol=1e-5)


def test_the_sanity_cascade_randomises_block_by_block(vit: Any) -> None:
    """The weight walk goes into composite layers as the layer walk does: each block's
    norms, attention and MLP are steps of their own, and every weight is in one step."""
    from seewhy.backends.keras.weights import copy_model, parameter_layers, randomize_layers
    from seewhy.metrics.sanity import randomization_steps

    steps = [name for group in randomization_steps(vit) for name in group]
    assert "vi_t_backbone/vit_encoder/transformer_block_2/mha" in steps
    assert "vi_t_backbone/vit_encoder/transformer_block_1/mlp" in steps or any(
        s.startswith("vi_t_backbone/vit_encoder/transformer_block_1/") for s in steps
    )
    clone = copy_model(vit)
    names = [name for name, _ in parameter_layers(clone)]
    randomize_layers(clone, names, lambda v: v + 1.0)  # every listed weight moved once
    moved = [
        not np.allclose(a.numpy(), b.numpy())
        for a, b in zip(vit.trainable_weights, clone.trainable_weights, strict=True)
    ]
    assert all(moved), [w.path for w, m in zip(vit.trainable_weights, moved, strict=True) if not m]
