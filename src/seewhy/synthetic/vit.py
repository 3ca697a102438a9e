"""A tiny vision transformer trained in seconds on the stripes set, for the attention methods.

Why: attention rollout and generic attention can only be checked for *where*
they look on a transformer that has learnt something. The stripes set
(:func:`~seewhy.synthetic.make_stripes`) suits a ViT: the evidence (a stripe
orientation) is local, inside one object, so 4 px patches carry it. A timm
ViT of two blocks, 32 wide, on 8 x 8 patches of 4 px: about 10 s for 1,200
pictures on one CPU core, 100% test accuracy; rollout's peak lies on the
object in about 99% of test pictures and generic attention's in about 95%
(pointing game, one patch of tolerance).
"""

from __future__ import annotations

from typing import Any

from ..errors import BackendError
from .data import ShapesData

__all__ = ["train_torch_vit"]


def train_torch_vit(
    data: ShapesData,
    *,
    patch: int = 4,
    width: int = 32,
    depth: int = 2,
    epochs: int = 10,
    batch_size: int = 32,
    lr: float = 2e-3,
    seed: int = 0,
) -> Any:
    """Train a tiny timm ViT (class token, timm's default fused attention) on ``data``.

    AdamW with a one-cycle schedule; returned in eval mode with its spec, no
    ``.grad`` left. The global RNG is left alone.
    """
    try:
        import timm
        import torch
    except ImportError as exc:
        raise BackendError(
            f"train_torch_vit needs PyTorch and timm ({exc}); pip install torch timm"
        ) from exc
    from .training import Schedule, _spec, train_new_torch_model

    schedule = Schedule.checked(
        "train_torch_vit", epochs=epochs, batch_size=batch_size, lr=lr, seed=seed
    )
    return train_new_torch_model(
        lambda: timm.create_model(
            "vit_tiny_patch16_224",
            pretrained=False,
            img_size=data.size,
            patch_size=patch,
            depth=depth,
            embed_dim=width,
            num_heads=2,
            mlp_ratio=2,
            num_classes=len(data.classes),
        ),
        data,
        data.labels,
        torch.nn.functional.cross_entropy,
        lambda parameters: torch.optim.AdamW(parameters, lr=lr, weight_decay=0.01),
        schedule,
        _spec(data, "synthetic_vit"),
    )
