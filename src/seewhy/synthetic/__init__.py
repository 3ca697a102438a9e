"""Synthetic images whose ground truth is known: shapes, stripes, masks and planted shortcuts.

Why: an explanation can only be scored against the truth when the truth is
known. Each picture holds one object (the class) on a cluttered background,
with its exact pixel mask and box (:class:`ShapesData`).

* :func:`make_shapes`: a textured shape per picture; optionally a *shortcut*
  is planted, a coloured watermark patch in a corner (or a background tint)
  that names a class. In training it agrees with the label at
  ``shortcut_rate``; in testing it can be made to lie, so a model that learnt
  the shortcut instead of the shape is exposed (see :mod:`seewhy.demo`).
* :func:`make_stripes`: a smaller set whose class is a stripe orientation.
* :func:`mass_inside`, :func:`box_share`, :func:`peak_inside`: per-image
  checks that a map sits on the object.
* :func:`make_captioned_shapes`: several coloured shapes per picture, each
  with its caption ("a red circle"), mask and box, for text prompts
  (:mod:`seewhy.synthetic.captions`).
* :func:`train_torch_segmenter`: a tiny per-pixel segmenter of the shapes
  (background or shape class), for ``Region`` explanations (the
  segmentation demo).

The small CNN trainers (:func:`train_torch`, :func:`train_keras`) import their
framework only when called; this package itself needs numpy alone.
"""

from __future__ import annotations

from .captions import COLOURS, CaptionedShapes, make_captioned_shapes
from .data import ShapesData, preprocess_for
from .scores import box_share, mass_inside, peak_inside
from .segmentation import pixel_labels, predict_pixels, train_torch_segmenter
from .shapes import SHAPES, make_shapes
from .stripes import STRIPES, STRIPES_PREPROCESS, make_stripes
from .training import accuracy, train, train_keras, train_torch

__all__ = [
    "COLOURS",
    "SHAPES",
    "STRIPES",
    "STRIPES_PREPROCESS",
    "CaptionedShapes",
    "ShapesData",
    "accuracy",
    "box_share",
    "make_captioned_shapes",
    "make_shapes",
    "make_stripes",
    "mass_inside",
    "peak_inside",
    "pixel_labels",
    "predict_pixels",
    "preprocess_for",
    "train",
    "train_keras",
    "train_torch",
    "train_torch_segmenter",
]
