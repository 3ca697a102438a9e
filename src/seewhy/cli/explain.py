"""``seewhy explain``: explain images and write one overlay panel per image and method.

A bad image is reported and the others are still explained (exit code 3).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..inputs.decoding import SAMPLE_PREFIX
from ._common import (
    EXIT_ERROR,
    EXIT_OK,
    EXIT_PARTIAL,
    Progress,
    check_methods,
    sources,
    write_json,
)
from .options import add_explaining_options, add_precision, add_recursive, load_model

if TYPE_CHECKING:
    from seewhy import Explanation

__all__ = ["HELP", "add_explain_arguments", "explain_command"]

HELP = "explain images and write overlay panels"

#: Images per chunk when --batch-size is not given.
_CHUNK = 16


def add_explain_arguments(p: argparse.ArgumentParser) -> None:
    """Options of ``seewhy explain``."""
    add_explaining_options(p)
    p.add_argument("--score", choices=("logit", "probability"), default="logit")
    p.add_argument("--out", default=".", help="folder for the panels [default: .]")
    p.add_argument("--cmap", default="viridis", help="matplotlib colormap [default: viridis]")
    p.add_argument("--alpha", type=float, default=0.5, help="image weight in the overlay")
    p.add_argument("--top-k", type=int, default=5)
    add_precision(
        p,
        "forward passes of occlusion, rise, scorecam, lime, kernelshap (PyTorch) "
        "[default: float32]",
    )
    p.add_argument(
        "--batch-size",
        type=int,
        help="images per pass, and perturbed copies per pass [default: 16; copies: chosen by "
        "model and device]",
    )
    add_recursive(p)
    p.add_argument("--json", metavar="FILE", help="write predictions and file names as JSON")
    p.add_argument("--quiet", action="store_true", help="no progress bar, no listing")


def _chunks(items: Sequence[str], size: int) -> Iterator[Sequence[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _out_name(source: str, method: str, several: bool) -> str:
    stem = source[len(SAMPLE_PREFIX) :] if source.startswith(SAMPLE_PREFIX) else Path(source).stem
    return f"{stem}.{method}.seewhy.png" if several else f"{stem}.seewhy.png"


def explain_command(args: argparse.Namespace) -> int:
    """Explain every image with every method; panels in ``--out``, records in ``--json``."""
    import seewhy

    methods = check_methods(args.method)
    found = sources(args.images, args.recursive)
    model = load_model(args)
    explainers = {
        m: seewhy.Explainer(
            model,
            m,
            layer=args.layer,
            score=args.score,
            top_k=args.top_k,
            batch_size=args.batch_size,
            precision=args.precision,
        )
        for m in methods
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    records: list[dict[str, Any]] = []
    failures: list[tuple[str, str]] = []
    total = len(found) * len(methods)
    bar = Progress(args.quiet or total < 2 or not sys.stderr.isatty(), unit="img", leave=False)
    bar(0, total)
    done = 0
    try:
        for chunk in _chunks(found, args.batch_size or _CHUNK):
            chunk_records: dict[str, dict[str, Any]] = {}
            for m, explainer in explainers.items():
                try:
                    ex = explainer.explain(list(chunk), target=args.target)
                except seewhy.InvalidInput as exc:  # every image of the chunk was bad
                    if not chunk_records:
                        failures.extend((s, str(exc)) for s in chunk)
                    done += len(chunk)
                    bar(done, total)
                    break
                if not chunk_records:  # the first method reports predictions and failures
                    chunk_records = {s: _record(ex, i) for i, s in enumerate(ex.sources)}
                    failures.extend((f.source, f.reason) for f in ex.failures)
                    _print_predictions(ex, quiet=args.quiet)
                for i, source in enumerate(ex.sources):
                    path = out / _out_name(source, m, len(methods) > 1)
                    ex.panel(i, cmap=args.cmap, alpha=args.alpha).save(path)
                    chunk_records[source]["outputs"][m] = str(path)
                    if not args.quiet:
                        print(f"  wrote {path}")
                done += len(chunk)
                bar(done, total)
            records.extend(chunk_records.values())
    finally:
        bar.close()
    for source, reason in failures:
        shown = reason if source in reason else f"{source}: {reason}"
        print(f"seewhy: skipped: {shown}", file=sys.stderr)
    if args.json:
        payload = {
            "model": args.model,
            "methods": methods,
            "precision": args.precision,
            "images": records,
            "failures": [{"source": s, "reason": r} for s, r in failures],
        }
        write_json(payload, args.json)
    if failures and not records:
        return EXIT_ERROR
    return EXIT_PARTIAL if failures else EXIT_OK


def _record(ex: Explanation, i: int) -> dict[str, Any]:
    """The JSON record of image ``i``: target, top-k predictions, panels written."""
    return {
        "source": ex.sources[i],
        "target": int(ex.targets[i]),
        "target_label": ex.target_labels[i],
        "predictions": [
            {"index": p.index, "label": p.label, "probability": round(p.probability, 6)}
            for p in ex.predictions[i]
        ],
        "outputs": {},
    }


def _print_predictions(ex: Explanation, *, quiet: bool) -> None:
    if quiet:
        return
    for i, source in enumerate(ex.sources):
        print(source)
        for rank, p in enumerate(ex.predictions[i], start=1):
            print(f"  {rank}. {p.label:<30} {100 * p.probability:6.2f}%  (class {p.index})")
