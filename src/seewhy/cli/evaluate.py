"""``seewhy evaluate``: explain images, then score the maps (deletion, insertion, ROAD, ...).

The scores go out as JSON (stdout, or ``--json FILE`` with a one-line
headline per method on stdout).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from seewhy import PRECISIONS

from ..errors import InvalidInput
from ..terminal import printable
from ._common import EXIT_OK, check_methods, csv_list, sources, write_json
from .options import (
    add_explaining_options,
    add_force,
    add_recursive,
    chosen_target,
    explainer_keywords,
    load_model,
)
from .outputs import OutputPlan, input_paths
from .settings import method_settings

__all__ = ["HELP", "add_evaluate_arguments", "evaluate_command"]

HELP = "score explanations: deletion, insertion, ROAD, ... (JSON)"

#: Images per explaining pass when --batch-size is not given.
_EXPLAIN_BATCH = 32


def add_evaluate_arguments(p: argparse.ArgumentParser) -> None:
    """Options of ``seewhy evaluate``."""
    add_explaining_options(
        p,
        skip=("precision",),  # the metrics' here (below); the maps are explained in float32
        batch_size="inputs per forward pass [default: explaining 32; the metrics choose by "
        "model and device]",
    )
    from seewhy import metrics

    registered = metrics.registry.registered()
    plain = [m.name for m in registered if metrics.Need.OBJECTS not in m.needs]
    boxed = [m.name for m in registered if metrics.Need.OBJECTS in m.needs]
    default = ",".join(metrics.DEFAULT_METRICS)
    p.add_argument(
        "--metrics",
        default=default,
        help=f"comma-separated: {', '.join(plain)}, and with --boxes {', '.join(boxed)} "
        f"[default: {default}]",
    )
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
        "--precision",
        dest="metric_precision",
        choices=PRECISIONS,
        default="float32",
        help="forward passes of the faithfulness metrics; bfloat16 is 1.5-2x faster on "
        "CPUs with AMX and recent GPUs (PyTorch models) [default: float32]",
    )
    add_recursive(p)
    p.add_argument("--json", metavar="FILE", help="write the results here [default: stdout]")
    add_force(p)


def _boxes(path: str | None, found: list[str]) -> Any:
    """The ``--boxes`` file as one entry per image, in the images' order (None without it)."""
    if path is None:
        return None
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InvalidInput(f"--boxes: cannot read {path!r} as JSON ({exc})") from exc
    if isinstance(data, dict):
        missing = [s for s in found if s not in data]
        if missing:
            raise InvalidInput(f"--boxes: no boxes for {missing[0]!r} in {path!r}")
        return [data[s] for s in found]
    if isinstance(data, list) and len(data) == len(found):
        return data
    raise InvalidInput(f"--boxes: expected an object keyed by image or a list of {len(found)}")


def evaluate_command(args: argparse.Namespace) -> int:
    """Explain the images with each method and score the maps; JSON out."""
    import seewhy
    from seewhy import metrics

    methods = check_methods(args.method)
    settings = method_settings(args, methods)
    wanted = _metric_names(args)
    found = sources(args.images, args.recursive)
    plan = OutputPlan(input_paths(args, found), force=args.force)
    if args.json and args.json != "-":
        plan.claim(args.json, "--json", option="--json")
    plan.check()
    boxes = _boxes(args.boxes, found)
    model = load_model(args)
    target = chosen_target(args, model)
    results: dict[str, Any] = {}
    explained: list[str] = []
    given = explainer_keywords(args)
    text = {k: given[k] for k in ("tokenizer", "processor") if k in given}  # scored again
    for m in methods:
        chosen = {**given, "batch_size": args.batch_size or _EXPLAIN_BATCH}
        ex = seewhy.explain(model, found, m, target=target, **chosen, **settings[m])
        if len(ex.sources) != len(found) and boxes is not None:
            keep = [found.index(s) for s in ex.sources]
            boxes = [boxes[i] for i in keep]
            found = list(ex.sources)
        explained = list(ex.sources)
        results[m] = {
            "layer": ex.layer,
            "settings": {k: ex.params[k] for k in seewhy.registry.get(m).param_names()},
            "targets": [int(t) for t in ex.targets],
            "target_labels": list(ex.target_labels),
            **({"target_spec": ex.params["target"]} if "target" in ex.params else {}),
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
                precision=args.metric_precision,
                **text,
            ),
        }
    payload = {"model": args.model, "images": explained, "methods": results}
    write_json(payload, args.json, plan)
    if args.json and args.json != "-":
        for m, entry in results.items():
            parts = [f"{name}={_headline(name, value)}" for name, value in entry["metrics"].items()]
            print(printable(f"{m}: {', '.join(parts)}"))
    return EXIT_OK


def _metric_names(args: argparse.Namespace) -> list[str]:
    """The metrics asked for, checked before the model loads (a misspelling, boxes missing)."""
    from seewhy import metrics

    chosen = [metrics.registry.get(name) for name in csv_list(args.metrics)]
    lacking = [m.name for m in chosen if metrics.Need.OBJECTS in m.needs]
    if lacking and args.boxes is None:
        raise InvalidInput(f"--metrics: {', '.join(lacking)} need --boxes FILE")
    return [m.name for m in chosen]


def _headline(name: str, value: dict[str, Any]) -> str:
    """The one number that sums a metric up (its declared headline), for the stdout line."""
    from seewhy import metrics

    return f"{value[metrics.registry.get(name).headline]:.4f}"
