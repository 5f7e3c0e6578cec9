"""Tests of tfsmooth.models.slim against TF1-style checkpoints written under slim names.

The slim name of every Keras layer is found here *structurally*, by walking the Keras graph back
from each ``mixed*`` concatenation (branch i of the concatenation is slim's ``Branch_i``), using a
nested transcription of slim's ``inception_v3.py``; the loader orders layers by creation instead,
so the two mappings are independent.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfsmooth.models.base import Model
from tfsmooth.models.slim import (
    SLIM_CHECKPOINTS,
    _resolve_checkpoint,
    load_slim_inception_v3,
    slim_inception_v3_scopes,
)

SIZE = 75  # the smallest input InceptionV3 accepts; weights do not depend on it
STEM = ["Conv2d_1a_3x3", "Conv2d_2a_3x3", "Conv2d_2b_3x3", "Conv2d_3b_1x1", "Conv2d_4a_3x3"]
_B5 = [
    ["Conv2d_0a_1x1"],
    ["Conv2d_0a_1x1", "Conv2d_0b_5x5"],
    ["Conv2d_0a_1x1", "Conv2d_0b_3x3", "Conv2d_0c_3x3"],
    ["Conv2d_0b_1x1"],
]
_B6 = [
    ["Conv2d_0a_1x1"],
    ["Conv2d_0a_1x1", "Conv2d_0b_1x7", "Conv2d_0c_7x1"],
    ["Conv2d_0a_1x1", "Conv2d_0b_7x1", "Conv2d_0c_1x7", "Conv2d_0d_7x1", "Conv2d_0e_1x7"],
    ["Conv2d_0b_1x1"],
]
# (slim block, Keras concatenation, branches -> convolutions from input to output)
BLOCKS: list[tuple[str, str, list[list[str]]]] = [
    ("Mixed_5b", "mixed0", _B5),
    (
        "Mixed_5c",
        "mixed1",
        [
            ["Conv2d_0a_1x1"],
            ["Conv2d_0b_1x1", "Conv_1_0c_5x5"],
            ["Conv2d_0a_1x1", "Conv2d_0b_3x3", "Conv2d_0c_3x3"],
            ["Conv2d_0b_1x1"],
        ],
    ),
    ("Mixed_5d", "mixed2", _B5),
    (
        "Mixed_6a",
        "mixed3",
        [["Conv2d_1a_1x1"], ["Conv2d_0a_1x1", "Conv2d_0b_3x3", "Conv2d_1a_1x1"], []],
    ),
    ("Mixed_6b", "mixed4", _B6),
    ("Mixed_6c", "mixed5", _B6),
    ("Mixed_6d", "mixed6", _B6),
    ("Mixed_6e", "mixed7", _B6),
    (
        "Mixed_7a",
        "mixed8",
        [
            ["Conv2d_0a_1x1", "Conv2d_1a_3x3"],
            ["Conv2d_0a_1x1", "Conv2d_0b_1x7", "Conv2d_0c_7x1", "Conv2d_1a_3x3"],
            [],
        ],
    ),
    (
        "Mixed_7b",
        "mixed9",
        [
            ["Conv2d_0a_1x1"],
            ["Conv2d_0a_1x1", "Conv2d_0b_1x3", "Conv2d_0b_3x1"],
            ["Conv2d_0a_1x1", "Conv2d_0b_3x3", "Conv2d_0c_1x3", "Conv2d_0d_3x1"],
            ["Conv2d_0b_1x1"],
        ],
    ),
    (
        "Mixed_7c",
        "mixed10",
        [
            ["Conv2d_0a_1x1"],
            ["Conv2d_0a_1x1", "Conv2d_0b_1x3", "Conv2d_0c_3x1"],
            ["Conv2d_0a_1x1", "Conv2d_0b_3x3", "Conv2d_0c_1x3", "Conv2d_0d_3x1"],
            ["Conv2d_0b_1x1"],
        ],
    ),
]


def _producer(tensor: Any) -> Any:
    return tensor._keras_history.operation


def _walk(tensor: Any, stop: Any) -> list[tuple[Any, Any]]:
    """(conv, batch norm) pairs from ``stop``'s output to ``tensor``, in data-flow order."""
    layer = _producer(tensor)
    if layer is stop:
        return []
    if isinstance(layer, keras.layers.Concatenate):  # the split 1x3 / 3x1 ends of mixed9/10
        parts = [_walk(t, stop) for t in layer.input]
        common = 0
        while all(len(p) > common and p[common][0] is parts[0][common][0] for p in parts):
            common += 1
        merged = list(parts[0][:common])
        for part in parts:
            merged += part[common:]
        return merged
    if isinstance(layer, keras.layers.BatchNormalization):
        conv = _producer(layer.input)
        assert isinstance(conv, keras.layers.Conv2D)
        return [*_walk(conv.input, stop), (conv, layer)]
    pooling = (keras.layers.AveragePooling2D, keras.layers.MaxPooling2D)
    if isinstance(layer, (keras.layers.Activation, *pooling)):
        return _walk(layer.input, stop)
    raise AssertionError(f"unexpected layer {layer.name} ({type(layer).__name__})")


