"""LeGrad on a CLIP ViT-B/16 image tower: seewhy against the Grad-CAM floor and legrad-torch.

Run: python benchmarks/bench_legrad.py [--batch 1] [--repeats 5] [--start -2]

Everything is timed in this one process on open_clip's ViT-B-16 (random weights,
``pretrained=None``, 224 px) and the same images, scored by the cosine with one
text embedding (what LeGrad explains on CLIP):
  forward          the image tower's inference forward (torch.no_grad)
  gradcam floor    one forward, autograd.grad of the score to the last block's ln_1
                   output, the map math (patch tokens to a grid, channel weights, ReLU,
                   upsample, normalise): the least Grad-CAM of the tower can cost
  seewhy legrad    seewhy.Explainer(model.visual, "legrad", target=Similarity(text))
  legrad-torch     the authors' ``LeWrapper.compute_legrad`` on its own copy of the model
                   (it rewrites the forwards of the model it wraps), one image per call
                   as its CLIP path takes them
Targets: seewhy legrad <= 1.3x the Grad-CAM floor, and faster than legrad-torch.
Timings are medians of interleaved rounds; a busy machine makes them noisy.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import io
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from _timing import timed_all


def gradcam_floor(visual: Any, text: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Forward, autograd.grad to the last block's ln_1 (tokens, batch, width), map math."""
    store: dict[str, torch.Tensor] = {}
    layer = visual.transformer.resblocks[-1].ln_1
    handle = layer.register_forward_hook(lambda m, a, o: store.__setitem__("a", o))
    try:
        embedding = visual(x)
    finally:
        handle.remove()
    score = (F.normalize(embedding, dim=-1) @ text[0]).sum()
    (grad,) = torch.autograd.grad(score, store["a"])
    with torch.no_grad():
        t, n, c = store["a"].shape
        side = round((t - 1) ** 0.5)
        acts = store["a"][1:].permute(1, 0, 2).reshape(n, side, side, c)
        grads = grad[1:].permute(1, 0, 2).reshape(n, side, side, c)
        cam = torch.relu((grads.mean((1, 2), keepdim=True) * acts).sum(-1))[:, None]
        cam = F.interpolate(cam, size=x.shape[2:], mode="bilinear", align_corners=False)[:, 0]
        flat = cam.flatten(1)
        lo, hi = flat.min(1, keepdim=True).values, flat.max(1, keepdim=True).values
        return ((flat - lo) / (hi - lo).clamp_min(1e-12)).view_as(cam)


def run(batch: int, repeats: int, start: int) -> None:
    import open_clip
    from legrad import LeWrapper

    import seewhy
    from seewhy.targets import Similarity

    torch.manual_seed(0)
    torch.set_num_threads(torch.get_num_threads())
    model = open_clip.create_model("ViT-B-16", pretrained=None).eval()
    visual = model.visual
    with contextlib.redirect_stdout(io.StringIO()):
        theirs = LeWrapper(copy.deepcopy(model), layer_index=start)
    text = F.normalize(torch.randn(1, model.visual.output_dim), dim=-1)
    x = torch.randn(batch, 3, 224, 224)
    x_np = x.permute(0, 2, 3, 1).numpy().copy()
    pre = seewhy.Preprocess(
        size=(224, 224), resize=None, mean=(0.0,) * 3, std=(1.0,) * 3, scale=1.0
    )
    ours = seewhy.Explainer(visual, "legrad", preprocess=pre, batch_size=batch, start_block=start)
    target = Similarity(text[0].numpy())

    def forward() -> None:
        with torch.no_grad():
            visual(x)

    def legrad_torch() -> list[Any]:
        return [theirs.compute_legrad(text, image=x[i : i + 1]) for i in range(batch)]

    mine = ours.explain(x_np, target=target).maps
    reference = np.concatenate([m[:, 0].detach().numpy() for m in legrad_torch()])
    r = min(
        float(np.corrcoef(a.ravel(), b.ravel())[0, 1]) for a, b in zip(mine, reference, strict=True)
    )
    times = timed_all(
        {
            "forward": forward,
            "gradcam floor": lambda: gradcam_floor(visual, text, x),
            "seewhy legrad": lambda: ours.explain(x_np, target=target),
            "legrad-torch": legrad_torch,
        },
        repeats,
    )
    print(
        f"open_clip ViT-B-16 image tower, random weights, batch {batch}, 224 px, "
        f"start_block {start}, {torch.get_num_threads()} threads"
    )
    print(f"  {'':16} {'s/batch':>9} {'x forward':>10} {'x floor':>8} {'page faults':>12}")
    floor, fwd = times["gradcam floor"].seconds, times["forward"].seconds
    for label, t in times.items():
        print(
            f"  {label:16} {t.seconds:9.4f} {t.seconds / fwd:10.2f} {t.seconds / floor:8.2f} "
            f"{t.faults:12d}"
        )
    legrad, authors = times["seewhy legrad"].seconds, times["legrad-torch"].seconds
    print("  targets:")
    print(f"    legrad / gradcam floor      {legrad / floor:.2f}x  (<= 1.3)")
    print(f"    legrad-torch / legrad       {authors / legrad:.2f}x  (> 1: seewhy faster)")
    print(f"  maps: lowest per-image r against legrad-torch {r:.4f}  (>= 0.99)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--start", type=int, default=-2, help="start block (legrad's layer_index)")
    args = parser.parse_args()
    run(args.batch, args.repeats, args.start)


if __name__ == "__main__":
    main()
