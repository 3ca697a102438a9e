"""Test models are built in ``tests/models.py``, not copied into each test file.

A test file that needs a network calls a named builder there (one per
structure, deduplicated, each saying what structure it exercises). A model
stays in its test file only where the model *is* the test's subject and
appears once: those sites are listed in ``SUBJECTS`` with the reason, so a new
inline model fails here until it moves to ``models.py`` or earns an entry.

A site is a top-level function or class of a test file that defines an
``nn.Module`` / Keras ``Model`` / ``Layer`` / ``LightningModule`` subclass, or
calls a model builder (``nn.Sequential``, ``keras.Sequential``, a functional
``keras.Model(inputs, outputs)``, ``timm.create_model``, a
``torchvision.models`` builder, a Hugging Face ``...For...`` class). A
functional ``keras.Model(model.inputs, ...)`` that reads a layer of a model
the test already has is a probe, not a new model. Scripts kept in strings
(run in a subprocess) are not parsed.
"""

from __future__ import annotations

import ast
from pathlib import Path

TESTS = Path(__file__).resolve().parent

#: file -> top-level name -> why the model stays inline: it is what the test is about.
SUBJECTS: dict[str, dict[str, str]] = {
    "test_attention.py": {
        "_ExplicitMHA": "the reference: torchvision's attention written out",
    },
    "test_audit_store_safety.py": {
        "NaNForGrey": "a model gone wrong on one kind of input",
    },
    "test_cli_vlm.py": {
        "test_open_clip_name_with_local_weights_scores_as_open_clip_does": (
            "the architecture the open_clip name builds, saved as the weights file under test"
        ),
    },
    "test_cli_terminal.py": {
        "test_layer_names_are_escaped": "layer names with escape codes",
    },
    "test_gradients.py": {
        "MixedActivations": "every way a ReLU is spelled, for Guided Backprop",
    },
    "test_keras_applications_pipeline.py": {
        "test_an_application_inside_a_users_model_sets_its_input": (
            "a user's head on a keras.applications base: the transfer-learning case itself"
        ),
        "test_an_application_of_any_size_says_the_size_it_assumed": (
            "VGG16 of any size inside a user's model: the size guess itself"
        ),
    },
    "test_keras_backend.py": {
        "test_channels_first_model_returns_nchw": "a channels_first model",
        "test_layer_edit_with_a_skip_connection_across_the_layer": (
            "a skip connection that begins before the edited layer"
        ),
        "test_no_spatial_layer_is_a_clear_error": "no 4-D layer at all",
        "test_unbuilt_model_is_refused": "a Sequential never built",
        "_Fails": "a layer that raises mid-pass, on a new input size",
        "_failing_models": "functional and subclassed models around _Fails",
        "test_tf_keras_models_best_effort": "a Keras 2 (tf_keras) model",
    },
    "test_keras_guided.py": {
        "test_guided_relu_matches_the_rule_by_hand": (
            "a Dense-only network whose guided gradient is written out in numpy"
        ),
        "_conv_model": "a conv whose guided gradient is looped in numpy",
        "test_guided_backprop_warns_when_it_sees_no_relu": "no ReLU at all",
    },
    "test_keras_methods.py": {
        "_keras_model": "half of a Keras/torch twin with equal weights",
        "_torch_twin": "the torch twin built from the Keras weights",
    },
    "test_keras_targets.py": {
        "test_a_callable_target_on_a_dict_output_chosen_by_its_key": (
            "dict outputs whose keys are not their layers' names"
        ),
    },
    "test_lightning.py": {
        "Classifier": "a LightningModule trained by the callback under test",
    },
    "test_metrics_faithfulness.py": {
        "PixelSum": "a closed-form model whose perfect map is known",
    },
    "test_onnx.py": {
        "_ChannelsLast": "an (N, H, W, C) input, as a TensorFlow export takes",
    },
    "test_perturbation.py": {
        "_Residual": "a skip connection and a reshape reading the batch",
    },
    "test_pipelines_torchvision.py": {
        "test_a_model_no_builder_makes_says_the_common_recipe_was_assumed": (
            "a ResNet with a head no torchvision builder makes"
        ),
    },
    "test_pt2_archives.py": {
        "_Normalised": "buffers and a lifted constant for torch.export",
    },
    "test_spec.py": {
        "test_a_forward_that_needs_a_second_argument_is_one_line": "two inputs",
        "test_torchvision_vit_zero_head_warns_of_a_constant_map_and_reads_its_size": (
            "torchvision's own zero-initialised ViT head"
        ),
        "test_a_volume_model_given_photos_is_told_volumes_are_future_work": "Conv3d",
    },
    "test_threads.py": {
        "_Gate": "a gate that holds a thread mid-forward",
        "test_a_pass_hook_leaves_the_users_own_forward_in_another_thread_alone": (
            "the gate placed between two convs"
        ),
        "test_while_a_pass_is_mid_forward_another_thread_sees_the_model_as_it_left_it": (
            "the gate placed among BatchNorm and dropout"
        ),
    },
    "test_torch_backend.py": {
        "test_a_layer_swapped_after_the_first_explanation_is_traced_anew": (
            "the block a user swaps in after a first explanation"
        ),
        "test_model_with_tuple_output_and_inplace_layer_target": (
            "a tuple output around an in-place ReLU"
        ),
        "_ViewsAcrossChannels": "a view() that channels-last input breaks",
    },
    "test_training_while_explaining.py": {
        "StepsInForward": "an optimizer step inside forward",
        "Referrer": "submodules reached outside the tree",
        "Hidden": "a stem the twin cannot follow",
        "test_submodules_held_outside_the_module_tree_are_explained_on_the_twin": (
            "the reference: Referrer's own modules put back in a plain tree"
        ),
        "test_a_reference_the_twin_cannot_follow_is_explained_in_place_and_said_once": (
            "the reference: Hidden's own modules put back in a plain tree"
        ),
        "test_parametrized_weights_are_read_without_a_power_iteration_on_the_users_model": (
            "spectral and weight norm parametrizations"
        ),
    },
    "test_untrusted_files.py": {
        "_evil_torchscript": "a hostile TorchScript module",
    },
}

