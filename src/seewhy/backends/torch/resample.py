"""Pictures resized as torchvision resizes uint8 tensors (``resampler="torchvision"``).

Hugging Face's default image processors resize with torchvision on uint8
tensors, whose antialiased kernels differ from Pillow's by one grey level on
about a fifth of the pixels: a model fed Pillow's picture gets another input
than its own processor makes. Here the same function runs on the same tensor.
"""

from __future__ import annotations

import numpy as np
import torch
from torchvision.transforms.v2 import functional as tvf

__all__ = ["torchvision_resize"]

#: seewhy's filter names as torchvision's modes; "nearest" is Pillow's rule (NEAREST_EXACT),
#: as Hugging Face maps it.
_MODES = {
    "nearest": tvf.InterpolationMode.NEAREST_EXACT,
    "bilinear": tvf.InterpolationMode.BILINEAR,
    "bicubic": tvf.InterpolationMode.BICUBIC,
    "lanczos": tvf.InterpolationMode.LANCZOS,
    "box": tvf.InterpolationMode.BOX,
    "hamming": tvf.InterpolationMode.HAMMING,
}


def torchvision_resize(rgb: np.ndarray, size: tuple[int, int], interpolation: str) -> np.ndarray:
    """uint8 (H, W, 3) -> uint8 (size[0], size[1], 3), antialiased, as torchvision does it."""
    # a read-only photo (np.asarray of a PIL image, a memory map) copied: torch warns otherwise
    image = torch.from_numpy(np.require(rgb, requirements=("C", "W"))).permute(2, 0, 1)
    image = image.contiguous()
    with torch.no_grad():
        out = tvf.resize(image, list(size), interpolation=_MODES[interpolation], antialias=True)
    return out.permute(1, 2, 0).contiguous().numpy()
