"""Vision transformers: Grad-CAM, attention rollout and generic attention against their floors.

Run: python benchmarks/bench_vit.py [--batch 8] [--repeats 5] [--no-pointing | --no-speed]

Everything is timed in this one process on timm's ViT-S/16 (random weights,
224 px, timm's default fused attention) and the same batch:
  forward            a plain inference forward pass (torch.no_grad)
  gradcam floor      one forward, autograd.grad to blocks[-1].norm1, the map math (patch
                     tokens to a 14x14 grid, channel means, weighted sum, ReLU, upsample,
                     normalise)
  seewhy gradcam     seewhy.Explainer(model, "gradcam") (its default layer is blocks[-1].norm1)
  pytorch-grad-cam   GradCAM at the same layer with the usual reshape_transform (if installed)
  seewhy rollout     attention-rollout (target: <= 1.25x forward)
  seewhy gae         generic attention (target: <= 1.3x the Grad-CAM floor)
  explicit-attn fwd  a forward of a copy with fused_attn off, every attention matrix kept
                     (what rollout costs where the model hands its matrices out)
  gae floor          forward with autograd, autograd.grad to every block's attention output
                     (generic attention needs dS/dA of every block, so a backward through
                     all blocks, where the Grad-CAM floor goes back through the last one)
Targets: seewhy gradcam <= 1.15x the floor and >= 2x faster than pytorch-grad-cam.
Then the pointing game on a tiny ViT trained on the synthetic stripes (target >= 90% for
rollout and generic attention; seewhy's Grad-CAM no worse than pytorch-grad-cam's GradCAM
at the same layer, blocks[-1].norm1, with the class-token reshape_transform). Timings are
medians of interleaved rounds; a busy machine makes them noisy.
"""

from __future__ import annotations

import argparse
import copy
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from _timing import timed_all


def gradcam_floor(model: torch.nn.Module, layer: torch.nn.Module, x: torch.Tensor) -> np.ndarray:
    """The least Grad-CAM on a class-token ViT can do: forward, autograd.grad, map math."""
    store: dict[str, torch.Tensor] = {}
    handle = layer.register_forward_hook(lambda m, a, o: store.__setitem__("a", o))
    try:
        logits = model(x)
    finally:
        handle.remove()
    score = logits.gather(1, logits.argmax(1)[:, None]).sum()
    (grad,) = torch.autograd.grad(score, store["a"])
    with torch.no_grad():
        n, t, c = store["a"].shape
        side = round((t - 1) ** 0.5)
        acts = store["a"][:, 1:].reshape(n, side, side, c)
        grads = grad[:, 1:].reshape(n, side, side, c)
        cam = torch.relu((grads.mean((1, 2), keepdim=True) * acts).sum(-1))[:, None]
        cam = F.interpolate(cam, size=x.shape[2:], mode="bilinear", align_corners=False)[:, 0]
        flat = cam.flatten(1)
        lo, hi = flat.min(1, keepdim=True).values, flat.max(1, keepdim=True).values
        cam = ((flat - lo) / (hi - lo).clamp_min(1e-12)).view_as(cam)
    return cam.numpy()


def explicit_attention_forward(model: torch.nn.Module, x: torch.Tensor) -> list[torch.Tensor]:
    """The rollout floor on a model computing attention explicitly: forward, every A kept.

    ``model`` is a copy with ``fused_attn`` off (the benchmark's own; the user's is never
    switched): the matrices come from its ``attn_drop`` outputs.
    """
    store: list[torch.Tensor] = []
    handles = [
        m.attn_drop.register_forward_hook(lambda mod, a, out: store.append(out))
        for m in model.modules()
        if hasattr(m, "fused_attn")
    ]
    try:
        with torch.no_grad():
            model(x)
    finally:
        for h in handles:
            h.remove()
    return store


def gae_floor(model: torch.nn.Module, x: torch.Tensor) -> list[torch.Tensor]:
    """The least generic attention needs on a fused model: forward with autograd, and
    ``autograd.grad`` to every block's attention output (before its projection)."""
    store: list[torch.Tensor] = []
    handles = [
        m.proj.register_forward_pre_hook(lambda mod, a: store.append(a[0]))
        for m in model.modules()
        if hasattr(m, "fused_attn")
    ]
    try:
        logits = model(x)
    finally:
        for h in handles:
            h.remove()
    score = logits.gather(1, logits.argmax(1)[:, None]).sum()
    return list(torch.autograd.grad(score, store))


def pytorch_grad_cam(model: torch.nn.Module, layer: torch.nn.Module, x: torch.Tensor) -> Any:
    try:
        from pytorch_grad_cam import GradCAM
    except ImportError:
        return None

    def reshape(t: torch.Tensor) -> torch.Tensor:
        side = round((t.shape[1] - 1) ** 0.5)
        return t[:, 1:].reshape(t.shape[0], side, side, t.shape[2]).permute(0, 3, 1, 2)

    cam = GradCAM(model=model, target_layers=[layer], reshape_transform=reshape)

    def run() -> Any:
        out = cam(input_tensor=x, targets=None)
        model.zero_grad(set_to_none=True)  # its full backward fills every .grad
        return out

    return run


