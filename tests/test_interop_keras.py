"""Keras applications → our models, proven on outputs.

Keras 3 (torch backend, set in conftest.py) builds each reference model with random weights and
random BatchNorm statistics; we save or take it, convert it, and compare outputs on the same random
images (NHWC there, NCHW here) to 1e-4 in float32.
"""

import h5py
import numpy as np
import pytest
import torch

from mobilenets import MobileNet
from mobilenets.pretrained import WeightMismatch, from_keras
from mobilenets.pretrained.keras import keras_layer_names, read_keras
from mobilenets.pretrained.slots import model_slots

keras = pytest.importorskip("keras")

TOLERANCE = 1e-4


pytestmark = pytest.mark.usefixtures("one_thread")


def randomize(model, seed: int = 0):
    """Random weights everywhere and random BatchNorm statistics (a fresh Keras model has mean 0,
    variance 1, which would hide a mix-up of the four BatchNorm vectors or of epsilon)."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        weights = layer.get_weights()
        if not weights:
            continue
        if isinstance(layer, keras.layers.BatchNormalization):
            gamma, beta, mean, var = weights
            weights = [
                rng.uniform(0.5, 1.5, gamma.shape),
                rng.normal(0, 0.2, beta.shape),
                rng.normal(0, 0.2, mean.shape),
                rng.uniform(0.5, 2.0, var.shape),
            ]
        else:  # keep Keras's kernel initialization (it keeps activations in range), randomize biases
            weights = [w if w.ndim > 1 else rng.normal(0, 0.1, w.shape) for w in weights]
        layer.set_weights([np.asarray(w, np.float32) for w in weights])
    return model


def images(size: int, raw: bool, seed: int = 1) -> np.ndarray:
    """NHWC float32 images: 0..255 for a model with its own Rescaling, else already in [-1, 1].
    Two images, one at 224 and above (the machine running the suite is small)."""
    batch = 2 if size < 224 else 1
    x = np.random.default_rng(seed).uniform(0, 1, (batch, size, size, 3)).astype(np.float32)
    return x * 255 if raw else x * 2 - 1


def ours_input(x: np.ndarray, raw: bool) -> torch.Tensor:
    """The same images as our model takes them: NCHW, scaled as the converted config records."""
    tensor = torch.from_numpy(x).permute(0, 3, 1, 2)
    return tensor / 127.5 - 1 if raw else tensor


def max_diff(reference, ours: torch.Tensor) -> float:
    reference = np.asarray(keras.ops.convert_to_numpy(reference))
    ours = ours.detach().numpy()
    if ours.ndim == 4:
        ours = ours.transpose(0, 2, 3, 1)  # NCHW → NHWC
    assert ours.shape == reference.shape
    return float(np.abs(ours - reference).max())


def parity(keras_model, model: MobileNet, size: int, raw: bool = False) -> float:
    x = images(size, raw)
    with torch.no_grad():
        out = model(ours_input(x, raw))
        reference = keras_model(x, training=False)
    if isinstance(out, list):
        out = out[-1]
    return max_diff(reference, out)


# --------------------------------------------------------------------------------------------
# MobileNet (V1)
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("alpha", [0.25, 0.5, 0.75, 1.0])
@pytest.mark.parametrize("size", [128, 224, 113])
def test_mobilenet_v1_logits_match_keras(tmp_path, alpha, size):
    reference = randomize(
        keras.applications.MobileNet(
            weights=None, alpha=alpha, input_shape=(size, size, 3), classifier_activation=None
        )
    )
    reference.save(tmp_path / "v1.keras")
    model = from_keras(tmp_path / "v1.keras")
    assert (model.config.name, model.config.width_mult, model.config.resolution) == (
        "mobilenet_v1",
        alpha,
        size,
    )
    assert model.config.padding == "keras" and model.config.bn_eps == 1e-3
    assert model.config.blocks[1].activation == "relu6"
    assert parity(reference, model, size) <= TOLERANCE


def test_mobilenet_v1_depth_multiplier_2(tmp_path):
    reference = randomize(
        keras.applications.MobileNet(
            weights=None, alpha=0.5, depth_multiplier=2, input_shape=(128, 128, 3), classifier_activation=None
        )
    )
    reference.save(tmp_path / "v1.h5")
    model = from_keras(tmp_path / "v1.h5")
    assert model.config.blocks[1].depth_multiplier == 2
    assert parity(reference, model, 128) <= TOLERANCE


def test_mobilenet_v1_without_top_matches_keras_feature_maps_at_any_size():
    reference = randomize(
        keras.applications.MobileNet(weights=None, alpha=0.5, include_top=False, input_shape=(None, None, 3))
    )
    model = from_keras(reference)
    assert model.config.head is None
    # One Keras output per stride 2..32: the last layer of each stride, as our feature_info says.
    taps = [f"conv_pw_{entry['block']}_relu" for entry in model.feature_info]
    multi = keras.Model(reference.input, [reference.get_layer(name).output for name in taps])
    for size in (160, 113):  # even and odd: Keras's fixed depthwise padding differs from "same" at odd sizes
        x = images(size, raw=False)
        with torch.no_grad():
            maps = model(ours_input(x, raw=False))
            reference_maps = multi(x, training=False)
        for reference_map, ours in zip(reference_maps, maps, strict=True):
            assert max_diff(reference_map, ours) <= TOLERANCE
    # TensorFlow "same" would not do: at 113 its stride-32 map is 4×4, Keras's (and ours) 3×3.
    as_same = MobileNet(model.config.replace(padding="same")).eval()
    with torch.no_grad():
        assert as_same(ours_input(x, raw=False))[-1].shape[-2:] == (4, 4)
    assert maps[-1].shape[-2:] == (3, 3)


# --------------------------------------------------------------------------------------------
# MobileNetV2 and V3
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("alpha", [0.35, 1.0, 1.4])
def test_mobilenet_v2_logits_match_keras(tmp_path, alpha):
    reference = randomize(
        keras.applications.MobileNetV2(
            weights=None, alpha=alpha, input_shape=(224, 224, 3), classifier_activation=None
        )
    )
    reference.save(tmp_path / "v2.keras")
    model = from_keras(tmp_path / "v2.keras")
    assert (model.config.name, model.config.width_mult, model.config.bn_eps) == ("mobilenet_v2", alpha, 1e-3)
    assert model.config.padding == "same"  # fixed input size: Keras's padding is TensorFlow's there
    assert parity(reference, model, 224) <= TOLERANCE


def test_mobilenet_v2_without_fixed_size_uses_keras_padding_at_odd_sizes():
    reference = randomize(
        keras.applications.MobileNetV2(
            weights=None, alpha=0.5, include_top=False, input_shape=(None, None, 3)
        )
    )
    model = from_keras(reference)
    assert model.config.padding == "keras"
    assert parity(reference, model, 113) <= TOLERANCE


@pytest.mark.parametrize(
    "builder, alpha, minimalistic",
    [
        ("MobileNetV3Large", 1.0, False),
        ("MobileNetV3Large", 1.0, True),
        ("MobileNetV3Large", 0.75, False),
        ("MobileNetV3Small", 1.0, False),
        ("MobileNetV3Small", 1.0, True),
    ],
)
def test_mobilenet_v3_logits_match_keras_with_its_preprocessing_layer(tmp_path, builder, alpha, minimalistic):
    reference = randomize(
        getattr(keras.applications, builder)(
            weights=None,
            alpha=alpha,
            minimalistic=minimalistic,
            input_shape=(224, 224, 3),
            classifier_activation=None,
        )
    )
    reference.save(tmp_path / "v3.keras")
    model = from_keras(tmp_path / "v3.keras")
    assert model.config.width_mult == alpha and model.config.minimalistic == minimalistic
    recipe = model.config.extra["preprocessing"]
    assert recipe["mean"] == pytest.approx([0.5] * 3) and recipe["std"] == pytest.approx([0.5] * 3)
    assert model.config.extra["source"]["built_in_preprocessing"]
    # Keras takes 0..255 (its Rescaling layer scales); ours takes the scaled images.
    assert parity(reference, model, 224, raw=True) <= TOLERANCE


def test_mobilenet_v3_without_preprocessing_layer_at_an_odd_size():
    reference = randomize(
        keras.applications.MobileNetV3Small(
            weights=None, include_preprocessing=False, input_shape=(None, None, 3), classifier_activation=None
        )
    )
    model = from_keras(reference)
    assert model.config.padding == "keras" and not model.config.extra["source"]["built_in_preprocessing"]
    assert parity(reference, model, 113) <= TOLERANCE


# --------------------------------------------------------------------------------------------
# File formats and names
# --------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def small_v1():
    return randomize(
        keras.applications.MobileNet(
            weights=None, alpha=0.25, input_shape=(128, 128, 3), classifier_activation=None
        )
    )


def test_every_keras_format_converts_to_the_same_model(tmp_path, small_v1):
    small_v1.save(tmp_path / "m.keras")
    small_v1.save(tmp_path / "m.h5")
    small_v1.save_weights(tmp_path / "m.weights.h5")
    models = [from_keras(small_v1)] + [from_keras(tmp_path / f) for f in ("m.keras", "m.h5", "m.weights.h5")]
    # Weights-only files carry no input size: the nominal resolution is then given.
    models[-1] = from_keras(tmp_path / "m.weights.h5", resolution=128)
    reference = models[0].state_dict()
    for model in models[1:]:
        assert model.config == models[0].config.replace(extra=model.config.extra)
        for key, value in model.state_dict().items():
            assert torch.equal(value, reference[key]), key


def test_legacy_tf_keras_names_and_layout(tmp_path):
    """The published V2/V3 files were written by tf.keras 2: weights only, "layer_names" and
    "weight_names" attributes, names such as "Conv/BatchNorm" (nested groups in HDF5) and "Logits"."""
    reference = randomize(
        keras.applications.MobileNetV3Small(
            weights=None, input_shape=(224, 224, 3), classifier_activation=None
        )
    )
    model = from_keras(reference)
    old_names = {
        keras_layer_names("mobilenet_v3_small", model.config, slot)[0]: keras_layer_names(
            "mobilenet_v3_small", model.config, slot
        )[-1]
        for slot in model_slots(model.config)
    }
    assert old_names["conv_bn"] == "Conv/BatchNorm" and old_names["logits"] == "Logits"
    with h5py.File(tmp_path / "legacy.h5", "w") as handle:
        layer_names = []
        for layer in reference.layers:
            name = old_names.get(layer.name, layer.name)
            group = handle.create_group(name)
            weight_names = [f"{name}/{w.name}:0" for w in layer.weights]
            for weight_name, value in zip(weight_names, layer.get_weights(), strict=True):
                group.create_dataset(weight_name, data=value)
            group.attrs["weight_names"] = np.array([n.encode() for n in weight_names], dtype="S")
            layer_names.append(name.encode())
        handle.attrs["layer_names"] = np.array(layer_names, dtype="S")
    converted = from_keras(tmp_path / "legacy.h5")
    assert converted.config.padding == "same"  # weights only: TensorFlow's padding
    for key, value in converted.state_dict().items():
        assert torch.equal(value, model.state_dict()[key]), key


def test_wrong_kind_names_the_missing_layer(tmp_path, small_v1):
    small_v1.save(tmp_path / "v1.keras")
    with pytest.raises(WeightMismatch, match=r"no layer 'Conv1'.*Keras MobileNet\b"):
        from_keras(tmp_path / "v1.keras", name="mobilenet_v2")


def test_wrong_width_names_the_first_mismatching_layer_and_both_shapes(small_v1):
    with pytest.raises(WeightMismatch) as error:
        from_keras(small_v1, width_mult=0.5)
    message = str(error.value)
    assert "conv1/kernel has shape (3, 3, 3, 8)" in message
    assert "features.0.conv.weight of mobilenet_v1 (width_mult=0.5" in message and "(16, 3, 3, 3)" in message


def test_not_a_keras_mobilenet(tmp_path):
    other = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Conv2D(4, 3, name="conv")])
    other.save(tmp_path / "other.keras")
    with pytest.raises(WeightMismatch, match="not a Keras MobileNet"):
        from_keras(tmp_path / "other.keras")
    (tmp_path / "junk.h5").write_bytes(b"not hdf5 at all")
    with pytest.raises(ValueError, match="not an HDF5 file"):
        from_keras(tmp_path / "junk.h5")
    with pytest.raises(FileNotFoundError):
        from_keras(tmp_path / "missing.h5")


def test_reader_sees_layers_in_keras_order(small_v1):
    weights = read_keras(small_v1)
    assert [len(weights.layers[n]) for n in ("conv1", "conv1_bn", "conv_dw_1", "conv_preds")] == [1, 4, 1, 2]
