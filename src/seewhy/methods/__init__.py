"""Built-in methods; importing this package registers them."""

from __future__ import annotations

from . import (
    answer_attention,
    attention,
    attnlrp,
    cam,
    cam_gradients,  # ShapleyCAM, FullGrad
    cam_variants,  # Finer-CAM, KPCA-CAM, Eigen-Grad-CAM, Grad-CAM element-wise
    gradients,
    legrad,
    lime,
    lrp,  # layer-wise relevance propagation (CNNs), on the Relevance capability
    perturbation,
    query_attention,  # DETR-style decoder queries' cross-attention
)

__all__ = [
    "answer_attention",
    "attention",
    "attnlrp",
    "cam",
    "cam_gradients",
    "cam_variants",
    "gradients",
    "legrad",
    "lime",
    "lrp",
    "perturbation",
    "query_attention",
]
