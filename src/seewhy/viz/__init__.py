"""Pictures of explanations: colormaps, overlays, panels, the LIME view and method grids.

Panels draw the map back onto the user's photo at its own aspect (the crop
undone; ``at="input"`` for the model's view). Pixel attributions are drawn
with the colour scale ending at the 99th percentile of ``|a|``
(:data:`DEFAULT_PERCENTILE`), optionally signed in a diverging colormap;
LIME shows its top superpixels outlined. Colormaps are any matplotlib name,
or OpenCV's exact ``"cv2:jet"`` / ``"cv2:viridis"``. Matplotlib is imported
only inside the functions that need it, so ``import seewhy`` stays fast.
"""

from __future__ import annotations

from .attributions import (
    DEFAULT_PERCENTILE,
    SIGNED_CMAP,
    clip_percentile,
    diverging,
    drawn_map,
    is_pixel_method,
    signed_to_rgb,
    unsigned_to_rgb,
)
from .colormaps import OPENCV_COLORMAPS, colorize, colormap_table
from .figures import figure
from .geometry import onto_photo
from .grid import grid
from .overlays import overlay
from .panels import explanation_panel, explanation_parts, panel
from .superpixels import superpixel_view

__all__ = [
    "DEFAULT_PERCENTILE",
    "OPENCV_COLORMAPS",
    "SIGNED_CMAP",
    "clip_percentile",
    "colorize",
    "colormap_table",
    "diverging",
    "drawn_map",
    "explanation_panel",
    "explanation_parts",
    "figure",
    "grid",
    "is_pixel_method",
    "onto_photo",
    "overlay",
    "panel",
    "signed_to_rgb",
    "superpixel_view",
    "unsigned_to_rgb",
]
