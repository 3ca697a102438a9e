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
used as is. Actors ask for ``gpus_per_worker`` GPUs each (default: 1 when
the cluster has GPUs, else 0), and move the model to the GPU.
"""

from __future__ import annotations

import contextlib
import json
import logging
import pickle
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from seewhy.errors import BackendError

from .dataset import Item
from .store import Store
from .worker import BatchWorker, Settings

__all__ = ["AuditActor", "require_ray", "run_ray"]

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


def _to_gpu(model: Any) -> Any:
    """Move a torch model to this actor's GPU; other frameworks place themselves."""
    if hasattr(model, "to") and hasattr(model, "parameters"):
        return model.to("cuda")
    return model


class AuditActor:
    """A Ray Data callable class: loads the model once, then runs whole batches."""

    def __init__(
        self,
        model_source: str | None,
        model_object: Any,
        settings: Settings,
        load_args: Mapping[str, Any],
        use_gpu: bool,
    ) -> None:
        if model_source is None:
            model = model_object  # this actor's own unpickled copy
        else:
            from seewhy.loading import load_model

            model = load_model(str(model_source), **dict(load_args))
        if use_gpu:
            model = _to_gpu(model)
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


def run_ray(
    model: Any,
    model_obj: Any,
    settings: Settings,
    todo: Sequence[tuple[int, Sequence[Item]]],
    store: Store,
    advance: Callable[[int], None],
    *,
    actors: int = 2,
    address: str | None = None,
    gpus_per_worker: float | None = None,
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
        from ray.data import ActorPoolStrategy

        if gpus_per_worker is None:
            gpus_per_worker = 1.0 if ray.cluster_resources().get("GPU", 0) > 0 else 0.0
        sizes = {k: len(items) for k, items in todo}
        rows = [
            {"batch": k, "items": json.dumps([i.to_json() for i in items])} for k, items in todo
        ]
        by_name = isinstance(model, str)
        ds = ray.data.from_items(rows, override_num_blocks=len(rows))
        ds = ds.map_batches(
            AuditActor,
            batch_size=1,
            compute=ActorPoolStrategy(size=actors),
            fn_constructor_kwargs={
                "model_source": model if by_name else None,
                "model_object": None if by_name else model_obj,
                "settings": settings,
                "load_args": dict(load_args or {}),
                "use_gpu": gpus_per_worker > 0,
            },
            num_cpus=1,
            num_gpus=gpus_per_worker,
        )
        with _quiet_ray_data(ray):
            for row in ds.iter_rows():
                result = pickle.loads(row["payload"])
                store.write(result)
                advance(sizes[int(row["batch"])])
    except BackendError:
        raise
    except Exception as exc:
        if type(exc).__module__.startswith("ray"):
            first = str(exc).strip().splitlines()
            raise BackendError(
                f"Ray audit failed: {first[-1] if first else type(exc).__name__}"
            ) from exc
        raise
    finally:
        if started:
            ray.shutdown()
