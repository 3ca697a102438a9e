"""ultralytics YOLOv8n through seewhy: one box's Grad-CAM against its floor, every detection's
passes counted, and pytorch-grad-cam's EigenCAM tutorial recipe per detection.

Run: python benchmarks/bench_yolo.py [--side 640] [--repeats 3] [--detections 5]

Everything runs in this one process on one YOLOv8n built from ultralytics' YAML (random
weights, nothing downloaded) and one letterboxed picture:
  floor      one forward, autograd.grad to the chosen layer(s), the map math (channel means,
             weighted sum, ReLU, upsample, normalise, mean over layers): the Box's score is the
             class score of the raw prediction of its label overlapping it most
  seewhy     seewhy.explain(yolo, picture, target=Box(...)) at the same layer(s)
  all k      seewhy.explain(yolo, picture) without a target: each of the k detections NMS keeps
             (conf lowered and max_det=k so random weights give k), passes counted
  eigencam   pytorch-grad-cam's YOLO tutorial: EigenCAM on the model, one call per detection
             (then renormalised inside that detection's box), if pytorch-grad-cam is installed
"""

from __future__ import annotations

import argparse
import copy
import os
import tempfile
import warnings
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from _timing import ratio, timed_all

os.environ.setdefault("YOLO_OFFLINE", "1")
os.environ.setdefault("YOLO_CONFIG_DIR", tempfile.mkdtemp(prefix="seewhy-yolo-bench-"))


def floor_gradcam(
    net: torch.nn.Module, layers: list[int], x: torch.Tensor, box: list[float], label: int
) -> np.ndarray:
    """The least Grad-CAM of one box: one forward, one autograd.grad, the map math."""
    from torchvision.ops import box_iou

    kept: dict[int, torch.Tensor] = {}
    hooks = [
        net.model[i].register_forward_hook(lambda m, a, o, i=i: kept.__setitem__(i, o))
        for i in layers
    ]
    try:
        raw = net(x)[0][0]
    finally:
        for h in hooks:
            h.remove()
    xywh, scores = raw[:4].T, raw[4:]
    boxes = torch.cat([xywh[:, :2] - xywh[:, 2:] / 2, xywh[:, :2] + xywh[:, 2:] / 2], 1)
    iou = box_iou(torch.tensor([box]), boxes.detach())[0]
    iou[scores.argmax(0) != label] = 0
    score = scores[label, iou.argmax()]
    grads = torch.autograd.grad(score, [kept[i] for i in layers])
    maps = []
    with torch.no_grad():
        for i, grad in zip(layers, grads, strict=True):
            cam = torch.relu((grad.mean((2, 3), keepdim=True) * kept[i]).sum(1, keepdim=True))
            cam = F.interpolate(cam, size=x.shape[2:], mode="bilinear", align_corners=False)[0, 0]
            maps.append((cam - cam.min()) / (cam.max() - cam.min()).clamp_min(1e-12))
        fused = torch.stack(maps).mean(0)
    return fused.numpy()