def speed(batch: int, repeats: int) -> None:
    import timm

    import seewhy

    torch.manual_seed(0)
    model = timm.create_model("vit_small_patch16_224", pretrained=False).eval()
    layer = model.blocks[-1].norm1
    x = torch.randn(batch, 3, 224, 224)
    x_np = x.permute(0, 2, 3, 1).numpy().copy()
    pre = seewhy.Preprocess(
        size=(224, 224), resize=None, mean=(0.0,) * 3, std=(1.0,) * 3, scale=1.0
    )
    run = {
        name: seewhy.Explainer(model, name, preprocess=pre, batch_size=batch)
        for name in ("gradcam", "attention-rollout", "gae")
    }
    ours = run["gradcam"].explain(x_np)
    agree = float(np.corrcoef(ours.maps.ravel(), gradcam_floor(model, layer, x).ravel())[0, 1])

    def forward() -> Any:
        with torch.no_grad():
            return model(x)

    explicit = copy.deepcopy(model)
    for m in explicit.modules():
        if hasattr(m, "fused_attn"):
            m.fused_attn = False
    candidates: dict[str, Callable[[], Any]] = {
        "forward (no_grad)": forward,
        "explicit-attn fwd": lambda: explicit_attention_forward(explicit, x),
        "gradcam floor": lambda: gradcam_floor(model, layer, x),
        "gae floor": lambda: gae_floor(model, x),
        "seewhy gradcam": lambda: run["gradcam"].explain(x_np),
        "seewhy rollout": lambda: run["attention-rollout"].explain(x_np),
        "seewhy gae": lambda: run["gae"].explain(x_np),
    }
    pgc = pytorch_grad_cam(model, layer, x)
    if pgc is not None:
        candidates["pytorch-grad-cam"] = pgc
    timing = timed_all(candidates, repeats, settle=True)
    rows = {label: t.seconds for label, t in timing.items()}
    fused = [m.fused_attn for m in model.modules() if hasattr(m, "fused_attn")]
    print(
        f"\nViT-S/16 (timm, random weights), batch {batch}, {torch.get_num_threads()} threads, "
        f"default layer {ours.layer}, fused_attn {set(fused)} (untouched); "
        f"seewhy vs floor map correlation {agree:.6f}"
    )
    print(f"  {'':20} {'s/batch':>9} {'x forward':>10} {'x floor':>8} {'page faults':>12}")
    for label, t in rows.items():
        print(
            f"  {label:20} {t:9.3f} {t / rows['forward (no_grad)']:10.2f} "
            f"{t / rows['gradcam floor']:8.2f} {timing[label].faults:12,}"
        )

    def ratio(a: str, b: str) -> str:
        return f"{rows[a] / rows[b]:.2f}"

    print("  targets:")
    print(f"    gradcam / floor            {ratio('seewhy gradcam', 'gradcam floor')}  (<= 1.15)")
    if pgc is not None:
        print(
            f"    pytorch-grad-cam / seewhy  {ratio('pytorch-grad-cam', 'seewhy gradcam')}  (>= 2)"
        )
    print(
        f"    rollout / forward          {ratio('seewhy rollout', 'forward (no_grad)')}  (<= 1.25)"
    )
    print(f"    gae / gradcam floor        {ratio('seewhy gae', 'gradcam floor')}  (<= 1.3)")
    print("  for reference (the inherent costs):")
    print(
        f"    rollout / explicit-attention forward  "
        f"{rows['seewhy rollout'] / rows['explicit-attn fwd']:.2f}"
    )
    print(
        f"    gae / gae floor (grad to every block)  {rows['seewhy gae'] / rows['gae floor']:.2f}"
    )


def pointing() -> None:
    import seewhy
    from seewhy.synthetic.vit import train_torch_vit

    start = time.perf_counter()
    model = train_torch_vit(seewhy.synthetic.make_stripes(1200, seed=0))
    trained = time.perf_counter() - start
    test = seewhy.synthetic.make_stripes(200, seed=1)
    print(
        f"\ntiny ViT on synthetic stripes (trained in {trained:.1f} s, test accuracy "
        f"{seewhy.synthetic.accuracy(model, test):.1%}); pointing game, 1 patch tolerance:"
    )
    hits = {}
    for method in ("attention-rollout", "gae", "gradcam"):
        e = seewhy.explain(model, test.images, method, target=list(test.labels))
        hits[method] = seewhy.synthetic.peak_inside(e.maps, test.boxes, margin=4).mean()
    pgc = pytorch_grad_cam_maps(model, test)
    if pgc is not None:
        hits["pytorch-grad-cam"] = seewhy.synthetic.peak_inside(pgc, test.boxes, margin=4).mean()
    goals = {"gradcam": "(>= pytorch-grad-cam's)", "pytorch-grad-cam": ""}
    for method, hit in hits.items():
        print(f"  {method:18} {hit:6.1%}  {goals.get(method, '(>= 90%)')}")


def pytorch_grad_cam_maps(model: torch.nn.Module, test: Any) -> np.ndarray | None:
    """pytorch-grad-cam's GradCAM at seewhy's default layer (blocks[-1].norm1), with the
    usual class-token reshape, on the same inputs and targets as seewhy's maps."""
    try:
        from pytorch_grad_cam import GradCAM
        from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
    except ImportError:
        return None
    model = copy.deepcopy(model)  # it calls .eval() and fills .grad: a copy of the bench's own
    side = test.inputs().shape[1] // model.patch_embed.patch_size[0]

    def reshape(t: torch.Tensor) -> torch.Tensor:
        grid = t[:, model.num_prefix_tokens :].reshape(t.shape[0], side, -1, t.shape[2])
        return grid.permute(0, 3, 1, 2)

    cam = GradCAM(model=model, target_layers=[model.blocks[-1].norm1], reshape_transform=reshape)
    x = torch.from_numpy(test.inputs()).permute(0, 3, 1, 2).contiguous()
    targets = [ClassifierOutputTarget(int(label)) for label in test.labels]
    return np.asarray(cam(input_tensor=x, targets=targets))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--no-pointing", action="store_true")
    parser.add_argument("--no-speed", action="store_true")
    args = parser.parse_args()
    if not args.no_speed:
        speed(args.batch, args.repeats)
    if not args.no_pointing:
        pointing()


if __name__ == "__main__":
    main()
