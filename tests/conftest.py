import os

import numpy as np
import pytest
import torch

# Keras is the peer in parity tests; it must run on our torch, never try TensorFlow or JAX.
os.environ.setdefault("KERAS_BACKEND", "torch")


def pytest_collection_modifyitems(config, items):
    # MOBILENETS_FAST=1 skips the tests marked slow (make test runs them all)
    if os.environ.get("MOBILENETS_FAST") == "1":
        skip = pytest.mark.skip(reason="MOBILENETS_FAST=1")
        for item in items:
            if "slow" in item.keywords:
                item.add_marker(skip)


@pytest.fixture(scope="module")
def one_thread():
    # On a small shared machine OpenMP's second thread spins waiting for a busy core: one thread
    # runs these small models' forward passes up to 100× faster there. Restored afterwards.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def keras_v1_file(tmp_path_factory):
    """A MobileNet(alpha=0.25) as Keras would give it, in the legacy .h5 layout, with random
    BatchNorm parameters so that its predictions are not all alike."""
    keras = pytest.importorskip("keras")
    model = keras.applications.MobileNet(
        weights=None, alpha=0.25, input_shape=(128, 128, 3), classifier_activation=None
    )
    rng = np.random.default_rng(0)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            gamma, beta, mean, var = layer.get_weights()
            layer.set_weights(
                [
                    rng.uniform(0.5, 1.5, gamma.shape).astype(np.float32),
                    rng.normal(0, 0.5, beta.shape).astype(np.float32),
                    mean,
                    var,
                ]
            )
    path = tmp_path_factory.mktemp("keras") / "v1.h5"
    model.save(path)
    return path
