"""Scale the audit out with Ray Data: an actor pool, one model per actor.

Each row of the Ray dataset is one batch of the audit (its index and its
items), so every actor runs exactly the batches the local engine would run,
through the same :class:`~seewhy.audit.worker.BatchWorker`: the results are
identical. Actors decode, explain and draw; they send the finished batch
back, and only the driver writes to the output folder, so the folder need
not be shared. The image paths must be readable from every node (a shared
file system, or the same paths on each machine).

Pointing it at a cluster: with ``RAY_ADDRESS`` set (e.g.
``RAY_ADDRESS=ray://head:10001`` or ``auto`` on a cluster node), or with
``ray_address=`` / ``--ray-address``, :func:`ray.init` joins that cluster;
otherwise a Ray instance is started on this machine for the run and shut
down after it. If the caller already called ``ray.init`` that session is
used as is.

GPUs: each actor asks Ray for ``gpus_per_worker`` GPUs (default: 1 when the
cluster has GPUs or ``device`` says ``cuda``, 0 when it says ``cpu``), and
the default number of actors is what the cluster's GPUs can hold. An actor
that Ray gave a GPU (``ray.get_gpu_ids()``) moves its PyTorch model there;
the maps come back as numpy arrays either way. A model object is sent as
bytes that load onto the CPU, so one that sits on the driver's GPU still
reaches an actor with another GPU, or none.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import pickle
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from seewhy.backends import backend_for, unpack_model
from seewhy.backends.requirements import need_devices
from seewhy.errors import BackendError

from .dataset import Item
from .device import actor_device, actors_for, cuda_available, gpus_for_actors, placed_backend
from .store import Store
from .worker import BatchWorker, Settings

__all__ = ["AuditActor", "pool_options", "require_ray", "run_ray"]

INSTALL_HINT = "install it with: pip install 'seewhy[audit]' (or: pip install 'ray[data]')"


def require_ray() -> Any:
    """The ``ray`` module with Ray Data, or a one-line error saying what to install."""
    try:
        import ray
        import ray.data
    except ImportError as exc:
        raise BackendError(
            f"engine 'ray' needs Ray Data, which is not installed; {INSTALL_HINT}"
        ) from exc
    return ray


def _actor_placement(model: Any) -> tuple[Any, str]:
    """This actor's model on the GPU Ray gave it (if any), and that device's name."""
    backend = placed_backend(model)
    if backend is None:
        return model, "own"  # Keras finds the actor's GPU by itself
    import ray

    device = actor_device(
        ray.get_gpu_ids(),
        cuda_available=cuda_available(),
        visible=os.environ.get("CUDA_VISIBLE_DEVICES"),
    )
    return backend.place(device), device


class AuditActor:
    """A Ray Data callable class: loads the model once, then runs whole batches."""

    def __init__(
        self,
        model_source: str | None,
        model_object: Any,
        settings: Settings,
        load_args: Mapping[str, Any],
    ) -> None:
        if model_source is None:
            model = unpack_model(model_object)  # this actor's own copy, on the CPU
        else:
            from seewhy.loading import load_model

            model = load_model(str(model_source), **dict(load_args))
        model, self.device = _actor_placement(model)
        self.worker = BatchWorker(model, settings)

    def __call__(self, batch: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        indices: list[int] = []
        payloads: list[bytes] = []
        for k, text in zip(batch["batch"], batch["items"], strict=True):
            items = [Item.from_json(d) for d in json.loads(str(text))]
            w = self.worker
            result = w.render(w.compute(int(k), w.decode_all(items)))
            indices.append(int(k))
            payloads.append(pickle.dumps(result, protocol=pickle.HIGHEST_PROTOCOL))
        return {
            "batch": np.asarray(indices, dtype=np.int64),
            "payload": np.asarray(payloads, dtype=object),
        }


@contextlib.contextmanager
def _quiet_ray_data(ray: Any) -> Iterator[None]:
    """Keep Ray Data's own progress bars and INFO lines off the user's terminal."""
    context = ray.data.DataContext.get_current()
    saved = (
        context.enable_progress_bars,
        context.enable_operator_progress_bars,
        context.enable_auto_log_stats,
    )
    logger = logging.getLogger("ray.data")
    level = logger.level
    logger.setLevel(logging.ERROR)
    context.enable_progress_bars = False
    context.enable_operator_progress_bars = False
    context.enable_auto_log_stats = False
    try:
        yield
    finally:
        logger.setLevel(level)
        (
            context.enable_progress_bars,
            context.enable_operator_progress_bars,
            context.enable_auto_log_stats,
        ) = saved


def pool_options(
    ray: Any,
    model: Any,
    model_obj: Any,
    settings: Settings,
    *,
    batches: int,
    actors: int | None,
    gpus_per_worker: float | None,
    device: str,
    load_args: Mapping[str, Any],
) -> dict[str, Any]:
    """The ``map_batches`` arguments: the actor pool, its GPUs, the actors' model."""
    cluster_gpus = float(ray.cluster_resources().get("GPU", 0))
    gpus = gpus_for_actors(gpus_per_worker, device, cluster_gpus)
    by_name = isinstance(model, str)
    return {
        "batch_size": 1,
        "compute": ray.data.ActorPoolStrategy(size=actors_for(actors, gpus, cluster_gpus, batches)),
        "fn_constructor_kwargs": {
            "model_source": model if by_name else None,
            "model_object": None
            if by_name
            else need_devices(backend_for(model_obj), "engine: ray").pack(ray.cloudpickle),
            "settings": settings,
            "load_args": dict(load_args),
        },
        "num_cpus": 1,
        "num_gpus": gpus,
    }


