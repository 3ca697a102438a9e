"""SAM with k prompts on one picture: Grad-CAM of every prompt against its floor, passes counted.

The floor is what any Grad-CAM of k mask prompts must do: one forward of the
image encoder (a hook keeps the explained layer's output, the image
embedding at ``image_encoder.neck``), then per prompt the prompt encoder,
the mask decoder, the score (the chosen mask's logits summed where it is
on) and one ``autograd.grad`` back to that layer, and the map math. seewhy's
run is one ``explain`` of the photo with the k Masks (through an
``Explainer`` built once); "seewhy, a call per prompt" is the naive way, k
calls of one Mask each (k encoder forwards). Encoder forwards and gradient
calls are counted on one call of each. All in this process, interleaved;
each ratio is taken round by round (median and quartiles, wall clock and
CPU seconds). The SAM has random weights (no download): by default a
ViT-B-sized encoder (width 768, 12 blocks, 12 heads, window 14, global
blocks 2, 5, 8, 11) at 512 px rather than SAM's 1024 (a busy CPU: a ViT-B
forward at 1024 takes several seconds); ``--side 1024`` for the real size,
``--small`` for a quick run (width 256, 4 blocks, 256 px).

    python benchmarks/bench_sam.py [--small] [--side 512] [--prompts 4] [--repeats 3]
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from _timing import ratio, timed_all

import seewhy
from seewhy.targets import Mask


def _sam(small: bool, side: int) -> Any:
    from segment_anything.modeling import (
        ImageEncoderViT,
        MaskDecoder,
        PromptEncoder,
        Sam,
        TwoWayTransformer,
    )

    torch.manual_seed(0)
    width, depth, heads, glob = (256, 4, 4, (1, 3)) if small else (768, 12, 12, (2, 5, 8, 11))
    side = 256 if small else side
    grid = side // 16
    return Sam(
        image_encoder=ImageEncoderViT(
            img_size=side,
            embed_dim=width,
            depth=depth,
            num_heads=heads,
            use_rel_pos=True,
            window_size=14,
            global_attn_indexes=glob,
            out_chans=256,
        ),
        prompt_encoder=PromptEncoder(
            embed_dim=256,
            image_embedding_size=(grid, grid),
            input_image_size=(side, side),
            mask_in_chans=16,
        ),
        mask_decoder=MaskDecoder(
            num_multimask_outputs=3,
            transformer=TwoWayTransformer(depth=2, embedding_dim=256, mlp_dim=2048, num_heads=8),
            transformer_dim=256,
        ),
    ).eval()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--small", action="store_true")
    parser.add_argument("--side", type=int, default=512)
    parser.add_argument("--prompts", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: its default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    sam = _sam(args.small, args.side)
    side = sam.image_encoder.img_size
    rng = np.random.default_rng(0)
    photo = rng.integers(0, 256, (side * 3 // 4, side, 3), dtype=np.uint8)
    points = [(float(x), float(y)) for x, y in rng.uniform(0.1, 0.7, (args.prompts, 2)) * side]
    masks = [Mask(points=[p]) for p in points]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        explainer = seewhy.Explainer(sam, "gradcam")
        first = explainer.explain(photo, target=masks)
    layer = sam.get_submodule(first.layer)
    x = torch.as_tensor(seewhy.inputs.prepare(photo, explainer.spec.preprocess)[0].inputs).permute(
        0, 3, 1, 2
    )
    scale = side / photo.shape[1]
    coords = [torch.tensor([[[px * scale, py * scale]]]) for px, py in points]
    one = torch.ones(1, 1, dtype=torch.int64)

    def by_hand() -> None:
        kept: list[torch.Tensor] = []
        handle = layer.register_forward_hook(lambda m, a, out: kept.append(out))
        try:
            with torch.no_grad():
                sam.image_encoder(x)
        finally:
            handle.remove()
        leaf = kept[0].requires_grad_(True)
        for point in coords:
            sparse, dense = sam.prompt_encoder(points=(point, one), boxes=None, masks=None)
            logits, iou = sam.mask_decoder(
                leaf, sam.prompt_encoder.get_dense_pe(), sparse, dense, multimask_output=True
            )
            chosen = logits[0, int(iou.argmax())]
            on = chosen.detach() > 0
            score = (chosen * on).sum() if on.any() else chosen.max()
            (grad,) = torch.autograd.grad(score, leaf)
            weights = grad.mean(dim=(2, 3), keepdim=True)
            torch.relu((weights * leaf.detach()).sum(1))

    def with_seewhy() -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            explainer.explain(photo, target=masks)

    def one_call_per_prompt() -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for mask in masks:
                explainer.explain(photo, target=mask)

    counts = {
        name: _passes(sam, fn)
        for name, fn in (
            ("by hand", by_hand),
            ("seewhy", with_seewhy),
            ("seewhy, a call per prompt", one_call_per_prompt),
        )
    }
    timings = timed_all(
        {
            "by hand": by_hand,
            "seewhy": with_seewhy,
            "seewhy, a call per prompt": one_call_per_prompt,
        },
        args.repeats,
    )
    floor = timings["by hand"]
    kind = "small" if args.small else "ViT-B-sized"
    print(
        f"SAM ({kind} encoder, random weights) at {side} px, {args.prompts} prompts, layer "
        f"{first.layer}, {torch.get_num_threads()} threads"
    )
    for name, timing in timings.items():
        cpu = sorted(timing.cpu)[len(timing.cpu) // 2]
        forwards, grads = counts[name]
        print(
            f"{name:>26}: {timing.seconds * 1000:9.1f} ms (CPU {cpu * 1000:.1f} ms)  "
            f"wall {ratio(timing, floor)}, CPU {ratio(timing, floor, cpu=True)}; "
            f"encoder forwards {forwards}, autograd.grad calls {grads}"
        )


def _passes(sam: Any, fn: Any) -> tuple[int, int]:
    """(image-encoder forwards, ``torch.autograd.grad`` calls) in one call of ``fn``."""
    seen = {"forwards": 0, "grads": 0}
    grad = torch.autograd.grad

    def counted(*args: Any, **kwargs: Any) -> Any:
        seen["grads"] += 1
        return grad(*args, **kwargs)

    def forward(*_: Any) -> None:
        seen["forwards"] += 1

    handle = sam.image_encoder.patch_embed.register_forward_hook(forward)
    torch.autograd.grad = counted
    try:
        fn()
    finally:
        torch.autograd.grad = grad
        handle.remove()
    return seen["forwards"], seen["grads"]


if __name__ == "__main__":
    main()
