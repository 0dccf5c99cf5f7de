import os

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
