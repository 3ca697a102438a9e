"""Side-by-side panels: original | heatmap | overlay, at the photo's own geometry.

The model saw a resized, cropped square; a person shows the photo they took.
An :class:`~seewhy.Explanation` keeps each raw picture (:class:`seewhy.inputs.Photo`)
so the map is drawn back onto it: at its aspect and resolution, the crop
undone, no heat where the model saw nothing. ``at="input"`` draws the
model's view instead. How each kind of method is coloured is in
:func:`explanation_parts`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from .._kit.checks import bad_argument, one_of
from ..inputs import load_image
from .attributions import DEFAULT_PERCENTILE, SIGNED_CMAP, drawn_map
from .boxes import draw_target_box
from .colormaps import check_cmap, colorize
from .geometry import labels_onto_photo, onto_photo
from .labels import draw_label
from .overlays import blend
from .superpixels import superpixel_view
from .values import as_map, check_alpha, resize_map

if TYPE_CHECKING:
    from ..explanation import Explanation

__all__ = ["GAP", "LAYOUTS", "VIEWS", "arrange", "explanation_panel", "explanation_parts", "panel"]

GAP = 4  # white pixels between the parts of a panel
LAYOUTS = ("horizontal", "vertical")
VIEWS = ("original", "input")
LIME_STYLES = ("superpixels", "heat")


def arrange(parts: list[Image.Image], layout: str = "horizontal") -> Image.Image:
    """Pictures of one size in a row (or column), ``GAP`` white pixels apart."""
    one_of(layout, LAYOUTS, "layout")
    w, h = parts[0].size
    count = len(parts)
    if layout == "horizontal":
        canvas = Image.new("RGB", (count * w + (count - 1) * GAP, h), (255, 255, 255))
        for i, part in enumerate(parts):
            canvas.paste(part, (i * (w + GAP), 0))
    else:
        canvas = Image.new("RGB", (w, count * h + (count - 1) * GAP), (255, 255, 255))
        for i, part in enumerate(parts):
            canvas.paste(part, (0, i * (h + GAP)))
    return canvas


def _check_label(label: object) -> str | None:
    if label is not None and not isinstance(label, str):
        raise bad_argument("label", "a string or None", type(label).__name__)
    return label


def panel(
    image: object,
    map_: np.ndarray,
    *,
    label: str | None = None,
    cmap: str = "viridis",
    alpha: float = 0.5,
    layout: str = "horizontal",
) -> Image.Image:
    """Original | heatmap | overlay side by side, the label drawn on the overlay.

    The map (values in [0, 1], any resolution) is resized to the picture.
    The parts are separated by 4 white pixels; a horizontal panel of an
    (H, W) picture is (3W + 8) x H. The label (e.g. ``"tabby: 87.3%"``) is
    white on a black box whose text size follows the picture's size.
    """
    one_of(layout, LAYOUTS, "layout")
    label = _check_label(label)
    weight = check_alpha(alpha)
    rgb = load_image(image)
    heat = colorize(resize_map(as_map(map_), rgb.shape[:2]), cmap)
    blended = Image.fromarray(blend(rgb, heat, weight))
    if label:
        draw_label(blended, label)
    return arrange([Image.fromarray(rgb), Image.fromarray(heat), blended], layout)


def explanation_parts(
    explanation: Explanation,
    i: int,
    *,
    cmap: str | None = None,
    alpha: float = 0.5,
    at: str = "original",
    signed: bool = False,
    percentile: float = DEFAULT_PERCENTILE,
    lime: str = "superpixels",
    top: int | None = None,
    negative: bool = False,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(picture, heatmap, overlay) of image ``i``, uint8 (H, W, 3) each, unlabelled.

    * CAMs and perturbation maps: ``maps`` as they are, in ``cmap``.
    * Pixel attributions: scale ending at ``percentile`` of |a| (99 by
      default), ``signed`` in a diverging colormap (``bwr`` unless ``cmap``).
    * LIME / Kernel SHAP: the third part shows the ``top`` superpixels
      (default: the method's ``top_superpixels``) outlined, ``negative`` ones
      too; ``lime="heat"`` gives the usual overlay of the weights instead.

    ``at="original"`` draws on the kept photo when there is one (raw
    pictures), ``"input"`` on what the model saw.
    """
    one_of(at, VIEWS, "at")
    one_of(lime, LIME_STYLES, "lime")
    weight = check_alpha(alpha)
    colours = check_cmap(cmap if cmap is not None else SIGNED_CMAP if signed else "viridis")
    values = drawn_map(explanation, i, signed=signed, percentile=percentile)
    photo = explanation.photo(i) if at == "original" else None
    inside = None
    if photo is not None:
        picture = np.asarray(photo.picture)
        values, inside = onto_photo(values, photo)
        if signed:
            values = np.where(inside, values, np.float32(0.5))
    else:
        picture = np.asarray(explanation.images[i])
        values = resize_map(values, picture.shape[:2])
    heat = colorize(values, colours)
    segments = explanation.extras.get("segments")
    if (
        lime == "superpixels"
        and segments is not None
        and "superpixel_weights" in explanation.extras
    ):
        labels = np.asarray(segments[i]).astype(np.int64)
        if photo is not None:
            labels, _ = labels_onto_photo(labels, photo)
        chosen = top if top is not None else int(explanation.params.get("top_superpixels", 5))
        weights = np.asarray(explanation.extras["superpixel_weights"][i], dtype=np.float64)
        third = superpixel_view(picture, labels, weights, top=chosen, negative=negative)
    else:
        third = blend(picture, heat, weight, inside)
    return picture, heat, draw_target_box(third, explanation, i, photo)  # a detection's box


def explanation_panel(
    explanation: Explanation,
    i: int,
    *,
    cmap: str | None = None,
    alpha: float = 0.5,
    layout: str = "horizontal",
    at: str = "original",
    signed: bool = False,
    percentile: float = DEFAULT_PERCENTILE,
    lime: str = "superpixels",
    top: int | None = None,
    negative: bool = False,
    label: str | None = None,
) -> Image.Image:
    """Original | heatmap | overlay of image ``i``, labelled (see :func:`explanation_parts`).

    ``label`` replaces the default caption (the class and its probability).
    """
    one_of(layout, LAYOUTS, "layout")
    picture, heat, third = explanation_parts(
        explanation,
        i,
        cmap=cmap,
        alpha=alpha,
        at=at,
        signed=signed,
        percentile=percentile,
        lime=lime,
        top=top,
        negative=negative,
    )
    shown = Image.fromarray(third)
    caption = explanation.label(i) if label is None else _check_label(label)
    if caption:
        draw_label(shown, caption)
    return arrange([Image.fromarray(picture), Image.fromarray(heat), shown], layout)
