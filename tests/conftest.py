import contextlib
import fcntl
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

# Keras is the peer in parity tests; it must run on our torch, never try TensorFlow or JAX.
os.environ.setdefault("KERAS_BACKEND", "torch")
# Without CUDA the Triton kernels run in Triton's interpreter, which triton reads when it is first
# imported, and `mobilenets.factory` imports it: so this must precede every test module's imports
# (set in a test module, it came too late whenever an earlier module had imported the package).
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")
# Under pytest-xdist (`make test` runs two workers on a 2-core machine) each worker computes on one
# intra-op thread: two workers of two threads each would oversubscribe the cores, and one thread is
# what the single-process run gives most tests anyway (the `digits` and `one_thread` fixtures set it).
# Tests that time something pass their own thread count (bench, profile), or compare two timings taken
# under the same threads (compare).
if os.environ.get("PYTEST_XDIST_WORKER"):
    torch.set_num_threads(1)


def pytest_collection_modifyitems(config, items):
    # MOBILENETS_FAST=1 skips the tests marked slow (make test runs them all)
    if os.environ.get("MOBILENETS_FAST") == "1":
        skip = pytest.mark.skip(reason="MOBILENETS_FAST=1")
        for item in items:
            if "slow" in item.keywords:
                item.add_marker(skip)


@contextlib.contextmanager
def torch_threads(count: int):
    """PyTorch's intra-op threads set to `count` for the block, and the count it had restored after."""
    threads = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def one_thread():
    # On a small shared machine OpenMP's second thread spins waiting for a busy core: one thread
    # runs these small models' forward passes up to 100× faster there. Restored afterwards.
    with torch_threads(1):
        yield


@pytest.fixture
def two_threads():
    """Torch runs 2 intra-op threads during the test, and the count it had again after: for tests that
    check a measurement at --threads 1 restores the caller's count (under xdist the caller's is 1 too,
    which would pass unrestored)."""
    with torch_threads(2):
        yield


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


def made_once(tmp_path_factory, name: str, make) -> Path:
    """A folder that `make(folder)` fills, made once per test run: under pytest-xdist the first worker
    to ask makes it in the run's own temporary folder (above each worker's) while the others wait, and
    every worker then copies it into its own, so that what one test writes there no other sees."""
    own = tmp_path_factory.mktemp(name)
    if not os.environ.get("PYTEST_XDIST_WORKER"):
        make(own)
        return own
    run = tmp_path_factory.getbasetemp().parent
    shared, done = run / f"shared-{name}", run / f"shared-{name}.done"
    with open(run / f"shared-{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes, or its process dies
        if not done.exists():
            shutil.rmtree(shared, ignore_errors=True)  # a worker that died halfway
            shared.mkdir()
            make(shared)
            done.touch()
    shutil.copytree(shared, own, dirs_exist_ok=True)
    return own


@pytest.fixture(scope="session")
def digits(tmp_path_factory):
    """A MobileNetV1 (width 0.25, 32×32) trained for a few seconds on digits, its checkpoint, and a
    class-per-folder image folder of held-out digits for calibration and evaluation. Trained once per
    test run (made_once): ~14 s of CPU."""
    torch.set_num_threads(1)
    root = made_once(tmp_path_factory, "digits", train_digits)
    return root / "digits.safetensors", root / "images"


def train_digits(root: Path) -> None:
    from PIL import Image
    from sklearn.datasets import load_digits

    from mobilenets import create_model
    from mobilenets.checkpoint import save_checkpoint

    data = load_digits()
    pixels = (data.images / 16.0 * 255).astype(np.uint8)  # 8×8, 0..16 → 0..255
    order = np.random.default_rng(0).permutation(len(pixels))
    train, held_out = order[:1400], order[1400:]
    images = torch.from_numpy(pixels).float().div(255)[:, None].repeat(1, 3, 1, 1)
    images = nn.functional.interpolate(images, size=32, mode="bilinear", align_corners=False)
    images = (images - 0.5) / 0.5
    labels = torch.from_numpy(data.target)

    torch.manual_seed(0)
    model = create_model("mobilenet_v1", width_mult=0.25, resolution=32, num_classes=10)
    optimizer = torch.optim.Adam(model.parameters(), lr=5e-3)
    model.train()
    # 12 epochs (~95% on held-out digits, seconds): a model trained only to ~88% has so many near-ties
    # that int8 agreement depended on the CPU's int8 kernels (94.6% on an AVX2-only EPYC, ≥ 95% on AVX-512).
    for _ in range(12):
        for batch in torch.from_numpy(train).split(64):
            loss = nn.functional.cross_entropy(model(images[batch]), labels[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    model.eval()
    save_checkpoint(
        root / "digits.safetensors",
        model,
        class_names=[str(d) for d in range(10)],
        preprocessing={"size": 32, "mean": [0.5] * 3, "std": [0.5] * 3},
    )
    folder = root / "images"
    for i in held_out:  # the same upscaling, through Pillow, as a user's folder would be read
        (folder / str(data.target[i])).mkdir(parents=True, exist_ok=True)
        image = Image.fromarray(pixels[i]).resize((32, 32), Image.BILINEAR).convert("RGB")
        image.save(folder / str(data.target[i]) / f"{i}.png")
