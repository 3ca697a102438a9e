"""``seewhy layers``: the layers a CAM can read, the default one marked."""

from __future__ import annotations

import argparse

from ..terminal import printable
from ._common import EXIT_OK
from .options import add_model_options, explainer_keywords, load_model

__all__ = ["HELP", "add_layers_arguments", "layers_command"]

HELP = "list the layers a CAM can use"


def add_layers_arguments(p: argparse.ArgumentParser) -> None:
    """Options of ``seewhy layers``: the model group only."""
    add_model_options(p)


def layers_command(args: argparse.Namespace) -> int:
    """Print one line per layer: name, kind, output shape; ``*`` marks the default.

    A vision-language model lists its image-seeing part's layers (the
    processor or tokenizer beside its folder says how it sees pictures).
    """
    import seewhy

    given = explainer_keywords(args)  # only the model's own text side: layers has no others
    text = {k: given[k] for k in ("tokenizer", "processor") if k in given}
    infos, default = seewhy.layers(load_model(args), **text)
    names = [printable(i.name) for i in infos]  # a model file chooses its layers' names
    types = [printable(i.kind) for i in infos]
    width = max((len(n) for n in names), default=4)
    kinds = max((len(k) for k in types), default=4)  # MaxViT's PartitionAttentionLayer
    print(f"  {'layer':<{width}}  {'type':<{kinds}} {'layout':<16} maps (C, h, w)")
    for info, name, kind in zip(infos, names, types, strict=True):
        mark = "*" if info.name == default else " "
        calls = f"  (runs {info.calls}x, last call used)" if info.calls > 1 else ""
        layout = info.layout.describe() if info.layout is not None else "NCHW"
        print(f"{mark} {name:<{width}}  {kind:<{kinds}} {layout:<16} {info.shape}{calls}")
    print(f"* default layer: {printable(default)}" if default else "no layer with a spatial map")
    return EXIT_OK
