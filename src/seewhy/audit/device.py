"""Where the audit's model runs: the CPU, this machine's GPU, or a Ray actor's GPU.

Only PyTorch models are moved; Keras places its own variables (TensorFlow,
JAX and Keras-on-torch all pick a visible GPU by themselves). Every choice is
a small pure function of what it looks at (the request, whether PyTorch sees
a GPU, ``CUDA_VISIBLE_DEVICES``, the GPU ids Ray assigned) so it can be
checked on a machine without a GPU. Moving and packing the model itself is
its backend's job (``Backend.place``, ``Backend.pack``,
``seewhy.backends.unpack_model``); this module imports no framework.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Mapping, Sequence
from typing import Any

from seewhy.backends import backend_for
from seewhy.backends.capabilities import Devices
from seewhy.errors import BackendError, InvalidInput

__all__ = [
    "DEVICE_CHOICES",
    "actor_device",
    "actors_for",
    "check_device",
    "cuda_available",
    "gpus_for_actors",
    "local_device",
    "placed_backend",
]

DEVICE_CHOICES = "auto, cpu, cuda or cuda:N"
_DEVICE = re.compile(r"auto|cpu|cuda(:\d+)?")
_NO_GPU_HINT = "pass --gpus-per-worker 0 (gpus_per_worker=0) to run the actors on CPUs"


def check_device(device: str) -> str:
    """``device`` if it is one of :data:`DEVICE_CHOICES`; a clear error otherwise."""
    if not isinstance(device, str) or not _DEVICE.fullmatch(device):
        raise InvalidInput(f"device: expected {DEVICE_CHOICES}, got {device!r}")
    return device


def placed_backend(model: Any) -> Devices | None:
    """The backend of a model the audit places on a device itself: a PyTorch one.

    Keras (on any backend) places its own variables, and an object no backend
    runs is left for the explanation to refuse, so both give None.
    """
    try:
        backend = backend_for(model)
    except BackendError:
        return None
    return backend if backend.framework == "torch" and isinstance(backend, Devices) else None


def cuda_available() -> bool:
    """Whether PyTorch sees a usable CUDA GPU; never imports torch for a model without it."""
    torch = sys.modules.get("torch")
    return torch is not None and bool(torch.cuda.is_available())


def _cuda_hidden(env: Mapping[str, str]) -> bool:
    """``CUDA_VISIBLE_DEVICES`` set to nothing (or -1) hides every GPU."""
    visible = env.get("CUDA_VISIBLE_DEVICES")
    return visible is not None and visible.strip() in ("", "-1")


def local_device(
    requested: str, *, owned: bool, env: Mapping[str, str] | None = None
) -> str | None:
    """The device for the local engine's model, or None to leave it where it is.

    ``auto`` moves only a model the audit loaded itself (by name or file) and
    only when a GPU is visible; a model object the caller passed stays on its
    device, since moving it would change the caller's object. An explicit
    ``cuda`` without a usable GPU is an error, not a silent CPU run.
    """
    check_device(requested)
    visible = not _cuda_hidden(os.environ if env is None else env) and cuda_available()
    if requested == "auto":
        return ("cuda" if visible else "cpu") if owned else None
    if requested.startswith("cuda") and not visible:
        raise InvalidInput(
            f"device: {requested!r} asked for, but PyTorch sees no CUDA GPU here "
            "(torch.cuda.is_available() is False or CUDA_VISIBLE_DEVICES hides them)"
        )
    return requested


def actor_device(gpu_ids: Sequence[int | str], *, cuda_available: bool, visible: str | None) -> str:
    """The torch device of a Ray actor that Ray gave ``gpu_ids`` (from ``ray.get_gpu_ids``).

    Ray normally narrows ``CUDA_VISIBLE_DEVICES`` to the actor's GPUs, so its
    first GPU is ``cuda:0``; when that variable lists more (or is unset, as with
    ``RAY_EXPERIMENTAL_NOSET_CUDA_VISIBLE_DEVICES``) the GPU's position in it is
    used, so two actors on one machine never share GPU 0 by mistake.
    """
    if not gpu_ids:
        return "cpu"
    first = str(gpu_ids[0])
    if not cuda_available:
        raise BackendError(
            f"Ray gave this actor GPU {first} (CUDA_VISIBLE_DEVICES={visible!r}) but "
            "PyTorch sees no usable CUDA device there (torch.cuda.is_available() is "
            f"False: no driver, or a CPU-only torch); {_NO_GPU_HINT}"
        )
    if visible is None:
        return f"cuda:{first}" if first.isdigit() else "cuda:0"
    listed = [v.strip() for v in visible.split(",") if v.strip()]
    return f"cuda:{listed.index(first)}" if first in listed else "cuda:0"


def gpus_for_actors(requested: float | None, device: str, cluster_gpus: float) -> float:
    """GPUs each Ray actor asks for: as given, else from ``device`` and the cluster."""
    if requested is not None:
        return float(requested)
    if device == "cpu":
        return 0.0
    if device.startswith("cuda"):
        return 1.0
    return 1.0 if cluster_gpus > 0 else 0.0


def actors_for(
    requested: int | None, gpus_per_actor: float, cluster_gpus: float, batches: int
) -> int:
    """How many actors: as given, else one per GPU share the cluster holds, else 2.

    Asking for more GPU actors than the cluster can place leaves the extra
    ones pending for the whole run, so the default fits the cluster; and no
    more actors start than there are batches, since each loads a model.
    """
    if requested is not None:
        wanted = requested
    elif gpus_per_actor > 0 and cluster_gpus > 0:
        wanted = max(1, int(cluster_gpus // gpus_per_actor))
    else:
        wanted = 2
    return max(1, min(wanted, batches))
