"""LRP on torchvision's ResNet-50: seewhy against zennit and against one input gradient.

Run: python benchmarks/bench_lrp.py [--batch 8] [--size 224] [--repeats 5]
     [--composite epsilon-plus-flat]

Everything is timed in this one process on the same model (random weights,
BatchNorm statistics re-drawn so that merging them is real work) and the same
inputs:
  gradient        one forward and ``autograd.grad`` of the target logits to the input:
                  the cost of one plain input-gradient pass (seewhy's own
                  ``input_gradients``, so the twin and the lock are in both)
  seewhy lrp      the backend's ``relevance`` pass with the composite's rules
                  (``seewhy.methods.lrp.composite_rules``): a forward on the model's
                  twin and one modified backward
  zennit          zennit's ``Gradient`` attributor with the same composite and
                  ``ResNetCanonizer`` (it writes the merged BatchNorm into the model
                  and restores it after each call), one-hot output relevance
Targets: seewhy lrp <= 1.2x zennit, and <= 1.5x the input-gradient pass. Timings
are medians of interleaved rounds; a busy machine makes them noisy, and the CPU
time (less disturbed by other processes) is printed beside.
"""

from __future__ import annotations

import argparse
import statistics
from typing import Any

import numpy as np
import torch
from _timing import timed_all

from seewhy.backends.torch import TorchBackend
from seewhy.methods.lrp import composite_rules

ZENNIT = {
    "epsilon-plus-flat": "EpsilonPlusFlat",
    "epsilon-gamma-box": "EpsilonGammaBox",
    "epsilon-alpha2-beta1-flat": "EpsilonAlpha2Beta1Flat",
    "epsilon-plus": "EpsilonPlus",
    "epsilon-alpha2-beta1": "EpsilonAlpha2Beta1",
}


def resnet50() -> Any:
    import torchvision

    torch.manual_seed(0)
    model = torchvision.models.resnet50(weights=None).eval()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.normal_(0, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    return model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--composite", default="epsilon-plus-flat", choices=sorted(ZENNIT))
    args = parser.parse_args()

    from zennit import composites
    from zennit.attribution import Gradient
    from zennit.torchvision import ResNetCanonizer

    model = resnet50()
    x = np.random.default_rng(0).uniform(-2, 2, (args.batch, args.size, args.size, 3))
    x = x.astype(np.float32)
    inputs = torch.from_numpy(x).permute(0, 3, 1, 2).contiguous()
    backend = TorchBackend(model)
    with torch.no_grad():
        targets = model(inputs).argmax(1)
    one_hot = torch.eye(1000)[targets]
    box = {"low": -2.0, "high": 2.0} if "box" in args.composite else {}
    zennit_composite = getattr(composites, ZENNIT[args.composite])(
        canonizers=[ResNetCanonizer()], **box
    )
    rules = composite_rules(args.composite, low=(-2.0,), high=(2.0,))
    t = targets.numpy()

    def zennit_lrp() -> Any:
        with Gradient(model=model, composite=zennit_composite) as attributor:
            return attributor(inputs, one_hot)[1]

    fns = {
        "gradient": lambda: backend.input_gradients(x, targets=t),
        "seewhy lrp": lambda: backend.relevance(x, targets=t, rules=rules),
        "zennit": zennit_lrp,
    }
    ours = backend.relevance(x, targets=t, rules=rules).relevance.sum(-1)
    theirs = zennit_lrp().sum(1).numpy()
    r = min(np.corrcoef(a.ravel(), b.ravel())[0, 1] for a, b in zip(ours, theirs, strict=True))
    timings = timed_all(fns, args.repeats, settle=True)
    print(
        f"ResNet-50, batch {args.batch}, {args.size} px, {args.composite}, "
        f"{torch.get_num_threads()} threads; seewhy vs zennit: min r = {r:.5f}"
    )
    for label, timing in timings.items():
        cpu = statistics.median(timing.cpu)
        print(f"  {label:12s} {timing.seconds * 1e3:9.1f} ms  (cpu {cpu:.2f} s)")
    lrp = timings["seewhy lrp"]
    for other, target in (("zennit", 1.2), ("gradient", 1.5)):
        base = timings[other]
        wall = lrp.seconds / base.seconds
        cpu = statistics.median(lrp.cpu) / statistics.median(base.cpu)
        verdict = "ok" if wall <= target else "OVER"
        print(
            f"  seewhy lrp / {other:8s} = {wall:.2f}x wall, {cpu:.2f}x cpu "
            f"(target <= {target}x: {verdict})"
        )


if __name__ == "__main__":
    main()
