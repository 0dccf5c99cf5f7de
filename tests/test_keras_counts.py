"""Keras applications as the peer: our trainable parameter counts equal Keras's at every width.

(Weight-by-weight output parity belongs to the interop converters; this checks that the
architectures, channel rounding included, are the same.)
"""

import numpy as np
import pytest

from mobilenets import cost

keras = pytest.importorskip("keras")


def keras_trainable(model) -> int:
    return sum(int(np.prod(w.shape)) for w in model.trainable_weights)


CASES = (
    [("mobilenet_v1", "MobileNet", {"width_mult": a}, {"alpha": a}) for a in (0.25, 0.5, 0.75, 1.0)]
    + [
        (
            "mobilenet_v1",
            "MobileNet",
            {"width_mult": 0.5, "depth_multiplier": 2},
            {"alpha": 0.5, "depth_multiplier": 2},
        ),
    ]
    + [
        ("mobilenet_v2", "MobileNetV2", {"width_mult": a}, {"alpha": a})
        for a in (0.35, 0.5, 0.75, 1.0, 1.3, 1.4)
    ]
    + [
        (
            f"mobilenet_v3_{size}",
            f"MobileNetV3{size.title()}",
            {"width_mult": a, "minimalistic": m},
            {"alpha": a, "minimalistic": m},
        )
        for size in ("large", "small")
        for a in (0.75, 1.0)
        for m in (False, True)
    ]
)


@pytest.mark.parametrize("name, keras_name, options, keras_options", CASES)
def test_trainable_params_equal_keras(name, keras_name, options, keras_options):
    builder = getattr(keras.applications, keras_name)
    reference = builder(weights=None, input_shape=(224, 224, 3), **keras_options)
    assert cost(name, **options).params_with_norm == keras_trainable(reference)
