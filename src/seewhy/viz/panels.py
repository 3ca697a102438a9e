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
from .._kit.warn import renamed_keyword
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

__all__ = [
    "ARRANGEMENTS",
    "GAP",
    "LAYOUTS",
    "VIEWS",
    "arrange",
    "arrangement_of",
    "explanation_panel",
    "explanation_parts",
    "panel",
]

GAP = 4  # white pixels between the parts of a panel
ARRANGEMENTS = ("horizontal", "vertical")
LAYOUTS = ARRANGEMENTS  # the old name, kept one release with ``layout=``
VIEWS = ("original", "input")
LIME_STYLES = ("superpixels", "heat")


def arrangement_of(where: str, arrangement: str, layout: str | None) -> str:
    """The panel's arrangement, from ``arrangement=`` or its old name ``layout=`` (checked).

    ``layout`` was renamed: in seewhy it means a layer tensor's layout
    (``explain(layout=)``). The old keyword works one more release, with one
    DeprecationWarning; given with a different ``arrangement``, it is refused.
    """
    given = None if arrangement == "horizontal" else arrangement
    chosen = renamed_keyword(where, "layout", "arrangement", layout, given)
    return one_of(chosen or "horizontal", ARRANGEMENTS, "arrangement", where=where)


def arrange(
    parts: list[Image.Image], arrangement: str = "horizontal", *, layout: str | None = None
) -> Image.Image:
    """Pictures of one size in a row (or column), ``GAP`` white pixels apart."""
    arrangement = arrangement_of("arrange", arrangement, layout)
    w, h = parts[0].size
    count = len(parts)
    if arrangement == "horizontal":
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
    arrangement: str = "horizontal",
    layout: str | None = None,
) -> Image.Image:
    """Original | heatmap | overlay side by side, the label drawn on the overlay.

    The map (values in [0, 1], any resolution) is resized to the picture.
    The parts are separated by 4 white pixels; a horizontal panel of an
    (H, W) picture is (3W + 8) x H, ``arrangement="vertical"`` stacks them
    (``layout=`` is its deprecated old name). The label (e.g.
    ``"tabby: 87.3%"``) is white on a black box whose text size follows the
    picture's size.

    Parameters
    ----------
    image : object
        The picture: a path, a PIL image, a uint8 array.
    map_ : numpy.ndarray
        (h, w) values in [0, 1].
    label : str, optional
        Caption drawn on the overlay.
    cmap : str
        A matplotlib colormap name, ``"cv2:jet"`` or ``"cv2:viridis"``.
    alpha : float
        Weight of the picture in the overlay.
    arrangement : {"horizontal", "vertical"}
        Side by side, or stacked.
    layout : str, optional
        Deprecated name of ``arrangement``.
    """
    arrangement = arrangement_of("panel", arrangement, layout)
    label = _check_label(label)
    weight = check_alpha(alpha)
    rgb = load_image(image)
    heat = colorize(resize_map(as_map(map_), rgb.shape[:2]), cmap)
    blended = Image.fromarray(blend(rgb, heat, weight))
    if label:
        draw_label(blended, label)
    return arrange([Image.fromarray(rgb), Image.fromarray(heat), blended], arrangement)


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

    Parameters
    ----------
    explanation : Explanation
        The result holding the map.
    i : int
        Index of the image.
    cmap : str, optional
        A colormap name (default viridis; bwr when signed).
    alpha : float
        Weight of the picture in the overlay.
    at : {"original", "input"}
        Draw on the photo as given, or on the model's input.
    signed : bool
        Pixel attributions with their sign, in a diverging colormap.
    percentile : float
        Where a pixel attribution's scale ends (0-100).
    lime : {"superpixels", "heat"}
        How LIME and Kernel SHAP show: outlined superpixels, or a heatmap.
    top : int, optional
        Superpixels shown (default: the method's ``top_superpixels``).
    negative : bool
        Also show the most negative superpixels, in red.
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
    arrangement: str = "horizontal",
    at: str = "original",
    signed: bool = False,
    percentile: float = DEFAULT_PERCENTILE,
    lime: str = "superpixels",
    top: int | None = None,
    negative: bool = False,
    label: str | None = None,
    layout: str | None = None,
) -> Image.Image:
    """Original | heatmap | overlay of image ``i``, labelled (see :func:`explanation_parts`).

    ``label`` replaces the default caption (the class and its probability);
    ``arrangement="vertical"`` stacks the parts (``layout=``: its deprecated old name).

    Parameters
    ----------
    explanation : Explanation
        The result holding the map.
    i : int
        Index of the image.
    cmap, alpha, at, signed, percentile, lime, top, negative
        As :func:`explanation_parts` takes them.
    arrangement : {"horizontal", "vertical"}
        Side by side, or stacked.
    label : str, optional
        Caption instead of the class and its probability.
    layout : str, optional
        Deprecated name of ``arrangement``.
    """
    arrangement = arrangement_of("panel", arrangement, layout)
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
    return arrange([Image.fromarray(picture), Image.fromarray(heat), shown], arrangement)
