"""``seewhy layers``: the layers a CAM can read, the default one marked."""

from __future__ import annotations

import argparse

from ._common import EXIT_OK
from .options import add_model_options, load_model

__all__ = ["HELP", "add_layers_arguments", "layers_command"]

HELP = "list the layers a CAM can use"


def add_layers_arguments(p: argparse.ArgumentParser) -> None:
    """Options of ``seewhy layers``: the model group only."""
    add_model_options(p)


def layers_command(args: argparse.Namespace) -> int:
    """Print one line per layer: name, kind, output shape; ``*`` marks the default."""
    import seewhy

    infos, default = seewhy.layers(load_model(args))
    width = max((len(i.name) for i in infos), default=4)
    kinds = max((len(i.kind) for i in infos), default=4)  # MaxViT's PartitionAttentionLayer
    print(f"  {'layer':<{width}}  {'type':<{kinds}} {'layout':<16} maps (C, h, w)")
    for info in infos:
        mark = "*" if info.name == default else " "
        calls = f"  (runs {info.calls}x, last call used)" if info.calls > 1 else ""
        layout = info.layout.describe() if info.layout is not None else "NCHW"
        print(f"{mark} {info.name:<{width}}  {info.kind:<{kinds}} {layout:<16} {info.shape}{calls}")
    print(f"* default layer: {default}" if default else "no layer with a spatial map")
    return EXIT_OK
