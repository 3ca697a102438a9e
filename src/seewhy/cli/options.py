"""Options that several commands take, each defined once: the ``--model`` group above all.

A command adds the options it needs; :func:`load_model` reads the model
group back, so every command loads a model the same way.
"""

from __future__ import annotations

import argparse
from typing import Any

from seewhy import PRECISIONS

__all__ = [
    "add_explaining_options",
    "add_force",
    "add_model_options",
    "add_precision",
    "add_recursive",
    "chosen_target",
    "load_model",
    "target_keywords",
]


def add_model_options(p: argparse.ArgumentParser) -> None:
    """The ``model`` group: which model, for which framework, with what weights."""
    g = p.add_argument_group("model")
    g.add_argument(
        "--model",
        default="efficientnet_lite0",
        help="bundled name, torchvision:NAME, timm:NAME, keras:NAME, or a model file "
        "(.pt TorchScript, .pt2 torch.export, .keras, .onnx) [default: efficientnet_lite0]",
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
        help="allow model files that can run code (pickles, TorchScript, Keras lambdas)",
    )
    g.add_argument(
        "--size",
        type=_size,
        metavar="H[,W]",
        help="the model's input size, where the model does not say it [default: the model's]",
    )
    g.add_argument(
        "--providers",
        help="ONNX Runtime execution providers for a .onnx model, comma-separated "
        "[default: CUDAExecutionProvider where present, then CPUExecutionProvider]",
    )


def _size(text: str) -> tuple[int, int]:
    """``"32"`` -> (32, 32); ``"96,128"`` -> (96, 128)."""
    parts = [p.strip() for p in text.replace("x", ",").split(",")]
    if len(parts) not in (1, 2) or not all(p.isdigit() and int(p) > 0 for p in parts):
        raise argparse.ArgumentTypeError(f"expected H or H,W (positive integers), got {text!r}")
    height = int(parts[0])
    return height, int(parts[-1])


def _output_choice(text: str) -> int | str:
    return int(text) if text.strip().isdigit() else text


def chosen_target(args: argparse.Namespace, model: Any) -> Any:
    """``--target`` as ``explain`` takes it: a class, or a :mod:`seewhy.targets` target."""
    import seewhy

    text = getattr(args, "target", None)
    if text is None:
        return None
    return seewhy.targets.parse(text, seewhy.model_spec(model).labels)


def target_keywords(args: argparse.Namespace, model: Any) -> dict[str, Any]:
    """``target``, ``output`` and ``head`` for ``explain`` (the last two only when given)."""
    chosen: dict[str, Any] = {"target": chosen_target(args, model)}
    for name in ("output", "head"):
        if getattr(args, name, None) is not None:
            chosen[name] = getattr(args, name)
    return chosen


def load_model(args: argparse.Namespace) -> Any:
    """The model the ``model`` group names."""
    import seewhy

    providers = getattr(args, "providers", None)
    model = seewhy.load_model(
        args.model,
        framework=args.framework,
        weights=args.weights,
        trust=args.trust_model,
        providers=providers.split(",") if providers else None,
    )
    size = getattr(args, "size", None)
    if size is not None:  # the model was loaded here: its spec is ours to set
        model.seewhy_spec = seewhy.model_spec(model).at_size(size)
    return model


def add_explaining_options(p: argparse.ArgumentParser) -> None:
    """What every explaining command takes: the images, the model group, method, target, layer."""
    p.add_argument("images", nargs="+", help="image files, folders, or sample:NAME")
    add_model_options(p)
    p.add_argument(
        "--method",
        default="gradcam",
        help="method or comma-separated methods (see `seewhy methods`) [default: gradcam]",
    )
    p.add_argument(
        "--target",
        help="what to explain: a class index or name, labels:A,B (sigmoid labels), output:N, "
        "box:x0,y0,x1,y1[:label] (detectors; input pixels), region:CLASS:mask.png "
        "(segmenters) [default: top-1; a detector: each detection]",
    )
    p.add_argument("--layer", help="layer for CAM methods (see `seewhy layers`)")
    p.add_argument(
        "--output",
        type=_output_choice,
        help="which output of a model returning several (index, key or name)",
    )
    add_head(p)


def add_head(p: Any) -> None:
    """``--head``: how class scores become probabilities (``explain``, ``audit``)."""
    p.add_argument(
        "--head",
        choices=("softmax", "sigmoid"),
        help="sigmoid: independent labels (found by itself for a final sigmoid, PyTorch or "
        "Keras, or a one-output model)",
    )


def add_precision(p: argparse.ArgumentParser, help_text: str) -> None:
    """``--precision`` of forward passes; ``help_text`` says which passes it affects."""
    p.add_argument("--precision", choices=PRECISIONS, default="float32", help=help_text)


def add_recursive(p: argparse.ArgumentParser) -> None:
    """``--recursive``: walk sub-folders of the named folders."""
    p.add_argument("--recursive", action="store_true", help="walk sub-folders")


def add_force(p: argparse.ArgumentParser) -> None:
    """``--force``: overwrite existing files seewhy did not write (see ``cli/outputs.py``)."""
    p.add_argument(
        "--force",
        action="store_true",
        help="overwrite existing output files that seewhy did not write (never an input of "
        "the run, nor one output with another)",
    )
