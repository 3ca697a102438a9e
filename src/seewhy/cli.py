"""Command line: ``seewhy explain``, ``seewhy layers``, ``seewhy methods``.

Uses only the public API. Errors are one line on stderr and a non-zero exit
code; a bad image in a folder is reported and the rest are still explained.
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from . import __version__
from .backends.base import PRECISIONS
from .errors import SeewhyError, SkippedInputWarning

__all__ = ["main"]

EXIT_OK, EXIT_ERROR, EXIT_PARTIAL, EXIT_USAGE = 0, 1, 3, 2


def _model_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("model")
    g.add_argument(
        "--model",
        default="efficientnet_lite0",
        help="bundled name, torchvision:NAME, timm:NAME, keras:NAME, or a model file "
        "(.pt TorchScript, .pt2 torch.export, .keras) [default: efficientnet_lite0]",
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


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="seewhy", description="See where an image model looks when it decides."
    )
    parser.add_argument("--version", action="version", version=f"seewhy {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    sub = parser.add_subparsers(dest="command", required=True)

    ex = sub.add_parser("explain", help="explain images and write overlay panels")
    ex.add_argument("images", nargs="+", help="image files, folders, or sample:NAME")
    _model_args(ex)
    ex.add_argument(
        "--method",
        default="gradcam",
        help="method or comma-separated methods (see `seewhy methods`)",
    )
    ex.add_argument("--target", help="class index or name to explain [default: top-1]")
    ex.add_argument("--layer", help="layer for CAM methods (see `seewhy layers`)")
    ex.add_argument("--score", choices=("logit", "probability"), default="logit")
    ex.add_argument("--out", default=".", help="folder for the panels [default: .]")
    ex.add_argument("--cmap", default="viridis", help="matplotlib colormap [default: viridis]")
    ex.add_argument("--alpha", type=float, default=0.5, help="image weight in the overlay")
    ex.add_argument("--top-k", type=int, default=5)
    ex.add_argument(
        "--precision",
        choices=PRECISIONS,
        default="float32",
        help="forward passes of occlusion, rise, scorecam, lime, kernelshap (PyTorch) "
        "[default: float32]",
    )
    ex.add_argument(
        "--batch-size",
        type=int,
        help="images per pass, and perturbed copies per pass [default: 16; copies: chosen by "
        "model and device]",
    )
    ex.add_argument("--recursive", action="store_true", help="walk sub-folders")
    ex.add_argument("--json", metavar="FILE", help="write predictions and file names as JSON")
    ex.add_argument("--quiet", action="store_true", help="no progress bar, no listing")

    ly = sub.add_parser("layers", help="list the layers a CAM can use")
    _model_args(ly)

    sub.add_parser("methods", help="list the explanation methods")

    from .audit.command import add_audit_arguments
    from .metrics import cli_commands as mc

    add_audit_arguments(
        sub.add_parser("audit", help="explain a whole data set into an HTML report")
    )
    mc.add_evaluate_arguments(
        sub.add_parser("evaluate", help="score explanations: deletion, insertion, ROAD, ... (JSON)")
    )
    mc.add_sanity_arguments(sub.add_parser("sanity", help="model-randomisation sanity check"))
    demo = sub.add_parser("demo", help="self-contained demos").add_subparsers(
        dest="demo", required=True
    )
    mc.add_demo_shortcut_arguments(
        demo.add_parser("shortcut", help="catch a model that learnt a watermark")
    )
    return parser


def _batches(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _sources(args: argparse.Namespace) -> list[str]:
    from .io import iter_image_files

    samples = [s for s in args.images if s.startswith("sample:")]
    files = [s for s in args.images if not s.startswith("sample:")]
    expanded = [str(p) for p in iter_image_files(files, recursive=args.recursive)] if files else []
    return samples + expanded


def _out_name(source: str, method: str, several: bool) -> str:
    stem = source.split(":", 1)[1] if source.startswith("sample:") else Path(source).stem
    return f"{stem}.{method}.seewhy.png" if several else f"{stem}.seewhy.png"


def _explain(args: argparse.Namespace) -> int:
    import seewhy

    methods = [m.strip() for m in args.method.split(",") if m.strip()]
    for m in methods:
        seewhy.registry.get(m)  # fail fast on a typo, before loading anything
    sources = _sources(args)
    if not sources:
        raise seewhy.InvalidInput("images: no image files found in the given paths")
    model = seewhy.load_model(
        args.model, framework=args.framework, weights=args.weights, trust=args.trust_model
    )
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
    bar = _progress(len(sources) * len(methods), quiet=args.quiet)
    try:
        for chunk in _batches(sources, args.batch_size or 16):
            chunk_records: dict[str, dict[str, Any]] = {}
            for m, explainer in explainers.items():
                try:
                    ex = explainer.explain(list(chunk), target=args.target)
                except seewhy.InvalidInput as exc:  # every image of the chunk was bad
                    if not chunk_records:
                        failures.extend((s, str(exc)) for s in chunk)
                    bar.update(len(chunk))
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
                bar.update(len(chunk))
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
        Path(args.json).write_text(json.dumps(payload, indent=2), encoding="utf-8")
    if failures and not records:
        return EXIT_ERROR
    return EXIT_PARTIAL if failures else EXIT_OK


def _record(ex: Any, i: int) -> dict[str, Any]:
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


def _print_predictions(ex: Any, *, quiet: bool) -> None:
    if quiet:
        return
    for i, source in enumerate(ex.sources):
        print(source)
        for rank, p in enumerate(ex.predictions[i], start=1):
            print(f"  {rank}. {p.label:<30} {100 * p.probability:6.2f}%  (class {p.index})")


class _NoBar:
    def update(self, n: int) -> None:
        pass

    def close(self) -> None:
        pass


def _progress(total: int, *, quiet: bool) -> Any:
    if quiet or total < 2 or not sys.stderr.isatty():
        return _NoBar()
    from tqdm import tqdm

    return tqdm(total=total, unit="img", file=sys.stderr, leave=False)


def _layers(args: argparse.Namespace) -> int:
    import seewhy

    model = seewhy.load_model(
        args.model, framework=args.framework, weights=args.weights, trust=args.trust_model
    )
    infos, default = seewhy.layers(model)
    width = max((len(i.name) for i in infos), default=4)
    print(f"  {'layer':<{width}}  {'type':<20} output (C, h, w)")
    for info in infos:
        mark = "*" if info.name == default else " "
        calls = f"  (runs {info.calls}x, last call used)" if info.calls > 1 else ""
        print(f"{mark} {info.name:<{width}}  {info.kind:<20} {info.shape}{calls}")
    print(f"* default layer: {default}" if default else "no layer with a spatial map")
    return EXIT_OK


def _methods(args: argparse.Namespace) -> int:
    import seewhy

    for name in seewhy.methods():
        doc = (seewhy.registry.get(name).__doc__ or "").strip().splitlines()
        print(f"{name:<16} {doc[0] if doc else ''}")
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``seewhy`` command."""
    parser = _parser()
    args = parser.parse_args(argv)
    from .audit.command import audit_command
    from .metrics import cli_commands as mc

    handlers = {
        "explain": _explain,
        "layers": _layers,
        "methods": _methods,
        "audit": audit_command,
        "evaluate": mc.evaluate_command,
        "sanity": mc.sanity_command,
        "demo": mc.demo_shortcut_command,
    }
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", SkippedInputWarning)  # the CLI lists them itself
            return handlers[args.command](args)
    except SeewhyError as exc:
        if args.debug:
            raise
        print(f"seewhy: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("seewhy: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        if args.debug:
            raise
        print(
            f"seewhy: error: {type(exc).__name__}: {exc} (run with --debug for details)",
            file=sys.stderr,
        )
        return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
