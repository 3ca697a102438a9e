"""AttnLRP on a ViT-S/16: seewhy against lxt's efficient AttnLRP and a plain input gradient.

Run: python benchmarks/bench_attnlrp.py [--batch 2] [--repeats 5] [--size 224] [--device cpu]

Everything is timed in this one process on timm's ``vit_small_patch16_224``
(random weights) and the same inputs, explaining class 1:
  input gradient   one forward and ``autograd.grad`` of the logit to the input, x * grad
                   summed over channels: the floor any one-backward method pays
  seewhy attnlrp   ``seewhy.Explainer(model, "attnlrp")``: rules as hooks on a private
                   twin, the whole explain (checks, map, Explanation)
  lxt              lxt 2.1's efficient AttnLRP: its layer-norm and identity-rule
                   patches on the model's classes and its attention wrapper (q/4, k/4,
                   v/2) around timm's SDPA, put on for each call and taken off after
                   (its patches are class-wide; seewhy's model must not see them)
lxt 2.1's package ``__init__`` imports its BERT port, which fails on transformers 5;
its ``patches`` module is read here without it (it needs only torch).
Target: seewhy attnlrp no slower than lxt (lxt / seewhy >= 1). Timings are medians of
interleaved rounds; a busy machine makes them noisy.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import importlib
import sys
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from _timing import timed_all


def lxt_patches() -> Any:
    """``lxt.efficient.patches`` without the package ``__init__`` (see the module doc)."""
    import lxt

    package = types.ModuleType("lxt.efficient")
    package.__path__ = [str(Path(lxt.__path__[0]) / "efficient")]
    sys.modules.setdefault("lxt.efficient", package)
    return importlib.import_module("lxt.efficient.patches")


@contextlib.contextmanager
def lxt_on(model: Any, lxt: Any) -> Iterator[None]:
    """lxt's AttnLRP patches on the classes of ``model``'s modules, for one call."""
    import timm.layers.attention as timm_attention

    saved: list[tuple[Any, str, Any]] = []

    def put(owner: Any, name: str, value: Any) -> None:
        saved.append((owner, name, owner.__dict__.get(name, None)))
        setattr(owner, name, value)

    sdpa = F.scaled_dot_product_attention
    wrapped = lxt.wrap_attention_forward(lambda m, q, k, v, **kw: sdpa(q, k, v, **kw))
    functions = types.SimpleNamespace(**vars(F))
    functions.scaled_dot_product_attention = lambda q, k, v, **kw: wrapped(None, q, k, v, **kw)
    try:
        put(timm_attention, "F", functions)
        for kind in {type(m) for m in model.modules()}:
            if issubclass(kind, torch.nn.LayerNorm):
                put(kind, "forward", lxt.layer_norm_forward)
            elif issubclass(kind, torch.nn.GELU):
                put(kind, "original_forward", kind.forward)
                put(kind, "forward", lxt.non_linear_forward)
        yield
    finally:
        for owner, name, value in reversed(saved):
            if value is None:
                delattr(owner, name)
            else:
                setattr(owner, name, value)


def run(batch: int, repeats: int, size: int, device: str) -> None:
    import timm

    import seewhy

    lxt = lxt_patches()
    torch.manual_seed(0)
    model = timm.create_model("vit_small_patch16_224", pretrained=False, img_size=size)
    model = model.eval().to(device)
    theirs = copy.deepcopy(model)
    x = torch.randn(batch, 3, size, size, device=device)
    x_np = x.permute(0, 2, 3, 1).cpu().numpy().copy()
    pre = seewhy.Preprocess(
        size=(size, size), resize=None, mean=(0.0,) * 3, std=(1.0,) * 3, scale=1.0
    )
    ours = seewhy.Explainer(model, "attnlrp", preprocess=pre, batch_size=batch)

    def input_gradient() -> np.ndarray:
        inputs = x.clone().requires_grad_(True)
        (grad,) = torch.autograd.grad(model(inputs)[:, 1].sum(), inputs)
        return (inputs * grad).sum(1).detach().cpu().numpy()

    def with_lxt() -> np.ndarray:
        inputs = x.clone().requires_grad_(True)
        with lxt_on(theirs, lxt):
            (grad,) = torch.autograd.grad(theirs(inputs)[:, 1].sum(), inputs)
        return (inputs * grad).sum(1).detach().cpu().numpy()

    mine = ours.explain(x_np, target=1).extras["attributions"].sum(-1)
    reference = with_lxt()
    pairs = zip(mine, reference, strict=True)
    r = min(float(np.corrcoef(a.ravel(), b.ravel())[0, 1]) for a, b in pairs)
    times = timed_all(
        {
            "input gradient": input_gradient,
            "seewhy attnlrp": lambda: ours.explain(x_np, target=1),
            "lxt": with_lxt,
        },
        repeats,
    )
    print(
        f"timm vit_small_patch16_224, random weights, batch {batch}, {size} px, "
        f"{torch.get_num_threads()} threads, {device}"
    )
    floor = times["input gradient"].seconds
    print(f"  {'':16} {'s/batch':>9} {'x input grad':>13} {'page faults':>12}")
    for label, t in times.items():
        print(f"  {label:16} {t.seconds:9.4f} {t.seconds / floor:13.2f} {t.faults:12d}")
    seewhy_s, lxt_s = times["seewhy attnlrp"].seconds, times["lxt"].seconds
    print("  targets:")
    print(f"    lxt / seewhy attnlrp        {lxt_s / seewhy_s:.2f}x  (>= 1: seewhy no slower)")
    print(f"    seewhy / input gradient     {seewhy_s / floor:.2f}x")
    print(f"  maps: lowest per-image r against lxt {r:.5f}  (>= 0.99)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    run(args.batch, args.repeats, args.size, args.device)


if __name__ == "__main__":
    main()
