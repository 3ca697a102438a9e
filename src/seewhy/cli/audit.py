"""``seewhy audit``: explain a whole data set into an HTML report, resumable.

The command prints (progress bar and summary) and returns an exit code; the
library code under it (:func:`seewhy.audit.audit`) prints nothing.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from ..terminal import one_line, printable
from ._common import EXIT_ERROR, EXIT_INTERRUPTED, EXIT_OK, EXIT_PARTIAL, Progress, check_methods
from .options import (
    add_explainer_options,
    add_model_options,
    add_renamed,
    explainer_keywords,
    loading_keywords,
)
from .settings import method_settings, settings_for_all

__all__ = ["BAR_FORMAT", "HELP", "add_audit_arguments", "audit_command"]

HELP = "explain a whole data set into an HTML report"

#: Always images per second (tqdm's default turns a slow rate into s/img) and time left.
BAR_FORMAT = (
    "{desc}: {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} images "
    "[{elapsed} elapsed, {remaining} left, {rate_noinv_fmt}]"
)


def add_audit_arguments(p: argparse.ArgumentParser) -> None:
    """Add ``seewhy audit``'s arguments to ``p`` (a sub-parser)."""
    p.description = (
        "Explain every image of a data set and write a browsable HTML report, a table "
        "(CSV, and Parquet with pyarrow) and the maps (.npz). Run it again to resume."
    )
    p.add_argument(
        "data",
        nargs="+",
        help="a folder (one sub-folder per class gives true classes), a list "
        "file (.txt/.csv: path[,label] per line), or image files",
    )
    add_model_options(p)
    e = p.add_argument_group("explanation")
    e.add_argument(
        "--method",
        action="append",
        dest="methods",
        metavar="METHOD",
        help="method; repeat it or separate by commas to compare several "
        "side by side [default: gradcam]",
    )
    add_renamed(
        e,
        "--target-from",
        "--target",
        dest="target_from",
        type=_target_from,
        default="predicted",
        metavar="{predicted,true,region,box,prompt:TEXT}",
        help="what each image is explained for: its top-1 class, its true class, the true "
        "class over the ground-truth mask (segmenters) or box (detectors); a dual encoder "
        "(CLIP, SigLIP): prompt:TEXT in every image, or prompt:A|B|C (A, zero-shot among "
        "the texts, class folders matched to them by name); a generative vision-language "
        "model: predicted with --prompt explains its own answer [default: predicted]",
    )
    add_explainer_options(e, batch_size="images per pass [default: 32]")
    d = p.add_argument_group("data")
    d.add_argument(
        "--labels-from",
        choices=("auto", "folders", "none"),
        default="auto",
        help="true classes from class folders: auto-detect, always, never [default: auto]",
    )
    d.add_argument(
        "--no-recursive",
        dest="recursive",
        action="store_false",
        help="do not walk sub-folders of a plain folder",
    )
    d.add_argument(
        "--follow-links",
        action="store_true",
        help="follow links that lead out of the data folder (their pictures go into "
        "the report, which is meant to be shared) [default: links inside only]",
    )
    add_renamed(
        d,
        "--object-boxes",
        "--boxes",
        dest="object_boxes",
        metavar="FILE",
        help="object boxes per file, JSON {file: [x0, y0, x1, y1]} or CSV "
        "file,x0,y0,x1,y1 (pixels of the original image)",
    )
    add_renamed(
        d,
        "--object-masks",
        "--masks",
        dest="object_masks",
        metavar="DIR",
        help="folder of object masks mirroring the images' paths (non-zero = object)",
    )
    d.add_argument(
        "--object-threshold",
        type=float,
        default=0.5,
        help="flag a map with less than this share on the object [default: 0.5]",
    )
    d.add_argument(
        "--border-threshold",
        type=float,
        default=0.5,
        help="flag a map with more than this share on the border band [default: 0.5]",
    )
    o = p.add_argument_group("output and execution")
    o.add_argument("--out", default="audit-report", help="report folder [default: audit-report]")
    o.add_argument("--title", help="report title")
    o.add_argument(
        "--overwrite",
        action="store_true",
        help="start afresh instead of resuming an audit already in --out (removes only the "
        "files seewhy wrote there that are unchanged since, by size and SHA-256; a folder "
        "without seewhy's audit.json is refused)",
    )
    o.add_argument(
        "--engine",
        choices=("local", "ray"),
        default="local",
        help="local threads, or a Ray Data actor pool [default: local]",
    )
    o.add_argument(
        "--workers",
        type=int,
        help="decoding threads (local) or Ray actors, one model each (ray) "
        "[default: local min(4, CPUs/2), ray 2 or one per GPU]",
    )
    o.add_argument(
        "--device",
        default="auto",
        help="where a PyTorch model runs: auto, cpu, cuda or cuda:N; auto uses a visible "
        "GPU for a model loaded by name or file; with --engine ray, cpu or cuda set the "
        "default of --gpus-per-worker [default: auto]",
    )
    o.add_argument(
        "--ray-address", help="Ray cluster to join (else $RAY_ADDRESS, else a local Ray)"
    )
    o.add_argument(
        "--gpus-per-worker",
        type=float,
        help="GPUs per Ray actor; an actor given a GPU runs its model there "
        "[default: 1 if the cluster has GPUs, else 0]",
    )
    o.add_argument("--quiet", action="store_true", help="no progress bar, no summary")


