"""Turn files, PIL images, arrays and tensors into model-ready batches.

Nothing here imports a deep-learning framework: tensors are read by duck
typing so that ``import seewhy`` stays cheap and works without torch or
tensorflow installed. The jobs live apart: :mod:`.arrays` (coercion, layouts,
value ranges), :mod:`.decoding` (files, bytes, samples, PIL to RGB),
:mod:`.batches` (resizing for the model, :class:`Batch`, :func:`prepare`,
:class:`BatchStream`) and :mod:`.files` (finding the images in folders).
"""

from __future__ import annotations

from .arrays import to_numpy
from .batches import Batch, BatchStream, Failure, prepare, resize_for_model
from .decoding import ImageSource, load_image
from .files import IMAGE_EXTENSIONS, iter_image_files
from .photos import PHOTO_MAX_SIDE, Photo

__all__ = [
    "IMAGE_EXTENSIONS",
    "PHOTO_MAX_SIDE",
    "Batch",
    "BatchStream",
    "Failure",
    "ImageSource",
    "Photo",
    "iter_image_files",
    "load_image",
    "prepare",
    "resize_for_model",
    "to_numpy",
]
