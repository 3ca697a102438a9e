"""ultralytics, imported without the changes it makes to the whole process.

On import, ultralytics replaces ``torch.save`` and ``PIL.Image.open`` (its
``Image.open``, on a file PIL cannot read, tries to install ``pi-heif``
with pip), sets ``OMP_NUM_THREADS`` and other environment variables, turns
OpenCV's threads off and changes torch's and numpy's print options. When
seewhy is the one importing it (``--model yolo:...``), none of that may
outlast the import: a corrupt photo in the user's folder must stay a
one-line skip, not a pip run, and the user's ``torch.save`` their own.
When the user imported ultralytics first, their process is as they made it.
"""

from __future__ import annotations

import copy
import os
import sys
import warnings
from collections.abc import Callable
from types import ModuleType
from typing import Any

__all__ = ["import_ultralytics"]


def import_ultralytics() -> ModuleType:
    """The ``ultralytics`` module; the process as it was before, if seewhy imported it.

    Returns
    -------
    module
        ``ultralytics``, with ``ultralytics.nn.tasks`` loaded.
    """
    import importlib

    if "ultralytics" in sys.modules:
        return sys.modules["ultralytics"]
    restore = _snapshot()
    try:
        module = importlib.import_module("ultralytics")
        importlib.import_module("ultralytics.nn.tasks")
    finally:
        restore()
    return module


def _snapshot() -> Callable[[], None]:
    """What ultralytics changes on import, and a function that puts it back."""
    import numpy as np
    import torch
    from PIL import Image
    from torch import _tensor_str

    environ = dict(os.environ)
    save, image_open = torch.save, Image.open
    numpy_print = np.get_printoptions()
    torch_print = copy.copy(_tensor_str.PRINT_OPTS.__dict__)
    filters = list(warnings.filters)
    cv2: Any = sys.modules.get("cv2")
    cv2_threads = cv2.getNumThreads() if cv2 is not None else None

    def restore() -> None:
        for key in set(os.environ) - set(environ):
            del os.environ[key]
        os.environ.update(environ)
        torch.save, Image.open = save, image_open
        np.set_printoptions(**numpy_print)
        _tensor_str.PRINT_OPTS.__dict__.update(torch_print)
        warnings.filters[:] = filters  # type: ignore[index]
        if cv2_threads is not None:
            cv2.setNumThreads(cv2_threads)

    return restore
