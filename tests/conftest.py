import os

import pytest
import torch

# Keras is the peer in parity tests; it must run on our torch, never try TensorFlow or JAX.
os.environ.setdefault("KERAS_BACKEND", "torch")


@pytest.fixture(scope="module")
def one_thread():
    # On a small shared machine OpenMP's second thread spins waiting for a busy core: one thread
    # runs these small models' forward passes up to 100× faster there. Restored afterwards.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