class Passes:
    """Counts image-forwards through the model's first layer and autograd backward calls."""

    def __init__(self, net: torch.nn.Module) -> None:
        self.forwards = 0
        self.backwards = 0
        self.net = net

    def __enter__(self) -> Passes:
        self.handle = self.net.model[0].register_forward_hook(self._seen)
        self.grad, self.backward = torch.autograd.grad, torch.Tensor.backward

        def grad(*args: Any, **kwargs: Any) -> Any:
            self.backwards += 1
            return self.grad(*args, **kwargs)

        def backward(tensor: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
            self.backwards += 1
            return self.backward(tensor, *args, **kwargs)

        torch.autograd.grad = grad
        torch.Tensor.backward = backward  # type: ignore[method-assign]
        return self

    def _seen(self, module: Any, args: Any, out: torch.Tensor) -> None:
        self.forwards += int(out.shape[0])

    def __exit__(self, *exc: Any) -> None:
        self.handle.remove()
        torch.autograd.grad = self.grad
        torch.Tensor.backward = self.backward  # type: ignore[method-assign]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--side", type=int, default=640)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--detections", type=int, default=5)
    args = parser.parse_args()
    from ultralytics import YOLO

    import seewhy
    from seewhy.adapters import adapt
    from seewhy.inputs import resize_for_model
    from seewhy.targets import Box

    torch.manual_seed(0)
    yolo = YOLO("yolov8n.yaml")
    yolo.overrides.update(imgsz=args.side, max_det=args.detections)
    net = yolo.model
    with torch.no_grad():  # ultralytics' init makes a random YOLO's activations vanish
        for m in net.modules():
            if isinstance(m, torch.nn.Conv2d) and m.weight.requires_grad:  # not DFL's bins
                m.weight.normal_(0, (2.0 / m.weight[0].numel()) ** 0.5)
    rgb = (np.random.default_rng(0).random((args.side * 3 // 4, args.side, 3)) * 255).astype(
        np.uint8
    )
    pre = adapt(yolo).preprocess
    fed = resize_for_model(rgb, pre)
    x = torch.from_numpy(pre.normalise(fed)).permute(2, 0, 1)[None].contiguous()
    twin = copy.deepcopy(net).eval()
    with torch.no_grad():  # random weights: conf just under the 4k-th best anchor's score
        best = twin(x)[0][0, 4:].amax(0).sort(descending=True).values
    yolo.overrides["conf"] = float(best[4 * args.detections]) * (1 - 1e-6)
    warnings.simplefilter("ignore")
    first = seewhy.explain(yolo, fed, layer="model.15", preprocess=pre)
    forms = first.params["target"]
    forms = forms if isinstance(forms, list) else [forms]
    box, label = forms[0]["xyxy"], int(forms[0]["label"])
    print(
        f"YOLOv8n, one {args.side}x{args.side} input, {len(forms)} detections, CPU threads "
        f"{torch.get_num_threads()} (a shared, busy machine: compare ratios, not seconds)"
    )

    for name, layers in (("P3 (model.15)", [15]), ("P3-P5 fused", [15, 18, 21])):
        chosen = [f"model.{i}" for i in layers]
        layer: Any = chosen[0] if len(chosen) == 1 else chosen
        found = timed_all(
            {
                "floor": lambda layers=layers: floor_gradcam(twin, layers, x, box, label),
                "seewhy": lambda layer=layer: seewhy.explain(
                    yolo, fed, target=Box(box, label), layer=layer, preprocess=pre
                ),
            },
            args.repeats,
        )
        print(
            f"  one box, {name}: floor {found['floor'].seconds * 1e3:.0f} ms, seewhy "
            f"{found['seewhy'].seconds * 1e3:.0f} ms, seewhy/floor "
            f"{ratio(found['seewhy'], found['floor'])} (target <= 1.15x)"
        )

    with Passes(net) as passes:
        every = seewhy.explain(yolo, fed, layer="model.15", preprocess=pre)
    k = len(every)
    print(
        f"  all {k} detections at P3: {passes.forwards} image-forwards, {passes.backwards} "
        f"backward calls (target: <= 1 forward + {k} backward)"
    )
    with Passes(net) as passes:
        seewhy.explain(yolo, fed, preprocess=pre)
    print(
        f"  all {k} detections, P3-P5 fused: {passes.forwards} image-forwards, "
        f"{passes.backwards} backward calls"
    )

    try:
        from pytorch_grad_cam import EigenCAM
    except ImportError:
        print("  pytorch-grad-cam not installed: EigenCAM comparison skipped")
        return

    class Boxes(torch.nn.Module):  # the tutorial's model: its raw output, first tensor
        def __init__(self, inner: torch.nn.Module) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, pixels: torch.Tensor) -> torch.Tensor:
            return self.inner(pixels)[0]

    wrapped = Boxes(twin)
    eigencam = EigenCAM(wrapped, [twin.model[15]])

    def recipe() -> list[np.ndarray]:
        """The tutorial's loop: detections first, then a CAM per detection, renormalised
        inside its box."""
        with torch.no_grad():
            wrapped(x)
        out = []
        for form in forms:
            cam = eigencam(x, targets=None)[0]
            x0, y0, x1, y1 = (int(max(0, v)) for v in form["xyxy"])
            inside = np.zeros_like(cam)
            part = cam[y0:y1, x0:x1]
            inside[y0:y1, x0:x1] = (part - part.min()) / max(float(np.ptp(part)), 1e-12)
            out.append(inside)
        return out

    found = timed_all(
        {
            "eigencam": recipe,
            "seewhy": lambda: seewhy.explain(yolo, fed, layer="model.15", preprocess=pre),
        },
        args.repeats,
    )
    print(
        f"  all {k} detections at P3: EigenCAM recipe {found['eigencam'].seconds * 1e3:.0f} "
        f"ms, seewhy Grad-CAM {found['seewhy'].seconds * 1e3:.0f} ms, seewhy/EigenCAM "
        f"{ratio(found['seewhy'], found['eigencam'])} (target < 1x)"
    )


if __name__ == "__main__":
    main()
