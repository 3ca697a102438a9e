"""What EfficientNet-Lite0 takes and what its outputs mean: shared by the PyTorch and Keras zoo.

Its own module so that both definitions read it without importing the zoo's
front door (which imports them).
"""

from __future__ import annotations

from functools import lru_cache
from importlib import resources

from seewhy.errors import BackendError
from seewhy.preprocess import ModelSpec, Preprocess

__all__ = ["EFFICIENTNET_LITE0_PREPROCESS", "imagenet_labels", "lite0_spec"]

# EfficientNet-Lite was trained with inception-style scaling, (x - 127) / 128,
# chosen by Google for clean post-training quantisation; the torchvision
# mean/std gives visibly worse predictions. The photo is resized whole to
# 224 x 224 (no crop), so the explanation covers everything the user passed.
EFFICIENTNET_LITE0_PREPROCESS = Preprocess(
    size=(224, 224),
    resize=None,
    mean=(127.0, 127.0, 127.0),
    std=(128.0, 128.0, 128.0),
    scale=1.0,
)


@lru_cache(maxsize=1)
def imagenet_labels() -> tuple[str, ...]:
    """The 1000 ImageNet-1k class names in index order (read once, no torch)."""
    text = resources.files("seewhy.zoo").joinpath("imagenet_classes.txt").read_text("utf-8")
    labels = tuple(line.strip() for line in text.splitlines() if line.strip())
    if len(labels) != 1000:  # a broken install would otherwise mislabel silently
        raise BackendError(f"imagenet_classes.txt: expected 1000 labels, found {len(labels)}")
    return labels


def lite0_spec() -> ModelSpec:
    """The spec the bundled Lite0 carries: its preprocessing and the ImageNet labels."""
    return ModelSpec(
        name="efficientnet_lite0",
        preprocess=EFFICIENTNET_LITE0_PREPROCESS,
        labels=imagenet_labels(),
    )
