"""The sanity check's figure in the paper's style (matplotlib, headless)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ...errors import InvalidInput
from .result import SanityResult
from .similarity import SANITY_MEASURES

__all__ = ["plot_sanity"]


def _plot_measures(fig: Any, cell: Any, items: Sequence[SanityResult]) -> None:
    """One small panel per measure, steps along x, one line per method."""
    names = [m for m in SANITY_MEASURES if all(getattr(r, m) is not None for r in items)]
    panels = cell.subgridspec(1, len(names), wspace=0.05)
    steps = len(items[0].steps)
    xs = np.arange(steps)
    first = None
    for col, name in enumerate(names):
        ax = fig.add_subplot(panels[0, col], sharey=first)
        first = first or ax
        for k, res in enumerate(items):
            ax.plot(xs, res.mean(name), "-o", color=f"C{k % 10}", label=res.method, markersize=3)
        ax.axhline(0.0, color="0.6", linewidth=0.8)
        ax.set_ylim(-0.3, 1.05)
        ax.set_title(SANITY_MEASURES[name], fontsize=8)
        ax.set_xticks(xs)
        ax.set_xticklabels(items[0].steps, rotation=60, ha="right", fontsize=6)
        if col == 0:
            ax.set_ylabel("similarity to original map")
            ax.legend(fontsize=7, loc="lower left")
        else:
            ax.tick_params(labelleft=False)


def plot_sanity(
    results: SanityResult | Sequence[SanityResult],
    *,
    image: int = 0,
    max_columns: int = 8,
) -> Any:
    """A matplotlib Figure in the paper's style.

    Top: one panel per similarity measure (rank correlations, SSIM, HOG), the
    mean over images per step, one colour per method. Below: for each method,
    image ``image``'s original map followed by its maps after (up to
    ``max_columns``) randomisation steps. Built on
    :class:`matplotlib.figure.Figure`, so it works headless.

    Parameters
    ----------
    results : SanityResult or sequence of SanityResult
        One check, or several (one per method) over the same images and steps.
    image : int
        Which image's maps the lower rows show.
    max_columns : int
        The most steps shown as maps, spread evenly over them.

    Returns
    -------
    matplotlib.figure.Figure
        The figure; save it with ``savefig``.

    Raises
    ------
    InvalidInput
        No results, or ``image`` out of range.
    """
    from matplotlib.figure import Figure

    items = [results] if isinstance(results, SanityResult) else list(results)
    if not items:
        raise InvalidInput("results: expected at least one SanityResult")
    if not 0 <= image < len(items[0].original):
        raise InvalidInput(f"image: expected 0..{len(items[0].original) - 1}, got {image}")
    steps = len(items[0].steps)
    shown = sorted(set(np.linspace(0, steps - 1, min(steps, max_columns)).round().astype(int)))
    columns = 1 + len(shown)
    fig = Figure(figsize=(max(10.0, 1.5 * columns), 3.6 + 1.6 * len(items)), layout="constrained")
    grid = fig.add_gridspec(1 + len(items), columns, height_ratios=[2.2] + [1.0] * len(items))
    _plot_measures(fig, grid[0, :], items)
    what = {
        "cascading": "cascading randomisation (top layer first)",
        "independent": "independent layer randomisation",
        "data": "data randomisation",
    }.get(items[0].mode, items[0].mode)
    fig.suptitle(f"Sanity check: {what}")
    for row, res in enumerate(items, start=1):
        panels = [("original", res.original[image])] + [
            (res.steps[j], res.randomized[j, image]) for j in shown
        ]
        for col, (title, m) in enumerate(panels):
            sub = fig.add_subplot(grid[row, col])
            sub.imshow(m, cmap="viridis", vmin=0.0, vmax=1.0)
            sub.set_xticks([])
            sub.set_yticks([])
            sub.set_title(title if len(title) <= 18 else "..." + title[-15:], fontsize=7)
            if col == 0:
                sub.set_ylabel(res.method, fontsize=8)
    return fig
