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
    "add_model_options",
    "add_precision",
    "add_recursive",
    "load_model",
]


def add_model_options(p: argparse.ArgumentParser) -> None:
    """The ``model`` group: which model, for which framework, with what weights."""
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
        help="allow model files that can run code (pickles, TorchScript, Keras lambdas)",
    )


def load_model(args: argparse.Namespace) -> Any:
    """The model the ``model`` group names."""
    import seewhy

    return seewhy.load_model(
        args.model, framework=args.framework, weights=args.weights, trust=args.trust_model
    )


def add_explaining_options(p: argparse.ArgumentParser) -> None:
    """What every explaining command takes: the images, the model group, method, target, layer."""
    p.add_argument("images", nargs="+", help="image files, folders, or sample:NAME")
    add_model_options(p)
    p.add_argument(
        "--method",
        default="gradcam",
        help="method or comma-separated methods (see `seewhy methods`) [default: gradcam]",
    )
    p.add_argument("--target", help="class index or name to explain [default: top-1]")
    p.add_argument("--layer", help="layer for CAM methods (see `seewhy layers`)")


def add_precision(p: argparse.ArgumentParser, help_text: str) -> None:
    """``--precision`` of forward passes; ``help_text`` says which passes it affects."""
    p.add_argument("--precision", choices=PRECISIONS, default="float32", help=help_text)


def add_recursive(p: argparse.ArgumentParser) -> None:
    """``--recursive``: walk sub-folders of the named folders."""
    p.add_argument("--recursive", action="store_true", help="walk sub-folders")
