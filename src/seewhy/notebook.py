"""How an :class:`~seewhy.Explanation` shows itself in Jupyter and in a console.

A notebook displays whatever a cell returns through ``_repr_html_`` and
``_repr_png_``; an Explanation holds whole arrays, so without these it would
print as a wall of numbers. Everything here only reads the Explanation and
draws with :meth:`Explanation.panel`, so a notebook shows the same pictures as
the command line. At most :data:`SHOWN` images are drawn, because a batch of
hundreds would freeze the page; the HTML says how many were left out, and
:func:`plot` takes the indices to draw any others.
"""

from __future__ import annotations

import base64
import functools
import html
import io
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from ._kit.checks import bad_argument, positive_int
from .explanation import json_safe
from .terminal import printable

if TYPE_CHECKING:
    from matplotlib.figure import Figure
    from PIL import Image

    from .explanation import Explanation, Prediction

__all__ = ["SHOWN", "html_block", "plot", "png_bytes", "summary"]

#: Images a notebook draws at most (the first ones); the rest are only counted.
SHOWN = 8
_REPR_TOP1 = 3  # images whose top-1 class the one-line repr names
_LABEL_CHARS = 40  # a label longer than this is shortened in the repr
_MAX_WIDTH = 1024  # px, about a notebook cell's width; wider panels are scaled down
_GAP = 8  # white pixels between stacked panels in the PNG


# --------------------------------------------------------------------------- text


def _short(text: str, limit: int = _LABEL_CHARS) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3].rstrip() + "..."


def _class_text(prediction: Prediction) -> str:
    """``"tabby 87.3%"``, or why there is no class."""
    if not prediction.finite:
        return prediction.label
    return f"{prediction.label} {100 * prediction.probability:.1f}%"


def _size_text(ex: Explanation) -> str:
    """The model-input size as ``HxW`` (every image of a batch has the same)."""
    if ex.images.ndim < 3:
        return "?"
    return f"{ex.images.shape[1]}x{ex.images.shape[2]}"


def summary(ex: Explanation) -> str:
    """One line for ``repr(ex)``: method, layer, how many images, the model input, top-1s.

    Short on purpose: the arrays are in ``ex.maps`` and friends, and a console
    or a debugger should show what the explanation is about, not its numbers.
    Class names come from the model's file, so they are escaped for the
    terminal (method and layer are quoted by ``repr``, which escapes too).

    Parameters
    ----------
    ex : Explanation
        The result to describe.
    """
    n = len(ex)
    top1 = [
        printable(_short(_class_text(ex.predictions[i][0]))) if ex.predictions[i] else "?"
        for i in range(min(n, _REPR_TOP1))
    ]
    if n > _REPR_TOP1:
        top1.append(f"... {n - _REPR_TOP1} more")
    parts = [
        f"method={ex.method!r}",
        f"layer={ex.layer!r}",
        f"images={n}",
        f"input={_size_text(ex)}",
        f"top1=[{', '.join(top1)}]",
    ]
    if ex.failures:
        parts.append(f"failures={len(ex.failures)}")
    return f"Explanation({', '.join(parts)})"


# --------------------------------------------------------------------------- pictures


def _indices(ex: Explanation, indices: Iterable[int] | None) -> list[int]:
    """The images to draw: the given ones (checked), or the first :data:`SHOWN`."""
    if indices is None:
        return list(range(min(len(ex), SHOWN)))
    if isinstance(indices, (int, np.integer)):
        indices = [int(indices)]
    chosen = []
    for i in indices:
        if isinstance(i, bool) or not isinstance(i, (int, np.integer)) or not 0 <= i < len(ex):
            raise bad_argument("indices", f"image indices in [0, {len(ex)})", i, where="plot")
        chosen.append(int(i))
    return chosen


def _for_page(picture: Image.Image) -> Image.Image:
    """``picture`` scaled down to :data:`_MAX_WIDTH` when wider, so pages stay light."""
    from PIL import Image

    if picture.width <= _MAX_WIDTH:
        return picture
    height = max(1, round(picture.height * _MAX_WIDTH / picture.width))
    return picture.resize((_MAX_WIDTH, height), Image.Resampling.LANCZOS)


def _panels(
    ex: Explanation, indices: Sequence[int], options: dict[str, Any], *, page: bool = True
) -> list[Image.Image]:
    """The panels as RGB, scaled for a page unless ``page`` is False (a figure keeps them)."""
    drawn = [ex.panel(i, **options).convert("RGB") for i in indices]
    return [_for_page(p) for p in drawn] if page else drawn


def _encode(picture: Image.Image) -> bytes:
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    return buffer.getvalue()


def _figure_png(fig: Figure) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()


def png_bytes(ex: Explanation, *, limit: int = SHOWN, **options: Any) -> bytes | None:
    """The panels of the first ``limit`` images stacked top to bottom, as PNG bytes.

    None when there is no image (a notebook then shows the other formats).
    ``options`` go to :meth:`Explanation.panel` (``cmap``, ``alpha``, ...).

    Parameters
    ----------
    ex : Explanation
        The result to draw.
    limit : int
        How many images at most.
    **options
        Passed to :meth:`Explanation.panel`.
    """
    count = min(len(ex), positive_int(limit, "limit", where="png_bytes"))
    if count == 0:
        return None
    from PIL import Image

    panels = _panels(ex, range(count), options)
    width = max(p.width for p in panels)
    height = sum(p.height for p in panels) + _GAP * (len(panels) - 1)
    canvas = Image.new("RGB", (width, height), (255, 255, 255))
    top = 0
    for picture in panels:
        canvas.paste(picture, (0, top))
        top += picture.height + _GAP
    return _encode(canvas)


