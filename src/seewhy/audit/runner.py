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

from seewhy._keywords import own_keywords
from seewhy._kit.warn import renamed_keyword
from seewhy.api import model_spec
from seewhy.backends.base import NativeFramework
from seewhy.errors import InvalidInput
from seewhy.loading import load_model
from seewhy.spec import warn_guessed

from .dataset import Dataset, Item, LabelsFrom, collect
from .device import check_device, local_device, placed_backend
from .lock import hold
from .settings import Settings, audit_settings
from .store import Store
from .summary import summarize
from .targets import check_audit_target, target_classes
from .worker import BatchWorker, Decoded

__all__ = ["AuditResult", "Engine", "Progress", "audit", "run_local"]

Engine = Literal["local", "ray"]
#: Called with (images done, images in total) at the start and after each batch.
Progress = Callable[[int, int], None]
Batches = Sequence[tuple[int, Sequence[Item]]]

PREFETCH_BATCHES = 2


@dataclass(frozen=True)
class AuditResult:
    """Where the audit wrote its files, and its headline numbers.

    Attributes
    ----------
    out
        The audit's folder.
    report
        Its ``index.html``.
    tables
        ``results.csv`` (and ``results.parquet`` when pyarrow is installed).
    summary
        The headline numbers, as in ``summary.json`` (images, explained,
        failed, accuracy, flags...).
    batches
        Batches in the finished audit.
    resumed_batches
        Of those, the ones a stopped run had already done.
    notes
        One line each about this run and its folder (a lock taken over,
        files ``overwrite`` kept, batches redone); not in the report.
    """

    out: Path
    report: Path
    tables: tuple[Path, ...]
    summary: dict[str, Any]
    batches: int
    resumed_batches: int
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def failed(self) -> int:
        """Images that could not be explained (unreadable, refused, non-finite scores)."""
        return int(self.summary["failed"])

    @property
    def accuracy(self) -> float | None:
        """Top-1 accuracy over the images with a true class; None when none has one."""
        acc = self.summary["accuracy"]
        return None if acc is None else float(acc)


def _check_engine(
    engine: Any, workers: int | None, gpus_per_worker: float | None, device: str
) -> None:
    """Where the batches run: checked before anything is loaded or written."""
    if engine not in ("local", "ray"):
        raise InvalidInput(f"engine: expected 'local' or 'ray', got {engine!r}")
    if workers is not None and (isinstance(workers, bool) or workers < 1):
        raise InvalidInput(f"workers: expected a positive integer, got {workers!r}")
    check_device(device)
    if gpus_per_worker is not None and not gpus_per_worker >= 0:
        raise InvalidInput(f"gpus_per_worker: expected a number >= 0, got {gpus_per_worker!r}")
    if engine == "ray":  # fail on a missing ray before any model is loaded
        from .ray_engine import require_ray

        require_ray()


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


def _renamed(
    settings: dict[str, Any], target_from: Any, object_boxes: Any, object_masks: Any
) -> tuple[Any, Any, Any]:
    """``target_from``, ``object_boxes``, ``object_masks``, or their old names.

    ``target`` and ``boxes`` are keywords of neither :class:`~seewhy.Explainer`
    nor any method. ``masks`` is also RISE's setting (a count): only a path is
    taken as the old name of ``object_masks``; anything else stays a setting.
    """
    default = None if target_from == "predicted" else target_from
    old_target = settings.pop("target", None)
    if old_target is not None:  # a bad value is named as the caller spelt it
        check_audit_target(old_target, "target")
    chosen = renamed_keyword("audit", "target", "target_from", old_target, default)
    old_boxes = settings.pop("boxes", None)
    boxes = renamed_keyword("audit", "boxes", "object_boxes", old_boxes, object_boxes)
    old_masks = settings.get("masks")
    if isinstance(old_masks, (str, os.PathLike)):
        del settings["masks"]
        object_masks = renamed_keyword("audit", "masks", "object_masks", old_masks, object_masks)
    return chosen or "predicted", boxes, object_masks


