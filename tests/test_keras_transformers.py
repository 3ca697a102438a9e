"""A Keras transformer (keras.layers.MultiHeadAttention): token layouts and attention methods.

Runs once per Keras backend in its own process (see test_keras_backends.py).
The references are a PyTorch twin written out by hand with the Keras
model's weights and explicit attention matrices (autograd gives dS/dA), and
the loops of the papers from tests/test_attention.py's helpers.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from attention_reference import gae_reference, rollout_reference
from keras_helpers import assert_same_state, keras_or_skip, snapshot, to_numpy
from models import keras_tiny_vit

keras = keras_or_skip()
torch = pytest.importorskip("torch", reason="the PyTorch twin needs torch")
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")

import seewhy  # noqa: E402

SIZE = 32
PRE = seewhy.Preprocess(size=(SIZE, SIZE), resize=None, mean=(0.0,) * 3, std=(1.0,) * 3, scale=1.0)


@pytest.fixture(scope="module")
def vit() -> Any:
    return keras_tiny_vit(keras, size=SIZE)


def _w(layer: Any, name: str = "kernel") -> torch.Tensor:
    return torch.from_numpy(to_numpy(keras, getattr(layer, name)).astype(np.float64))


def twin(model: Any, x: np.ndarray, targets: np.ndarray) -> dict[str, Any]:
    """The Keras ViT written out in torch (float64): logits, every A and dS/dA, block inputs."""
    f = torch.nn.functional
    get = model.get_layer
    t = torch.from_numpy(x.astype(np.float64)).permute(0, 3, 1, 2).requires_grad_(True)
    conv = get("patch_embed")
    h = f.conv2d(t, _w(conv).permute(3, 2, 0, 1), _w(conv, "bias"), stride=8)
    h = h.flatten(2).transpose(1, 2)
    tokens = get("tokens")
    h = torch.cat([_w(tokens, "token").expand(len(x), 1, -1), h], 1) + _w(tokens, "positions")

    def norm(layer_name: str, z: torch.Tensor) -> torch.Tensor:
        ln = get(layer_name)
        return f.layer_norm(z, z.shape[-1:], _w(ln, "gamma"), _w(ln, "beta"), eps=ln.epsilon)

    attentions, norms = [], []
    i = 0
    while True:
        try:
            mha = get(f"block{i}_attn")
        except ValueError:
            break
        y = norm(f"block{i}_norm1", h)
        norms.append(y)
        q, k, v = (
            torch.einsum("ntc,chd->nthd", y, _w(d)) + _w(d, "bias")
            for d in (mha._query_dense, mha._key_dense, mha._value_dense)
        )
        a = (torch.einsum("nihd,njhd->nhij", q, k) / q.shape[-1] ** 0.5).softmax(-1)
        attentions.append(a)
        o = torch.einsum("nhij,njhd->nihd", a, v)
        h = (
            h
            + torch.einsum("nthd,hde->nte", o, _w(mha._output_dense))
            + _w(mha._output_dense, "bias")
        )
        y = norm(f"block{i}_norm2", h)
        fc1, fc2 = get(f"block{i}_fc1"), get(f"block{i}_fc2")
        y = f.gelu(y @ _w(fc1) + _w(fc1, "bias")) @ _w(fc2) + _w(fc2, "bias")
        h = h + y
        i += 1
    logits = norm("norm", h)[:, 0] @ _w(get("head")) + _w(get("head"), "bias")
    score = logits[torch.arange(len(x)), torch.as_tensor(targets)].sum()
    grads = torch.autograd.grad(score, attentions + norms)
    return {
        "logits": logits.detach().numpy(),
        "attentions": [a.detach().numpy() for a in attentions],
        "grads": [g.numpy() for g in grads[: len(attentions)]],
        "norm_grad": grads[-1].numpy(),
        "norm_act": norms[-1].detach().numpy(),
    }


def _images(n: int = 2) -> np.ndarray:
    return np.random.default_rng(0).normal(size=(n, SIZE, SIZE, 3)).astype(np.float32)


def test_layers_show_tokens_and_the_default_is_the_last_attention_input(vit: Any) -> None:
    infos, default = seewhy.layers(vit, preprocess=PRE)
    assert default == "block1_norm1"
    by_name = {i.name: i for i in infos}
    assert by_name["block1_norm1"].layout == seewhy.backends.layouts.Layout("tokens", 1, (4, 4))
    assert by_name["block1_norm1"].shape == (16, 4, 4)
    assert by_name["patch_embed"].layout.kind == "nhwc"  # type: ignore[union-attr]


def test_gradcam_on_tokens_equals_the_twin(vit: Any) -> None:
    x = _images()
    targets = np.array([1, 3])
    before = snapshot(keras, vit)
    e = seewhy.explain(vit, x, "gradcam", preprocess=PRE, target=list(targets))
    assert_same_state(before, snapshot(keras, vit))
    ref = twin(vit, x, targets)
    np.testing.assert_allclose(e.logits, ref["logits"], rtol=1e-4, atol=1e-4)
    acts = ref["norm_act"][:, 1:].reshape(2, 4, 4, -1)
    grads = ref["norm_grad"][:, 1:].reshape(2, 4, 4, -1)
    want = np.einsum("nc,nhwc->nhw", grads.mean(axis=(1, 2)), acts)
    np.testing.assert_allclose(e.layer_maps, want, rtol=1e-3, atol=1e-6)


def test_rollout_and_generic_attention_equal_the_papers_on_the_twin(vit: Any) -> None:
    x = _images()
    targets = np.array([0, 2])
    ref = twin(vit, x, targets)
    before = snapshot(keras, vit)
    rollout = seewhy.explain(vit, x, "attention-rollout", preprocess=PRE)
    gae = seewhy.explain(vit, x, "gae", preprocess=PRE, target=list(targets))
    assert_same_state(before, snapshot(keras, vit))
    want = rollout_reference(ref["attentions"], 1).reshape(2, 4, 4)
    np.testing.assert_allclose(rollout.layer_maps, want, rtol=1e-4, atol=1e-6)
    want = gae_reference(ref["attentions"], ref["grads"], 1).reshape(2, 4, 4)
    np.testing.assert_allclose(gae.layer_maps, want, rtol=1e-3, atol=1e-6)
    assert np.ptp(gae.layer_maps) > 0


def test_ablation_cam_edits_only_patch_tokens(vit: Any) -> None:
    x = _images(1)
    e = seewhy.explain(vit, x, "ablationcam", preprocess=PRE)
    assert e.layer_maps.shape == (1, 4, 4) and np.isfinite(e.layer_maps).all()
    backend = seewhy.backends.backend_for(vit)
    none = backend.predict_with_layer_edit(x, layer="block1_norm1", scales=np.ones((1, 16)))
    np.testing.assert_allclose(none[:, 0], backend.predict(x), rtol=1e-5, atol=1e-5)