def _classes_table(predictions: Sequence[Prediction]) -> str:
    rows = "".join(
        f"<tr><td style='padding-right:12px'>{html.escape(p.label)}</td>"
        + (
            f"<td style='text-align:right'>{100 * p.probability:.1f}%</td></tr>"
            if p.finite
            else "<td></td></tr>"
        )
        for p in predictions
    )
    return f"<table style='border-collapse:collapse'>{rows}</table>"


def _settings_text(ex: Explanation) -> str:
    if not ex.params:
        return ""
    pairs = ", ".join(f"{key}={json_safe(value)!r}" for key, value in ex.params.items())
    return f"<div>settings: <code>{html.escape(_short(pairs, 300))}</code></div>"


def html_block(ex: Explanation, *, limit: int = SHOWN, **options: Any) -> str:
    """An HTML block: method, layer and model, then per image its panel and top classes.

    The panels are embedded as PNG data, so the block needs no files and no
    network. Only the first ``limit`` images are drawn, and the block says so.

    Parameters
    ----------
    ex : Explanation
        The result to show.
    limit : int
        How many images at most.
    **options
        Passed to :meth:`Explanation.panel`.
    """
    count = min(len(ex), positive_int(limit, "limit", where="html_block"))
    layer = "-" if ex.layer is None else html.escape(str(ex.layer))
    model = " ".join(part for part in (ex.framework, ex.model_name) if part)
    head = (
        f"<div><b>seewhy Explanation</b>: method <code>{html.escape(ex.method)}</code>, "
        f"layer <code>{layer}</code>, {len(ex)} image{'s' if len(ex) != 1 else ''} "
        f"(model input {_size_text(ex)})"
        + (f", model {html.escape(model)}" if model else "")
        + "</div>"
    )
    parts = [head, _settings_text(ex)]
    if count < len(ex):
        parts.append(
            f"<div><i>Showing the first {count} of {len(ex)} images; "
            "<code>ex.plot(indices=...)</code> draws others.</i></div>"
        )
    for i, picture in zip(range(count), _panels(ex, range(count), options), strict=True):
        data = base64.b64encode(_encode(picture)).decode("ascii")
        caption = f"{i}: {ex.sources[i]}" if i < len(ex.sources) else str(i)
        parts.append(
            "<div style='display:flex;gap:12px;align-items:flex-start;margin-top:8px'>"
            f"<img src='data:image/png;base64,{data}' alt='{html.escape(ex.label(i))}' "
            f"style='max-width:75%;height:auto'/>"
            f"<div><div><b>{html.escape(caption)}</b></div>"
            f"<div>explained: {html.escape(ex.label(i))}</div>"
            f"<div>top classes:</div>{_classes_table(ex.predictions[i])}</div></div>"
        )
    if ex.failures:
        listed = "".join(
            f"<li>{html.escape(f.source)}: {html.escape(f.reason)}</li>" for f in ex.failures
        )
        parts.append(f"<div>{len(ex.failures)} input(s) not explained:<ul>{listed}</ul></div>")
    return f"<div class='seewhy-explanation'>{''.join(parts)}</div>"


def plot(ex: Explanation, indices: Iterable[int] | None = None, **options: Any) -> Figure:
    """A matplotlib Figure with one panel per row: the first :data:`SHOWN` images by default.

    ``indices`` picks the images (any number); ``options`` go to
    :meth:`Explanation.panel`. Built on :class:`matplotlib.figure.Figure`,
    not pyplot, so it works headless; save it with ``fig.savefig(path)``.

    Parameters
    ----------
    ex : Explanation
        The result to draw.
    indices : iterable of int, optional
        The images to show.
    **options
        Passed to :meth:`Explanation.panel`.

    Returns
    -------
    matplotlib.figure.Figure
    """
    from matplotlib.figure import Figure

    chosen = _indices(ex, indices)
    if not chosen:
        raise bad_argument("indices", "at least one image", list(chosen), where="plot")
    panels = _panels(ex, chosen, options, page=False)
    width = 10.0
    heights = [width * p.height / p.width for p in panels]
    fig = Figure(figsize=(width, sum(heights) + 0.4 * len(panels)), layout="constrained")
    axes = fig.subplots(len(panels), 1, squeeze=False, height_ratios=heights)
    for row, (i, picture) in enumerate(zip(chosen, panels, strict=True)):
        ax = axes[row][0]
        ax.imshow(np.asarray(picture))
        source = ex.sources[i] if i < len(ex.sources) else str(i)
        ax.set_title(_short(f"{i}: {source} ({ex.method})", 80), fontsize=9)
        ax.set_axis_off()
    # A Figure made without pyplot has no notebook formatter unless pyplot was imported;
    # this lets a notebook draw the returned figure either way (pyplot's, if there, wins).
    setattr(fig, "_repr_png_", functools.partial(_figure_png, fig))  # noqa: B010
    return fig
