"""The test models, all in one place: tiny torch nets, tiny Keras nets, one trained CNN,
and small offline builds of timm, torchvision and Hugging Face families.

Plain functions (import them: ``from models import tiny_cnn``), grouped by
family: torch CNNs, Keras builders, vision transformers, timm / torchvision /
Hugging Face builders, detectors and segmenters; each docstring says which
structure the model exercises. The shared fixtures over them are in
``conftest.py``. Frameworks are imported inside the builders, so importing
this module costs nothing, needs no framework, and works in the Keras
sub-processes too; the Keras builders take the ``keras`` module as argument
(the backend is fixed per process, and TensorFlow must never be imported in
the main pytest process before torch's triton). ``test_test_models.py`` fails
when a test file builds a model of its own, unless that model is the test's
subject (listed there with the reason).
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from typing import Any

import numpy as np

# -- torch --------------------------------------------------------------------------


def tiny_cnn(
    classes: int = 5,
    seed: int = 0,
    *,
    widths: tuple[int, int] = (8, 16),
    stride: int = 2,
    inplace: bool = True,
    dtype: Any = None,
) -> Any:
    """conv-relu-conv-relu, global average pooling, linear: a CAM-compatible head.

    The second convolution has ``stride``; float64 (``dtype``, default
    float32) suits checks against finite differences and plain loops.
    """
    import torch
    from torch import nn

    torch.manual_seed(seed)
    first, second = widths
    return (
        nn.Sequential(
            nn.Conv2d(3, first, 3, padding=1),
            nn.ReLU(inplace=inplace),
            nn.Conv2d(first, second, 3, padding=1, stride=stride),
            nn.ReLU(inplace=inplace),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(second, classes),
        )
        .to(torch.float32 if dtype is None else dtype)
        .eval()
    )


def one_conv(
    width: int,
    classes: int,
    seed: int = 0,
    *,
    channels: int = 3,
    pool: int = 1,
    activation: Any = None,
) -> Any:
    """conv-activation, average pooling to ``pool`` x ``pool``, linear, in eval mode.

    The smallest model with a feature map: ``width`` sets the map's channels,
    ``activation`` (a module, default ``nn.ReLU()``) what follows the conv.
    """
    import torch
    from torch import nn

    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(channels, width, 3, padding=1),
        nn.ReLU() if activation is None else activation,
        nn.AdaptiveAvgPool2d(pool),
        nn.Flatten(),
        nn.Linear(width * pool * pool, classes),
    ).eval()


def pooled_cnn(
    classes: int = 3, seed: int = 0, *, widths: tuple[int, int] = (4, 6), dtype: Any = None
) -> Any:
    """conv-relu-maxpool-conv-relu, global average pooling, linear: a map at half the input.

    The layer maps are coarser than the picture, so upsampling and per-channel
    loops (Score-CAM, the faithfulness curves) have something to do.
    """
    import torch
    from torch import nn

    torch.manual_seed(seed)
    first, second = widths
    return (
        nn.Sequential(
            nn.Conv2d(3, first, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(first, second, 3, padding=1),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(second, classes),
        )
        .to(torch.float32 if dtype is None else dtype)
        .eval()
    )


def bn_dropout_cnn(
    classes: int = 5,
    seed: int = 3,
    *,
    widths: tuple[int, int] = (8, 16),
    dropout: float = 0.5,
    drawn_statistics: bool = True,
) -> Any:
    """conv-BN-ReLU-dropout twice, pooling, linear, left in train mode like a model mid-training.

    With ``drawn_statistics`` the BatchNorm statistics differ from a fresh
    BatchNorm's, so a pass run in train mode (or one that updates them) shows
    in the scores and the buffers; without, they are a fresh BatchNorm's.
    """
    import torch
    from torch import nn

    torch.manual_seed(seed)
    first, second = widths
    model = nn.Sequential(
        nn.Conv2d(3, first, 3, padding=1),
        nn.BatchNorm2d(first),
        nn.ReLU(),
        nn.Dropout2d(dropout),
        nn.Conv2d(first, second, 3, padding=1, stride=2),
        nn.BatchNorm2d(second),
        nn.ReLU(),
        nn.Dropout(dropout),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(second, classes),
    )
    with torch.no_grad():
        for module in model.modules():
            if drawn_statistics and isinstance(module, nn.BatchNorm2d):
                module.running_mean.uniform_(-0.5, 0.5)
                module.running_var.uniform_(0.5, 2.0)
    return model.train()


def flatten_head_cnn(side: int, channels: int = 3, classes: int = 10, seed: int = 0) -> Any:
    """conv-relu, Flatten, linear: a head that is not pooling + linear, fixed to ``side`` px."""
    import torch
    from torch import nn

    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(channels, 4, 3, padding=1),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(4 * side * side, classes),
    ).eval()


def mlp(side: int, classes: int = 4, seed: int = 0) -> Any:
    """Flatten and one linear layer: a model with no feature map at all."""
    import torch
    from torch import nn

    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(3 * side * side, classes)).eval()


def gelu_cnn(side: int = 6, seed: int = 0) -> Any:
    """conv-GELU, Flatten, a lazy linear (materialised at ``side`` px): a CNN with no ReLU."""
    import torch
    from torch import nn

    torch.manual_seed(seed)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.GELU(), nn.Flatten(), nn.LazyLinear(2))
    model(torch.zeros(1, 3, side, side))
    return model


def reused_activation_cnn(seed: int = 1) -> Any:
    """Two convs sharing one ReLU module, called twice (as EfficientNet reuses its SiLU)."""
    import torch
    from torch import nn

    class Reuse(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            torch.manual_seed(seed)
            self.conv1 = nn.Conv2d(3, 6, 3, padding=1)
            self.conv2 = nn.Conv2d(6, 6, 3, padding=1)
            self.act = nn.ReLU()
            self.fc = nn.Linear(6, 4)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            h = self.act(self.conv1(x))
            h = self.act(self.conv2(h) + h)
            return self.fc(torch.relu(h).mean(dim=(2, 3)))

    return Reuse()


def pixel_classifier(classes: int = 3, width: int = 8, seed: int = 0) -> Any:
    """conv-relu, a 1x1 conv to per-pixel class scores: (N, classes, H, W) as a plain tensor."""
    import torch
    from torch import nn

    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(3, width, 3, padding=1), nn.ReLU(), nn.Conv2d(width, classes, 1)
    ).eval()


def output_picked(model: Any, pick: Any) -> Any:
    """``model`` whose forward returns ``pick(output)``: the plain tensor a reference
    library (pytorch-grad-cam) wants from a model with a dict or a ModelOutput."""
    from torch import nn

    class Picked(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, x: Any) -> Any:
            return pick(self.model(x))

    return Picked().eval()


def with_spec(model: Any, size: tuple[int, int], labels: Sequence[str], name: str = "tiny") -> Any:
    """``model`` carrying a ``seewhy_spec`` (input size and labels), as a saved model may."""
    import seewhy

    model.seewhy_spec = seewhy.ModelSpec(
        name=name, preprocess=seewhy.Preprocess(size=size), labels=tuple(labels)
    )
    return model


def audit_model(
    size: tuple[int, int] | None = (32, 32), labels: tuple[str, ...] = ("a", "b")
) -> Any:
    """conv-relu, GAP, linear to ``len(labels)`` classes, in eval mode: the audit tests' model.

    ``size`` (H, W) and ``labels`` go into its ``seewhy_spec``; ``size=None``
    leaves the spec out (a plain module, as a user's saved file would be).
    """
    model = one_conv(4, len(labels))
    return model if size is None else with_spec(model, size, labels)


def raising_model(inner: Any) -> Any:
    """``inner`` wrapped so that its forward raises once it has run ``fail_after`` times.

    ``fail_after`` is None (never raise) until a test sets it; 0 raises at once.
    """
    from torch import nn

    class Raising(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inner = inner
            self.fail_after: int | None = None
            self.calls = 0

        def forward(self, x: Any) -> Any:
            out = self.inner(x)
            if self.fail_after is not None:
                self.calls += 1
                if self.calls > self.fail_after:
                    raise RuntimeError("the model failed on purpose")
            return out

    return Raising().eval()


def _stripes_cnn(classes: int, width: int) -> Any:
    """Conv-ReLU stack with global average pooling: ``features`` ends in an 8x8 map."""
    import torch
    from torch import nn

    class StripesCNN(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.features = nn.Sequential(
                nn.Conv2d(3, width, 3, padding=1),
                nn.ReLU(inplace=True),
                nn.MaxPool2d(2),
                nn.Conv2d(width, 2 * width, 3, padding=1),
                nn.ReLU(inplace=True),
                nn.MaxPool2d(2),
                nn.Conv2d(2 * width, 2 * width, 3, padding=1),
                nn.ReLU(inplace=True),
            )
            self.pool = nn.AdaptiveAvgPool2d(1)
            self.head = nn.Linear(2 * width, classes)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.head(torch.flatten(self.pool(self.features(x)), 1))

    return StripesCNN()


@lru_cache(maxsize=4)
def trained_torch_cnn(
    *, n: int = 1000, epochs: int = 4, seed: int = 0, width: int = 16
) -> tuple[Any, float]:
    """A small CNN trained on ``make_stripes(n, seed=seed)``, in eval mode, and its accuracy.

    Accuracy is measured on a separate set drawn from ``seed + 1000``. Cached:
    callers must not change the model (seewhy promises never to).
    """
    import torch
    from torch import nn

    from seewhy.synthetic import STRIPES, make_stripes

    torch.manual_seed(seed)
    data = make_stripes(n, seed=seed)
    x = torch.from_numpy(data.inputs()).permute(0, 3, 1, 2).contiguous()
    y = torch.from_numpy(data.labels)
    model = _stripes_cnn(len(STRIPES), width)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    loss_fn = nn.CrossEntropyLoss()
    generator = torch.Generator().manual_seed(seed)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny convolutions: one thread is fastest, and cores are shared
    try:
        model.train()
        for _ in range(epochs):
            order = torch.randperm(n, generator=generator)
            for start in range(0, n, 50):
                idx = order[start : start + 50]
                opt.zero_grad(set_to_none=True)
                loss_fn(model(x[idx]), y[idx]).backward()
                opt.step()
        model.eval()
        for p in model.parameters():
            p.grad = None
        test = make_stripes(600, seed=seed + 1000)
        with torch.no_grad():
            xt = torch.from_numpy(test.inputs()).permute(0, 3, 1, 2).contiguous()
            accuracy = float((model(xt).argmax(1).numpy() == test.labels).mean())
    finally:
        torch.set_num_threads(threads)
    return model, accuracy


def tiny_segmenter(classes: int = 3, seed: int = 0) -> Any:
    """conv-relu-conv-relu, a 1x1 conv to per-pixel class scores, returned as torchvision's
    segmentation models return theirs: ``{"out": (N, classes, H, W), "aux": ...}``."""
    import torch
    from torch import nn

    class Segmenter(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.backbone = nn.Sequential(
                nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1), nn.ReLU()
            )
            self.classifier = nn.Conv2d(8, classes, 1)
            self.aux = nn.Conv2d(8, classes, 1)

        def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
            features = self.backbone(x)
            aux = self.aux(features)  # first, so the scored head's layer is the last to run
            return {"out": self.classifier(features), "aux": aux}

    torch.manual_seed(seed)
    return Segmenter().eval()


def two_headed(classes: int = 4, seed: int = 0, *, as_dict: bool = False) -> Any:
    """:func:`tiny_cnn`'s features with two linear heads, returned as a tuple (or a dict)."""
    import torch
    from torch import nn

    class TwoHeaded(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.features = tiny_cnn(classes, seed)[:-1]
            self.kind = nn.Linear(16, classes)
            self.size = nn.Linear(16, 2)

        def forward(self, x: torch.Tensor) -> Any:
            f = self.features(x)
            kind, size = self.kind(f), self.size(f)
            return {"kind": kind, "size": size} if as_dict else (kind, size)

    torch.manual_seed(seed)
    return TwoHeaded().eval()


# -- Keras (pass the keras module; the backend is fixed per process) ----------------


def conv_stack(keras: Any, prefix: str = "", data_format: str = "channels_last") -> list[Any]:
    """conv-relu-conv-relu, the feature extractor of every tiny Keras model here."""
    layers = keras.layers
    return [
        layers.Conv2D(4, 3, padding="same", data_format=data_format, name=f"{prefix}conv1"),
        layers.ReLU(name=f"{prefix}relu1"),
        layers.Conv2D(6, 3, strides=2, data_format=data_format, name=f"{prefix}conv2"),
        layers.Activation("relu", name=f"{prefix}act"),
    ]


def gap_model(keras: Any, classes: int = 5, seed: int = 0) -> Any:
    """Functional: conv stack, global average pooling, Dense with softmax."""
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((12, 12, 3), name="image")
    x = inputs
    for layer in conv_stack(keras):
        x = layer(x)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    out = keras.layers.Dense(classes, activation="softmax", name="head")(x)
    return keras.Model(inputs, out, name="gap_model")


def flatten_model(keras: Any, classes: int = 5, seed: int = 1) -> Any:
    """Sequential: conv stack, Flatten, Dense with softmax.

    Through Flatten the gradient differs position by position, so HiResCAM,
    LayerCAM and Grad-CAM++ give different maps; it equals the Dense kernel
    column, reshaped, which makes an exact reference.
    """
    keras.utils.set_random_seed(seed)
    return keras.Sequential(
        [
            keras.Input((12, 12, 3)),
            *conv_stack(keras),
            keras.layers.Flatten(name="flatten"),
            keras.layers.Dense(classes, activation="softmax", name="head"),
        ],
        name="flatten_model",
    )


def nested_model(keras: Any, classes: int = 5, seed: int = 2) -> Any:
    """A functional base inside a Sequential, as with a keras.applications base."""
    keras.utils.set_random_seed(seed)
    base_in = keras.Input((12, 12, 3))
    x = base_in
    for layer in conv_stack(keras):
        x = layer(x)
    base = keras.Model(base_in, x, name="base")
    return keras.Sequential(
        [
            keras.Input((12, 12, 3)),
            base,
            keras.layers.GlobalAveragePooling2D(name="gap"),
            keras.layers.Dense(classes, activation="softmax", name="head"),
        ],
        name="nested_model",
    )


def subclassed_model(keras: Any, classes: int = 5, seed: int = 3) -> Any:
    """A subclassed model: no graph to walk (the best-effort path)."""
    keras.utils.set_random_seed(seed)

    class Net(keras.Model):  # type: ignore[misc,name-defined]
        def __init__(self) -> None:
            super().__init__(name="subclassed")
            self.conv1, self.relu1, self.conv2, self.act = conv_stack(keras)
            self.gap = keras.layers.GlobalAveragePooling2D(name="gap")
            self.head = keras.layers.Dense(classes, activation="softmax", name="head")

        def call(self, x: Any) -> Any:
            x = self.act(self.conv2(self.relu1(self.conv1(x))))
            return self.head(self.gap(x))

    model = Net()
    model(np.zeros((1, 12, 12, 3), np.float32))
    return model


def raising_keras_model(keras: Any, classes: int = 5, seed: int = 0) -> Any:
    """:func:`gap_model`'s layers with a tripwire after the features: it raises while armed.

    Arm it (``model.get_layer("tripwire").armed = True``) before seewhy first
    runs the model, so a traced function cannot skip the check.
    """

    class Tripwire(keras.layers.Layer):  # type: ignore[misc,name-defined]
        def __init__(self, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.armed = False

        def call(self, x: Any) -> Any:
            if self.armed:
                raise RuntimeError("the model failed on purpose")
            return x

    keras.utils.set_random_seed(seed)
    inputs = keras.Input((12, 12, 3), name="image")
    x = inputs
    for layer in conv_stack(keras):
        x = layer(x)
    x = Tripwire(name="tripwire")(x)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    out = keras.layers.Dense(classes, activation="softmax", name="head")(x)
    return keras.Model(inputs, out, name="raising_model")


def keras_one_conv(
    keras: Any,
    shape: tuple[int, int, int] = (12, 12, 3),
    *,
    filters: int = 4,
    classes: int = 3,
    seed: int | None = 0,
    conv: str = "conv",
    head: str | None = None,
    activation: str | None = None,
    padding: str = "valid",
    head_activation: str | None = None,
    flatten: bool = False,
    first: Any = None,
    name: str | None = None,
) -> Any:
    """Sequential: [``first``,] one Conv2D, global average pooling (or Flatten), Dense.

    The smallest Keras model with a feature map; ``shape`` is what its
    ``model.inputs`` declare (a Flatten head fixes the size), ``first`` a
    leading layer (Rescaling, Normalization, a Lambda), ``name`` the model's.
    """
    if seed is not None:
        keras.utils.set_random_seed(seed)
    layers = keras.layers
    return keras.Sequential(
        [
            keras.Input(shape),
            *([] if first is None else [first]),
            layers.Conv2D(filters, 3, padding=padding, activation=activation, name=conv),
            layers.Flatten() if flatten else layers.GlobalAveragePooling2D(),
            layers.Dense(classes, activation=head_activation, name=head),
        ],
        name=name,
    )


def keras_segmenter(keras: Any, size: int = 12, classes: int = 3, seed: int = 6) -> Any:
    """Functional: conv-relu, a 1x1 conv to class scores per pixel, channels last (N, H, W, C)."""
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((size, size, 3))
    h = keras.layers.Conv2D(6, 3, padding="same", activation="relu", name="conv")(inputs)
    return keras.Model(inputs, keras.layers.Conv2D(classes, 1, name="classes")(h))


def keras_two_outputs(keras: Any, size: int = 12, seed: int = 4) -> Any:
    """Functional: conv-relu, pooling, two Dense heads returned as ``{"kind": 4, "size": 2}``."""
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((size, size, 3))
    x = keras.layers.Conv2D(6, 3, padding="same", activation="relu", name="conv")(inputs)
    pooled = keras.layers.GlobalAveragePooling2D()(x)
    kind = keras.layers.Dense(4, name="kind")(pooled)
    sizes = keras.layers.Dense(2, name="size")(pooled)
    return keras.Model(inputs, {"kind": kind, "size": sizes})


# -- vision transformers (issue 15) ---------------------------------------------------
# Tiny, random weights, built offline; ``family`` names what tests/test_transformers.py
# and tests/test_attention.py check. Each returns (model in eval mode, input size (H, W)).


def tiny_transformer(family: str, seed: int = 0, classes: int = 5) -> tuple[Any, tuple[int, int]]:
    """A tiny vision transformer of ``family`` (timm, torchvision, Hugging Face)."""
    import torch

    torch.manual_seed(seed)
    vit = {"depth": 2, "embed_dim": 32, "num_heads": 2, "num_classes": classes}
    size = (32, 32)
    if family.startswith("timm-"):
        import timm

        name, extra = {
            "timm-vit": ("vit_tiny_patch16_224", {"img_size": 32, "patch_size": 8, **vit}),
            "timm-deit": (
                "deit_tiny_distilled_patch16_224", {"img_size": 32, "patch_size": 8, **vit}
            ),
            "timm-dinov2": (
                "vit_small_patch14_reg4_dinov2", {"img_size": 28, "patch_size": 7, **vit}
            ),
            "timm-eva": ("eva02_tiny_patch14_224", {"img_size": 28, "patch_size": 7, **vit}),
            "timm-swin": (
                "swin_tiny_patch4_window7_224",
                {"img_size": 56, "depths": (1, 1), "num_heads": (2, 4), "embed_dim": 32,
                 "num_classes": classes},
            ),
            "timm-convnext": (
                "convnext_atto",
                {"depths": (1, 1, 1, 1), "dims": (16, 24, 32, 48), "num_classes": classes},
            ),
            "timm-vit-wide": (
                "vit_tiny_patch16_224", {"img_size": (32, 48), "patch_size": 8, **vit}
            ),
        }[family]
        model = timm.create_model(name, pretrained=False, **extra)
        for key, weight in model.named_parameters():  # layer scales start at 1e-5
            if key.rsplit(".", 1)[-1].startswith("gamma"):
                torch.nn.init.uniform_(weight, 0.5, 1.5)
        size = {"timm-dinov2": (28, 28), "timm-eva": (28, 28), "timm-swin": (56, 56),
                "timm-vit-wide": (32, 48)}.get(family, (32, 32))
    elif family == "torchvision-vit":
        from torchvision.models.vision_transformer import VisionTransformer

        model = VisionTransformer(
            image_size=32, patch_size=8, num_layers=2, num_heads=2, hidden_dim=32, mlp_dim=64,
            num_classes=classes,
        )
        torch.nn.init.normal_(model.heads.head.weight, std=0.2)  # torchvision starts it at 0
    elif family == "torchvision-swin":
        from torchvision.models.swin_transformer import SwinTransformer

        model = SwinTransformer(
            patch_size=[4, 4], embed_dim=16, depths=[1, 1], num_heads=[2, 2],
            window_size=[4, 4], num_classes=classes,
        )
    elif family.startswith("hf-"):
        model = _hf_model(family, classes)
        size = (28, 28) if family == "hf-dinov2" else (32, 32)
    else:  # pragma: no cover - a typo in a test
        raise KeyError(family)
    return model.eval(), size


def _hf_model(family: str, classes: int, attention: str = "sdpa") -> Any:
    import transformers as hf

    common = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2,
              "intermediate_size": 64, "num_labels": classes, "image_size": 32, "patch_size": 8}
    if family == "hf-vit":
        model = hf.ViTForImageClassification(hf.ViTConfig(**common, attn_implementation=attention))
    elif family == "hf-deit":
        config = hf.DeiTConfig(**common, attn_implementation=attention)
        model = hf.DeiTForImageClassification(config)
    elif family == "hf-dinov2":
        config = hf.Dinov2Config(
            **{**common, "image_size": 28, "patch_size": 7}, attn_implementation=attention
        )
        model = hf.Dinov2ForImageClassification(config)
    elif family == "hf-swin":
        config = hf.SwinConfig(image_size=32, patch_size=4, embed_dim=16, depths=[1, 1],
                               num_heads=[2, 2], window_size=4, num_labels=classes)
        model = hf.SwinForImageClassification(config)
    else:  # pragma: no cover
        raise KeyError(family)
    return model


def hf_vit(attention: str, seed: int = 0, classes: int = 5) -> Any:
    """A tiny Hugging Face ViT with the given ``attn_implementation`` (eager or sdpa)."""
    import torch

    torch.manual_seed(seed)
    return _hf_model("hf-vit", classes, attention).eval()


def contract_vit(seed: int = 0) -> Any:
    """A tiny timm ViT for the method contract's 16 px inputs (4 px patches, 5 classes)."""
    return timm_vit(16, seed=seed, patch_size=4, embed_dim=16)


# -- timm, torchvision and Hugging Face builders, tiny and offline (random weights) -----


def timm_vit(img_size: Any = 32, *, seed: int = 0, **settings: Any) -> Any:
    """timm's ``vit_tiny_patch16_224`` built small: 8 px patches, 2 blocks of width 32,
    2 heads, 5 classes unless ``settings`` say otherwise (``global_pool``, ``class_token``...)."""
    import timm
    import torch

    torch.manual_seed(seed)
    tiny = {"patch_size": 8, "depth": 2, "embed_dim": 32, "num_heads": 2, "num_classes": 5}
    return timm.create_model(
        "vit_tiny_patch16_224", pretrained=False, img_size=img_size, **{**tiny, **settings}
    ).eval()


def timm_test_resnet(classes: int = 1000, seed: int = 0) -> Any:
    """timm's ``test_resnet`` (a few thousand parameters) with its pretrained_cfg: 160 px,
    mean 0.5, its own crop: the model whose own preprocessing seewhy must follow."""
    import timm
    import torch

    torch.manual_seed(seed)
    return timm.create_model("test_resnet", pretrained=False, num_classes=classes).eval()


def timm_maxvit(size: int = 64, classes: int = 5, seed: int = 0) -> Any:
    """timm's smallest MaxViT (``maxvit_rmlp_pico_rw_256``): window and grid partitions in NHWC."""
    import timm
    import torch

    torch.manual_seed(seed)
    return timm.create_model("maxvit_rmlp_pico_rw_256", img_size=size, num_classes=classes).eval()


def torchvision_maxvit(seed: int = 0) -> Any:
    """torchvision's MaxViT of two stages at 32 px (about 48k parameters): its size is fixed
    when it is built, and its attention runs on window partitions."""
    import torch
    from torchvision.models.maxvit import MaxVit

    torch.manual_seed(seed)
    return MaxVit(
        input_size=(32, 32),
        stem_channels=8,
        partition_size=4,
        block_channels=[16, 32],
        block_layers=[1, 1],
        head_dim=8,
        stochastic_depth_prob=0.0,
        num_classes=5,
    ).eval()


def torchvision_maxvit_t(seed: int = 0) -> Any:
    """torchvision's MaxViT-T as ``maxvit_t(weights=None)`` builds it: the full 224 px model."""
    import torch
    from torchvision.models import maxvit_t

    torch.manual_seed(seed)
    return maxvit_t(weights=None).eval()


def torchvision_model(
    name: str, classes: int = 1000, seed: int = 0, *, meta: bool = False, **settings: Any
) -> Any:
    """``torchvision.models.get_model(name)`` with no weights, in eval mode: a real family's
    structure (its builder, its DEFAULT weights' preprocessing) without a download.

    ``meta`` builds it weightless on the meta device where the builder allows (RegNet
    computes its widths with tensors, so it is built on the CPU): for checks that only
    read the structure.
    """
    import torch
    import torchvision

    torch.manual_seed(seed)
    build = torchvision.models.get_model
    if meta:
        try:
            with torch.device("meta"):
                return build(name, weights=None, num_classes=classes, **settings).eval()
        except NotImplementedError:
            pass
    return build(name, weights=None, num_classes=classes, **settings).eval()


def resnet18(classes: int = 1000, seed: int = 0) -> Any:
    """torchvision's ResNet-18, random weights: the builder ``torchvision:resnet18`` loads."""
    return torchvision_model("resnet18", classes, seed)


def hf_vit_from_folder(folder: Any, processor: Any, seed: int = 0, **config: Any) -> Any:
    """A random Hugging Face ViT (``ViTConfig(**config)``) saved in ``folder`` beside
    ``processor`` and loaded back, as ``from_pretrained`` gives a user's model."""
    import torch
    import transformers

    torch.manual_seed(seed)
    model = transformers.ViTForImageClassification(transformers.ViTConfig(**config))
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return transformers.ViTForImageClassification.from_pretrained(folder).eval()


def hf_segformer(classes: int = 3, seed: int = 0) -> Any:
    """A two-stage Hugging Face SegFormer: a segmenter whose decode head is listed last."""
    import torch
    import transformers

    torch.manual_seed(seed)
    config = transformers.SegformerConfig(
        num_encoder_blocks=2,
        depths=[1, 1],
        sr_ratios=[2, 1],
        hidden_sizes=[8, 16],
        num_attention_heads=[1, 1],
        decoder_hidden_size=16,
        num_labels=classes,
        patch_sizes=[7, 3],
        strides=[4, 2],
        mlp_ratios=[2, 2],
    )
    return transformers.SegformerForSemanticSegmentation(config).eval()


# -- torchvision detectors and segmenters -----------------------------------------------


def torchvision_detector(
    name: str, classes: int = 3, size: int | None = 64, seed: int = 0, **settings: Any
) -> Any:
    """``torchvision.models.detection.<name>``, no weights, resizing to ``size`` px itself
    (``None``: the detector's own size, as SSD has): rows of boxes, labels and scores."""
    import torch
    import torchvision

    torch.manual_seed(seed)
    sizes = {} if size is None else {"min_size": size, "max_size": size}
    build = getattr(torchvision.models.detection, name)
    model = build(weights=None, weights_backbone=None, num_classes=classes, **sizes, **settings)
    return model.eval()


def lraspp(classes: int = 3, seed: int = 0) -> Any:
    """torchvision's LR-ASPP MobileNetV3 segmenter, no weights: ``{"out": (N, C, H, W)}``."""
    import torch
    import torchvision

    torch.manual_seed(seed)
    return torchvision.models.segmentation.lraspp_mobilenet_v3_large(
        weights=None, weights_backbone=None, num_classes=classes
    ).eval()


def keras_tiny_vit(
    keras: Any, size: int = 32, patch: int = 8, dim: int = 16, depth: int = 2, classes: int = 5,
    seed: int = 0, tripwire: bool = False,
) -> Any:
    """A Keras ViT from ``keras.layers.MultiHeadAttention``: patch conv, class token, blocks.

    ``tripwire`` adds the contract's layer that raises once armed (``get_layer("tripwire")``).
    """

    class Tripwire(keras.layers.Layer):  # type: ignore[misc,name-defined]
        armed = False

        def call(self, x: Any) -> Any:
            if self.armed:
                raise RuntimeError("the model failed on purpose")
            return x

    class ClassTokenAndPositions(keras.layers.Layer):  # type: ignore[misc,name-defined]
        def build(self, shape: Any) -> None:
            self.token = self.add_weight(shape=(1, 1, shape[-1]), initializer="random_normal")
            self.positions = self.add_weight(
                shape=(1, shape[1] + 1, shape[-1]), initializer="random_normal"
            )

        def call(self, x: Any) -> Any:
            ops = keras.ops
            token = ops.broadcast_to(self.token, (ops.shape(x)[0], 1, ops.shape(x)[-1]))
            return ops.concatenate([token, x], axis=1) + self.positions

    class FirstToken(keras.layers.Layer):  # type: ignore[misc,name-defined]
        def call(self, x: Any) -> Any:
            return x[:, 0]

    keras.utils.set_random_seed(seed)
    grid = size // patch
    inputs = keras.Input((size, size, 3))
    x = keras.layers.Conv2D(dim, patch, strides=patch, name="patch_embed")(inputs)
    if tripwire:
        x = Tripwire(name="tripwire")(x)
    x = keras.layers.Reshape((grid * grid, dim), name="flatten_patches")(x)
    x = ClassTokenAndPositions(name="tokens")(x)
    for i in range(depth):
        y = keras.layers.LayerNormalization(name=f"block{i}_norm1")(x)
        y = keras.layers.MultiHeadAttention(2, dim // 2, name=f"block{i}_attn")(y, y)
        x = keras.layers.Add(name=f"block{i}_add1")([x, y])
        y = keras.layers.LayerNormalization(name=f"block{i}_norm2")(x)
        y = keras.layers.Dense(2 * dim, activation="gelu", name=f"block{i}_fc1")(y)
        y = keras.layers.Dense(dim, name=f"block{i}_fc2")(y)
        x = keras.layers.Add(name=f"block{i}_add2")([x, y])
    x = keras.layers.LayerNormalization(name="norm")(x)
    out = keras.layers.Dense(classes, name="head")(FirstToken(name="class_token")(x))
    return keras.Model(inputs, out)


def sigmoid_ended(inner: Any, *, functional: bool = False) -> Any:
    """``inner`` followed by a sigmoid: ``nn.Sigmoid`` last in an ``nn.Sequential``, or
    ``torch.sigmoid`` at the end of ``forward`` (``functional``); ``inner`` is shared."""
    import torch
    from torch import nn

    if not functional:
        return nn.Sequential(inner, nn.Sigmoid()).eval()

    class SigmoidAtTheEnd(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.body = inner

        def forward(self, x: Any) -> Any:
            return torch.sigmoid(self.body(x))

    return SigmoidAtTheEnd().eval()


# -- dual encoders: open_clip and Hugging Face CLIP / SigLIP, tiny and offline (issue 26) --


def open_clip_tiny(tower: str = "vit", seed: int = 0, size: int = 32) -> Any:
    """A random open_clip ``CLIP``: a ViT (class token), ``"avgpool"`` ViT, or a
    ``"resnet"`` (ModifiedResNet, attention pool) image tower; open_clip's own text tower."""
    import open_clip
    import torch

    torch.manual_seed(seed)
    vision: dict[str, Any] = {"image_size": size, "layers": 2, "width": 64, "patch_size": 8}
    if tower == "resnet":
        vision = {"image_size": size, "layers": [1, 1, 1, 1], "width": 16}
    elif tower == "avgpool":
        vision["pool_type"] = "avg"
    text = {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1}
    return open_clip.model.CLIP(32, vision, text).eval()


def word_tokenizer(words: Any, longest: int = 16) -> Any:
    """A Hugging Face fast tokenizer over ``words`` (word level), built offline."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"[PAD]": 0, "[UNK]": 1, "[EOS]": 2, **{w: i + 3 for i, w in enumerate(words)}}
    core = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    core.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(
        tokenizer_object=core, pad_token="[PAD]", unk_token="[UNK]", eos_token="[EOS]",
        model_max_length=longest,
    )


def hf_dual_encoder(family: str = "clip", seed: int = 0, vocabulary: int = 64) -> Any:
    """A random Hugging Face ``CLIPModel`` or ``SiglipModel`` (32 px, 2 layers, width 32)."""
    import torch
    import transformers

    torch.manual_seed(seed)
    vision = {"image_size": 32, "patch_size": 8, "hidden_size": 32, "intermediate_size": 64,
              "num_hidden_layers": 2, "num_attention_heads": 2}
    text = {"vocab_size": vocabulary, "hidden_size": 32, "intermediate_size": 64,
            "num_hidden_layers": 1, "num_attention_heads": 2, "max_position_embeddings": 16}
    text.update(bos_token_id=0, eos_token_id=2, pad_token_id=0)  # inside the vocabulary
    if family == "siglip":
        config = transformers.SiglipConfig(text_config=text, vision_config=vision)
        return transformers.SiglipModel(config).eval()
    config = transformers.CLIPConfig(text_config=text, vision_config=vision, projection_dim=32)
    return transformers.CLIPModel(config).eval()


# -- generative vision-language models (seewhy.targets.Answer) -----------------------
# Tiny LLaVA and Qwen2-VL built from configs with random weights, and their processors
# with a word-level tokenizer built offline and a chat template: no network.

_VLM_WORDS = (
    "<unk> <pad> </s> <image> <|image_pad|> <|vision_start|> <|vision_end|> <|im_start|> "
    "<|im_end|> USER: ASSISTANT: user assistant what is this ? a an the cat dog red blue "
    "green car circle square on left right"
).split()


def _vlm_tokenizer(specials: Sequence[str], eos: str, bos: str | None = None) -> Any:
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {word: i for i, word in enumerate(_VLM_WORDS)}
    if bos is not None:  # after the shared words, so the other models' ids stay as they are
        vocab[bos] = len(vocab)
    words = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    words.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    made = PreTrainedTokenizerFast(
        tokenizer_object=words, unk_token="<unk>", pad_token="<pad>", eos_token=eos, bos_token=bos
    )
    made.add_special_tokens({"additional_special_tokens": list(specials)})
    return made


def _turns(image: str, start: str, end: str) -> str:
    """A chat template in the word-level vocabulary: each turn, the image's tokens, the text."""
    return (
        "{% for m in messages %}" + start + "{{ m['role'] }} {% for c in m['content'] %}"
        "{% if c['type'] == 'image' %}" + image + " {% else %}{{ c['text'] }} {% endif %}"
        "{% endfor %}"
        + end
        + "{% endfor %}{% if add_generation_prompt %}"
        + start
        + "assistant {% endif %}"
    )


def tiny_llava(seed: int = 0, *, size: int = 32, layers: int = 3, dtype: Any = None) -> Any:
    """(LlavaForConditionalGeneration, its LlavaProcessor): CLIP tower of ``layers`` blocks
    (patch 8, so a 4x4 grid at 32 px, its feature layer -2), a 2-block Llama, eval mode."""
    import torch
    from transformers import (
        CLIPImageProcessor,
        CLIPVisionConfig,
        LlamaConfig,
        LlavaConfig,
        LlavaForConditionalGeneration,
        LlavaProcessor,
    )

    vocab = {word: i for i, word in enumerate(_VLM_WORDS)}
    vision = CLIPVisionConfig(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=layers,
        num_attention_heads=2,
        image_size=size,
        patch_size=8,
    )
    text = LlamaConfig(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        vocab_size=len(_VLM_WORDS),
        max_position_embeddings=256,
        bos_token_id=None,
        eos_token_id=vocab["</s>"],
        pad_token_id=vocab["<pad>"],
    )
    config = LlavaConfig(vision_config=vision, text_config=text, image_token_id=vocab["<image>"])
    torch.manual_seed(seed)
    model = LlavaForConditionalGeneration(config).eval()
    if dtype is not None:
        model = model.to(dtype)
    processor = LlavaProcessor(
        image_processor=CLIPImageProcessor(
            size={"shortest_edge": size}, crop_size={"height": size, "width": size}
        ),
        tokenizer=_vlm_tokenizer(["<image>"], "</s>"),
        patch_size=8,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,
        chat_template=_turns("<image>", "", "")
        .replace("{{ m['role'] }}", "USER:")
        .replace("assistant {% endif %}", "ASSISTANT: {% endif %}"),
    )
    return model, processor


def _tiny_language_model(vocab_size: int, eos: int, pad: int, **extra: Any) -> dict[str, Any]:
    """The text config of every tiny generative VLM here: a 2-block, width-32 Llama-like
    language model (no BOS), ``extra`` for a family's own fields."""
    return {
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "num_key_value_heads": 2,
        "vocab_size": vocab_size,
        "max_position_embeddings": 256,
        "bos_token_id": None,
        "eos_token_id": eos,
        "pad_token_id": pad,
        **extra,
    }


def tiny_qwen2_vl(seed: int = 0) -> Any:
    """(Qwen2VLForConditionalGeneration, its Qwen2VLProcessor): patch 8, merge 2, a 2-block
    vision tower and a 2-block language model with multimodal rope, eval mode."""
    import torch
    from transformers import (
        Qwen2VLConfig,
        Qwen2VLForConditionalGeneration,
        Qwen2VLImageProcessor,
        Qwen2VLProcessor,
        Qwen2VLVideoProcessor,
    )

    vocab = {word: i for i, word in enumerate(_VLM_WORDS)}
    config = Qwen2VLConfig(
        text_config=_tiny_language_model(
            len(_VLM_WORDS),
            vocab["<|im_end|>"],
            vocab["<pad>"],
            rope_scaling={"type": "mrope", "mrope_section": [2, 3, 3]},
        ),
        vision_config={
            "depth": 2,
            "embed_dim": 32,
            "hidden_size": 32,
            "num_heads": 2,
            "mlp_ratio": 2,
            "patch_size": 8,
            "spatial_merge_size": 2,
            "temporal_patch_size": 2,
        },
        image_token_id=vocab["<|image_pad|>"],
        vision_start_token_id=vocab["<|vision_start|>"],
        vision_end_token_id=vocab["<|vision_end|>"],
        bos_token_id=None,
        eos_token_id=vocab["<|im_end|>"],
    )
    torch.manual_seed(seed)
    model = Qwen2VLForConditionalGeneration(config).eval()
    geometry = {"patch_size": 8, "merge_size": 2, "temporal_patch_size": 2}
    processor = Qwen2VLProcessor(
        image_processor=Qwen2VLImageProcessor(
            **geometry, size={"shortest_edge": 16 * 16, "longest_edge": 64 * 64}
        ),
        video_processor=Qwen2VLVideoProcessor(**geometry),
        tokenizer=_vlm_tokenizer(
            ["<|image_pad|>", "<|vision_start|>", "<|vision_end|>"], "<|im_end|>"
        ),
        chat_template=_turns(
            "<|vision_start|> <|image_pad|> <|vision_end|>", "<|im_start|> ", "<|im_end|> "
        ),
    )
    return model, processor


def tiny_paligemma(seed: int = 0, *, size: int = 32) -> Any:
    """(PaliGemmaForConditionalGeneration, its PaliGemmaProcessor): a 2-block SigLIP tower
    (patch 8: a 4x4 grid at 32 px), a 2-block Gemma, a prefix-LM prompt (no chat template)."""
    import torch
    from transformers import (
        GemmaConfig,
        PaliGemmaConfig,
        PaliGemmaForConditionalGeneration,
        PaliGemmaProcessor,
        SiglipImageProcessor,
        SiglipVisionConfig,
    )

    vocab = {word: i for i, word in enumerate(_VLM_WORDS)}
    vision = SiglipVisionConfig(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        image_size=size,
        patch_size=8,
        vision_use_head=False,
    )
    text = GemmaConfig(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        head_dim=16,
        vocab_size=len(_VLM_WORDS) + 1,  # and <bos>
        max_position_embeddings=256,
        bos_token_id=len(_VLM_WORDS),
        eos_token_id=vocab["</s>"],
        pad_token_id=vocab["<pad>"],
    )
    config = PaliGemmaConfig(
        vision_config=vision,
        text_config=text,
        image_token_index=vocab["<image>"],
        projection_dim=32,
        hidden_size=32,
        vocab_size=len(_VLM_WORDS) + 1,
    )
    torch.manual_seed(seed)
    model = PaliGemmaForConditionalGeneration(config).eval()
    images = SiglipImageProcessor(size={"height": size, "width": size})
    images.image_seq_length = (size // 8) ** 2
    processor = PaliGemmaProcessor(
        image_processor=images, tokenizer=_vlm_tokenizer(["<image>"], "</s>", bos="<bos>")
    )
    return model, processor


def sharpen_language_attention(built: Any, factor: float = 8.0) -> Any:
    """``built`` (a tiny VLM and its processor) with its language model's queries scaled by
    ``factor``: random tiny weights give near-uniform attention, which any map matches."""
    import torch

    model = built[0]
    inner = model.model
    # Idefics3 names its language model text_model
    language = inner.text_model if hasattr(inner, "text_model") else inner.language_model
    with torch.no_grad():
        for layer in language.layers:
            layer.self_attn.q_proj.weight.mul_(factor)
    return built


# -- LeGrad (issue 26): an attention-pooled open_clip tower, tiny and offline ----------


def open_clip_siglip_tiny(seed: int = 0) -> Any:
    """A random open_clip ``CLIP`` whose image tower is a timm SigLIP ViT (no class token,
    attention-pooling head ``trunk.attn_pool``, projection ``"none"``): 32 px, 8 px
    patches, 3 blocks of width 32. open_clip builds its timm towers only at their full
    size, so it is built around timm's tiny ``test_vit`` and the trunk swapped for the
    small SigLIP ViT."""
    import open_clip
    import timm
    import torch

    torch.manual_seed(seed)
    vision = {
        "timm_model_name": "test_vit",
        "timm_pool": "map",
        "timm_proj": "none",
        "image_size": 32,
    }
    text = {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1}
    model = open_clip.model.CLIP(32, vision, text, init_logit_bias=-10.0)  # SigLIP's bias
    model.visual.trunk = timm.create_model(
        "vit_base_patch16_siglip_224",
        pretrained=False,
        img_size=32,
        patch_size=8,
        embed_dim=32,
        depth=3,
        num_heads=2,
        num_classes=0,
    )
    return model.eval()


# -- a dual encoder trained on captioned shapes (issue 26, the trained Prompt check) ---


def captioned_clip(data: Any, *, epochs: int = 6, batch_size: int = 64, seed: int = 0) -> Any:
    """A tiny open_clip ``CLIP`` trained on ``data`` (``seewhy.synthetic.CaptionedShapes``).

    Image tower: one ViT block of width 32 with 8 heads of 4 over 8 px patches of
    64 px pictures (class token pooling, open_clip's own layout); text tower: one
    block over open_clip's own BPE vocabulary, 8 tokens. Trained with the symmetric
    contrastive loss on (picture, caption of one of its shapes) pairs, each picture
    once per shape; a pair's positives are every caption its picture holds, so the
    other shape's caption in the batch is no negative. Why this shape of model: a
    second block mixes every patch into every token before the last attention, and
    two wide heads learn one colour as "none of the others"; either way Grad-CAM
    peaked on the background in 15-30% of pictures (measured while building this).
    The token table stays at its random draw during training (49,408 rows of Adam
    updates cost more than the rest of the step; the words stay distinct). Returned
    in eval mode, every parameter trainable again, no ``.grad``; the global RNG is
    left alone.
    """
    from dataclasses import asdict

    import open_clip
    import torch
    from open_clip.model import CLIP, CLIPTextCfg, CLIPVisionCfg, set_model_preprocess_cfg
    from open_clip.transform import PreprocessCfg

    from seewhy.preprocess import Preprocess
    from seewhy.synthetic.training import Schedule, fit_torch

    side = data.size
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        vision = CLIPVisionCfg(
            layers=1, width=32, head_width=4, mlp_ratio=2, patch_size=8, image_size=side
        )
        text = CLIPTextCfg(
            context_length=8, vocab_size=49408, width=32, heads=2, layers=1, mlp_ratio=2
        )
        model = CLIP(32, vision, text)
    set_model_preprocess_cfg(model, asdict(PreprocessCfg(size=side)))  # as create_model does
    cfg = model.visual.preprocess_cfg
    pre = Preprocess(size=(side, side), resize=None, mean=tuple(cfg["mean"]), std=tuple(cfg["std"]))
    pixels = torch.from_numpy(data.inputs(pre)).permute(0, 3, 1, 2).contiguous()
    words = open_clip.tokenizer.SimpleTokenizer(context_length=8)(list(data.vocabulary))
    ids = torch.from_numpy(data.caption_ids)  # (N, K) into data.vocabulary
    k = data.objects
    pairs = torch.arange(len(pixels) * k)  # pair p: picture p // k, its shape p % k
    answers = torch.cat([ids.reshape(-1, 1), ids.repeat_interleave(k, dim=0)], dim=1)

    class PairImages(torch.nn.Module):
        """Pair indices -> unit image embeddings (fit_torch feeds it batches of pairs)."""

        def __init__(self) -> None:
            super().__init__()
            self.clip = model

        def forward(self, p: Any) -> Any:
            return self.clip.encode_image(pixels[p // k], normalize=True)

    def contrastive(images: Any, answer: Any) -> Any:
        texts = model.encode_text(words, normalize=True)[answer[:, 0]]
        logits = model.logit_scale.exp() * images @ texts.T
        positive = (answer[:, 1:, None] == answer[None, :, 0]).any(dim=1).float()
        by_image = -(positive / positive.sum(1, keepdim=True) * logits.log_softmax(1)).sum(1)
        by_text = -(positive / positive.sum(0, keepdim=True) * logits.log_softmax(0)).sum(0)
        return (by_image.mean() + by_text.mean()) / 2

    model.token_embedding.requires_grad_(False)
    trained = [p for p in model.parameters() if p.requires_grad]
    schedule = Schedule.checked(
        "captioned_clip", epochs=epochs, batch_size=batch_size, lr=5e-3, seed=seed
    )
    optimizer = torch.optim.AdamW(trained, lr=schedule.lr, weight_decay=0.01)
    fit_torch(PairImages(), pairs, answers, contrastive, optimizer, schedule)
    model.token_embedding.requires_grad_(True)
    return model.eval()


# -- generative VLMs that cut a picture into tiles (issue 26: LLaVA-NeXT, Idefics3) -----
# Tiny, random, offline: the same word-level tokenizer and chat template as above.


def tiny_llava_next(seed: int = 0) -> Any:
    """(LlavaNextForConditionalGeneration, its LlavaNextProcessor): 32 px tiles (a CLIP tower
    of 3 blocks, 8 px patches: a 4x4 grid per tile, feature layer -2), pinpoints 32x64,
    64x32 and 64x64 (anyres: a base image plus 2 or 4 tiles), a 2-block Llama, eval mode."""
    import torch
    from transformers import (
        CLIPVisionConfig,
        LlamaConfig,
        LlavaNextConfig,
        LlavaNextForConditionalGeneration,
        LlavaNextImageProcessor,
        LlavaNextProcessor,
    )

    vocab = {word: i for i, word in enumerate(_VLM_WORDS)}
    vision = CLIPVisionConfig(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=3,
        num_attention_heads=2,
        image_size=32,
        patch_size=8,
    )
    text = LlamaConfig(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        vocab_size=len(_VLM_WORDS),
        max_position_embeddings=256,
        bos_token_id=None,
        eos_token_id=vocab["</s>"],
        pad_token_id=vocab["<pad>"],
    )
    pinpoints = [[32, 64], [64, 32], [64, 64]]
    config = LlavaNextConfig(
        vision_config=vision,
        text_config=text,
        image_token_index=vocab["<image>"],
        image_grid_pinpoints=pinpoints,
    )
    torch.manual_seed(seed)
    model = LlavaNextForConditionalGeneration(config).eval()
    images = LlavaNextImageProcessor(
        size={"shortest_edge": 32},
        crop_size={"height": 32, "width": 32},
        image_grid_pinpoints=pinpoints,
    )
    processor = LlavaNextProcessor(
        image_processor=images,
        tokenizer=_vlm_tokenizer(["<image>"], "</s>"),
        patch_size=8,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,
        chat_template=_turns("<image>", "", "")
        .replace("{{ m['role'] }}", "USER:")
        .replace("assistant {% endif %}", "ASSISTANT: {% endif %}"),
    )
    return model, processor


def _idefics_like(seed: int, config_class: Any, model_class: Any, images_class: Any) -> Any:
    """(model, tokenizer, image processor) of Idefics3's tiny shape in the given classes:
    32 px tiles (a 2-block SigLIP-like tower, 8 px patches: 4x4 per tile), a pixel shuffle
    of 2 (4 tokens per tile), pictures split at a 64 px longest edge, a 2-block Llama."""
    import torch

    tags = [f"<row_{r}_col_{c}>" for r in (1, 2) for c in (1, 2)]
    tokenizer = _vlm_tokenizer(
        ["<image>", "<fake_token_around_image>", "<end_of_utterance>", "<global-img>", *tags],
        "<end_of_utterance>",
    )
    end = tokenizer.convert_tokens_to_ids("<end_of_utterance>")
    text = _tiny_language_model(len(tokenizer), end, tokenizer.pad_token_id)
    vision = {
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "image_size": 32,
        "patch_size": 8,
    }
    config = config_class(
        vision_config=vision,
        text_config=text,
        scale_factor=2,
        image_token_id=tokenizer.convert_tokens_to_ids("<image>"),
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(seed)
    model = model_class(config).eval()
    images = images_class(size={"longest_edge": 64}, max_image_size={"longest_edge": 32})
    return model, tokenizer, images


def tiny_idefics3(seed: int = 0) -> Any:
    """(Idefics3ForConditionalGeneration, its Idefics3Processor): 32 px tiles (a 2-block
    SigLIP-like tower, 8 px patches: 4x4 per tile), a pixel shuffle of 2 (4 tokens per tile),
    pictures split at a 64 px longest edge (2x2 tiles and a global image), a 2-block Llama."""
    from transformers import (
        Idefics3Config,
        Idefics3ForConditionalGeneration,
        Idefics3ImageProcessor,
        Idefics3Processor,
    )

    model, tokenizer, images = _idefics_like(
        seed, Idefics3Config, Idefics3ForConditionalGeneration, Idefics3ImageProcessor
    )
    processor = Idefics3Processor(
        image_processor=images,
        tokenizer=tokenizer,
        image_seq_len=4,
        chat_template=_turns("<image>", "<|im_start|> ", "<|im_end|> "),
    )
    return model, processor


# -- the generative VLM families served through another family's geometry (issue 26) ----
# Qwen2.5-VL (Qwen2-VL's patch rows, with window attention in its tower) and SmolVLM
# (Idefics3's tiles) with their own model classes and processors: tiny, random, offline.


def tiny_qwen2_5_vl(seed: int = 0) -> Any:
    """(Qwen2_5_VLForConditionalGeneration, its Qwen2_5_VLProcessor): patch 8, merge 2, a
    2-block tower whose first block attends within 32 px windows (2x2 merged tokens) and whose
    second attends to all, a 2-block language model with multimodal rope, eval mode."""
    import torch
    from transformers import (
        Qwen2_5_VLConfig,
        Qwen2_5_VLForConditionalGeneration,
        Qwen2_5_VLProcessor,
        Qwen2VLImageProcessor,
        Qwen2VLVideoProcessor,
    )

    vocab = {word: i for i, word in enumerate(_VLM_WORDS)}
    config = Qwen2_5_VLConfig(
        text_config=_tiny_language_model(
            len(_VLM_WORDS),
            vocab["<|im_end|>"],
            vocab["<pad>"],
            rope_scaling={"type": "mrope", "mrope_section": [2, 3, 3]},
        ),
        vision_config={
            "depth": 2,
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_heads": 2,
            "out_hidden_size": 32,
            "patch_size": 8,
            "spatial_merge_size": 2,
            "temporal_patch_size": 2,
            "window_size": 32,
            "fullatt_block_indexes": [1],
        },
        image_token_id=vocab["<|image_pad|>"],
        vision_start_token_id=vocab["<|vision_start|>"],
        vision_end_token_id=vocab["<|vision_end|>"],
        bos_token_id=None,
        eos_token_id=vocab["<|im_end|>"],
    )
    torch.manual_seed(seed)
    model = Qwen2_5_VLForConditionalGeneration(config).eval()
    geometry = {"patch_size": 8, "merge_size": 2, "temporal_patch_size": 2}
    processor = Qwen2_5_VLProcessor(
        image_processor=Qwen2VLImageProcessor(
            **geometry, size={"shortest_edge": 16 * 16, "longest_edge": 64 * 64}
        ),
        video_processor=Qwen2VLVideoProcessor(**geometry),
        tokenizer=_vlm_tokenizer(
            ["<|image_pad|>", "<|vision_start|>", "<|vision_end|>"], "<|im_end|>"
        ),
        chat_template=_turns(
            "<|vision_start|> <|image_pad|> <|vision_end|>", "<|im_start|> ", "<|im_end|> "
        ),
    )
    return model, processor


def tiny_smolvlm(seed: int = 0) -> Any:
    """(SmolVLMForConditionalGeneration, its SmolVLMProcessor): as :func:`tiny_idefics3`
    (32 px tiles, 8 px patches, a pixel shuffle of 2, a 64 px longest edge, a 2-block Llama)
    through SmolVLM's own classes. Its processor needs the ``num2words`` package."""
    from transformers import (
        SmolVLMConfig,
        SmolVLMForConditionalGeneration,
        SmolVLMImageProcessor,
        SmolVLMProcessor,
        SmolVLMVideoProcessor,
    )

    model, tokenizer, images = _idefics_like(
        seed, SmolVLMConfig, SmolVLMForConditionalGeneration, SmolVLMImageProcessor
    )
    processor = SmolVLMProcessor(
        image_processor=images,
        tokenizer=tokenizer,
        video_processor=SmolVLMVideoProcessor(),
        image_seq_len=4,
        chat_template=_turns("<image>", "<|im_start|> ", "<|im_end|> "),
    )
    return model, processor
