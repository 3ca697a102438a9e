"""The EfficientNet-Lite0 architecture table, shared by the PyTorch and Keras definitions.

Framework-free so that neither definition has to import the other's framework.
"""

from __future__ import annotations

import re

__all__ = ["BN_EPS", "HEAD_CHANNELS", "LITE0_STAGES", "STEM_CHANNELS", "parse_reference_key"]

# (repeats, kernel, first stride, expansion, output channels) per stage,
# the published EfficientNet-Lite0 table (B0 without squeeze-excite, ReLU6).
LITE0_STAGES: tuple[tuple[int, int, int, int, int], ...] = (
    (1, 3, 1, 1, 16),
    (2, 3, 2, 6, 24),
    (2, 5, 2, 6, 40),
    (3, 3, 2, 6, 80),
    (3, 5, 1, 6, 112),
    (4, 5, 2, 6, 192),
    (1, 3, 1, 6, 320),
)
STEM_CHANNELS = 32
HEAD_CHANNELS = 1280
# TensorFlow's batch-norm epsilon the checkpoint was trained with.
BN_EPS = 1e-3

# Key names of the reference checkpoint (the ``efficientnet_lite_pytorch`` package):
# a block's layer -> (sub-block, layer); the stem's and head's -> our name.
_BLOCK_PARTS = {
    "_expand_conv": ("expand", "conv"),
    "_bn0": ("expand", "bn"),
    "_depthwise_conv": ("depthwise", "conv"),
    "_bn1": ("depthwise", "bn"),
    "_project_conv": ("project", "conv"),
    "_bn2": ("project", "bn"),
}
_TOP_PARTS = {
    "_conv_stem": "conv_stem",
    "_bn0": "bn_stem",
    "_conv_head": "conv_head",
    "_bn1": "bn_head",
    "_fc": "classifier",
}
_BLOCK_KEY = re.compile(r"^_blocks\.(\d+)\.(_\w+?)\.(\w+)$")
_TOP_KEY = re.compile(r"^(_\w+?)\.(\w+)$")


def parse_reference_key(key: str) -> tuple[int | None, tuple[str, ...], str] | None:
    """A reference checkpoint key as (block index or None, our layer's parts, parameter).

    ``_blocks.3._bn1.weight`` is ``(3, ("depthwise", "bn"), "weight")`` and
    ``_fc.bias`` is ``(None, ("classifier",), "bias")``; each framework joins
    the parts in its own naming. None for a key this architecture lacks.
    """
    m = _BLOCK_KEY.match(key)
    if m is not None and m.group(2) in _BLOCK_PARTS:
        return int(m.group(1)), _BLOCK_PARTS[m.group(2)], m.group(3)
    m = _TOP_KEY.match(key)
    if m is not None and m.group(1) in _TOP_PARTS:
        return None, (_TOP_PARTS[m.group(1)],), m.group(2)
    return None
