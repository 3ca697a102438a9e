"""A text prompt on CLIP costs what Grad-CAM of its image tower costs (issue 26).

Run: python benchmarks/bench_prompt.py [--batch 4] [--repeats 5] [--model ViT-B-16]

Timed side by side in this one process, on open_clip's ViT-B/16 (random
weights, ``pretrained=None``, 224 px) and the same prepared batch:
  tower floor     seewhy Grad-CAM of the image tower alone (the module seewhy explains, the
                  same layer) with a plain target, Output(0): no text at all
  hand floor      one forward of ``model.visual``, autograd.grad to the same layer, the
                  map math (what any Grad-CAM must do)
  seewhy prompt   seewhy Grad-CAM of ``Prompt("a photo of a red car")`` on the CLIP model
                  (its text embedding is computed once, not per pass)
Target: seewhy prompt <= 1.1x the tower floor. Medians of interleaved rounds.
"""

from __future__ import annotations

import argparse
import warnings

import numpy as np
import open_clip
import torch
from _timing import timed_all

import seewhy
from seewhy.inputs import Batch
from seewhy.targets import Output, Prompt
from seewhy.vlm import adapt


def hand_floor(model: torch.nn.Module, x: torch.Tensor, text: torch.Tensor) -> np.ndarray:
    """Forward of the image tower, the score, autograd.grad to the last ln_1, the CAM math."""
    store: dict[str, torch.Tensor] = {}
    layer = model.visual.transformer.resblocks[-1].ln_1
    handle = layer.register_forward_hook(lambda m, a, o: store.__setitem__("a", o))
    try:
        image = torch.nn.functional.normalize(model.visual(x), dim=1)
    finally:
        handle.remove()
    score = (model.logit_scale.exp().detach() * image @ text.T).sum()
    (grad,) = torch.autograd.grad(score, store["a"])
    a, g = store["a"].transpose(0, 1)[:, 1:], grad.transpose(0, 1)[:, 1:]
    side = round(a.shape[1] ** 0.5)
    cam = torch.relu((g.mean(1, keepdim=True) * a.detach()).sum(-1)).reshape(-1, 1, side, side)
    return torch.nn.functional.interpolate(cam, size=x.shape[-2:], mode="bilinear").numpy()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--model", default="ViT-B-16")
    args = parser.parse_args()
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
    timings = timed_all(
        {
            "tower floor": lambda: tower.explain(batch, target=Output(0)),
            "hand floor": lambda: hand_floor(model, x, text),
            "seewhy prompt": lambda: prompt.explain(batch, target=target),
        },
        args.repeats,
    )
    for name, t in timings.items():
        print(f"{name:14s} {t.seconds * 1000:8.1f} ms  ({t.faults} minor faults)")
    floor = timings["tower floor"].seconds
    print(
        f"seewhy prompt / tower floor: {timings['seewhy prompt'].seconds / floor:.3f}x "
        "(target <= 1.1x)"
    )
    print(
        f"seewhy prompt / hand floor:  "
        f"{timings['seewhy prompt'].seconds / timings['hand floor'].seconds:.3f}x"
    )


if __name__ == "__main__":
    main()
