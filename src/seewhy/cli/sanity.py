"""``seewhy sanity``: the model-parameter randomisation test, as a plot and one line per method.

A method passes when its maps change once the weights are randomised
(Adebayo et al., 2018); one that barely changes shows edges, not the model.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ..provenance import MARK
from ..terminal import printable
from ._common import EXIT_OK, check_methods, sources, write_json
from .options import (
    add_explaining_options,
    add_force,
    add_recursive,
    chosen_target,
    explainer_keywords,
    load_model,
)
from .outputs import OutputPlan, input_paths, picture_format
from .settings import method_settings

__all__ = ["HELP", "add_sanity_arguments", "sanity_command"]

HELP = "model-randomisation sanity check"


def add_sanity_arguments(p: argparse.ArgumentParser) -> None:
    """Options of ``seewhy sanity``."""
    add_explaining_options(p)
    p.add_argument(
        "--steps",
        type=int,
        default=6,
        help="randomisation steps spread over the cascade [default: 6]",
    )
    p.add_argument(
        "--independent",
        action="store_true",
        help="randomise one layer at a time instead of cascading from the top",
    )
    p.add_argument(
        "--randomized-target",
        choices=("original", "predicted"),
        default="original",
        help="class each randomised model explains: the original model's, or its own "
        "top-1 as in the paper's code [default: original]",
    )
    p.add_argument(
        "--seed",
        type=int,
        default=0,
        help="seed of the re-drawn weights (a method's own seed: --set seed=N) [default: 0]",
    )
    p.add_argument("--out", default="sanity.png", help="plot file [default: sanity.png]")
    p.add_argument("--json", metavar="FILE", help="also write the numbers as JSON")
    add_force(p)
    add_recursive(p)


def sanity_command(args: argparse.Namespace) -> int:
    """Model-parameter randomisation test with its plot; prints one line per method."""
    from seewhy.metrics import plot_sanity, sanity_check

    methods = check_methods(args.method)
    settings = method_settings(args, methods)
    found = sources(args.images, args.recursive)
    out = Path(args.out)
    kind = picture_format(out, "--out", _plot_formats())
    plan = OutputPlan(input_paths(args, found), force=args.force)
    plan.claim(out, "the plot (--out)", option="--out")
    if args.json and args.json != "-":
        plan.claim(args.json, "--json", option="--json")
    plan.check()
    model = load_model(args)
    target = chosen_target(args, model)
    results = [
        sanity_check(
            model,
            found,
            m,
            target=target,
            steps=args.steps,
            cascading=not args.independent,
            seed=args.seed,
            randomized_target=args.randomized_target,
            **explainer_keywords(args),
            **settings[m],
        )
        for m in methods
    ]
    marked = {"metadata": {"Software": MARK}} if kind == "png" else {}
    with plan.open(out) as handle:
        plot_sanity(results).savefig(handle, format=kind, dpi=110, **marked)
    for r in results:
        verdict = (
            "passes (maps depend on the weights)"
            if r.passes()
            else "FAILS (maps barely change with random weights)"
        )
        print(
            f"{printable(r.method)}: final Spearman {r.final_spearman:.3f} "
            f"(abs {r.final('spearman_abs'):.3f}, no abs {r.final('spearman_signed'):.3f}), "
            f"SSIM {r.final_ssim:.3f}, HOG {r.final('hog'):.3f}: {verdict}"
        )
    print(f"plot: {printable(out)}")
    if args.json:
        payload = {"model": args.model, "images": found, "results": [r.to_dict() for r in results]}
        write_json(payload, args.json, plan)
    return EXIT_OK


def _plot_formats() -> dict[str, str]:
    """Endings matplotlib can write -> its format name (``.png`` -> ``png``)."""
    from matplotlib.backend_bases import FigureCanvasBase

    return {f".{name}": name for name in FigureCanvasBase.get_supported_filetypes()}
