"""``yolo:FILE.pt`` / ``yolo:NAME.yaml``: an ultralytics YOLO model, loaded by ultralytics.

A checkpoint (``.pt``) is a pickle of the model object: unpickling it can run
code from the file, so it is refused without ``trust`` (``--trust-model``).
A model YAML (ultralytics' own, e.g. ``yolov8n.yaml``, or a file) builds the
architecture with random weights and needs no trust. ultralytics writes its
settings under ``YOLO_CONFIG_DIR`` and looks for nothing online when
``YOLO_OFFLINE`` is set; seewhy never calls ``predict`` (which fuses layers).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ...errors import BackendError, InvalidInput, UntrustedModel
from ..common import one_line, require_module
from .ultralytics_import import import_ultralytics

__all__ = ["load_ultralytics"]

_TRUST_HINT = "pass --trust-model (trust=True) only if you trust its author"
_CHECKPOINTS = (".pt", ".pth")
_CONFIGS = (".yaml", ".yml")


def load_ultralytics(rest: str, *, weights: str | None = None, trust: bool = False) -> Any:
    """The ``YOLO`` object for ``rest`` (what followed ``yolo:``), as ultralytics loads it.

    Parameters
    ----------
    rest : str
        A checkpoint (``.pt``, trusted only) or a model YAML (random weights).
    weights : str, optional
        Not taken: a checkpoint holds its weights.
    trust : bool
        Allow unpickling a checkpoint.

    Returns
    -------
    ultralytics.YOLO
    """
    if weights is not None:
        raise InvalidInput(
            "weights: a yolo: checkpoint holds its own weights; leave --weights out (or give "
            "a model YAML to yolo: for random weights)"
        )
    path = Path(rest)
    suffix = path.suffix.lower()
    if suffix not in _CHECKPOINTS + _CONFIGS:
        raise InvalidInput(
            f"model: yolo:{rest} is neither an ultralytics checkpoint (.pt) nor a model YAML "
            "(.yaml); pass yolo:FILE.pt or yolo:yolov8n.yaml"
        )
    if suffix in _CHECKPOINTS:
        if not path.is_file():
            raise InvalidInput(f"model: {rest} is not a file; pass the path of a YOLO .pt file")
        if not trust:
            raise UntrustedModel(
                f"model: {path.name} is an ultralytics checkpoint, a pickle that can run code "
                f"from the file when loaded; {_TRUST_HINT}"
            )
    ultralytics = require_module("ultralytics", "detect", importer=import_ultralytics)
    try:
        return ultralytics.YOLO(str(path))
    except (FileNotFoundError, OSError, KeyError, ValueError, TypeError, AttributeError) as exc:
        raise BackendError(
            f"model: ultralytics could not load {path.name} ({one_line(exc)}); check the "
            "file is an ultralytics YOLO checkpoint or model YAML"
        ) from None
