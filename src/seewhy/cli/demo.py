"""``seewhy demo shortcut``: train a clean and a shortcut model, and catch the shortcut."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from ._common import EXIT_OK

__all__ = ["HELP", "add_demo_arguments", "add_demo_shortcut_arguments", "demo_shortcut_command"]

HELP = "self-contained demos"

#: ``--quick``: less data and training (about twice as fast).
_QUICK: dict[str, Any] = {"n_train": 1200, "n_test": 200, "epochs": 8}


def add_demo_arguments(p: argparse.ArgumentParser) -> None:
    """``seewhy demo``: one sub-command per demo (``shortcut`` today)."""
    demos = p.add_subparsers(dest="demo", required=True)
    add_demo_shortcut_arguments(
        demos.add_parser("shortcut", help="catch a model that learnt a watermark")
    )


def add_demo_shortcut_arguments(p: argparse.ArgumentParser) -> None:
    """Options of ``seewhy demo shortcut``."""
    p.add_argument("--out", default="seewhy-demo", help="report folder [default: seewhy-demo]")
    p.add_argument("--framework", choices=("torch", "keras"), default="torch")
    p.add_argument("--shortcut", choices=("patch", "tint"), default="patch")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quick", action="store_true", help="less data and training (~2x faster)")


def demo_shortcut_command(args: argparse.Namespace) -> int:
    """Run the shortcut demo and say where the report is."""
    from seewhy.demo import run_shortcut_demo

    size = _QUICK if args.quick else {}
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
    print(f"report: {result.report}  ({result.seconds:.1f} s)")
    return EXIT_OK
