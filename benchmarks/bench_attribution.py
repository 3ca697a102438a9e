"""Attribution speed, measured side by side with the reference libraries in one run.

    PYTHONPATH=src python benchmarks/bench_attribution.py [--quick] [--threads N]

What is compared (same picture, same settings, same batch size):

* LIME's own overhead: seewhy's ``lime`` against the ``lime`` package at 1000
  samples with a near-free classifier (mean colour -> 10 scores, plain numpy),
  so that only segmentation, masking and fitting are timed;
* LIME on the bundled model against the model's forward passes alone on the
  same number of images (and the ``lime`` package on the same model);
* Score-CAM against pytorch-grad-cam's ScoreCAM (same layer, batch size);
* SmoothGrad and Integrated Gradients against Captum at the same sample and
  step counts.

Prints seconds, images per second and ratios. Not a test: numbers vary with
the machine and its load; the ratios, measured in one run, are what matter.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import time
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np

import seewhy
from seewhy import samples
from seewhy.backends.base import Capture, LayerInfo, Score
from seewhy.preprocess import Preprocess


def timed(fn: Callable[[], Any], repeat: int = 1) -> tuple[float, Any]:
    """Best wall time of ``repeat`` runs, and the last result."""
    best, out = float("inf"), None
    for _ in range(repeat):
        start = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - start)
    return best, out


def row(name: str, seconds: float, units: float, unit: str) -> None:
    print(f"  {name:<42s} {seconds:8.3f} s   {units / seconds:9.1f} {unit}/s")


def ratio(label: str, value: float, target: str) -> None:
    print(f"  -> {label:<40s} {value:8.2f}x   (target {target})")


class MeanColour:
    """A near-free classifier: 10 scores from the mean colour of a pixel grid.

    Every 8th pixel in each direction, so that the classifier itself costs
    next to nothing and only LIME's own work is timed. Also a seewhy Backend.
    """

    framework = "numpy"
    channels_first = False

    def __init__(self) -> None:
        self.model = self
        self.weight = np.random.default_rng(0).normal(size=(3, 10)).astype(np.float32)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(x)[:, ::8, ::8].mean(axis=(1, 2)).astype(np.float32) @ self.weight

    def predict(
        self, x: np.ndarray, *, batch_size: int | None = None, precision: str = "float32"
    ) -> np.ndarray:
        return self(x)

    def preferred_batch_size(self, x: np.ndarray, precision: str = "float32") -> int:
        return 64

    def layers(self, x: np.ndarray) -> list[LayerInfo]:
        return []

    def resolve_layer(self, layer: str | None, x: np.ndarray) -> str:
        raise NotImplementedError

    def capture(
        self,
        x: np.ndarray,
        *,
        layer: str,
        targets: np.ndarray | None,
        gradients: bool,
        score: Score = "logit",
    ) -> Capture:
        raise NotImplementedError

    def input_gradients(
        self,
        x: np.ndarray,
        *,
        targets: np.ndarray | None,
        score: Score = "logit",
        guided: bool = False,
    ) -> Capture:
        raise NotImplementedError

    def final_linear(self) -> tuple[np.ndarray, np.ndarray] | None:
        return None

    def predict_with_layer_edit(
        self, x: np.ndarray, *, layer: str, scales: np.ndarray, batch_size: int | None = None
    ) -> np.ndarray:
        raise NotImplementedError

    # what sanity checks and the audit ask: not needed to time LIME
    def parameter_layers(self, x: np.ndarray | None = None) -> list[tuple[str, str]]:
        return []

    def copy_model(self) -> Any:
        raise NotImplementedError

    def randomize_layers(self, names: Any, resample: Any) -> None:
        raise NotImplementedError

    def place(self, device: str | None) -> Any:
        return self

    def pack(self, pickle_module: Any) -> Any:
        return self


def load_model(name: str) -> tuple[Any, Preprocess, str]:
    import torch

    if name == "efficientnet_lite0":
        from seewhy import zoo

        model = zoo.efficientnet_lite0()
        return model.eval(), model.seewhy_spec.preprocess, name
    from torchvision.models import mobilenet_v3_small

    torch.manual_seed(0)
    return mobilenet_v3_small(weights=None).eval(), Preprocess(), "mobilenet_v3_small (random)"


def lime_section(picture: np.ndarray, pre: Preprocess, samples_: int, batch: int) -> None:
    from skimage.segmentation import quickshift

    from seewhy._kit import compiled as kernels
    from seewhy._kit.superpixels import segment

    print(f"\nLIME overhead, near-free classifier, {samples_} samples, 224x224, quickshift")
    clf = MeanColour()
    x = pre.normalise(picture[None])[0]

    def ours() -> Any:
        return seewhy.explain(
            clf, picture, "lime", preprocess=pre, samples=samples_, batch_size=batch
        )

    t_seg, _ = timed(lambda: quickshift(picture, kernel_size=4, max_dist=200, ratio=0.2, rng=0), 3)
    t_our_seg, labels = timed(lambda: segment(picture, "quickshift"), 3)
    t_ours, e = timed(ours, 3)
    same = np.array_equal(
        labels, quickshift(picture, kernel_size=4, max_dist=200, ratio=0.2, rng=0)
    )
    row("scikit-image quickshift (the lime package's)", t_seg, 1, "img")
    row(
        f"seewhy quickshift ({'numba' if kernels.available() else 'scikit-image'})",
        t_our_seg,
        1,
        "img",
    )
    print(f"  same labels as scikit-image: {same}")
    row("seewhy lime", t_ours, samples_, "samples")
    try:
        from lime import lime_image
    except ImportError:
        print("  lime package not installed: pip install lime")
        return
    target = int(e.targets[0])

    def theirs() -> Any:
        with warnings.catch_warnings(), contextlib.redirect_stderr(io.StringIO()):
            warnings.simplefilter("ignore")
            return lime_image.LimeImageExplainer(random_state=0).explain_instance(
                x.astype(np.float64),
                clf,
                labels=(target,),
                top_labels=None,
                num_samples=samples_,
                batch_size=batch,
                hide_color=None,
                segmentation_fn=lambda _: quickshift(
                    picture, kernel_size=4, max_dist=200, ratio=0.2, rng=0
                ),
            )

    def theirs_defaults() -> Any:  # its own quickshift, batch_size=10, top_labels=5
        # uint8 pictures in, so the classifier normalises them (as seewhy does)
        with warnings.catch_warnings(), contextlib.redirect_stderr(io.StringIO()):
            warnings.simplefilter("ignore")
            return lime_image.LimeImageExplainer(random_state=0).explain_instance(
                picture, lambda images: clf(pre.normalise(images)), num_samples=samples_
            )

    t_lime, exp = timed(theirs, 2)
    t_default, _ = timed(theirs_defaults, 2)
    row("lime package, same settings", t_lime, samples_, "samples")
    row("lime package, its defaults", t_default, samples_, "samples")
    ratio("lime package / seewhy (whole call)", t_lime / t_ours, ">= 10")
    ratio("lime package defaults / seewhy", t_default / t_ours, ">= 10")
    ratio("quickshift: scikit-image / seewhy", t_seg / t_our_seg, "")
    ratio("overhead outside segmentation", (t_lime - t_seg) / (t_ours - t_our_seg), ">= 10")
    ours_w = e.extras["superpixel_weights"][0]
    theirs_w = np.zeros_like(ours_w)
    for k, v in exp.local_exp[target]:
        theirs_w[k] = v
    print(
        f"  weights' correlation with the lime package: {np.corrcoef(ours_w, theirs_w)[0, 1]:.3f}"
    )


def lime_model_section(
    model: Any, picture: np.ndarray, pre: Preprocess, samples_: int, batch: int, package: bool
) -> None:
    from seewhy.backends.torch import TorchBackend

    print(f"\nLIME on the model, {samples_} samples, batch {batch}")
    backend = TorchBackend(model)
    x = pre.normalise(picture[None])
    images = np.repeat(x, samples_ + 1, axis=0)  # what LIME feeds the model, minus masking

    def ours() -> Any:
        return seewhy.explain(
            model, picture, "lime", preprocess=pre, samples=samples_, batch_size=batch
        )

    t_fwd = t_ours = float("inf")
    for _ in range(2):  # interleaved, best of two (shared machines are noisy)
        t_fwd = min(t_fwd, timed(lambda: backend.predict(images, batch_size=batch))[0])
        t, e = timed(ours)
        t_ours = min(t_ours, t)
    row("model forward passes alone", t_fwd, samples_ + 1, "img")
    row("seewhy lime", t_ours, samples_, "samples")
    ratio("seewhy lime / forward passes", t_ours / t_fwd, "<= 1.05")
    if not package:
        return
    try:
        from lime import lime_image
    except ImportError:
        return
    target = int(e.targets[0])
    with warnings.catch_warnings(), contextlib.redirect_stderr(io.StringIO()):
        warnings.simplefilter("ignore")
        t_lime, _ = timed(
            lambda: lime_image.LimeImageExplainer(random_state=0).explain_instance(
                x[0].astype(np.float64),
                lambda b: backend.predict(b.astype(np.float32), batch_size=batch),
                labels=(target,),
                top_labels=None,
                num_samples=samples_,
                batch_size=batch,
            )
        )
    row("lime package", t_lime, samples_, "samples")
    ratio("lime package / seewhy", t_lime / t_ours, "-")


def scorecam_section(model: Any, picture: np.ndarray, pre: Preprocess, batch: int) -> None:
    import torch

    from seewhy.backends.torch import TorchBackend

    x = pre.normalise(picture[None])
    backend = TorchBackend(model)
    layer = backend.resolve_layer(None, x)
    channels = next(i.shape[0] for i in backend.layers(x) if i.name == layer)
    cap = backend.capture(x, layer=layer, targets=None, gradients=False)
    assert cap.activations is not None
    flat = cap.activations.reshape(channels, -1)
    constant = int((flat.max(axis=1) == flat.min(axis=1)).sum())
    print(f"\nScore-CAM, layer {layer!r} ({channels} channels, {constant} constant), batch {batch}")
    t_ours, e = timed(
        lambda: seewhy.explain(model, picture, "scorecam", preprocess=pre, batch_size=batch)
    )
    row("seewhy scorecam", t_ours, 1, "img")
    try:
        from pytorch_grad_cam import ScoreCAM
        from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
    except ImportError:
        print("  pytorch-grad-cam not installed: pip install grad-cam")
        return
    module = dict(model.named_modules())[layer]
    tensor = torch.from_numpy(x).permute(0, 3, 1, 2).contiguous()

    def theirs() -> Any:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            cam = ScoreCAM(model=model, target_layers=[module])
            cam.batch_size = batch
            with contextlib.redirect_stderr(io.StringIO()):  # its tqdm bar
                return cam(input_tensor=tensor, targets=[ClassifierOutputTarget(int(e.targets[0]))])

    t_theirs, their_map = timed(theirs)
    row("pytorch-grad-cam ScoreCAM", t_theirs, 1, "img")
    ratio("pytorch-grad-cam / seewhy", t_theirs / t_ours, ">= 2")
    corr = np.corrcoef(e.maps[0].ravel(), their_map[0].ravel())[0, 1]
    print(f"  maps' correlation (upsampling conventions differ): {corr:.3f}")


def gradient_section(
    model: Any, picture: np.ndarray, pre: Preprocess, batch: int, nt: int, steps: int
) -> None:
    import torch

    x = pre.normalise(picture[None])
    tensor = torch.from_numpy(x).permute(0, 3, 1, 2).contiguous()
    try:
        from captum.attr import IntegratedGradients, NoiseTunnel, Saliency
    except ImportError:
        print("\ncaptum not installed: pip install captum")
        return
    target = int(seewhy.predict(model, picture, top_k=1, preprocess=pre)[0][0].index)
    sigma = 0.15 * float(x.max() - x.min())
    print(f"\nSmoothGrad ({nt} samples) and Integrated Gradients ({steps} steps), batch {batch}")

    def captum_sg() -> Any:
        return NoiseTunnel(Saliency(model)).attribute(
            tensor,
            nt_type="smoothgrad",
            nt_samples=nt,
            nt_samples_batch_size=batch,
            stdevs=sigma,
            target=target,
            abs=False,
        )

    def ours_sg() -> Any:
        return seewhy.explain(
            model,
            picture,
            "smoothgrad",
            preprocess=pre,
            target=target,
            samples=nt,
            noise=0.15,
            batch_size=batch,
        )

    def captum_ig() -> Any:
        return IntegratedGradients(model).attribute(
            tensor,
            target=target,
            n_steps=steps,
            internal_batch_size=batch,
            method="gausslegendre",
        )

    def ours_ig() -> Any:
        return seewhy.explain(
            model, picture, "ig", preprocess=pre, target=target, steps=steps, batch_size=batch
        )

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name, theirs, ours in [("SmoothGrad", captum_sg, ours_sg), ("IG", captum_ig, ours_ig)]:
            theirs(), ours()  # warm-up: first calls build kernels for the batch shapes
            t_c = t_o = float("inf")
            for _ in range(5):  # interleaved, best of five (shared machines are noisy)
                t_c = min(t_c, timed(theirs)[0])
                t_o = min(t_o, timed(ours)[0])
            row(f"captum {name}", t_c, 1, "img")
            row(f"seewhy {name}", t_o, 1, "img")
            ratio(f"seewhy / captum ({name})", t_o / t_c, "<= 1.0")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", choices=["efficientnet_lite0", "mobilenet_v3_small"])
    parser.add_argument("--picture", default="chelsea", help="a seewhy sample name")
    parser.add_argument("--samples", type=int, default=1000, help="LIME samples")
    parser.add_argument(
        "--model-samples", type=int, default=500, help="LIME samples on the real model"
    )
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    parser.add_argument("--quick", action="store_true", help="fewer samples, smaller model")
    parser.add_argument(
        "--skip",
        nargs="*",
        default=[],
        choices=["lime", "model", "scorecam", "gradients", "package"],
    )
    args = parser.parse_args()
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    name = args.model or ("mobilenet_v3_small" if args.quick else "efficientnet_lite0")
    model_samples = 100 if args.quick else args.model_samples
    model, pre, label = load_model(name)
    from seewhy.inputs import resize_for_model

    picture = resize_for_model(samples.load(args.picture), pre)
    print(
        f"seewhy attribution benchmark: {label}, picture {args.picture!r}, "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads"
    )
    if "lime" not in args.skip:
        lime_section(picture, pre, args.samples, args.batch)
    if "model" not in args.skip:
        lime_model_section(
            model, picture, pre, model_samples, args.batch, package="package" not in args.skip
        )
    if "scorecam" not in args.skip:
        scorecam_section(model, picture, pre, args.batch)
    if "gradients" not in args.skip:
        gradient_section(model, picture, pre, min(args.batch, 25), 25, 50)


if __name__ == "__main__":
    main()
