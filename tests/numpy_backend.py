"""A framework-free backend over a closed-form model, to test the method math exactly.

The model (:class:`ClosedForm`), for NHWC inputs x of an even size H x W:

* ``features``: a 2x2, stride-2 "convolution" (a linear map of each 2x2 patch)
  plus a bias, then ReLU: A = relu(pre), (N, K, H/2, W/2);
* a fixed weighted average pool, z_k = sum_ij P_ij A_kij with P > 0, sum 1
  (not uniform, so the gradient varies over positions and the CAM variants
  differ);
* a linear head: logits = z @ W.T + b.

Everything a backend returns is then a formula: dS/dA_kij = W_tk P_ij (times
softmax's Jacobian for ``score="probability"``), and the input gradient goes
back through the ReLU mask and the patch map. The backend implements the
whole :class:`seewhy.backends.base.Backend` protocol, so ``seewhy.explain``
runs on it as it is.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from seewhy._kit.scores import check_score, check_targets, softmax
from seewhy.backends.base import Capture, LayerInfo, Precision, check_precision
from seewhy.backends.common import default_layer, missing_layer
from seewhy.errors import InvalidInput

LAYER = "features"


@dataclass(eq=False)
class ClosedForm:
    """Weights of the closed-form model; float64 so the references are exact."""

    kernel: np.ndarray  # (2, 2, C, K): patch offset (a, b), input channel, feature channel
    bias: np.ndarray  # (K,)
    head: np.ndarray  # (classes, K)
    head_bias: np.ndarray  # (classes,)
    weighted_pool: bool = True  # False: plain global average pooling (what CAM needs)

    @property
    def classes(self) -> int:
        return int(self.head.shape[0])


def closed_form_model(
    channels: int = 3, features: int = 6, classes: int = 4, seed: int = 0, *, weighted: bool = True
) -> ClosedForm:
    """Random weights; the biases keep about half the pre-activations positive."""
    rng = np.random.default_rng(seed)
    return ClosedForm(
        kernel=rng.normal(0.0, 0.5, (2, 2, channels, features)),
        bias=rng.normal(0.0, 0.1, features),
        head=rng.normal(0.0, 1.0, (classes, features)),
        head_bias=rng.normal(0.0, 0.1, classes),
        weighted_pool=weighted,
    )


def pool_weights(h: int, w: int, weighted: bool = True) -> np.ndarray:
    """(h, w) positive pooling weights summing to 1, heavier towards the top-left
    (uniform without ``weighted``)."""
    if not weighted:
        return np.full((h, w), 1.0 / (h * w))
    rows = 1.0 + np.arange(h)[::-1, None]
    cols = 1.0 + 0.5 * np.arange(w)[None, ::-1]
    p = rows * cols
    out: np.ndarray = p / p.sum()
    return out


def patches(x: np.ndarray) -> np.ndarray:
    """(N, h, w, 2, 2, C) non-overlapping 2x2 patches of NHWC ``x``."""
    n, hh, ww, c = x.shape
    if hh % 2 or ww % 2:
        raise InvalidInput(f"x: the closed-form model needs an even size, got {hh}x{ww}")
    out: np.ndarray = x.reshape(n, hh // 2, 2, ww // 2, 2, c).transpose(0, 1, 3, 2, 4, 5)
    return out


def pre_activations(model: ClosedForm, x: np.ndarray) -> np.ndarray:
    """(N, K, h, w) the patch map plus bias, before the ReLU."""
    pre = np.einsum("nijabc,abck->nkij", patches(np.asarray(x, np.float64)), model.kernel)
    out: np.ndarray = pre + model.bias[None, :, None, None]
    return out


def logits_from(model: ClosedForm, acts: np.ndarray) -> np.ndarray:
    """(N, classes) logits for (N, K, h, w) feature maps."""
    z = np.einsum("nkij,ij->nk", acts, pool_weights(*acts.shape[2:], model.weighted_pool))
    out: np.ndarray = z @ model.head.T + model.head_bias
    return out


def score_gradients(logits: np.ndarray, targets: np.ndarray, score: str) -> np.ndarray:
    """(N, classes) d(score of each row's target)/d(logits)."""
    n, k = logits.shape
    onehot = np.eye(k)[targets]
    if check_score(score) == "logit":
        return onehot
    p = softmax(logits)
    out: np.ndarray = p[np.arange(n), targets][:, None] * (onehot - p)
    return out


def layer_gradients(
    model: ClosedForm, logits: np.ndarray, targets: np.ndarray, score: str, size: tuple[int, int]
) -> np.ndarray:
    """(N, K, h, w) dS/dA: the target score's gradient, through the head and the pool."""
    dz = score_gradients(logits, targets, score) @ model.head  # (N, K)
    out: np.ndarray = np.einsum("nk,ij->nkij", dz, pool_weights(*size, model.weighted_pool))
    return out


class NumpyBackend:
    """Every capability of :mod:`seewhy.backends.capabilities` but attention and heads, for a
    :class:`ClosedForm` model; declared by shape alone (no inheritance), as a plug-in may."""

    framework = "numpy"
    channels_first = False

    def __init__(self, model: ClosedForm) -> None:
        self.model = model

    # -- passes -------------------------------------------------------------------

    def _targets(self, targets: np.ndarray | None, logits: np.ndarray) -> np.ndarray:
        if targets is None:
            out: np.ndarray = logits.argmax(axis=1).astype(np.int64)
            return out
        return check_targets(targets, len(logits), logits.shape[1])

    def _info(self, x: np.ndarray) -> LayerInfo:
        _, hh, ww, _ = np.shape(x)
        return LayerInfo(LAYER, (self.model.kernel.shape[3], hh // 2, ww // 2), "PatchLinear")

    def layers(self, x: np.ndarray) -> list[LayerInfo]:
        return [self._info(x)]

    def resolve_layer(self, layer: str | None, x: np.ndarray) -> str:
        infos = self.layers(x)
        if layer is None:
            return default_layer(infos)
        if layer != LAYER:
            raise missing_layer(layer, [LAYER, "head"], infos)
        return layer

    def predict(
        self, x: np.ndarray, *, batch_size: int | None = None, precision: Precision = "float32"
    ) -> np.ndarray:
        if check_precision(precision) != "float32":
            raise InvalidInput(f"precision: the numpy backend runs float32 only, got {precision}")
        acts = np.maximum(pre_activations(self.model, x), 0.0)
        return logits_from(self.model, acts).astype(np.float32)

    def preferred_batch_size(self, x: np.ndarray, precision: Precision = "float32") -> int:
        return 64

    def capture(
        self,
        x: np.ndarray,
        *,
        layer: str,
        targets: np.ndarray | None,
        gradients: bool,
        score: Any = "logit",
    ) -> Capture:
        self.resolve_layer(layer, x)
        acts = np.maximum(pre_activations(self.model, x), 0.0)
        logits = logits_from(self.model, acts)
        t = self._targets(targets, logits)
        grads = None
        if gradients:
            grads = layer_gradients(self.model, logits, t, score, acts.shape[2:])
        return Capture(
            logits=logits.astype(np.float32),
            targets=t,
            activations=acts.astype(np.float32),
            gradients=None if grads is None else grads.astype(np.float32),
        )

    def input_gradients(
        self,
        x: np.ndarray,
        *,
        targets: np.ndarray | None,
        score: Any = "logit",
        guided: bool = False,
    ) -> Capture:
        pre = pre_activations(self.model, x)
        logits = logits_from(self.model, np.maximum(pre, 0.0))
        t = self._targets(targets, logits)
        g_acts = layer_gradients(self.model, logits, t, score, pre.shape[2:])
        g_pre = g_acts * (pre > 0)
        if guided:  # Guided Backprop at the ReLU: only positive gradients pass back
            g_pre = g_pre * (g_acts > 0)
        g_patches = np.einsum("nkij,abck->nijabc", g_pre, self.model.kernel)
        n, h, w, _, _, c = g_patches.shape
        g_x = g_patches.transpose(0, 1, 3, 2, 4, 5).reshape(n, 2 * h, 2 * w, c)
        return Capture(
            logits=logits.astype(np.float32), targets=t, gradients=g_x.astype(np.float32)
        )

    def final_linear(self) -> tuple[np.ndarray, np.ndarray] | None:
        return self.model.head.astype(np.float32), self.model.head_bias.astype(np.float32)

    def with_layout(self, choice: Any) -> NumpyBackend:
        """Itself: the closed-form layer has one layout, so ``layout=`` changes nothing."""
        return self

    def predict_with_layer_edit(
        self,
        x: np.ndarray,
        *,
        layer: str,
        scales: np.ndarray,
        batch_size: int | None = None,
    ) -> np.ndarray:
        self.resolve_layer(layer, x)
        acts = np.maximum(pre_activations(self.model, x), 0.0)
        s = np.asarray(scales, np.float64)
        if s.ndim == 2:
            s = np.broadcast_to(s, (len(acts), *s.shape))
        edited = acts[:, None] * s[:, :, :, None, None]  # (N, E, K, h, w)
        n, e = s.shape[:2]
        out = logits_from(self.model, edited.reshape(n * e, *acts.shape[1:]))
        return out.reshape(n, e, -1).astype(np.float32)

    # -- what sanity checks and the audit ask ----------------------------------------

    def parameter_layers(self, x: np.ndarray | None = None) -> list[tuple[str, str]]:
        return [(LAYER, "PatchLinear"), ("head", "Linear")]

    def copy_model(self) -> Any:
        return copy.deepcopy(self.model)

    def randomize_layers(
        self, names: Sequence[str], resample: Callable[[np.ndarray], np.ndarray]
    ) -> None:
        fields = {LAYER: ("kernel", "bias"), "head": ("head", "head_bias")}
        for name in names:
            for attr in fields[name]:
                setattr(self.model, attr, np.asarray(resample(getattr(self.model, attr))))

    def place(self, device: str | None) -> Any:
        return self.model

    def pack(self, pickle_module: Any) -> Any:
        return self.model  # a dataclass of arrays pickles as it is
