import os

# Keras is the peer in parity tests; it must run on our torch, never try TensorFlow or JAX.
os.environ.setdefault("KERAS_BACKEND", "torch")


def pytest_collection_modifyitems(config, items):
    # MOBILENETS_FAST=1 skips the tests marked slow (make test runs them all)
    if os.environ.get("MOBILENETS_FAST") == "1":
        import pytest

        skip = pytest.mark.skip(reason="MOBILENETS_FAST=1")
        for item in items:
            if "slow" in item.keywords:
                item.add_marker(skip)
