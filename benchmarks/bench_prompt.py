"""A text prompt on CLIP costs what Grad-CAM of its image tower costs (issue 26).

Run: python benchmarks/bench_prompt.py [--batch 4] [--repeats 15] [--model ViT-B-16]
     [--threads N]

Timed side by side in this one process, on open_clip's ViT-B/16 (random
weights, ``pretrained=None``, 224 px) and the same prepared batch:
  tower floor     seewhy Grad-CAM of the image tower alone (the module seewhy explains, the
                  same layer) with a plain target, Output(0): no text at all
  hand floor      one forward of the user's ``model.visual`` (open_clip's sequence-first
                  blocks), autograd.grad to the same layer, the map math (what any
                  Grad-CAM must do)
  hand, mirror    the same by hand on the tower seewhy explains (its blocks batch-first):
                  what the mirror itself costs or saves
  seewhy prompt   seewhy Grad-CAM of ``Prompt("a photo of a red car")`` on the CLIP model
                  (its text embedding is computed once, not per pass)
Target: seewhy prompt <= 1.1x the tower floor. Each ratio is taken round by round
(interleaved A B A B ...) and given as its median and quartiles; on a shared machine
``--threads 1`` keeps other processes from stalling PyTorch's thread barriers.
"""

from __future__ import annotations

import argparse
import warnings
from typing import Any

import numpy as np
import open_clip
import torch
from _timing import ratio, timed_all

import seewhy
from seewhy.inputs import Batch
from seewhy.targets import Output, Prompt
from seewhy.vlm import adapt


def hand_floor(visual: Any, scale: torch.Tensor, x: torch.Tensor, text: torch.Tensor) -> np.ndarray:
    """Forward of the image tower, the score, autograd.grad to the last ln_1, the CAM math."""
    store: dict[str, torch.Tensor] = {}
    layer = visual.transformer.resblocks[-1].ln_1
    handle = layer.register_forward_hook(lambda m, a, o: store.__setitem__("a", o))
    try:
        out = visual(x)
        image = torch.nn.functional.normalize(out[0] if isinstance(out, tuple) else out, dim=1)
    finally:
        handle.remove()
    score = (scale * image @ text.T).sum()
    (grad,) = torch.autograd.grad(score, store["a"])
    a, g = store["a"], grad
    if a.shape[0] != len(x):  # open_clip's own blocks: (tokens, N, C)
        a, g = a.transpose(0, 1), g.transpose(0, 1)
    a, g = a[:, 1:], g[:, 1:]
    side = round(a.shape[1] ** 0.5)
    cam = torch.relu((g.mean(1, keepdim=True) * a.detach()).sum(-1)).reshape(-1, 1, side, side)
    return torch.nn.functional.interpolate(cam, size=x.shape[-2:], mode="bilinear").numpy()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--model", default="ViT-B-16")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: its default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = open_clip.create_model(args.model, pretrained=None).eval()
    warnings.simplefilter("ignore", seewhy.vlm.AdaptedModelNote)
    prompt = seewhy.Explainer(model, "gradcam")
    adapted = adapt(model)
    assert adapted is not None and prompt.layer is not None
    tower = seewhy.Explainer(adapted.model, "gradcam", layer=prompt.layer)
    rng = np.random.default_rng(0)
    size = prompt.spec.preprocess.size
    pictures = rng.integers(0, 256, (args.batch, *size, 3), dtype=np.uint8)
    inputs = prompt.spec.preprocess.normalise(pictures)
    batch = Batch(
        inputs=inputs,
        images=pictures,
        sources=tuple(map(str, range(args.batch))),
        indices=tuple(range(args.batch)),
    )
    x = torch.from_numpy(inputs).permute(0, 3, 1, 2).contiguous()
    text = torch.nn.functional.normalize(
        model.encode_text(open_clip.get_tokenizer(args.model)(["a photo of a red car"])), dim=1
    ).detach()
    target = Prompt("a photo of a red car")
    scale = model.logit_scale.exp().detach()
    mirror = adapted.model.get_submodule("visual")
    timings = timed_all(
        {
            "tower floor": lambda: tower.explain(batch, target=Output(0)),
            "hand floor": lambda: hand_floor(model.visual, scale, x, text),
            "hand, mirror": lambda: hand_floor(mirror, scale, x, text),
            "seewhy prompt": lambda: prompt.explain(batch, target=target),
        },
        args.repeats,
    )
    print(f"{args.model}, batch {args.batch}, {torch.get_num_threads()} torch threads")
    for name, t in timings.items():
        spread, used = sorted(t.rounds), sorted(t.cpu)
        print(
            f"{name:14s} {t.seconds * 1000:8.1f} ms median (min {spread[0] * 1000:.1f}, max "
            f"{spread[-1] * 1000:.1f}); CPU {used[len(used) // 2] * 1000:.1f} ms; "
            f"{t.faults} minor faults"
        )
    pairs = [
        ("seewhy prompt", "tower floor"),
        ("seewhy prompt", "hand floor"),
        ("tower floor", "hand floor"),
        ("hand, mirror", "hand floor"),
    ]
    for cpu in (False, True):
        print("per round, " + ("CPU seconds:" if cpu else "wall clock:"))
        for top, bottom in pairs:
            goal = " (target <= 1.1x)" if (top, bottom) == pairs[0] else ""
            line = f"{top} / {bottom}:"
            print(f"  {line:30s} {ratio(timings[top], timings[bottom], cpu=cpu)}{goal}")


if __name__ == "__main__":
    main()
