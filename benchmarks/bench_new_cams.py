"""The CAMs of issue 29 on PyTorch: seewhy against each one's floor and pytorch-grad-cam.

Run: python benchmarks/bench_new_cams.py [--model resnet50] [--batch 8] [--size 224] [--repeats 3]

Everything is timed in this one process on the same model and batch, interleaved:
  floor    the bare minimum for the method, written here in plain torch: the passes it
           needs (one forward; the gradient to the layer, or to every bias, or a
           Hessian-vector product) and its map math, upsampled and normalised
  seewhy   seewhy.Explainer(model, METHOD) on the same preprocessed batch
  pgc      pytorch-grad-cam's class for the method (if installed)
Targets of issue 29: seewhy within 1.15x its floor, and faster than pytorch-grad-cam.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

import numpy as np
import scipy.linalg
import torch
import torch.nn.functional as F
from _timing import medians

METHODS = (
    "gradcam-elementwise",
    "eigengradcam",
    "kpcacam",
    "finercam",
    "shapleycam",
    "fullgrad",
)


def build(name: str) -> tuple[torch.nn.Module, torch.nn.Module, str]:
    import torchvision

    model = getattr(torchvision.models, name)(weights=None).eval()
    return model, model.layer4, "layer4"


def _normalised(cam: torch.Tensor, size: tuple[int, int]) -> np.ndarray:
    cam = F.interpolate(cam[:, None], size=size, mode="bilinear", align_corners=False)[:, 0]
    flat = cam.flatten(1)
    lo, hi = flat.min(1, keepdim=True).values, flat.max(1, keepdim=True).values
    return ((flat - lo) / (hi - lo).clamp_min(1e-12)).view_as(cam).detach().numpy()


def _layer_pass(
    model: torch.nn.Module, layer: torch.nn.Module, x: torch.Tensor, grad: bool = True
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    store: dict[str, torch.Tensor] = {}
    handle = layer.register_forward_hook(lambda m, a, o: store.__setitem__("a", o))
    try:
        with torch.set_grad_enabled(grad):
            logits = model(x)
    finally:
        handle.remove()
    if not grad:
        return logits, store["a"], None
    score = logits.gather(1, logits.argmax(1)[:, None]).sum()
    (g,) = torch.autograd.grad(score, store["a"])
    return logits, store["a"].detach(), g


def _first_component(m: torch.Tensor) -> torch.Tensor:
    n, c, h, w = m.shape
    flat = m.reshape(n, c, h * w).transpose(1, 2)
    flat = flat - flat.mean(1, keepdim=True)
    _, _, vt = torch.linalg.svd(flat, full_matrices=False)
    proj = torch.einsum("npc,nc->np", flat, vt[:, 0])
    sign = torch.sign((proj * (m.sum(1).reshape(n, -1))).sum(1, keepdim=True))
    return (proj * sign).reshape(n, h, w)


def floors(model: torch.nn.Module, layer: torch.nn.Module, x: torch.Tensor) -> dict[str, Any]:
    size = (x.shape[2], x.shape[3])

    def elementwise() -> np.ndarray:
        _, a, g = _layer_pass(model, layer, x)
        return _normalised(torch.relu(g * a).sum(1), size)

    def eigengrad() -> np.ndarray:
        _, a, g = _layer_pass(model, layer, x)
        return _normalised(torch.relu(_first_component(g * a)), size)

    def kpca() -> np.ndarray:
        _, a, _ = _layer_pass(model, layer, x, grad=False)
        n, c, h, w = a.shape
        maps = []
        for rows in a.reshape(n, c, h * w).transpose(1, 2).double().numpy():
            rows = rows - rows.mean(0)
            k = np.tanh(rows @ rows.T / c + 1.0)
            k = k - k.mean(0) - k.mean(1)[:, None] + k.mean()
            value, vector = scipy.linalg.eigh(k, subset_by_index=(h * w - 1, h * w - 1))
            maps.append(vector[:, 0] * np.sqrt(max(value[0], 0.0)))
        return _normalised(torch.relu(torch.from_numpy(np.stack(maps)).float().view(n, h, w)), size)

    def finer() -> np.ndarray:
        store: dict[str, torch.Tensor] = {}
        handle = layer.register_forward_hook(lambda m, a, o: store.__setitem__("a", o))
        try:
            logits = model(x)
        finally:
            handle.remove()
        main = logits.argmax(1)
        order = (logits - logits.gather(1, main[:, None])).abs().argsort(1)[:, 1:4]
        prob = torch.softmax(logits, 1).gather(1, order)
        top = logits.gather(1, main[:, None])
        score = (prob * (top - logits.gather(1, order))).sum(1) / prob.sum(1)
        (g,) = torch.autograd.grad(score.sum(), store["a"])
        return _normalised(torch.relu((g.mean((2, 3), keepdim=True) * store["a"]).sum(1)), size)

    def shapley() -> np.ndarray:
        store: dict[str, torch.Tensor] = {}

        def swap(m: Any, args: Any, out: torch.Tensor) -> torch.Tensor:
            store["a"] = out.detach().requires_grad_(True)
            return store["a"]

        handle = layer.register_forward_hook(swap)
        try:
            logits = model(x)
        finally:
            handle.remove()
        a = store["a"]
        score = logits.gather(1, logits.argmax(1)[:, None]).sum()
        (g,) = torch.autograd.grad(score, a, create_graph=True)
        hvp = torch.zeros_like(a)
        if g.requires_grad:
            (found,) = torch.autograd.grad(g, a, a.detach(), allow_unused=True)
            hvp = hvp if found is None else found
        w = (g - 0.5 * hvp).detach().mean((2, 3), keepdim=True)
        return _normalised(torch.relu((w * a.detach()).sum(1)), size)

    def fullgrad() -> np.ndarray:
        outs: list[tuple[torch.Tensor, torch.Tensor]] = []
        handles = []
        for m in model.modules():
            if type(m) is torch.nn.Conv2d and m.bias is not None:
                bias = m.bias
            elif type(m) is torch.nn.BatchNorm2d:
                bias = m.bias - m.running_mean * m.weight / torch.sqrt(m.running_var + m.eps)
            else:
                continue
            handles.append(
                m.register_forward_hook(lambda mod, a, o, b=bias: outs.append((b, o)) or o.clone())
            )
        xi = x.clone().requires_grad_(True)
        try:
            logits = model(xi)
        finally:
            for h in handles:
                h.remove()
        score = logits.gather(1, logits.argmax(1)[:, None]).sum()
        grads = torch.autograd.grad(score, [xi, *(o for _, o in outs)])

        def per_channel(t: torch.Tensor) -> torch.Tensor:
            flat = t.flatten(2)
            lo, hi = flat.min(2, keepdim=True).values, flat.max(2, keepdim=True).values
            return ((flat - lo) / (hi - lo).clamp_min(1e-12)).view_as(t).sum(1)

        with torch.no_grad():
            total = per_channel((xi * grads[0]).abs())
            for (b, _), g in zip(outs, grads[1:], strict=True):
                part = per_channel((b.detach()[None, :, None, None] * g).abs())
                total += F.interpolate(part[:, None], size=size, mode="bilinear")[:, 0]
        return _normalised(total, size)

    return {
        "gradcam-elementwise": elementwise,
        "eigengradcam": eigengrad,
        "kpcacam": kpca,
        "finercam": finer,
        "shapleycam": shapley,
        "fullgrad": fullgrad,
    }


def theirs(
    method: str, model: torch.nn.Module, layer: torch.nn.Module, x: torch.Tensor
) -> Callable[[], Any] | None:
    try:
        import pytorch_grad_cam as pgc
    except ImportError:
        return None
    kinds = {
        "gradcam-elementwise": pgc.GradCAMElementWise,
        "eigengradcam": pgc.EigenGradCAM,
        "kpcacam": pgc.KPCA_CAM,
        "finercam": pgc.FinerCAM,
        "shapleycam": pgc.ShapleyCAM,
    }
    if method == "fullgrad":
        cam = pgc.FullGrad(model, [])
    else:
        cam = kinds[method](model, [layer])
    if method == "finercam":
        return lambda: cam(x)
    return lambda: cam(x, targets=None)


def main() -> None:
    import seewhy

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="resnet50")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--methods", default=",".join(METHODS))
    args = parser.parse_args()
    model, layer, name = build(args.model)
    torch.manual_seed(0)
    x = torch.randn(args.batch, 3, args.size, args.size)
    x_np = x.permute(0, 2, 3, 1).contiguous().numpy()
    plain = floors(model, layer, x)
    print(
        f"{args.model}, batch {args.batch}, {args.size} px, {torch.get_num_threads()} threads; "
        "ratios: seewhy / floor (target <= 1.15), seewhy / pytorch-grad-cam (target < 1)"
    )
    for method in args.methods.split(","):
        explainer = seewhy.Explainer(model, method, layer=name, batch_size=args.batch)
        ours = explainer.explain(x_np).maps
        agree = float(np.corrcoef(ours.ravel(), plain[method]().ravel())[0, 1])
        candidates: dict[str, Callable[[], Any]] = {
            "floor": plain[method],
            "seewhy": lambda e=explainer: e.explain(x_np),
        }
        reference = theirs(method, model, layer, x)
        if reference is not None:
            candidates["pgc"] = reference
        t = medians(candidates, args.repeats)
        versus = f"{t['seewhy'] / t['pgc']:.2f}" if "pgc" in t else "n/a"
        print(
            f"  {method:20} floor {t['floor']:.3f}s  seewhy {t['seewhy']:.3f}s  "
            f"pgc {t.get('pgc', float('nan')):.3f}s  x floor {t['seewhy'] / t['floor']:.2f}  "
            f"x pgc {versus}  (r with floor {agree:.4f})"
        )


if __name__ == "__main__":
    main()
