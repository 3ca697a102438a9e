"""Run an audit: walk the data, explain it batch by batch, write the report.

The local engine decodes the next batches in a thread pool while the current
one is explained, and draws and writes the finished batch in another thread,
so the model rarely waits for files. Pillow and numpy release the GIL while
they decode, resize and encode, so the threads overlap with the model's
compute for real.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from seewhy._target_plan import check_head
from seewhy.api import model_spec
from seewhy.errors import InvalidInput
from seewhy.loading import load_model
from seewhy.spec import warn_guessed

from .dataset import Dataset, Item, LabelsFrom, collect
from .device import check_device, local_device, placed_backend
from .lock import hold
from .store import Store
from .summary import summarize
from .targets import check_audit_target
from .worker import BatchWorker, Decoded, Settings

__all__ = ["AuditResult", "Engine", "Progress", "audit", "run_local"]

Engine = Literal["local", "ray"]
#: Called with (images done, images in total) at the start and after each batch.
Progress = Callable[[int, int], None]
Batches = Sequence[tuple[int, Sequence[Item]]]

PREFETCH_BATCHES = 2


@dataclass(frozen=True)
class AuditResult:
    """Where the audit wrote its files, and its headline numbers."""

    out: Path
    report: Path
    tables: tuple[Path, ...]
    summary: dict[str, Any]
    batches: int
    resumed_batches: int
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def failed(self) -> int:
        return int(self.summary["failed"])

    @property
    def accuracy(self) -> float | None:
        acc = self.summary["accuracy"]
        return None if acc is None else float(acc)


def _check_settings(
    methods: Sequence[str] | str, batch_size: int, top_k: int, thresholds: tuple[float, float]
) -> tuple[str, ...]:
    from seewhy import registry

    names = [methods] if isinstance(methods, str) else list(methods)
    if not names:
        raise InvalidInput("methods: expected at least one method name, got none")
    canonical: list[str] = []
    for m in names:
        key = registry.get(m).name
        if key not in canonical:
            canonical.append(key)
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise InvalidInput(f"batch_size: expected a positive integer, got {batch_size!r}")
    if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
        raise InvalidInput(f"top_k: expected a positive integer, got {top_k!r}")
    for name, value in zip(("object_threshold", "border_threshold"), thresholds, strict=True):
        if not 0.0 <= value <= 1.0:
            raise InvalidInput(f"{name}: expected a fraction in [0, 1], got {value}")
    return tuple(canonical)


def _check_out_apart(data: Any, out: str | os.PathLike[str]) -> None:
    """Refuse an ``out`` inside a data folder: its pictures would be audited as data next time."""
    target = Path(out).resolve()
    folders = [data] if isinstance(data, (str, os.PathLike)) else list(data)
    for folder in folders:
        root = Path(folder).resolve()
        if root.is_dir() and target.is_relative_to(root):
            raise InvalidInput(
                f"out: {str(out)!r} is inside the data folder {str(folder)!r}; "
                "choose a folder outside it"
            )


def audit(
    data: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    model: Any,
    *,
    out: str | os.PathLike[str],
    methods: Sequence[str] | str = ("gradcam",),
    layer: str | None = None,
    batch_size: int = 32,
    top_k: int = 5,
    labels_from: LabelsFrom = "auto",
    recursive: bool = True,
    follow_links: bool = False,
    boxes: str | os.PathLike[str] | None = None,
    masks: str | os.PathLike[str] | None = None,
    object_threshold: float = 0.5,
    border_threshold: float = 0.5,
    target: str = "predicted",
    head: str | None = None,
    engine: Engine = "local",
    workers: int | None = None,
    overwrite: bool = False,
    title: str | None = None,
    framework: Literal["torch", "keras"] = "torch",
    weights: str | None = None,
    trust: bool = False,
    ray_address: str | None = None,
    gpus_per_worker: float | None = None,
    device: str = "auto",
    size: tuple[int, int] | None = None,
    providers: Sequence[Any] | None = None,
    progress: Progress | None = None,
) -> AuditResult:
    """Explain every image of a data set and write a browsable report to ``out``.

    ``model`` is a model object or a :func:`seewhy.load_model` name/file (then
    ``framework``, ``weights`` and ``trust`` apply). ``data`` is a folder, a
    folder of class folders, a list file or image files (see
    :mod:`seewhy.audit.dataset`). A stopped run resumes where it stopped when
    called again with the same arguments; ``overwrite`` starts afresh,
    removing only the files seewhy wrote there that are unchanged since (a
    file in the way that changed is refused in one line, before anything is
    removed). One run at a time writes to ``out``: another is refused in one
    line naming its pid (see :mod:`seewhy.audit.lock`).
    ``follow_links`` follows symbolic links that lead out of the data folder
    (their pictures end up in a report that may be shared; off by default).

    ``engine="ray"`` spreads the batches over a Ray actor pool of ``workers``
    actors (default 2, or as many as the cluster's GPUs hold), one model
    each; see :mod:`seewhy.audit.ray_engine`.
    With the local engine ``workers`` is the number of decoding threads.

    ``device`` (``auto``, ``cpu``, ``cuda``, ``cuda:N``) places a PyTorch
    model for the local engine: ``auto`` puts a model loaded here by name on
    the GPU when one is visible and leaves a model object where it is. For
    Ray it sets the default of ``gpus_per_worker`` (``cpu``: 0, ``cuda``: 1).

    ``size`` (H, W) is what the model is fed, for a model that does not say
    (``--size``); ``providers`` are ONNX Runtime's for a ``.onnx`` file. When
    seewhy has to guess the input, one :class:`~seewhy.InputGuessWarning`
    says what it guessed (every picture is resized to the guessed size).

    ``target`` is what each image is explained for: ``"predicted"`` (its
    top-1 class), ``"true"`` (its true class), ``"region"`` (a segmenter: the
    true class over the ground-truth mask) or ``"box"`` (a detector: the
    detection best overlapping the first ground-truth box); each record's
    ``target`` column names it. ``head="sigmoid"`` reads the classes as
    independent labels (multi-label), as :func:`seewhy.explain` does; a Keras
    model that ends in a sigmoid says so itself. Confidences and
    ``true_probability`` follow the same rule.
    """
    if engine not in ("local", "ray"):
        raise InvalidInput(f"engine: expected 'local' or 'ray', got {engine!r}")
    if workers is not None and (isinstance(workers, bool) or workers < 1):
        raise InvalidInput(f"workers: expected a positive integer, got {workers!r}")
    names = _check_settings(methods, batch_size, top_k, (object_threshold, border_threshold))
    check_device(device)
    if gpus_per_worker is not None and not gpus_per_worker >= 0:
        raise InvalidInput(f"gpus_per_worker: expected a number >= 0, got {gpus_per_worker!r}")
    settings = Settings(
        methods=names,
        layer=layer,
        batch_size=batch_size,
        top_k=top_k,
        object_threshold=float(object_threshold),
        border_threshold=float(border_threshold),
        target=check_audit_target(target),
        head=check_head(head),
    )
    if engine == "ray":  # fail on a missing ray before any model is loaded
        from .ray_engine import require_ray

        require_ray()
    _check_out_apart(data, out)
    store = Store(out)
    store.claim(overwrite=overwrite)  # a folder seewhy may not write: say so before anything
    with hold(out) as lock:  # one run per folder, from here to the report
        model_obj = (
            load_model(
                model, framework=framework, weights=weights, trust=trust, providers=providers
            )
            if isinstance(model, str)
            else model
        )
        backend = placed_backend(model_obj) if engine == "local" else None  # Keras places itself
        if backend is not None:
            model_obj = backend.place(local_device(device, owned=isinstance(model, str)))
        spec = model_spec(model_obj)
        if size is not None:
            spec = spec.at_size(size)
            settings = replace(settings, preprocess=spec.preprocess)
        warn_guessed(spec, pictures=True, own_size=False)  # the workers decode at it: said here
        dataset = collect(
            data,
            labels=spec.labels,
            labels_from=labels_from,
            recursive=recursive,
            follow_links=follow_links,
            boxes=boxes,
            masks=masks,
        )
        items = dataset.items
        batches = [items[i : i + batch_size] for i in range(0, len(items), batch_size)]
        model_id = model if isinstance(model, str) else spec.name
        config = {
            "model": model_id,
            "weights": weights,
            "framework": framework if isinstance(model, str) else None,
            "preprocess": repr(spec.preprocess),
            "classes": len(spec.labels) if spec.labels is not None else None,
            "methods": list(names),
            "layer": layer,
            "batch_size": batch_size,
            "top_k": top_k,
            "object_threshold": settings.object_threshold,
            "border_threshold": settings.border_threshold,
            "cmap": settings.cmap,
            "alpha": settings.alpha,
        }
        if settings.head is not None:  # only then: earlier audits keep their fingerprint
            config["head"] = settings.head
        done = store.open(config, items, overwrite=overwrite)
        todo = [(k, batch) for k, batch in enumerate(batches) if k not in done]
        count = sum(len(batches[k]) for k in done)
        total = len(items)

        def advance(n: int) -> None:
            nonlocal count
            count += n
            if progress is not None:
                progress(count, total)

        advance(0)
        if todo and engine == "local":
            run_local(BatchWorker(model_obj, settings), todo, store, advance, threads=workers)
        elif todo:
            from .ray_engine import run_ray

            run_ray(
                model,
                model_obj,
                settings,
                todo,
                store,
                advance,
                actors=workers,
                address=ray_address,
                gpus_per_worker=gpus_per_worker,
                device=device,
                load_args={"framework": framework, "weights": weights, "trust": trust},
            )
        notes = (lock.note(), *store.kept)
        return finish(store, dataset, names, config, title=title, resumed=len(done), notes=notes)


def finish(
    store: Store,
    dataset: Dataset,
    methods: Sequence[str],
    config: dict[str, Any],
    *,
    title: str | None,
    resumed: int,
    notes: Sequence[str | None] = (),
) -> AuditResult:
    """Tables, summary and report from every shard on disk, each listed in the ledger.

    ``notes`` are about this run and its folder (a lock taken over, files
    kept): the result carries them, the report (meant to be shared) does not.
    """
    from seewhy.report.audit import render_audit_report

    from .store import json_bytes

    records = store.records()
    if len(records) != len(dataset.items):
        raise InvalidInput(
            f"out: {len(dataset.items) - len(records)} images have no records; "
            "run the same audit again to finish it"
        )
    tables = store.write_tables(records, methods)
    summary = summarize(records)
    said = (*dataset.notes, *store.repairs)
    meta = {
        "title": title or f"seewhy audit: {Path(store.out).resolve().name}",
        "model": config["model"],
        "methods": list(methods),
        "layer": config["layer"],
        "layout": dataset.layout,
        "class_rule": dataset.class_rule,
        "notes": list(said),
    }
    store.put("summary.json", json_bytes({"meta": meta, "summary": summary}))
    page = render_audit_report(records, summary, meta).encode("utf-8")
    report = store.put("index.html", page)
    batches = len({int(r["shard"]) for r in records})
    return AuditResult(
        out=store.out,
        report=report,
        tables=tuple(tables),
        summary=summary,
        batches=batches,
        resumed_batches=resumed,
        notes=(*said, *(n for n in notes if n)),
    )


def _render_and_write(worker: BatchWorker, store: Store, result: Any) -> None:
    store.write(worker.render(result))


def run_local(
    worker: BatchWorker,
    todo: Batches,
    store: Store,
    advance: Callable[[int], None],
    *,
    threads: int | None = None,
) -> None:
    """Explain ``todo`` in order, decoding ahead and writing behind in threads."""
    # Leave the cores to the model: decoding takes a few ms an image, the model tens.
    n_threads = threads or max(1, min(4, (os.cpu_count() or 1) // 2))
    decode_pool = ThreadPoolExecutor(n_threads, thread_name_prefix="seewhy-decode")
    write_pool = ThreadPoolExecutor(1, thread_name_prefix="seewhy-write")
    pending: deque[tuple[int, list[Future[Decoded]]]] = deque()
    upcoming = iter(todo)

    def feed() -> None:
        nxt = next(upcoming, None)
        if nxt is not None:
            k, items = nxt
            pending.append((k, [decode_pool.submit(worker.decode, item) for item in items]))

    writing: Future[None] | None = None
    try:
        for _ in range(PREFETCH_BATCHES):
            feed()
        while pending:
            k, futures = pending.popleft()
            feed()
            decoded = [f.result() for f in futures]
            result = worker.compute(k, decoded)
            if writing is not None:
                writing.result()  # one batch in flight: bounded memory, errors surface
            writing = write_pool.submit(_render_and_write, worker, store, result)
            advance(len(decoded))
        if writing is not None:
            writing.result()
    finally:
        decode_pool.shutdown(wait=True, cancel_futures=True)
        write_pool.shutdown(wait=True)
