"""``seewhy demo shortcut``: train a clean and a shortcut model, and catch the shortcut."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from ..loading import NATIVE_FRAMEWORKS
from ..terminal import printable
from ._common import EXIT_OK
from .options import add_force
from .outputs import OutputPlan

__all__ = [
    "HELP",
    "add_demo_arguments",
    "add_demo_segmentation_arguments",
    "add_demo_shortcut_arguments",
    "demo_command",
    "demo_segmentation_command",
    "demo_shortcut_command",
]

HELP = "self-contained demos"

#: ``--quick``: less data and training (about twice as fast).
_QUICK: dict[str, Any] = {"n_train": 1200, "n_test": 200, "epochs": 8}


def add_demo_arguments(p: argparse.ArgumentParser) -> None:
    """``seewhy demo``: one sub-command per demo (``shortcut``, ``segmentation``)."""
    demos = p.add_subparsers(dest="demo", required=True)
    add_demo_shortcut_arguments(
        demos.add_parser("shortcut", help="catch a model that learnt a watermark")
    )
    add_demo_segmentation_arguments(
        demos.add_parser("segmentation", help="explain a segmenter's region of each object")
    )


def add_demo_shortcut_arguments(p: argparse.ArgumentParser) -> None:
    """Options of ``seewhy demo shortcut``."""
    p.add_argument("--out", default="seewhy-demo", help="report folder [default: seewhy-demo]")
    p.add_argument("--framework", choices=NATIVE_FRAMEWORKS, default="torch")
    p.add_argument("--shortcut", choices=("patch", "tint"), default="patch")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quick", action="store_true", help="less data and training (~2x faster)")
    add_force(p)


def _claim_report(out: str, files: tuple[str, ...], force: bool) -> None:
    """Refuse, before any training, to write over a file in ``out`` that seewhy did not write.

    The demo reads no file, so only the report's own files are claimed; a
    report an earlier demo wrote carries seewhy's mark and is overwritten.
    """
    plan = OutputPlan((), force=force)
    for name in files:
        plan.claim(Path(out) / name, f"the demo's {name}", option="--out")
    plan.check()


def demo_shortcut_command(args: argparse.Namespace) -> int:
    """Run the shortcut demo and say where the report is."""
    from seewhy.demo import run_shortcut_demo

    size = _QUICK if args.quick else {}
    _claim_report(args.out, ("index.html", "examples.png", "scores.png"), args.force)
    print("training a clean and a shortcut model on synthetic shapes...", file=sys.stderr)
    result = run_shortcut_demo(
        args.out, framework=args.framework, seed=args.seed, shortcut=args.shortcut, **size
    )
    for name, acc in result.accuracy.items():
        flag = "  <- shortcut suspected" if result.flagged[name] else ""
        print(
            f"{name:>8} model: accuracy {acc['shortcut_holds']:.1%} -> "
            f"{acc['shortcut_broken']:.1%} when the shortcut breaks; energy in object "
            f"{result.energy[name]:.2f} (chance {result.chance:.2f}){flag}"
        )
    print(f"report: {printable(result.report)}  ({result.seconds:.1f} s)")
    return EXIT_OK


#: ``seewhy demo segmentation --quick``: less data and training.
_QUICK_SEGMENTATION: dict[str, Any] = {"n_train": 300, "n_test": 30, "epochs": 4}


def add_demo_segmentation_arguments(p: argparse.ArgumentParser) -> None:
    """Options of ``seewhy demo segmentation``."""
    p.add_argument(
        "--out", default="seewhy-demo-segmentation", help="report folder [default: %(default)s]"
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quick", action="store_true", help="less data and training (~2x faster)")
    add_force(p)


def demo_segmentation_command(args: argparse.Namespace) -> int:
    """Run the segmentation demo: how much of each object's Region map lies inside it."""
    from seewhy.demo import run_segmentation_demo

    size = _QUICK_SEGMENTATION if args.quick else {}
    _claim_report(args.out, ("index.html", "regions.png"), args.force)
    print("training a tiny segmenter on synthetic shapes...", file=sys.stderr)
    result = run_segmentation_demo(args.out, seed=args.seed, **size)
    print(
        f"segmenter: {result.pixel_accuracy:.1%} of pixels right; {result.method} Region maps: "
        f"{result.mass_inside.mean():.1%} of each map inside its object "
        f"(an even map: {result.chance:.1%})"
    )
    print(f"report: {printable(result.report)}  ({result.seconds:.1f} s)")
    return EXIT_OK


def demo_command(args: argparse.Namespace) -> int:
    """``seewhy demo NAME``: the named demo."""
    if args.demo == "segmentation":
        return demo_segmentation_command(args)
    return demo_shortcut_command(args)