_MODULE_BASES = ("Module", "LightningModule", "Model", "Layer")
_BUILDERS = {"Sequential", "create_model", "get_model"}
_NOT_BUILDERS = {"get_model_weights", "get_weight", "list_models"}


def _dotted(node: ast.AST) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f"{_dotted(node.value)}.{node.attr}"
    return ""


def _reads_a_models_layer(call: ast.Call) -> bool:
    """``keras.Model(model.inputs, layer.output)``: a probe into a model the test has."""
    first = call.args[0] if call.args else None
    if isinstance(first, ast.Subscript):
        first = first.value
    return isinstance(first, ast.Attribute) and first.attr == "inputs"


def _builds_a_model(node: ast.AST) -> bool:
    if isinstance(node, ast.ClassDef):
        return any(_dotted(base).rsplit(".", 1)[-1] in _MODULE_BASES for base in node.bases)
    if not isinstance(node, ast.Call):
        return False
    name = _dotted(node.func)
    last = name.rsplit(".", 1)[-1]
    if last == "Model" and name.startswith("keras"):
        return not _reads_a_models_layer(node)
    if last in _BUILDERS:
        return True
    if name.startswith(("tv.models.", "torchvision.models.")):
        parts = name.split(".")[2:]  # a builder, not weights or their transforms
        return not any(p.endswith("Weights") for p in parts) and last not in _NOT_BUILDERS
    return name.startswith("transformers.") and "For" in last


def inline_model_sites(path: Path) -> set[tuple[str, str]]:
    """(file, top-level name) of every place in ``path`` that builds a model itself."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    sites = set()
    for top in tree.body:
        name = getattr(top, "name", None) or f"line {top.lineno}"
        if any(_builds_a_model(node) for node in ast.walk(top)):
            sites.add((path.name, name))
    return sites


def _all_sites() -> set[tuple[str, str]]:
    return set().union(*(inline_model_sites(p) for p in sorted(TESTS.glob("test_*.py"))))


def _listed() -> set[tuple[str, str]]:
    return {(file, name) for file, names in SUBJECTS.items() for name in names}


def test_no_test_file_builds_a_model_outside_models_py_unless_the_model_is_its_subject() -> None:
    new = sorted(_all_sites() - _listed())
    assert not new, (
        "these build a model inline: add a named builder to tests/models.py (or reuse one), "
        "or, where the model is the test's subject and appears once, list it in SUBJECTS "
        f"with the reason: {new}"
    )


def test_every_listed_subject_still_builds_its_model_inline() -> None:
    stale = sorted(_listed() - _all_sites())
    assert not stale, f"SUBJECTS lists sites that no longer build a model; remove them: {stale}"


def test_the_scanner_sees_each_kind_of_inline_model(tmp_path: Path) -> None:
    """Each spelling a test file might use is caught (so the two tests above can fail)."""
    source = """
import torch, keras, timm, transformers
import torchvision as tv
from torch import nn

class Net(nn.Module): ...
class Layer(keras.layers.Layer): ...
def seq(): return torch.nn.Sequential(nn.ReLU())
def kseq(): return keras.Sequential([])
def functional(i, o): return keras.Model(i, o)
def probe(m): return keras.Model(m.inputs, m.layers[1].output)
def from_timm(): return timm.create_model("resnet18")
def from_tv(): return tv.models.resnet18()
def detector(): return tv.models.detection.ssd300_vgg16()
def weights(): return tv.models.ResNet18_Weights.DEFAULT.transforms()
def hf(c): return transformers.ViTForImageClassification(c)
def fine(): return models.tiny_cnn()
"""
    path = tmp_path / "test_sample.py"
    path.write_text(source)
    found = {name for _, name in inline_model_sites(path)}
    assert found == {
        "Net", "Layer", "seq", "kseq", "functional", "from_timm", "from_tv", "detector", "hf",
    }  # fmt: skip