def run_ray(
    model: Any,
    model_obj: Any,
    settings: Settings,
    todo: Sequence[tuple[int, Sequence[Item]]],
    store: Store,
    advance: Callable[[int], None],
    *,
    actors: int | None = None,
    address: str | None = None,
    gpus_per_worker: float | None = None,
    device: str = "auto",
    load_args: Mapping[str, Any] | None = None,
) -> None:
    """Run the batches ``todo`` on an actor pool; the driver writes each as it arrives."""
    ray = require_ray()
    started = False
    if not ray.is_initialized():
        ray.init(
            address=address,
            include_dashboard=False,
            logging_level=logging.WARNING,
            log_to_driver=False,
        )
        started = True
    try:
        options = pool_options(
            ray,
            model,
            model_obj,
            settings,
            batches=len(todo),
            actors=actors,
            gpus_per_worker=gpus_per_worker,
            device=device,
            load_args=load_args or {},
        )
        sizes = {k: len(items) for k, items in todo}
        rows = [
            {"batch": k, "items": json.dumps([i.to_json() for i in items])} for k, items in todo
        ]
        ds = ray.data.from_items(rows, override_num_blocks=len(rows))
        ds = ds.map_batches(AuditActor, **options)
        with _quiet_ray_data(ray):
            for row in ds.iter_rows():
                result = pickle.loads(row["payload"])
                store.write(result)
                advance(sizes[int(row["batch"])])
    except Exception as exc:
        short = _one_line(exc)
        if short is None:
            raise
        raise short from exc
    finally:
        if started:
            ray.shutdown()


def _one_line(exc: Exception) -> BackendError | None:
    """Ray's long wrapped errors as one line; None for errors that are not Ray's."""
    if not type(exc).__module__.startswith("ray"):
        return None
    lines = [ln for ln in str(exc).strip().splitlines() if ln.strip()]
    cause = next((ln for ln in reversed(lines) if ln.startswith("seewhy.errors.")), None)
    if cause is not None:  # e.g. an actor's BackendError, wrapped by Ray
        return BackendError(f"Ray audit failed: {cause.split(': ', 1)[-1]}")
    return BackendError(f"Ray audit failed: {lines[-1] if lines else type(exc).__name__}")