def structural_map(network: Any) -> dict[str, tuple[Any, Any]]:
    """slim scope (without ``InceptionV3/``) -> (Conv2D, BatchNormalization) of ``network``."""
    mapping: dict[str, tuple[Any, Any]] = {}
    first = network.get_layer("mixed0")
    layer = _producer(first.input[0])  # relu <- batch norm <- conv <- the stem's max pooling
    while not isinstance(layer, keras.layers.Conv2D):
        layer = _producer(layer.input)
    stem_output = _producer(layer.input)
    assert isinstance(stem_output, keras.layers.MaxPooling2D)
    input_layer = _producer(network.inputs[0])
    stem = _walk(stem_output.output, input_layer)
    assert len(stem) == len(STEM)
    mapping.update(zip(STEM, stem))
    block_input = stem_output
    for slim_block, keras_block, branches in BLOCKS:
        concat = network.get_layer(keras_block)
        assert len(concat.input) == len(branches), keras_block
        for index, (tensor, convs) in enumerate(zip(concat.input, branches)):
            found = _walk(tensor, block_input)
            assert len(found) == len(convs), (keras_block, index)
            for conv_name, pair in zip(convs, found):
                mapping[f"{slim_block}/Branch_{index}/{conv_name}"] = pair
        block_input = concat
    return mapping


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A random Keras InceptionV3 and a TF1 checkpoint of it under slim names (module scope)."""
    keras.utils.set_random_seed(3)
    network = keras.applications.InceptionV3(
        weights=None, classes=1001, classifier_activation=None, input_shape=(SIZE, SIZE, 3)
    )
    rng = np.random.default_rng(4)
    values: dict[str, np.ndarray] = {}
    mapping = structural_map(network)
    assert len(mapping) == 94
    for scope, (conv, norm) in mapping.items():
        values[f"InceptionV3/{scope}/weights"] = conv.kernel.numpy()
        stats = {
            "beta": rng.normal(0.0, 0.1, norm.beta.shape),
            "moving_mean": rng.normal(0.0, 0.1, norm.beta.shape),
            "moving_variance": rng.uniform(0.5, 1.5, norm.beta.shape),
        }
        for name, value in stats.items():
            getattr(norm, name).assign(value.astype(np.float32))
            values[f"InceptionV3/{scope}/BatchNorm/{name}"] = value.astype(np.float32)
    dense = network.get_layer("predictions")
    dense.bias.assign(rng.normal(0.0, 0.1, dense.bias.shape).astype(np.float32))
    values["InceptionV3/Logits/Conv2d_1c_1x1/weights"] = dense.kernel.numpy()[None, None]
    values["InceptionV3/Logits/Conv2d_1c_1x1/biases"] = dense.bias.numpy()
    extras = {  # present in real checkpoints, to be ignored
        "InceptionV3/AuxLogits/Conv2d_1b_1x1/weights": np.zeros([1, 1, 768, 128], np.float32),
        "InceptionV3/AuxLogits/Conv2d_2b_1x1/biases": np.zeros([1001], np.float32),
        "global_step": np.array(12345, np.int64),
    }
    directory = tmp_path_factory.mktemp("slim")
    prefix = str(directory / "adv_inception_v3.ckpt")
    _save_tf1(prefix, {**values, **extras})
    return {"network": network, "values": values, "extras": extras, "prefix": prefix}


def _save_tf1(prefix: str, values: dict[str, np.ndarray]) -> None:
    """Writes ``values`` as a TF1 checkpoint with ``tf.compat.v1.train.Saver``."""
    graph = tf.Graph()
    with graph.as_default():
        feeds, variables = {}, {}
        for index, (name, value) in enumerate(values.items()):
            placeholder = tf.compat.v1.placeholder(value.dtype, value.shape)
            variable = tf.compat.v1.Variable(placeholder, name=f"v{index}")
            feeds[placeholder] = value
            variables[name] = variable
        saver = tf.compat.v1.train.Saver(var_list=variables)
        with tf.compat.v1.Session(graph=graph) as session:
            session.run([v.initializer for v in variables.values()], feed_dict=feeds)
            saver.save(session, prefix, write_meta_graph=False)


def _save_raw(prefix: str, values: dict[str, np.ndarray]) -> str:
    """Writes ``values`` as a TF checkpoint with the raw SaveV2 op (quick, eager)."""
    names = list(values)
    tf.raw_ops.SaveV2(
        prefix=prefix,
        tensor_names=names,
        shape_and_slices=[""] * len(names),
        tensors=[tf.constant(values[n]) for n in names],
    )
    return prefix


def test_scope_list_matches_the_structural_transcription():
    expected = STEM + [
        f"{block}/Branch_{i}/{conv}"
        for block, _, branches in BLOCKS
        for i, convs in enumerate(branches)
        for conv in convs
    ]
    assert slim_inception_v3_scopes() == expected
    assert len(set(expected)) == 94


def test_known_checkpoints_table():
    for name, (url, prefix) in SLIM_CHECKPOINTS.items():
        assert url.startswith("http") and url.endswith(".tar.gz") and name in url
        assert prefix == f"{name}.ckpt"


def test_load_matches_source_weights_and_logits(source):
    model = load_slim_inception_v3(Path(source["prefix"]).parent, input_size=(SIZE, SIZE))
    assert isinstance(model, Model)
    assert model.preprocessing == "tf" and model.input_size == (SIZE, SIZE)
    assert model.num_classes == 1001 and model.bounds == (0.0, 1.0)
    assert model.name == "adv_inception_v3"
    loaded = model.model
    # Every weight where it belongs, found structurally in the loaded network.
    values = source["values"]
    mapping = structural_map(loaded)
    for scope, (conv, norm) in mapping.items():
        np.testing.assert_array_equal(conv.kernel.numpy(), values[f"InceptionV3/{scope}/weights"])
        for name in ("beta", "moving_mean", "moving_variance"):
            np.testing.assert_array_equal(
                getattr(norm, name).numpy(), values[f"InceptionV3/{scope}/BatchNorm/{name}"]
            )
    dense = loaded.get_layer("predictions")
    np.testing.assert_array_equal(
        dense.kernel.numpy(), values["InceptionV3/Logits/Conv2d_1c_1x1/weights"][0, 0]
    )
    np.testing.assert_array_equal(
        dense.bias.numpy(), values["InceptionV3/Logits/Conv2d_1c_1x1/biases"]
    )
    # Same logits as the source network on inputs in [-1, 1].
    images = np.random.default_rng(5).uniform(size=(2, SIZE, SIZE, 3)).astype(np.float32)
    expected = source["network"](images * 2.0 - 1.0, training=False).numpy()
    logits = model(images).numpy()
    assert logits.shape == (2, 1001) and np.all(np.isfinite(logits))
    scale = np.abs(expected).max()
    np.testing.assert_allclose(logits, expected, rtol=1e-4, atol=1e-4 * scale)


def test_resolve_checkpoint_forms(source, tmp_path):
    prefix = source["prefix"]
    assert _resolve_checkpoint(prefix) == prefix
    assert _resolve_checkpoint(prefix + ".index") == prefix
    assert _resolve_checkpoint(Path(prefix).parent) == prefix
    (tmp_path / "a.ckpt.index").write_bytes(b"")
    assert _resolve_checkpoint(tmp_path) == str(tmp_path / "a.ckpt")
    (tmp_path / "b.ckpt.index").write_bytes(b"")
    with pytest.raises(ValueError, match="several checkpoints"):
        _resolve_checkpoint(tmp_path)


def test_missing_checkpoint_names_the_download(tmp_path):
    with pytest.raises(FileNotFoundError, match="adv_inception_v3_2017_08_18.tar.gz"):
        load_slim_inception_v3(tmp_path / "adv_inception_v3.ckpt")
    (tmp_path / "sub").mkdir()
    with pytest.raises(FileNotFoundError, match="no TF checkpoint"):
        load_slim_inception_v3(tmp_path / "sub")


def test_missing_variables_are_listed(source, tmp_path):
    values = dict(source["values"])
    gone = [
        "InceptionV3/Mixed_6c/Branch_2/Conv2d_0d_7x1/weights",
        "InceptionV3/Mixed_5c/Branch_1/Conv_1_0c_5x5/BatchNorm/moving_variance",
    ]
    for name in gone:
        del values[name]
    prefix = _save_raw(str(tmp_path / "partial.ckpt"), values)
    with pytest.raises(ValueError, match="lacks 2 of the 378") as info:
        load_slim_inception_v3(prefix, input_size=(SIZE, SIZE))
    for name in gone:
        assert name in str(info.value)


def test_wrong_shapes_are_listed(source, tmp_path):
    values = dict(source["values"])
    values["InceptionV3/Logits/Conv2d_1c_1x1/weights"] = np.zeros([1, 1, 2048, 1000], np.float32)
    values["InceptionV3/Logits/Conv2d_1c_1x1/biases"] = np.zeros([1000], np.float32)
    prefix = _save_raw(str(tmp_path / "thousand.ckpt"), values)
    with pytest.raises(ValueError, match="2 InceptionV3 variables of the wrong shape") as info:
        load_slim_inception_v3(prefix, input_size=(SIZE, SIZE))
    message = str(info.value)
    assert "InceptionV3/Logits/Conv2d_1c_1x1/weights (1, 1, 2048, 1000)" in message
    assert "(1, 1, 2048, 1001)" in message


def test_other_architecture_is_rejected(tmp_path):
    prefix = _save_raw(
        str(tmp_path / "resnet.ckpt"),
        {
            "resnet_v2_50/conv1/weights": np.zeros([7, 7, 3, 64], np.float32),
            "resnet_v2_50/logits/biases": np.zeros([1001], np.float32),
        },
    )
    with pytest.raises(ValueError, match="not a slim InceptionV3 checkpoint.*resnet_v2_50"):
        load_slim_inception_v3(prefix)


def test_batch_norm_with_scale_is_rejected(source, tmp_path):
    values = dict(source["values"])
    values["InceptionV3/Conv2d_1a_3x3/BatchNorm/gamma"] = np.ones([32], np.float32)
    prefix = _save_raw(str(tmp_path / "gamma.ckpt"), values)
    with pytest.raises(ValueError, match="batch-norm scales"):
        load_slim_inception_v3(prefix)


@pytest.mark.parametrize(
    "kwargs, error",
    [
        ({"input_size": (74, 299)}, ValueError),
        ({"input_size": (299,)}, ValueError),
        ({"num_classes": 1}, ValueError),
        ({"scope": ""}, TypeError),
    ],
)
def test_bad_arguments(tmp_path, kwargs, error):
    with pytest.raises(error):
        load_slim_inception_v3(tmp_path / "x.ckpt", **kwargs)