def _target_from(text: str) -> Any:
    """``--target-from``: a word of the audit's, or ``prompt:TEXT[|TEXT...]`` (a Prompt)."""
    from seewhy.audit.targets import AUDIT_TARGETS

    from .target_text import parse_target

    if text in AUDIT_TARGETS:
        return text
    if text.partition(":")[0].strip().lower() == "prompt":
        return parse_target(text)
    raise argparse.ArgumentTypeError(
        f"expected one of {', '.join(AUDIT_TARGETS)} or prompt:TEXT, got {text!r}"
    )


class _Bar(Progress):
    """The audit's bar: images per second and time left, counting this run's images only."""

    def __init__(self, quiet: bool) -> None:
        options: dict[str, Any] = {"dynamic_ncols": True, "smoothing": 0.1}
        super().__init__(quiet, unit=" img", desc="audit", bar_format=BAR_FORMAT, **options)


def audit_command(args: argparse.Namespace) -> int:
    """Run ``seewhy audit``; errors other than SeewhyError propagate to the caller."""
    from seewhy.audit import audit

    methods = [m for raw in (args.methods or ["gradcam"]) for m in check_methods(raw)]
    settings = settings_for_all(method_settings(args, methods))
    bar = _Bar(args.quiet)
    try:
        result = audit(
            args.data,
            args.model,
            out=args.out,
            methods=methods,
            labels_from=args.labels_from,
            recursive=args.recursive,
            follow_links=args.follow_links,
            object_boxes=args.object_boxes,
            object_masks=args.object_masks,
            object_threshold=args.object_threshold,
            border_threshold=args.border_threshold,
            target_from=args.target_from,
            engine=args.engine,
            workers=args.workers,
            overwrite=args.overwrite,
            title=args.title,
            ray_address=args.ray_address,
            gpus_per_worker=args.gpus_per_worker,
            device=args.device,
            size=args.size,
            progress=bar,
            **loading_keywords(args),
            **explainer_keywords(args),
            **settings,
        )
    except KeyboardInterrupt:
        bar.close()
        print(
            f"seewhy: interrupted; finished batches are kept in {printable(args.out)}, run the "
            "same command again to resume",
            file=sys.stderr,
        )
        return EXIT_INTERRUPTED
    bar.close()
    s = result.summary
    if not args.quiet:
        for note in result.notes:
            print(f"seewhy: note: {one_line(note)}", file=sys.stderr)
        if result.resumed_batches:
            print(f"resumed: {result.resumed_batches} of {result.batches} batches were done")
        line = f"{s['explained']} explained, {s['failed']} unreadable"
        if s["accuracy"] is not None:
            line += f", accuracy {100 * s['accuracy']:.1f}% ({s['correct']}/{s['with_truth']})"
        flags = ", ".join(f"{v} {k}" for k, v in s["flags"].items() if v and k != "unreadable")
        print(printable(line + (f"; flagged: {flags}" if flags else "")))
        print(f"report: {printable(result.report)}")
        print("tables: " + ", ".join(printable(t) for t in result.tables))
    if s["explained"] == 0:
        return EXIT_ERROR
    return EXIT_PARTIAL if s["failed"] else EXIT_OK
