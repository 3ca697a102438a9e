"""The demos: seewhy catching a shortcut, and explaining a segmenter's regions.

Each trains tiny models on synthetic pictures (nothing is downloaded) and
writes a small HTML report: :func:`run_shortcut_demo` (``seewhy demo
shortcut``) and :func:`run_segmentation_demo` (``seewhy demo segmentation``).
"""

from __future__ import annotations

from .segmentation import SegmentationDemoResult, run_segmentation_demo
from .shortcut import DemoResult, run_shortcut_demo

__all__ = ["DemoResult", "SegmentationDemoResult", "run_segmentation_demo", "run_shortcut_demo"]
