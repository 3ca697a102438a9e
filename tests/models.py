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


def _qwen_processor(kind: Any) -> Any:
    """The processor of the tiny Qwen2-VL / Qwen2.5-VL models: 8 px patches merged 2 x 2,
    pictures between 16 and 64 merged patches on a side, the word-level tokenizer."""
    from transformers import Qwen2VLImageProcessor, Qwen2VLVideoProcessor

    geometry = {"patch_size": 8, "merge_size": 2, "temporal_patch_size": 2}
    return kind(
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


def tiny_qwen2_vl(seed: int = 0) -> Any:
    """(Qwen2VLForConditionalGeneration, its Qwen2VLProcessor): patch 8, merge 2, a 2-block
    vision tower and a 2-block language model with multimodal rope, eval mode."""
    import torch
    from transformers import (
        Qwen2VLConfig,
        Qwen2VLForConditionalGeneration,
        Qwen2VLProcessor,
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
    return model, _qwen_processor(Qwen2VLProcessor)


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
    return model, _qwen_processor(Qwen2_5_VLProcessor)


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


# -- Hugging Face segmenters and depth models beyond SegFormer (issue 27, point 4) -------


def hf_upernet(classes: int = 3, seed: int = 0) -> Any:
    """UperNet over a 4-stage ConvNeXt (widths 16-32), with its auxiliary head: a segmenter
    whose last-listed layers (the auxiliary head) never reach the scored logits."""
    import torch
    import transformers

    torch.manual_seed(seed)
    backbone = transformers.ConvNextConfig(
        hidden_sizes=[16, 16, 32, 32],
        depths=[1, 1, 1, 1],
        out_features=["stage1", "stage2", "stage3", "stage4"],
    )
    config = transformers.UperNetConfig(
        backbone_config=backbone,
        hidden_size=16,
        auxiliary_in_channels=32,
        auxiliary_channels=16,
        num_labels=classes,
        use_auxiliary_head=True,
    )
    return transformers.UperNetForSemanticSegmentation(config).eval()


def hf_mask2former(classes: int = 3, queries: int = 6, seed: int = 0) -> Any:
    """Mask2Former over a 4-stage Swin (width 16), 6 queries: per query a class (the null
    class last) and a mask logit map at a quarter of the input."""
    import torch
    import transformers

    torch.manual_seed(seed)
    swin = transformers.SwinConfig(
        image_size=64,
        patch_size=4,
        embed_dim=16,
        depths=[1, 1, 1, 1],
        num_heads=[1, 1, 2, 2],
        window_size=2,
        out_features=["stage1", "stage2", "stage3", "stage4"],
    )
    config = transformers.Mask2FormerConfig(
        backbone_config=swin,
        num_labels=classes,
        num_queries=queries,
        hidden_dim=32,
        mask_feature_size=32,
        feature_size=32,
        encoder_layers=1,
        decoder_layers=2,
        num_attention_heads=2,
        dim_feedforward=64,
        encoder_feedforward_dim=64,
        common_stride=4,
    )
    return transformers.Mask2FormerForUniversalSegmentation(config).eval()


def hf_dpt_depth(seed: int = 0) -> Any:
    """DPT (a 4-block ViT, 8 px patches, 32 px pictures) predicting one depth value per
    pixel at twice the fused neck's size: ``predicted_depth`` (N, H, W)."""
    import torch
    import transformers

    torch.manual_seed(seed)
    config = transformers.DPTConfig(
        image_size=32,
        patch_size=8,
        hidden_size=32,
        num_hidden_layers=4,
        num_attention_heads=2,
        intermediate_size=64,
        backbone_out_indices=[0, 1, 2, 3],
        neck_hidden_sizes=[8, 16, 32, 32],
        fusion_hidden_size=16,
        head_hidden_size=8,
        reassemble_factors=[4, 2, 1, 0.5],
    )
    return transformers.DPTForDepthEstimation(config).eval()


def hf_depth_anything(kind: str = "relative", seed: int = 0) -> Any:
    """Depth Anything over a 4-block DINOv2 (14 px patches); ``kind`` is its
    ``depth_estimation_type``: "relative" (inverse depth) or "metric"."""
    import torch
    import transformers

    torch.manual_seed(seed)
    backbone = transformers.Dinov2Config(
        image_size=28,
        patch_size=14,
        hidden_size=32,
        num_hidden_layers=4,
        num_attention_heads=2,
        intermediate_size=64,
        out_indices=[1, 2, 3, 4],
        reshape_hidden_states=False,
        apply_layernorm=True,
    )
    config = transformers.DepthAnythingConfig(
        backbone_config=backbone,
        reassemble_hidden_size=32,
        neck_hidden_sizes=[8, 16, 32, 32],
        fusion_hidden_size=16,
        head_hidden_size=8,
        patch_size=14,
        depth_estimation_type=kind,
    )
    return transformers.DepthAnythingForDepthEstimation(config).eval()


def hf_maskformer(classes: int = 3, queries: int = 6, seed: int = 0) -> Any:
    """MaskFormer over a 4-stage Swin (width 16) with a one-layer DETR decoder of
    ``queries`` queries (its config has no ``num_queries`` of its own: the decoder's)."""
    import torch
    import transformers

    torch.manual_seed(seed)
    swin = transformers.SwinConfig(
        image_size=64,
        patch_size=4,
        embed_dim=16,
        depths=[1, 1, 1, 1],
        num_heads=[1, 1, 2, 2],
        window_size=2,
        out_features=["stage1", "stage2", "stage3", "stage4"],
    )
    decoder = {
        "model_type": "detr",
        "d_model": 32,
        "encoder_layers": 1,
        "decoder_layers": 1,
        "encoder_attention_heads": 2,
        "decoder_attention_heads": 2,
        "encoder_ffn_dim": 32,
        "decoder_ffn_dim": 32,
        "num_queries": queries,
    }
    config = transformers.MaskFormerConfig(
        backbone_config=swin,
        num_labels=classes,
        mask_feature_size=32,
        fpn_feature_size=32,
        decoder_config=decoder,
    )
    return transformers.MaskFormerForInstanceSegmentation(config).eval()


def keras_hub_deeplab(keras: Any, keras_hub: Any, size: int = 32, classes: int = 3) -> Any:
    """keras-hub's DeepLabV3 over a 2-stage basic-block ResNet, with its image converter
    (a ``size`` px resize, pixels scaled to [0, 1]): per-pixel logits (N, H, W, classes)."""
    keras.utils.set_random_seed(0)
    encoder = keras_hub.models.ResNetBackbone(
        input_conv_filters=[64],
        input_conv_kernel_sizes=[3],
        stackwise_num_filters=[64, 64],
        stackwise_num_blocks=[1, 1],
        stackwise_num_strides=[1, 2],
        block_type="basic_block",
        use_pre_activation=False,
        image_shape=(None, None, 3),
    )
    backbone = keras_hub.models.DeepLabV3Backbone(
        image_encoder=encoder,
        low_level_feature_key="P2",
        spatial_pyramid_pooling_key="P3",
        dilation_rates=[2],
        upsampling_size=2,
        projection_filters=8,
    )
    converter = keras_hub.layers.DeepLabV3ImageConverter(image_size=(size, size), scale=1 / 255)
    preprocessor = keras_hub.models.DeepLabV3ImageSegmenterPreprocessor(image_converter=converter)
    return keras_hub.models.DeepLabV3ImageSegmenter(
        backbone=backbone, num_classes=classes, preprocessor=preprocessor
    )


# ---------------------------------------------------------------------------------------------
# ultralytics YOLO (tests/test_yolo.py, tests/test_cli_yolo.py): built from ultralytics' own
# YAML files, random weights re-drawn so activations do not vanish and a few detections pass.


def ultralytics_offline() -> None:
    """Point ultralytics' settings at a private temporary folder and keep it off the network
    (before its first import: it reads both then), and import it as seewhy does: its
    changes to the process undone, so the tests after these see torch and PIL as they were."""
    import os
    import tempfile

    os.environ.setdefault("YOLO_OFFLINE", "1")
    if "YOLO_CONFIG_DIR" not in os.environ:
        os.environ["YOLO_CONFIG_DIR"] = tempfile.mkdtemp(prefix="seewhy-yolo-")
    from seewhy.backends.torch.ultralytics_import import import_ultralytics

    import_ultralytics()  # its changes to torch.save, PIL.Image.open, the environment undone


def tiny_yolo(
    yaml: str = "yolov8n.yaml", *, classes: int = 3, imgsz: int = 64, seed: int = 0
) -> Any:
    """An ultralytics ``YOLO`` object (detect, segment or classify from ``yaml``) with
    ``classes`` classes and ``imgsz`` in its overrides, left in training mode as ultralytics
    builds it. Every conv re-drawn He-normal (ultralytics' init makes activations vanish
    over 20 layers); a detector's box bins favour short distances and its class logits are
    scaled to spread about -3 on one noise picture, so some anchors pass conf 0.25."""
    ultralytics_offline()
    import torch
    from ultralytics import YOLO

    torch.manual_seed(seed)
    task = "classify" if "-cls" in yaml else "segment" if "-seg" in yaml else "detect"
    yolo = YOLO(yaml, task=task)
    if task == "classify":
        from ultralytics.nn.tasks import ClassificationModel

        yolo.model = ClassificationModel(yaml, nc=classes, verbose=False)
    else:
        from ultralytics.nn.tasks import DetectionModel, SegmentationModel

        kind = SegmentationModel if task == "segment" else DetectionModel
        yolo.model = kind(yaml, nc=classes, verbose=False)
    net = yolo.model
    net.names = {i: f"class{i}" for i in range(classes)}
    net.args = {"task": task, "imgsz": imgsz}  # what a checkpoint keeps of its training args
    yolo.overrides["imgsz"] = imgsz
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, torch.nn.Conv2d) and m.weight.requires_grad:  # not DFL's bins
                m.weight.normal_(0, (2.0 / m.weight[0].numel()) ** 0.5)
    if task != "classify":
        _spread_yolo_head(net, imgsz, seed)
    net.train()
    return yolo


def yolo_photo(height: int = 40, width: int = 72, seed: int = 3) -> np.ndarray:
    """A photo for the tiny YOLOs: a bright block on dark noise, uint8 (H, W, 3)."""
    rgb = (np.random.default_rng(seed).random((height, width, 3)) * 120).astype(np.uint8)
    rgb[height // 4 : 3 * height // 4, width // 4 : 5 * width // 8] = 230
    return rgb


def _spread_yolo_head(net: Any, imgsz: int, seed: int) -> None:
    import torch

    head = net.model[-1]
    rgb = yolo_photo(imgsz, imgsz, seed + 1)
    picture = torch.from_numpy(rgb.astype(np.float32) / 255).permute(2, 0, 1)[None]
    seen: list[Any] = []
    hooks = [
        seq[-1].register_forward_hook(lambda m, i, o: seen.append(o - m.bias[:, None, None]))
        for seq in head.cv3
    ]
    net.eval()
    with torch.no_grad():
        net(picture)
        best = []
        for seq, out in zip(head.cv3, seen, strict=True):
            seq[-1].weight.mul_(2.0 / float(out.std()))
            best.append((out * 2.0 / out.std()).amax(1).flatten())
        # ~5 % of the anchors above conf 0.3 on such a photo: a few detections survive NMS
        shift = float(torch.quantile(torch.cat(best), 0.95)) + 0.85
        for seq in head.cv3:
            seq[-1].bias[:] = -shift
        for seq in head.cv2:
            seq[-1].bias.view(4, -1)[:] = -0.35 * torch.arange(seq[-1].bias.numel() // 4.0)
    for hook in hooks:
        hook.remove()


# -- SAM (issue 27, point 3): tiny segment_anything Sam and Hugging Face SamModel --------------


def tiny_sam(seed: int = 0, *, side: int = 64) -> Any:
    """segment_anything's ``Sam`` at toy size: a 2-block ViT-style encoder (patch 8, width
    32, one windowed and one global block), 32-d prompt side; random weights, eval mode."""
    import torch
    from segment_anything.modeling import (
        ImageEncoderViT,
        MaskDecoder,
        PromptEncoder,
        Sam,
        TwoWayTransformer,
    )

    torch.manual_seed(seed)
    grid = side // 8
    sam = Sam(
        image_encoder=ImageEncoderViT(
            img_size=side, patch_size=8, embed_dim=32, depth=2, num_heads=2, out_chans=32,
            use_rel_pos=True, window_size=4, global_attn_indexes=(1,),
        ),
        prompt_encoder=PromptEncoder(
            embed_dim=32, image_embedding_size=(grid, grid), input_image_size=(side, side),
            mask_in_chans=4,
        ),
        mask_decoder=MaskDecoder(
            num_multimask_outputs=3,
            transformer=TwoWayTransformer(depth=2, embedding_dim=32, mlp_dim=64, num_heads=2),
            transformer_dim=32, iou_head_depth=2, iou_head_hidden_dim=32,
        ),
    )
    return sam.eval()


def tiny_hf_sam(seed: int = 0, *, side: int = 64) -> Any:
    """Hugging Face ``SamModel`` at toy size (2 vision layers, width 32, patch 8), random."""
    import torch
    from transformers import (
        SamConfig,
        SamMaskDecoderConfig,
        SamModel,
        SamPromptEncoderConfig,
        SamVisionConfig,
    )

    torch.manual_seed(seed)
    vision = SamVisionConfig(
        hidden_size=32, output_channels=32, num_hidden_layers=2, num_attention_heads=2,
        image_size=side, patch_size=8, mlp_dim=64, window_size=4, global_attn_indexes=[1],
        num_pos_feats=16,
    )
    prompt = SamPromptEncoderConfig(
        hidden_size=32, image_size=side, patch_size=8, mask_input_channels=4
    )
    decoder = SamMaskDecoderConfig(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=2, mlp_dim=64,
        iou_head_hidden_dim=32,
    )
    config = SamConfig(
        vision_config=vision.to_dict(), prompt_encoder_config=prompt.to_dict(),
        mask_decoder_config=decoder.to_dict(),
    )
    return SamModel(config).eval()


def tiny_hf_sam2(seed: int = 0, *, side: int = 64) -> Any:
    """Hugging Face ``Sam2Model`` at toy size: a 5-block Hiera (widths 16-128, one global
    block), FPN width 32, levels at strides 4, 8 and 16; random weights, eval mode."""
    import torch
    import transformers as hf

    torch.manual_seed(seed)
    hiera = hf.Sam2HieraDetConfig(
        hidden_size=16,
        num_attention_heads=1,
        image_size=[side, side],
        blocks_per_stage=[1, 1, 2, 1],
        embed_dim_per_stage=[16, 32, 64, 128],
        num_attention_heads_per_stage=[1, 1, 2, 2],
        window_size_per_stage=[4, 4, 2, 2],
        global_attention_blocks=[3],
        window_positional_embedding_background_size=[2, 2],
    )
    strides = [side // 4, side // 8, side // 16]
    vision = hf.Sam2VisionConfig(
        backbone_config=hiera.to_dict(),
        backbone_channel_list=[128, 64, 32, 16],
        backbone_feature_sizes=[[s, s] for s in strides],
        fpn_hidden_size=32,
    )
    prompt = hf.Sam2PromptEncoderConfig(
        hidden_size=32, image_size=side, patch_size=16, mask_input_channels=4
    )
    decoder = hf.Sam2MaskDecoderConfig(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=2, mlp_dim=64,
        iou_head_hidden_dim=32,
    )
    config = hf.Sam2Config(
        vision_config=vision.to_dict(),
        prompt_encoder_config=prompt.to_dict(),
        mask_decoder_config=decoder.to_dict(),
    )
    return hf.Sam2Model(config).eval()


# -- LRP (issue 29, point 1): CNNs for the relevance rules ------------------------------------


def lrp_plain_net(classes: int = 5, seed: int = 0, *, bias: bool = True, side: int = 8) -> Any:
    """conv-relu-conv-relu-avgpool-flatten-linear, each step a module of one Sequential, so
    the paper's layer-by-layer LRP loop can walk it; ``bias=False`` for the conservation
    check (no bias absorbs relevance). Float64: the loop is compared to 1e-6."""
    import torch
    from torch import nn

    torch.manual_seed(seed)
    return (
        nn.Sequential(
            nn.Conv2d(3, 6, 3, padding=1, bias=bias),
            nn.ReLU(),
            nn.Conv2d(6, 8, 3, padding=1, bias=bias),
            nn.ReLU(),
            nn.AvgPool2d(2),
            nn.Flatten(),
            nn.Linear(8 * (side // 2) ** 2, classes, bias=bias),
        )
        .double()
        .eval()
    )


def lrp_gated_net(classes: int = 3, seed: int = 0) -> Any:
    """Bias-free convolutions joined the ways CNN code writes them without a module: an
    in-place residual sum (``b.add_(a)``, result unused), a squeeze-excite gate multiplied in
    place, an out-of-place sum and timm's ``x.mean((2, 3))`` pooling."""
    import torch
    from torch import nn

    class Gated(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.c1 = nn.Conv2d(3, 4, 3, padding=1, bias=False)
            self.c2 = nn.Conv2d(4, 4, 3, padding=1, bias=False)
            self.c3 = nn.Conv2d(4, 4, 1, bias=False)
            self.fc = nn.Linear(4, classes, bias=False)

        def forward(self, x: Any) -> Any:
            a = self.c1(x).relu()
            b = self.c2(a).relu()
            b.add_(a)
            gate = self.c3(b).mean((2, 3), keepdim=True).sigmoid()
            b = b * 1.0
            b.mul_(gate)
            return self.fc((b + a).mean((2, 3)))

    torch.manual_seed(seed)
    return Gated().eval()


def lrp_padded_net(classes: int = 3, seed: int = 0) -> Any:
    """Convolutions of every other geometry a rule must recompute: ``padding="same"``,
    reflect padding, stride with dilation and groups."""
    import torch
    from torch import nn

    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding="same"),
        nn.ReLU(),
        nn.Conv2d(4, 6, 3, padding=1, padding_mode="reflect"),
        nn.ReLU(),
        nn.Conv2d(6, 6, 3, stride=2, dilation=2, groups=2, padding=2),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(6, classes),
    ).eval()


def randomise_batchnorm(model: Any, seed: int = 0) -> Any:
    """Every BatchNorm's statistics and affine re-drawn (a fresh one is the identity, so
    merging it into the convolution before it would go untested); returns ``model``."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
                n = module.num_features
                module.running_mean.copy_(torch.randn(n, generator=generator) * 0.1)
                module.running_var.copy_(torch.rand(n, generator=generator) + 0.5)
                module.weight.copy_(torch.rand(n, generator=generator) + 0.5)
                module.bias.copy_(torch.randn(n, generator=generator) * 0.1)
    return model


def timm_test_efficientnet(classes: int = 5, seed: int = 0, *, statistics: bool = True) -> Any:
    """timm's ``test_efficientnet`` (about 100k parameters): BatchNormAct layers (BatchNorm,
    then SiLU, in one module), squeeze-excite gates, residual sums; BatchNorm statistics
    re-drawn, or (``statistics=False``) left as a fresh BatchNorm's, which shift nothing."""
    import timm
    import torch

    torch.manual_seed(seed)
    model = timm.create_model("test_efficientnet", num_classes=classes)
    return randomise_batchnorm(model, seed) if statistics else model.eval()


def lrp_group_norm_net(classes: int = 3, seed: int = 0) -> Any:
    """conv-GroupNorm-ReLU-pool-linear: a normalisation LRP has no rule for."""
    import torch
    from torch import nn

    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1),
        nn.GroupNorm(2, 4),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(4, classes),
    ).eval()


def lrp_vgg11_bn(classes: int = 10, seed: int = 0) -> Any:
    """torchvision's VGG-11 with BatchNorm as its builder makes it (features, 7x7 adaptive
    pool), the 4096-wide classifier narrowed to 64 (the same Linear-ReLU-Dropout steps):
    built on the meta device and drawn as VGG draws its weights, since 100M parameters
    would cost seconds. BatchNorm statistics re-drawn."""
    import torch
    from torch import nn

    model = torchvision_model("vgg11_bn", classes=classes, seed=seed, meta=True)
    torch.manual_seed(seed)
    model.features.to_empty(device="cpu")
    for module in model.features.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            nn.init.zeros_(module.bias)
        elif isinstance(module, nn.BatchNorm2d):
            module.reset_parameters()
    model.classifier = nn.Sequential(
        nn.Linear(512 * 7 * 7, 64), nn.ReLU(True), nn.Dropout(),
        nn.Linear(64, 64), nn.ReLU(True), nn.Dropout(),
        nn.Linear(64, classes),
    )
    return randomise_batchnorm(model.eval(), seed)


# -- Hugging Face DETR-style and open-vocabulary detectors (issue 27, point 2) -------------
# Random tiny DETR / Conditional / Deformable DETR / RT-DETR over a 4-stage basic-block HF
# ResNet (no timm, no pretrained weights), and OWL-ViT / OWLv2 with a word-level tokenizer.


def tiny_hf_detector(family: str = "detr", seed: int = 0, *, eager: bool = True) -> Any:
    """A random tiny ``*ForObjectDetection`` of ``family`` (3 classes, 8 queries, 2 decoder
    layers). DETR's classifier is sharpened so some queries pass its 0.5 threshold; ``eager``
    attention where the family has a choice (its ``output_attentions`` need it)."""
    import torch
    import transformers as tf

    torch.manual_seed(seed)
    stages = {"embedding_size": 8, "hidden_sizes": [8, 16, 16, 16], "depths": [1, 1, 1, 1],
              "out_features": ["stage2", "stage3", "stage4"], "layer_type": "basic"}
    common = {"encoder_layers": 1, "decoder_layers": 2, "encoder_attention_heads": 2,
              "decoder_attention_heads": 2, "encoder_ffn_dim": 16, "decoder_ffn_dim": 16,
              "num_queries": 8, "num_labels": 3, "use_pretrained_backbone": False}
    attention = {"attn_implementation": "eager"} if eager else {}
    if family in ("rt-detr", "rt-detr-v2"):
        v2 = family == "rt-detr-v2"
        config = (tf.RTDetrV2Config if v2 else tf.RTDetrConfig)(
            backbone_config=tf.RTDetrResNetConfig(**stages), d_model=32, encoder_hidden_dim=16,
            encoder_in_channels=[16, 16, 16], feat_strides=[8, 16, 32], decoder_n_points=2,
            decoder_in_channels=[16, 16, 16], num_denoising=0, **common,
        )
        made = tf.RTDetrV2ForObjectDetection if v2 else tf.RTDetrForObjectDetection
        return made(config).eval()
    made = {"use_timm_backbone": False, "backbone_config": tf.ResNetConfig(**stages), **common}
    if family == "deformable-detr":
        config = tf.DeformableDetrConfig(
            d_model=32, num_feature_levels=3, encoder_n_points=2, decoder_n_points=2, **made
        )
        return tf.DeformableDetrForObjectDetection(config).eval()
    if family == "conditional-detr":
        config = tf.ConditionalDetrConfig(d_model=16, **made, **attention)
        model = tf.ConditionalDetrForObjectDetection(config).eval()
    else:
        model = tf.DetrForObjectDetection(tf.DetrConfig(d_model=16, **made, **attention)).eval()
    with torch.no_grad():  # confident classes, a last cross-attention far from uniform
        if family == "detr":
            model.class_labels_classifier.weight.mul_(80.0)
            model.bbox_predictor.layers[-1].weight.mul_(30.0)  # queries' boxes apart
            model.model.query_position_embeddings.weight.mul_(10.0)  # queries unlike
        last = model.model.decoder.layers[-1].encoder_attn
        for name in ("q_proj", "q_content_proj", "k_proj", "k_content_proj"):
            if hasattr(last, name):
                getattr(last, name).weight.mul_(25.0)
    return model


def tiny_owl(family: str = "owlvit", seed: int = 0) -> tuple[Any, Any]:
    """A random tiny OWL-ViT or OWLv2 (32 px, patch 8) and a word-level tokenizer. The box
    head is scaled down so its boxes do not collapse to points (a random head saturates)."""
    import torch
    import transformers as tf

    torch.manual_seed(seed)
    vision = {"image_size": 32, "patch_size": 8, "hidden_size": 32, "intermediate_size": 64,
              "num_hidden_layers": 2, "num_attention_heads": 2}
    text = {"vocab_size": 64, "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1,
            "num_attention_heads": 2, "max_position_embeddings": 16, "bos_token_id": 0,
            "eos_token_id": 2, "pad_token_id": 0}
    kinds = {"owlvit": (tf.OwlViTConfig, tf.OwlViTForObjectDetection),
             "owlv2": (tf.Owlv2Config, tf.Owlv2ForObjectDetection)}
    config_class, model_class = kinds[family]
    model = model_class(config_class(text_config=text, vision_config=vision, projection_dim=32))
    with torch.no_grad():
        for p in model.box_head.parameters():
            p.mul_(0.05)
    return model.eval(), word_tokenizer(["a", "cat", "dog", "red", "car"])


def tiny_grounding_dino(seed: int = 0) -> tuple[Any, Any]:
    """A random tiny Grounding DINO (HF ResNet backbone, a 1-layer BERT, 8 queries, 16 text
    tokens) and a word-level tokenizer without [CLS]/[SEP] (its prompt is the texts alone)."""
    import torch
    import transformers as tf

    torch.manual_seed(seed)
    stages = {"embedding_size": 8, "hidden_sizes": [8, 16, 16, 16], "depths": [1, 1, 1, 1],
              "out_features": ["stage2", "stage3", "stage4"], "layer_type": "basic"}
    text = tf.BertConfig(vocab_size=64, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=32, max_position_embeddings=32)
    config = tf.GroundingDinoConfig(
        backbone_config=tf.ResNetConfig(**stages), text_config=text, use_timm_backbone=False,
        use_pretrained_backbone=False, d_model=32, encoder_layers=1, decoder_layers=2,
        encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=16,
        decoder_ffn_dim=16, num_queries=8, num_feature_levels=3, encoder_n_points=2,
        decoder_n_points=2, max_text_len=16,
    )
    model = tf.GroundingDinoForObjectDetection(config).eval()
    return model, word_tokenizer(["a", "cat", "dog", "red", "car", "."])
