"""The EfficientNet-Lite0 architecture table, shared by the PyTorch and Keras definitions.

Framework-free so that neither definition has to import the other's framework.
"""

from __future__ import annotations

__all__ = ["BN_EPS", "HEAD_CHANNELS", "LITE0_STAGES", "STEM_CHANNELS"]

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
