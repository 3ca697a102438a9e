"""Detectors and promptable segmenters: ultralytics YOLO, DETR-style and open-vocabulary
detectors, SAM, and segmenters beyond torchvision.

Each kind is a recogniser module here, registered by one line in
:data:`seewhy.adapters.RECOGNISERS`: it hands the backends the module that
sees the pixels and binds the user's targets (a :class:`~seewhy.targets.Box`,
a mask prompt, a region) to ordinary targets scoring its output. Importing
this package imports no framework.
"""

from __future__ import annotations

__all__: list[str] = []
