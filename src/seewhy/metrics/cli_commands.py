"""Command-line pieces for ``seewhy evaluate``, ``seewhy sanity`` and ``seewhy demo shortcut``.

``seewhy.cli`` wires these in: each ``add_*_arguments(parser)`` fills a
sub-parser and each ``*_command(args)`` runs it and returns the exit code.
They use only the public API; output goes to stdout, errors are raised as
:class:`~seewhy.SeewhyError` for the CLI to print on one line.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from ..backends.base import PRECISIONS
from ..errors import InvalidInput

__all__ = [
    "add_demo_shortcut_arguments",
    "add_evaluate_arguments",
    "add_sanity_arguments",
    "demo_shortcut_command",
    "evaluate_command",
    "sanity_command",
]

EXIT_OK, EXIT_ERROR = 0, 1


def _model_arguments(p: argparse.ArgumentParser) -> None:
    """The same model options as ``seewhy explain``."""
    g = p.add_argument_group("model")
    g.add_argument(
        "--model",
        default="efficientnet_lite0",
        help="bundled name, torchvision:NAME, timm:NAME, keras:NAME, or a model file "
        "[default: efficientnet_lite0]",
    )
    g.add_argument(
        "--framework",
        choices=("torch", "keras"),
        default="torch",
        help="framework for a bundled model [default: torch]",
    )
    g.add_argument("--weights", help="local weights file (state dict / Keras weights)")
    g.add_argument(
        "--trust-model",
        action="store_true",
        help="allow model files that run code when loaded (pickles, Keras lambdas)",
    )


def _csv(text: str) -> list[str]:
    return [item.strip() for item in text.split(",") if item.strip()]


def _sources(images: list[str], recursive: bool = False) -> list[str]:
    from ..io import iter_image_files

    samples = [s for s in images if s.startswith("sample:")]
    files = [s for s in images if not s.startswith("sample:")]
    expanded = [str(p) for p in iter_image_files(files, recursive=recursive)] if files else []
    found = samples + expanded
    if not found:
        raise InvalidInput("images: no image files found in the given paths")
    return found


def _load(args: argparse.Namespace) -> Any:
    import seewhy

    return seewhy.load_model(
        args.model, framework=args.framework, weights=args.weights, trust=args.trust_model
    )


def _write_json(payload: dict[str, Any], target: str | None) -> None:
    text = json.dumps(payload, indent=2)
    if target is None or target == "-":
        print(text)
    else:
        Path(target).write_text(text + "\n", encoding="utf-8")


# --------------------------------------------------------------------------- evaluate


def add_evaluate_arguments(p: argparse.ArgumentParser, *, model_args: bool = True) -> None:
    """Options of ``seewhy evaluate`` (``model_args=False`` if the caller adds them)."""
    p.add_argument("images", nargs="+", help="image files, folders, or sample:NAME")
    if model_args:
        _model_arguments(p)
    p.add_argument("--method", default="gradcam", help="method or comma-separated methods")
    p.add_argument(
        "--metrics",
        default="deletion,insertion,average_drop",
        help="comma-separated: deletion, insertion, average_drop, road, and with "
        "--boxes pointing_game, energy_pointing_game, energy_in_box, iou "
        "[default: deletion,insertion,average_drop]",
    )
    p.add_argument("--target", help="class index or name to explain [default: top-1]")
    p.add_argument("--layer", help="layer for CAM methods")
    p.add_argument("--steps", type=int, default=50, help="deletion/insertion steps [default: 50]")
    p.add_argument(
        "--baseline",
        default="zeros",
        help="what deleted pixels become: zeros, black, mean, blur [default: zeros]",
    )
    p.add_argument(
        "--boxes",
        metavar="FILE",
        help="JSON object boxes in model-input pixels: {source: [x0, y0, x1, y1] or "
        "a list of them}, or a list in image order",
    )
    p.add_argument("--tolerance", type=float, help="pointing-game tolerance in pixels")
    p.add_argument("--threshold", type=float, default=0.5, help="IoU threshold (share of max)")
    p.add_argument(
        "--batch-size",
        type=int,
        help="inputs per forward pass [default: explaining 32; the metrics choose by "
        "model and device]",
    )
    p.add_argument(
        "--precision",
        choices=PRECISIONS,
        default="float32",
        help="forward passes of the faithfulness metrics; bfloat16 is 1.5-2x faster on "
        "CPUs with AMX and recent GPUs (PyTorch models) [default: float32]",
    )
    p.add_argument("--recursive", action="store_true", help="walk sub-folders")
    p.add_argument("--json", metavar="FILE", help="write the results here [default: stdout]")


def _boxes(path: str | None, sources: list[str]) -> Any:
    if path is None:
        return None
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InvalidInput(f"--boxes: cannot read {path!r} as JSON ({exc})") from exc
    if isinstance(data, dict):
        missing = [s for s in sources if s not in data]
        if missing:
            raise InvalidInput(f"--boxes: no boxes for {missing[0]!r} in {path!r}")
        return [data[s] for s in sources]
    if isinstance(data, list) and len(data) == len(sources):
        return data
    raise InvalidInput(f"--boxes: expected an object keyed by image or a list of {len(sources)}")


def evaluate_command(args: argparse.Namespace) -> int:
    """Explain the images with each method and score the maps; JSON out."""
    import seewhy
    from seewhy import metrics

    methods = _csv(args.method)
    wanted = _csv(args.metrics)
    for m in methods:
        seewhy.registry.get(m)
    sources = _sources(args.images, args.recursive)
    boxes = _boxes(args.boxes, sources)
    model = _load(args)
    results: dict[str, Any] = {}
    explained: list[str] = []
    for m in methods:
        ex = seewhy.explain(
            model,
            sources,
            m,
            target=args.target,
            layer=args.layer,
            batch_size=args.batch_size or 32,
        )
        if len(ex.sources) != len(sources) and boxes is not None:
            keep = [sources.index(s) for s in ex.sources]
            boxes = [boxes[i] for i in keep]
            sources = list(ex.sources)
        explained = list(ex.sources)
        results[m] = {
            "layer": ex.layer,
            "targets": [int(t) for t in ex.targets],
            "target_labels": list(ex.target_labels),
            "metrics": metrics.evaluate(
                model,
                ex,
                wanted,
                boxes=boxes,
                steps=args.steps,
                baseline=args.baseline,
                batch_size=args.batch_size,
                tolerance=args.tolerance,
                threshold=args.threshold,
                precision=args.precision,
            ),
        }
    payload = {"model": args.model, "images": explained, "methods": results}
    _write_json(payload, args.json)
    if args.json:
        for m, entry in results.items():
            parts = [f"{name}={_headline(value)}" for name, value in entry["metrics"].items()]
            print(f"{m}: {', '.join(parts)}")
    return EXIT_OK


def _headline(value: dict[str, Any]) -> str:
    for key in ("mean_auc", "average_drop", "gap", "mean"):
        if key in value:
            return f"{value[key]:.4f}"
    return "?"


# --------------------------------------------------------------------------- sanity


def add_sanity_arguments(p: argparse.ArgumentParser, *, model_args: bool = True) -> None:
    """Options of ``seewhy sanity``."""
    p.add_argument("images", nargs="+", help="image files, folders, or sample:NAME")
    if model_args:
        _model_arguments(p)
    p.add_argument(
        "--method", default="gradcam", help="method or comma-separated methods [default: gradcam]"
    )
    p.add_argument("--target", help="class index or name to explain [default: top-1]")
    p.add_argument("--layer", help="layer for CAM methods")
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
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="sanity.png", help="plot file [default: sanity.png]")
    p.add_argument("--json", metavar="FILE", help="also write the numbers as JSON")
    p.add_argument("--recursive", action="store_true", help="walk sub-folders")


def sanity_command(args: argparse.Namespace) -> int:
    """Model-parameter randomisation test with its plot; prints one line per method."""
    import seewhy
    from seewhy.metrics import plot_sanity, sanity_check

    methods = _csv(args.method)
    for m in methods:
        seewhy.registry.get(m)
    sources = _sources(args.images, args.recursive)
    model = _load(args)
    results = [
        sanity_check(
            model,
            sources,
            m,
            target=args.target,
            layer=args.layer,
            steps=args.steps,
            cascading=not args.independent,
            seed=args.seed,
            randomized_target=args.randomized_target,
        )
        for m in methods
    ]
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    plot_sanity(results).savefig(out, dpi=110)
    for r in results:
        verdict = (
            "passes (maps depend on the weights)"
            if r.passes()
            else ("FAILS (maps barely change with random weights)")
        )
        print(
            f"{r.method}: final Spearman {r.final_spearman:.3f} "
            f"(abs {r.final('spearman_abs'):.3f}, no abs {r.final('spearman_signed'):.3f}), "
            f"SSIM {r.final_ssim:.3f}, HOG {r.final('hog'):.3f}: {verdict}"
        )
    print(f"plot: {out}")
    if args.json:
        _write_json(
            {"model": args.model, "images": sources, "results": [r.to_dict() for r in results]},
            args.json,
        )
    return EXIT_OK


# --------------------------------------------------------------------------- demo


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

    size: dict[str, Any] = {"n_train": 1200, "n_test": 200, "epochs": 8} if args.quick else {}
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
