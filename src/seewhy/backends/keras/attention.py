"""Attention matrices of a Keras transformer and their gradients, on every Keras backend.

A ``keras.layers.MultiHeadAttention`` layer hides its q/k/v projections and
its attention matrix inside one call (and may run a fused kernel), so the
matrix is recomputed from what the graph does show: the layer's input x
(the output of the layer before it, captured by an ordinary pass) and its
own projection weights, q = x Wq + bq, k = x Wk + bk, v = x Wv + bv,
A = softmax(q k^T / sqrt(key_dim)). The gradient with respect to A comes
from the gradient at the layer's output: out = O Wo + bo with O = A v, so
dS/dO = dS/dout Wo^T and dS/dA = dS/dO v^T. The model is never changed.

One capture pass per attention layer (two with gradients): simple and
exact; a Keras transformer explained here is small enough for that.
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np

from ..._kit.scores import check_score, check_targets
from ...errors import UnsupportedModel
from ..base import AttentionCapture, BlockFusion, Score
from ..layouts import Layout, token_grid
from ..model_lock import one_pass_at_a_time
from .engines.base import Pass, logits_of, not_run
from .structure import children, sublayers
from .walker import Walker, shadow_guard

__all__ = ["KerasAttention", "attention_from_weights"]


def _weights(dense: Any) -> tuple[np.ndarray, np.ndarray | None]:
    kernel = keras.ops.convert_to_numpy(dense.kernel).astype(np.float32)
    bias = getattr(dense, "bias", None)
    return kernel, None if bias is None else keras.ops.convert_to_numpy(bias).astype(np.float32)


def _project(x: np.ndarray, dense: Any) -> np.ndarray:
    """(N, T, C) through an EinsumDense "abc,cde->abde": (N, T, heads, d)."""
    kernel, bias = _weights(dense)
    out = np.einsum("ntc,chd->nthd", x, kernel, optimize=True)
    return out if bias is None else out + bias


def attention_from_weights(
    layer: Any, x: np.ndarray, grad_out: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray | None]:
    """A (N, heads, T, T) and, with ``grad_out`` (N, T, C_out), dS/dA, from ``layer``'s weights."""
    q = _project(x, layer._query_dense)
    k = _project(x, layer._key_dense)
    v = _project(x, layer._value_dense)
    scores = np.einsum("nihd,njhd->nhij", q, k, optimize=True) / np.sqrt(q.shape[-1])
    scores -= scores.max(axis=-1, keepdims=True)
    a = np.exp(scores)
    a /= a.sum(axis=-1, keepdims=True)
    if grad_out is None:
        return a.astype(np.float32), None
    w_out, _ = _weights(layer._output_dense)  # (heads, d, C_out)
    d_o = np.einsum("nte,hde->nthd", grad_out, w_out, optimize=True)
    d_a = np.einsum("nihd,njhd->nhij", d_o, v, optimize=True)
    return a.astype(np.float32), d_a.astype(np.float32)


class KerasAttention:
    """The attention pass of :class:`~seewhy.backends.keras.KerasBackend` (a mixin)."""

    model: Any

    @one_pass_at_a_time
    def attention(
        self,
        x: np.ndarray,
        *,
        targets: np.ndarray | None,
        gradients: bool,
        fuse: BlockFusion,
        score: Score = "logit",
    ) -> AttentionCapture:
        passes: Any = self
        x = np.ascontiguousarray(x, dtype=np.float32)
        trace = passes._trace(x)
        if not trace.attention:
            raise UnsupportedModel(
                "attention: the model has no keras.layers.MultiHeadAttention self-attention "
                "that seewhy can read; use gradcam"
            )
        probability = check_score(score) == "probability"
        t = (
            np.full((len(x),), -1, np.int32)
            if targets is None
            else check_targets(targets, len(x), trace.classes).astype(np.int32)
        )
        calls = {info.name: info.calls for info in trace.infos}
        objects = _layers_by_path(self.model)
        paths = [n for n in trace.names if n in trace.attention]
        logits, inputs = self._eager_inputs(x, {trace.attention[p] for p in paths})
        chosen = np.where(t < 0, logits.argmax(axis=1), t).astype(np.int32)
        fused = []
        for path in paths:
            grad_out = None
            if gradients:  # one compiled pass per block: the gradient at its output
                spec = Pass(
                    path, calls.get(path, 1) - 1, "layer", probability, trace.native[path][0]
                )
                grad_out = passes._pass(spec)(x, chosen).gradients
            a, d_a = attention_from_weights(objects[path], inputs[trace.attention[path]], grad_out)
            fused.append(np.asarray(fuse(a, d_a), dtype=np.float32))
        tokens = fused[0].shape[-1]
        return AttentionCapture(
            logits=np.asarray(logits, np.float32),
            targets=np.asarray(chosen, np.int64),
            layers=tuple(n for n in trace.names if n in trace.attention),
            fused=tuple(fused),
            layout=_token_layout(trace.infos, tokens, (x.shape[1], x.shape[2])),
        )

    def _eager_inputs(self, x: np.ndarray, sources: set[str]) -> tuple[np.ndarray, dict[str, Any]]:
        """Logits and the outputs of ``sources`` from one eager walk (nothing compiled).

        The attention matrices need only these inputs, so rollout costs one forward.
        """
        passes: Any = self
        captured: dict[str, Any] = {}

        def record(name: str, op: Any, out: Any) -> None:
            if name in sources:
                captured[name] = out

        walker = Walker(self.model, record=record, output=passes._head.output)
        with shadow_guard(walker):
            out = logits_of(
                walker, keras.ops.convert_to_tensor(x), passes.channels_first, passes._head
            )
        missing = sources - set(captured)
        if missing:
            raise not_run(sorted(missing)[0])
        values = {k: keras.ops.convert_to_numpy(v).astype(np.float32) for k, v in captured.items()}
        return keras.ops.convert_to_numpy(out).astype(np.float32), values


def _layers_by_path(model: Any, prefix: str = "") -> dict[str, Any]:
    """Every layer by the walker's path (``outer/inner``): nested models and composite layers."""
    found: dict[str, Any] = {}
    for layer in children(model) or sublayers(model):
        found.setdefault(prefix + layer.name, layer)
        for path, inner in _layers_by_path(layer, f"{prefix}{layer.name}/").items():
            found.setdefault(path, inner)
    return found


def _token_layout(infos: list[Any], tokens: int, size: tuple[int, int]) -> Layout:
    for info in infos:
        lay = info.layout
        if lay is not None and lay.kind == "tokens" and lay.grid is not None:
            if lay.prefix + lay.grid[0] * lay.grid[1] == tokens:
                return lay
    found = token_grid(tokens, size)
    if found is None:
        raise UnsupportedModel(f"attention: {tokens} tokens make no patch grid")
    return Layout("tokens", found[0], found[1])
