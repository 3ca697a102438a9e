"""How a layer's output is laid out, and the (N, C, h, w) maps the method math reads.

Framework-free. A convolutional network hands out NCHW maps; Swin stages and
ConvNeXt internals are channels-last (NHWC); a vision transformer hands out
tokens (N, T, C): ``prefix`` leading non-patch tokens (class, distillation,
register tokens) followed by an h x w grid of patch tokens, row by row. The
backends guess each layer's layout from its shape and the input size
(:func:`guess_layout`), turn activations and gradients into NCHW
(:func:`to_maps`) and scale a layer's channels in its own layout for
Ablation-CAM (:func:`edit_factors`). A user overrides the guess with
``layout=`` (:func:`parse_layout`): a name, a :class:`Layout` or a callable.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from ..errors import InvalidInput, UnsupportedModel

__all__ = [
    "LAYOUT_NAMES",
    "Layout",
    "LayoutChoice",
    "complete",
    "edit_factors",
    "grid_like",
    "guess_layout",
    "map_shape",
    "parse_layout",
    "to_maps",
    "token_grid",
    "transformer_default",
]

LayoutKind = Literal["nchw", "nhwc", "tokens"]
LAYOUT_NAMES: tuple[str, ...] = ("nchw", "nhwc", "tokens")
# The most leading non-patch tokens a token layer is believed to have (DINOv2: 1 + 4 registers).
MAX_PREFIX = 16
# Without a patch embedding to read the grid from, only grids of one exact patch size and
# at most this many leading tokens are believed.
_GUESSED_PREFIX = 8


@dataclass(frozen=True)
class Layout:
    """A layer output's layout: ``kind``, and for tokens the prefix count and the patch grid.

    Pass one as ``explain(layout=)`` when seewhy's guess of a layer's layout is
    wrong, or a name: ``"nchw"``, ``"nhwc"``, ``"tokens:K:HxW"``.

    Parameters
    ----------
    kind : {"nchw", "nhwc", "tokens"}
        Channels first, channels last, or a sequence of tokens.
    prefix : int
        Leading non-patch tokens (class, register tokens); tokens only.
    grid : (int, int), optional
        (h, w) of the patch tokens; tokens only.
    """

    kind: LayoutKind
    prefix: int = 0  # leading non-patch tokens (tokens only)
    grid: tuple[int, int] | None = None  # (h, w) of the patch tokens (tokens only)

    def describe(self) -> str:
        """Short text for listings: ``NCHW``, ``NHWC``, ``tokens 1+14x14``."""
        if self.kind != "tokens":
            return self.kind.upper()
        h, w = self.grid or (0, 0)
        return f"tokens {self.prefix}+{h}x{w}"


# A user's override: a Layout, or a callable from the (N, ...) output array to (N, C, h, w) maps.
LayoutChoice = Layout | Callable[[np.ndarray], np.ndarray] | None


def parse_layout(value: Any) -> LayoutChoice:
    """The ``layout=`` argument checked: None, a Layout, a callable, or a name.

    Names: ``nchw``, ``nhwc``, ``tokens`` (prefix and grid worked out from the
    input), ``tokens:K`` (K leading non-patch tokens) or ``tokens:K:HxW``.
    """
    if value is None or isinstance(value, Layout) or callable(value):
        return value
    expected = "nchw, nhwc, tokens, tokens:K or tokens:K:HxW, a seewhy.Layout or a callable"
    if not isinstance(value, str):
        raise InvalidInput(f"layout: expected {expected}, got {value!r}")
    parts = value.strip().lower().split(":")
    try:
        if parts[0] in ("nchw", "nhwc") and len(parts) == 1:
            return Layout(parts[0])  # type: ignore[arg-type]
        if parts[0] == "tokens" and len(parts) <= 3:
            prefix = int(parts[1]) if len(parts) > 1 else -1
            grid = None
            if len(parts) == 3:
                h, w = (int(p) for p in parts[2].split("x"))
                grid = (h, w)
            if prefix >= -1 and (grid is None or min(grid) > 0):
                return Layout("tokens", prefix, grid)
    except ValueError:
        pass
    raise InvalidInput(f"layout: expected {expected}, got {value!r}")


# --------------------------------------------------------------------------- guessing


def _strides(size: int, length: int) -> set[int]:
    """Integer strides s for which ``length`` is ``size / s`` rounded down or up."""
    if length <= 0 or length > size:
        return set()
    out = set()
    for s in range(max(1, size // (length + 1)), size // max(1, length - 1) + 2):
        if length in (size // s, -(-size // s)):
            out.add(s)
    return out


def grid_like(h: int, w: int, size: tuple[int, int]) -> bool:
    """True when (h, w) is the input (H, W) divided by one integer stride (rounded)."""
    return bool(_strides(size[0], h) & _strides(size[1], w))


def token_grid(
    tokens: int, size: tuple[int, int], grids: Sequence[tuple[int, int]] = ()
) -> tuple[int, tuple[int, int]] | None:
    """(prefix, (h, w)) for ``tokens`` tokens: a known grid first, else one of the input's shape.

    ``grids`` are patch grids the model showed (its patch embedding's output),
    tried in order; otherwise the fewest leading tokens (at most 8) that
    leave an h x w grid of one exact patch size.
    """
    for h, w in grids:
        if 0 <= tokens - h * w <= MAX_PREFIX:
            return tokens - h * w, (h, w)
    height, width = size
    for prefix in range(0, min(_GUESSED_PREFIX, tokens - 1) + 1):
        n = tokens - prefix
        for h in range(1, n + 1):
            w, rest = divmod(n, h)
            if not rest and height % h == 0 and width % w == 0 and height // h == width // w:
                return prefix, (h, w)
    return None


def guess_layout(
    shape: tuple[int, ...],
    size: tuple[int, int],
    grids: Sequence[tuple[int, int]] = (),
    *,
    hint: LayoutKind | None = None,
) -> Layout | None:
    """The layout of an output of per-image ``shape`` for inputs of (H, W) ``size``.

    3 axes: ``hint`` when the producing layer tells (a convolution is NCHW; a
    linear or layer norm over the last axis is NHWC); otherwise NCHW unless only
    the channels-last reading is a grid of the input (Swin's (7, 7, 768) at
    224 px). 2 axes: tokens, when the count is a patch grid plus at most 16
    leading tokens. None: not a map (a vector, a 5-D tensor, ...).
    """
    if len(shape) == 3:
        if hint is not None:
            return Layout(hint)
        loose = shape[1] <= 2 * size[0] and shape[2] <= 2 * size[1]
        if grid_like(shape[1], shape[2], size) or (
            loose and not grid_like(shape[0], shape[1], size)
        ):
            return Layout("nchw")
        return Layout("nhwc") if grid_like(shape[0], shape[1], size) else None
    if len(shape) == 2 and shape[1] > 1:
        found = token_grid(shape[0], size, grids)
        return None if found is None else Layout("tokens", found[0], found[1])
    return None


def complete(layout: Layout, shape: tuple[int, ...], size: tuple[int, int]) -> Layout:
    """A user's tokens layout with its prefix and grid filled in for an output of ``shape``."""
    if layout.kind != "tokens" or (layout.prefix >= 0 and layout.grid is not None):
        return layout
    if len(shape) != 2:
        raise InvalidInput(f"layout: tokens needs a (N, T, C) output, got per-image shape {shape}")
    tokens = shape[0]
    if layout.prefix >= 0:
        found = token_grid(tokens - layout.prefix, size)
        if found is None or found[0] != 0:
            raise InvalidInput(
                f"layout: {tokens - layout.prefix} patch tokens make no grid for a "
                f"{size[0]}x{size[1]} input; give it as tokens:{layout.prefix}:HxW"
            )
        return Layout("tokens", layout.prefix, found[1])
    if layout.grid is not None:
        return Layout("tokens", tokens - layout.grid[0] * layout.grid[1], layout.grid)
    found = token_grid(tokens, size)
    if found is None:
        raise InvalidInput(f"layout: {tokens} tokens make no patch grid; give it as tokens:K:HxW")
    return Layout("tokens", found[0], found[1])


# --------------------------------------------------------------------------- conversions


def map_shape(shape: tuple[int, ...], layout: Layout) -> tuple[int, int, int]:
    """The per-image (C, h, w) maps that an output of per-image ``shape`` turns into."""
    if layout.kind == "nhwc":
        return shape[2], shape[0], shape[1]
    if layout.kind == "tokens":
        h, w = layout.grid or (0, 0)
        return shape[-1], h, w
    return shape[0], shape[1], shape[2]


def to_maps(
    array: np.ndarray, layout: LayoutChoice, layer: str = "", size: tuple[int, int] = (0, 0)
) -> np.ndarray:
    """The (N, ...) output ``array`` as (N, C, h, w) maps, for inputs of (H, W) ``size``."""
    if isinstance(layout, Layout):
        layout = complete(layout, tuple(array.shape[1:]), size)
    if layout is None or (isinstance(layout, Layout) and layout.kind == "nchw"):
        out = array
    elif isinstance(layout, Layout) and layout.kind == "nhwc":
        out = array.transpose(0, 3, 1, 2)
    elif isinstance(layout, Layout):
        h, w = layout.grid or (0, 0)
        n, tokens, channels = array.shape
        if tokens != layout.prefix + h * w:
            raise InvalidInput(
                f"layout: {layer!r} has {tokens} tokens, not {layout.prefix} + {h}x{w}; "
                "give layout='tokens:K:HxW'"
            )
        out = array[:, layout.prefix :].reshape(n, h, w, channels).transpose(0, 3, 1, 2)
    else:
        out = np.asarray(layout(array), dtype=np.float32)
    if out.ndim != 4 or len(out) != len(array):
        raise InvalidInput(
            f"layout: {layer!r} gives maps of shape {out.shape}, not (N, C, h, w); check layout="
        )
    return np.ascontiguousarray(out, dtype=np.float32)


def edit_factors(
    layout: LayoutChoice,
    scales: np.ndarray,
    shape: tuple[int, ...],
    size: tuple[int, int] = (0, 0),
) -> np.ndarray:
    """Per-channel ``scales`` (E, C) as factors that broadcast over an output of (N, ...) ``shape``.

    Channels are the maps' channels: NCHW axis 1, NHWC and tokens the last
    axis; a token layer's leading non-patch tokens keep factor 1, since the
    maps never show them.
    """
    edits, channels = scales.shape
    if isinstance(layout, Layout):
        layout = complete(layout, tuple(shape[1:]), size)
    if layout is None or (isinstance(layout, Layout) and layout.kind == "nchw"):
        return scales.reshape(edits, channels, *([1] * (len(shape) - 2)))
    if isinstance(layout, Layout) and layout.kind == "nhwc":
        return scales.reshape(edits, *([1] * (len(shape) - 2)), channels)
    if isinstance(layout, Layout):
        factors = np.ones((edits, shape[1], channels), np.float32)
        factors[:, layout.prefix :] = scales[:, None, :]
        return factors
    raise UnsupportedModel(
        "layout: a callable layout cannot be inverted to edit the layer (Ablation-CAM); "
        "give a layout name (nchw, nhwc, tokens:K)"
    )


# --------------------------------------------------------------------------- default layer
# Names of the norm before a transformer block's attention (timm, torchvision, Hugging Face).
_PRE_ATTENTION_NORMS = ("norm1", "ln_1", "layernorm_before", "norm_1", "layer_norm1", "ln1")


def transformer_default(infos: Sequence[Any]) -> Any | None:
    """The transformer default layer among ``infos`` (LayerInfo), or None for other models.

    When the last token layer has leading tokens (a class token the head
    reads), the patch tokens of the last block's output get no gradient at
    all: only the class token feeds the head after the last attention. So
    the default is the input of the last block's attention, its first norm
    (``blocks[-1].norm1`` in timm, ``encoder.layers[-1].ln_1`` in
    torchvision, ``layernorm_before`` in Hugging Face), where every patch
    token still reaches the class token through that attention.
    """
    maps = [i for i in infos if len(i.shape) == 3 and i.shape[1] * i.shape[2] > 1]
    if not maps or maps[-1].layout is None or maps[-1].layout.kind != "tokens":
        return None
    if maps[-1].layout.prefix == 0:
        return None  # the head pools every token (Swin): the last layer is fine
    feeding = [i for i in maps if i.feeds_attention]
    named = [
        i for i in maps if i.name.rsplit(".", 1)[-1].rsplit("/", 1)[-1] in _PRE_ATTENTION_NORMS
    ]
    picked = feeding or named
    return picked[-1] if picked else None
