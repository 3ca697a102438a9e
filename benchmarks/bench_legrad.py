"""LeGrad on a CLIP or SigLIP ViT-B/16: seewhy against the Grad-CAM floor and legrad-torch.

Run: python benchmarks/bench_legrad.py [--model ViT-B-16|ViT-B-16-SigLIP] [--batch 1]
     [--repeats 5] [--start -2]

Everything is timed in this one process on open_clip's model (random weights,
``pretrained=None``, 224 px) and the same images, scored against one text:
  forward          the image tower's inference forward (torch.no_grad)
  gradcam floor    one forward, autograd.grad of the cosine with the text to the last
                   block's tokens (CLIP: its ln_1 output, class token left out), the map
                   math (tokens to a grid, channel weights, ReLU, upsample, normalise):
                   the least Grad-CAM of the tower can cost
  seewhy legrad    CLIP: seewhy.Explainer(model.visual, "legrad") with
                   target=Similarity(text); SigLIP: the whole model with
                   target=Prompt("a red car"), so the authors' correction (a generic
                   text's map, "a photo of a") is applied as their default does
  legrad-torch     the authors' ``LeWrapper.compute_legrad`` with its defaults on its own
                   copy of the model (it rewrites the forwards of the model it wraps),
                   one image per call as its CLIP path takes them
SigLIP's text tower needs its SentencePiece tokenizer from the Hub; offline, both
sides get the same stand-in (word ids from a hash), which changes no timing.
Targets: seewhy legrad <= 1.3x the Grad-CAM floor, and faster than legrad-torch.
Timings are medians of interleaved rounds; a busy machine makes them noisy.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import io
import warnings
import zlib
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from _timing import timed_all


def gradcam_floor(visual: Any, text: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Forward, autograd.grad to the last block's tokens, map math (see the module doc)."""
    store: dict[str, torch.Tensor] = {}
    trunk = getattr(visual, "trunk", None)
    if trunk is not None:  # timm SigLIP: (batch, tokens, width), no class token
        layer, sequence_first, prefix = trunk.blocks[-1], False, 0
    else:  # open_clip ViT: (tokens, batch, width), the class token first
        layer, sequence_first, prefix = visual.transformer.resblocks[-1].ln_1, True, 1
    handle = layer.register_forward_hook(lambda m, a, o: store.__setitem__("a", o))
    try:
        embedding = visual(x)
    finally:
        handle.remove()
    score = (F.normalize(embedding, dim=-1) @ text[0]).sum()
    (grad,) = torch.autograd.grad(score, store["a"])
    with torch.no_grad():
        acts, grads = store["a"], grad
        if sequence_first:
            acts, grads = acts.transpose(0, 1), grads.transpose(0, 1)
        n, t, c = acts.shape
        side = round((t - prefix) ** 0.5)
        acts = acts[:, prefix:].reshape(n, side, side, c)
        grads = grads[:, prefix:].reshape(n, side, side, c)
        cam = torch.relu((grads.mean((1, 2), keepdim=True) * acts).sum(-1))[:, None]
        cam = F.interpolate(cam, size=x.shape[2:], mode="bilinear", align_corners=False)[:, 0]
        flat = cam.flatten(1)
        lo, hi = flat.min(1, keepdim=True).values, flat.max(1, keepdim=True).values
        return ((flat - lo) / (hi - lo).clamp_min(1e-12)).view_as(cam)


class HashedWords:
    """An offline stand-in for a text tower's tokenizer: each word's id from a hash."""

    def __init__(self, vocabulary: int, length: int) -> None:
        self.vocabulary, self.length = vocabulary, length

    def __call__(self, texts: list[str]) -> torch.Tensor:
        ids = torch.zeros(len(texts), self.length, dtype=torch.long)
        for row, text in enumerate(texts):
            words = [zlib.crc32(w.encode()) % (self.vocabulary - 1) + 1 for w in text.split()]
            ids[row, : len(words)] = torch.tensor(words[: self.length])
        return ids


def run(name: str, batch: int, repeats: int, start: int) -> None:
    import open_clip
    from legrad import LeWrapper

    import seewhy
    from seewhy.targets import Prompt, Similarity

    torch.manual_seed(0)
    model = open_clip.create_model(name, pretrained=None).eval()
    visual = model.visual
    siglip = getattr(visual, "trunk", None) is not None
    text_tower: Any = getattr(model, "text", model)
    tokenizer = HashedWords(int(text_tower.vocab_size), int(model.context_length))
    with torch.no_grad():
        texts = F.normalize(model.encode_text(tokenizer(["a red car", "a photo of a"])), dim=-1)
    with contextlib.redirect_stdout(io.StringIO()):
        theirs = LeWrapper(copy.deepcopy(model), layer_index=start)
    theirs.empty_embedding = texts[1:].t()  # what its Hub tokenizer would have given
    text = texts[:1]
    x = torch.randn(batch, 3, 224, 224)
    x_np = x.permute(0, 2, 3, 1).numpy().copy()
    pre = seewhy.Preprocess(
        size=(224, 224), resize=None, mean=(0.0,) * 3, std=(1.0,) * 3, scale=1.0
    )
    settings: dict[str, Any] = {"preprocess": pre, "batch_size": batch, "start_block": start}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the adapted model's one note
        if siglip:
            ours = seewhy.Explainer(model, "legrad", tokenizer=tokenizer, **settings)
            target: Any = Prompt("a red car")
        else:
            ours = seewhy.Explainer(visual, "legrad", **settings)
            target = Similarity(text[0].numpy())

    def forward() -> None:
        with torch.no_grad():
            visual(x)

    def legrad_torch() -> list[Any]:
        return [theirs.compute_legrad(text, image=x[i : i + 1]) for i in range(batch)]

    mine = ours.explain(x_np, target=target)
    reference = np.concatenate([m[:, 0].detach().numpy() for m in legrad_torch()])
    r = min(
        float(np.corrcoef(a.ravel(), b.ravel())[0, 1])
        for a, b in zip(mine.maps, reference, strict=True)
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
    device = "cpu" if not torch.cuda.is_available() else "cpu (cuda present, unused)"
    print(
        f"open_clip {name} image tower, random weights, batch {batch}, 224 px, "
        f"start_block {start}, correction {mine.params['correction']}, "
        f"{torch.get_num_threads()} threads, {device}"
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
    parser.add_argument("--model", default="ViT-B-16", help="ViT-B-16 or ViT-B-16-SigLIP")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--start", type=int, default=-2, help="start block (legrad's layer_index)")
    args = parser.parse_args()
    run(args.model, args.batch, args.repeats, args.start)


if __name__ == "__main__":
    main()