def audit(
    data: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    model: Any,
    *,
    out: str | os.PathLike[str],
    methods: Sequence[str] | str = ("gradcam",),
    batch_size: int = 32,
    labels_from: LabelsFrom = "auto",
    recursive: bool = True,
    follow_links: bool = False,
    object_boxes: str | os.PathLike[str] | None = None,
    object_masks: str | os.PathLike[str] | None = None,
    object_threshold: float = 0.5,
    border_threshold: float = 0.5,
    target_from: Any = "predicted",
    engine: Engine = "local",
    workers: int | None = None,
    overwrite: bool = False,
    title: str | None = None,
    framework: NativeFramework = "torch",
    weights: str | None = None,
    trust: bool = False,
    ray_address: str | None = None,
    gpus_per_worker: float | None = None,
    device: str = "auto",
    size: tuple[int, int] | None = None,
    providers: Sequence[Any] | None = None,
    progress: Progress | None = None,
    **settings: Any,
) -> AuditResult:
    """Explain every image of a data set and write a browsable report to ``out``.

    A stopped run resumes where it stopped when called again with the same
    arguments (settings included); other arguments on a folder that holds an
    audit are refused in one line unless ``overwrite``. One run at a time
    writes to ``out``: another is refused in one line naming its pid (see
    :mod:`seewhy.audit.lock`).

    Parameters
    ----------
    data
        A folder, a folder of class folders, a list file, or image files (see
        :mod:`seewhy.audit.dataset`).
    model
        A model object, or a :func:`seewhy.load_model` name or file (then
        ``framework``, ``weights``, ``trust`` and ``providers`` apply).
    out
        The report's folder: new, empty, or one an audit wrote.
    methods
        One method name or several; each image is explained with each.
    batch_size
        Images per batch: per shard on disk, and per pass of the model.
    labels_from
        Where true classes come from: ``"auto"``, ``"folders"``, ``"file"`` or
        ``"none"`` (see :mod:`seewhy.audit.dataset`).
    recursive
        Walk sub-folders of ``data``.
    follow_links
        Follow symbolic links that lead out of the data folder (their pictures
        end up in a report that may be shared; off by default).
    object_boxes
        A JSON or CSV file of ground-truth boxes, in each original picture's
        pixels (formerly ``boxes=``, still accepted for one release with a
        :class:`DeprecationWarning`).
    object_masks
        A folder of ground-truth masks, named like the images (formerly
        ``masks=``, still accepted for one release when given a path; RISE's
        ``masks`` setting, a count, keeps its name).
    object_threshold, border_threshold
        Fractions in [0, 1]: a map with less of its energy on the object, or
        more on the border, is flagged ``off-object`` or ``border``.
    target_from
        What each image is explained for: ``"predicted"`` (its top-1 class),
        ``"true"`` (its true class), ``"region"`` (a segmenter: the true class
        over the ground-truth mask) or ``"box"`` (a detector: the detection
        best overlapping the first ground-truth box); each record's ``target``
        column names it. A vision-language model: a Prompt or an Answer for
        every image, or ``prompt=`` with ``"predicted"`` (see
        :mod:`seewhy.audit.targets`). Formerly ``target=``, still accepted for
        one release with a :class:`DeprecationWarning` (``explain``'s
        ``target`` is no audit setting, so the old name cannot be mistaken for one).
    engine
        ``"local"``, or ``"ray"``: the batches go to a Ray actor pool of
        ``workers`` actors (default 2, or as many as the cluster's GPUs
        hold), one model each; see :mod:`seewhy.audit.ray_engine`.
    workers
        Ray's actors, or the local engine's decoding threads.
    overwrite
        Start afresh, removing only the files seewhy wrote there that are
        unchanged since (a file in the way that changed is refused in one
        line, before anything is removed).
    title
        The report's title (default: the folder's name).
    framework, weights, trust
        How a model given by name is loaded: see :func:`seewhy.load_model`.
    ray_address
        An existing Ray cluster's address (default: start one here).
    gpus_per_worker
        GPUs each Ray actor holds (default from ``device``).
    device
        ``"auto"``, ``"cpu"``, ``"cuda"`` or ``"cuda:N"``: where the local
        engine places a PyTorch model (``auto`` puts a model loaded here by
        name on the GPU when one is visible and leaves a model object where
        it is). For Ray it sets the default of ``gpus_per_worker``
        (``cpu``: 0, ``cuda``: 1).
    size
        (H, W) the model is fed, for a model that does not say; when seewhy
        has to guess, one :class:`~seewhy.InputGuessWarning` says what it
        guessed (every picture is resized to the guessed size).
    providers
        ONNX Runtime's execution providers, for a ``.onnx`` file.
    progress
        Called with (images done, images in total) at the start and after
        each batch.
    **settings
        Any keyword of :class:`~seewhy.Explainer` (``layer``, ``top_k``,
        ``head``, ``score``, ``output``, ``precision``, ``labels``,
        ``preprocess``, ...), given to every method, and any setting of the
        chosen methods (``samples=200`` for LIME, ``window=(8, 8)`` for
        occlusion), given to each chosen method that takes it. They are
        recorded in ``audit.json`` and are part of what a resumed run must
        match. ``head="sigmoid"`` reads the classes as independent labels,
        as :func:`seewhy.explain` does (a Keras model that ends in a
        sigmoid says so itself); confidences and ``true_probability``
        follow the same rule.

    Returns
    -------
    AuditResult
        Where the report and tables are, and the headline numbers.

    Raises
    ------
    InvalidInput
        In one line, before any image is read: an unknown keyword (with the
        nearest spelling), a setting none of the chosen methods takes (naming
        the methods that do), a bad value, an ``out`` seewhy may not write,
        or a folder that holds another audit.
    """
    target_from, object_boxes, object_masks = _renamed(
        settings, target_from, object_boxes, object_masks
    )
    _check_engine(engine, workers, gpus_per_worker, device)
    thresholds = (object_threshold, border_threshold)
    own = own_keywords(audit)
    plan = audit_settings(methods, batch_size, thresholds, target_from, settings, own=own)
    _check_out_apart(data, out)
    store = Store(out)
    store.claim(overwrite=overwrite)  # a folder seewhy may not write: say so before anything
    load_args = {"framework": framework, "weights": weights, "trust": trust}
    with hold(out) as lock:  # one run per folder, from here to the report
        model_obj = _model(model, engine, device, load_args, providers)
        spec, plan = _model_spec(model_obj, plan, size)
        worker = BatchWorker(model_obj, plan)  # every value checked, before any image is read
        dataset = collect(
            data,
            labels=spec.labels,
            labels_from=labels_from,
            recursive=recursive,
            follow_links=follow_links,
            boxes=object_boxes,
            masks=object_masks,
        )
        config = _config(model, spec, plan, load_args)
        items = dataset.items
        batches = [items[i : i + batch_size] for i in range(0, len(items), batch_size)]
        done = store.open(config, items, overwrite=overwrite)
        todo = [(k, batch) for k, batch in enumerate(batches) if k not in done]
        advance = _counter(progress, sum(len(batches[k]) for k in done), len(items))
        if todo and engine == "local":
            run_local(worker, todo, store, advance, threads=workers)
        elif todo:
            from .ray_engine import run_ray

            run_ray(
                model,
                model_obj,
                plan,
                todo,
                store,
                advance,
                actors=workers,
                address=ray_address,
                gpus_per_worker=gpus_per_worker,
                device=device,
                load_args=load_args,
            )
        notes = (lock.note(), *store.kept)
        return finish(
            store, dataset, plan.methods, config, title=title, resumed=len(done), notes=notes
        )


