"""Grad-CAM speed and memory on PyTorch, seewhy against the floor and competitors.

Run: python benchmarks/bench_gradcam_torch.py [--batch 16] [--repeats 5]

Everything is timed in this one process on the same model and batch:
  forward     a plain inference forward pass (torch.no_grad)
  floor       the bare minimum for Grad-CAM: one forward, autograd.grad to the layer,
              the map math (channel means, weighted sum, ReLU, upsample, normalise)
  seewhy      seewhy.Explainer(model, "gradcam") on the same preprocessed batch
  pgc         pytorch-grad-cam GradCAM (if installed)
  captum      Captum LayerGradCam + LayerAttribution.interpolate (if installed)
  torchcam    TorchCAM GradCAM (if installed)
Peak memory (batch --mem-batch, default 64) is measured in fresh subprocesses as the
growth of the resident set during one call: Grad-CAM against an inference forward.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from _timing import medians


def build(name: str) -> tuple[torch.nn.Module, torch.nn.Module, str]:
    """(model, target module, layer name) for a model of the benchmark."""
    if name == "efficientnet_lite0":
        import seewhy

        model = seewhy.zoo.efficientnet_lite0()
        return model, model.act_head, "act_head"
    import torchvision

    model = torchvision.models.resnet50(weights=None).eval()
    return model, model.layer4, "layer4"


def floor_gradcam(model: torch.nn.Module, layer: torch.nn.Module, x: torch.Tensor) -> np.ndarray:
    store: dict[str, torch.Tensor] = {}
    handle = layer.register_forward_hook(lambda m, a, o: store.__setitem__("a", o))
    try:
        logits = model(x)
    finally:
        handle.remove()
    target = logits.argmax(1)
    score = logits.gather(1, target[:, None]).sum()
    (grad,) = torch.autograd.grad(score, store["a"])
    with torch.no_grad():
        cam = torch.relu((grad.mean((2, 3), keepdim=True) * store["a"]).sum(1, keepdim=True))
        cam = F.interpolate(cam, size=x.shape[2:], mode="bilinear", align_corners=False)[:, 0]
        flat = cam.flatten(1)
        lo, hi = flat.min(1, keepdim=True).values, flat.max(1, keepdim=True).values
        cam = ((flat - lo) / (hi - lo).clamp_min(1e-12)).view_as(cam)
    return cam.numpy()


def competitors(
    model: torch.nn.Module, layer: torch.nn.Module, x: torch.Tensor
) -> dict[str, Callable[[], Any]]:
    found: dict[str, Callable[[], Any]] = {}
    try:
        from pytorch_grad_cam import GradCAM

        pgc = GradCAM(model=model, target_layers=[layer])
        found["pytorch-grad-cam"] = lambda: pgc(input_tensor=x, targets=None)
    except ImportError:
        pass
    try:
        from captum.attr import LayerAttribution, LayerGradCam

        lgc = LayerGradCam(model, layer)

        def captum_run() -> Any:
            target = model(x).argmax(1)
            attr = lgc.attribute(x, target=target, relu_attributions=True)
            return LayerAttribution.interpolate(attr, x.shape[2:], "bilinear")

        found["captum LayerGradCam"] = captum_run
    except ImportError:
        pass
    try:
        from torchcam.methods import GradCAM as TorchCamGradCAM

        def torchcam_run() -> Any:
            with TorchCamGradCAM(model, target_layer=layer) as extractor:
                out = model(x)
                return extractor(out.argmax(1).tolist(), out)

        found["torchcam GradCAM"] = torchcam_run
    except ImportError:
        pass
    return found


def speed(name: str, batch: int, repeats: int) -> None:
    import seewhy

    model, layer, layer_name = build(name)
    torch.manual_seed(0)
    x = torch.randn(batch, 3, 224, 224)
    x_np = x.numpy()
    explainer = seewhy.Explainer(model, "gradcam", layer=layer_name, batch_size=batch)

    def forward() -> Any:
        with torch.no_grad():
            return model(x)

    ours = explainer.explain(x_np).maps
    ref = floor_gradcam(model, layer, x)
    agree = float(np.corrcoef(ours.ravel(), ref.ravel())[0, 1])
    seewhy_left_grads = any(p.grad is not None for p in model.parameters())
    candidates: dict[str, Callable[[], Any]] = {
        "forward (no_grad)": forward,
        "bare floor": lambda: floor_gradcam(model, layer, x),
        "seewhy gradcam": lambda: explainer.explain(x_np),
        **competitors(model, layer, x),
    }
    rows = medians(candidates, repeats)
    print(
        f"\n{name}, batch {batch}, {torch.get_num_threads()} threads "
        f"(seewhy vs floor map correlation {agree:.6f}; "
        f"parameter .grad left by seewhy: {seewhy_left_grads})"
    )
    print(
        f"  {'':24} {'s/batch':>9} {'img/s':>8} {'x forward':>10} {'x floor':>8}"
        f" {'seewhy faster':>14}"
    )
    for label, t in rows.items():
        print(
            f"  {label:24} {t:9.3f} {batch / t:8.1f} {t / rows['forward (no_grad)']:10.2f} "
            f"{t / rows['bare floor']:8.2f} {t / rows['seewhy gradcam']:13.2f}x"
        )


MEMORY_CHILD = """
import os, sys, threading, time, numpy as np, torch
sys.path.insert(0, {bench!r})
from bench_gradcam_torch import build
import seewhy
model, layer, name = build({model!r})
x = torch.randn({batch}, 3, 224, 224)
x_np = x.numpy()
explainer = seewhy.Explainer(model, "gradcam", layer=name, batch_size={batch})
seewhy.layers(model)
page = os.sysconf("SC_PAGE_SIZE")
def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * page
peak, done = [0], [False]
def sample():
    while not done[0]:
        peak[0] = max(peak[0], rss())
        time.sleep(0.0005)
base = rss()
t = threading.Thread(target=sample)
t.start()
if {mode!r} == "forward":
    with torch.no_grad():
        model(x)
else:
    explainer.explain(x_np)
done[0] = True
t.join()
print(max(peak[0], rss()) - base)
"""


def memory(name: str, batch: int) -> None:
    from pathlib import Path

    bench = str(Path(__file__).resolve().parent)
    peaks = {}
    for mode in ("forward", "gradcam"):
        code = MEMORY_CHILD.format(bench=bench, model=name, batch=batch, mode=mode)
        out = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True
        )
        peaks[mode] = int(out.stdout.strip().splitlines()[-1]) / 2**20  # bytes -> MiB
    print(
        f"  peak memory growth at batch {batch}: forward {peaks['forward']:.0f} MiB, "
        f"seewhy gradcam {peaks['gradcam']:.0f} MiB, "
        f"ratio {peaks['gradcam'] / peaks['forward']:.2f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--mem-batch", type=int, default=64)
    parser.add_argument("--models", default="efficientnet_lite0,resnet50")
    args = parser.parse_args()
    for name in args.models.split(","):
        speed(name, args.batch, args.repeats)
        memory(name, args.mem_batch)


if __name__ == "__main__":
    main()