def _model(model: Any, engine: str, device: str, load_args: dict[str, Any], providers: Any) -> Any:
    """The model object: loaded here when named, placed on ``device`` for the local engine.

    Ray's actors place their own copies; a Keras model places itself.
    """
    owned = isinstance(model, str)
    model_obj = load_model(model, **load_args, providers=providers) if owned else model
    backend = placed_backend(model_obj) if engine == "local" else None
    if backend is not None:
        model_obj = backend.place(local_device(device, owned=owned))
    return model_obj


def _model_spec(
    model_obj: Any, plan: Settings, size: tuple[int, int] | None
) -> tuple[Any, Settings]:
    """What the model is fed (the caller's ``preprocess``, ``labels`` and ``size`` first).

    The guess, if any, is said here once: the workers decode at it, and
    every picture is resized to it.
    """
    given = {k: plan.explainer.get(k) for k in ("preprocess", "tokenizer", "processor")}
    labels = plan.explainer.get("labels") or target_classes(plan.target)  # texts as classes
    spec = model_spec(model_obj, labels=labels, **given)
    if size is not None:
        spec = spec.at_size(size)
        plan = replace(plan, explainer={**plan.explainer, "preprocess": spec.preprocess})
    warn_guessed(spec, pictures=True, own_size=False)
    return spec, plan


def _config(model: Any, spec: Any, plan: Settings, load_args: dict[str, Any]) -> dict[str, Any]:
    """The manifest's settings: a folder resumes only under the same ones (the fingerprint)."""
    named = isinstance(model, str)
    return {
        "model": model if named else spec.name,
        "weights": load_args["weights"],
        "framework": load_args["framework"] if named else None,
        "preprocess": repr(spec.preprocess),
        "classes": len(spec.labels) if spec.labels is not None else None,
        "methods": list(plan.methods),
        "batch_size": plan.batch_size,
        "object_threshold": plan.object_threshold,
        "border_threshold": plan.border_threshold,
        "cmap": plan.cmap,
        "alpha": plan.alpha,
        **plan.recorded(),
    }


def _counter(progress: Progress | None, done: int, total: int) -> Callable[[int], None]:
    """``advance(n)``: ``n`` more images are done; ``progress`` hears it, starting now."""
    count = done

    def advance(n: int) -> None:
        nonlocal count
        count += n
        if progress is not None:
            progress(count, total)

    advance(0)
    return advance


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

    from .bytes_on_disk import json_bytes

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
