"""ExecuTorch export (.pte with the XNNPACK delegate) and a runner for the files, through
ExecuTorch's Python runtime: the path from a checkpoint to a phone.

    export_executorch(model, "model.pte")                                   # float32
    export_executorch(model, "model_int8.pte", int8=True, calibration=images)
    ExecutorchRunner("model.pte").run(images)                               # logits

The whole network is one XNNPACK segment. ExecuTorch runs, outside the delegate, every op the
partitioner leaves behind, each with its portable (slow) kernel and a copy of the activations
between segments; the classifier head's `mean((2, 3))` without keepdim is such an op (XNNPACK's
global average pooling keeps the spatial dimensions), which split MobileNetV1 into two segments.
`DeployableClassifier` pools with keepdim and then flattens, which XNNPACK takes whole.

int8: the XNNPACK PT2E quantizer, symmetric int8 with per-channel weight scales (what XNNPACK
recommends, and what keeps MobileNets accurate after BatchNorm folding: see export.INT8_SETTINGS),
calibrated on images preprocessed as the model expects.

ExecuTorch and the other phone runtimes are optional dependencies: `pip install
'mobilenets[executorch]'`. A missing package, a missing file or a file that is not a valid
program raises ValueError / FileNotFoundError with one line that says what to do.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..fuse import fuse_bn
from ..models import MobileNet
from .export import native_output_silenced, quiet_tools, require
from .export import run_in_batches as export_run_in_batches

# The largest batch an export declares for its dynamic batch dimension (runners split larger
# ones). ExecuTorch 1.5.1 plans less: its .pte files took 15 images at most (measured).
MAX_DYNAMIC_BATCH = 64
CALIBRATION_BATCH = 32  # at most MAX_DYNAMIC_BATCH


class DeployableClassifier(nn.Module):
    """A classifier `MobileNet` with BatchNorm folded and a head every mobile delegate takes whole:
    the global average pool keeps its spatial dimensions (`mean(keepdim=True)`, XNNPACK's global
    average pooling) and a reshape to (-1, channels) feeds the linear layers: `flatten` would
    record the batch as a symbolic size, which neither XNNPACK's reshape nor litert-torch's
    lowering accepts with a dynamic batch. Same arithmetic as `model.head` in eval mode (dropout
    is the identity there)."""

    def __init__(self, model: MobileNet):
        super().__init__()
        if not model.has_classifier:
            raise ValueError(
                "export needs a classifier; this is a feature extractor (features_only or num_classes=0)"
            )
        fused = fuse_bn(model)  # a copy, in eval mode
        head = fused.head
        assert head is not None  # the copy's, checked above
        self.features = fused.features
        self.hidden = head.hidden
        self.hidden_act = head.hidden_act
        self.fc = head.fc
        self.eval()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x).mean((2, 3), keepdim=True)
        x = x.view(-1, x.shape[1])
        if self.hidden is not None and self.hidden_act is not None:  # (both, or neither)
            x = self.hidden_act(self.hidden(x))
        return self.fc(x)


def quiet_converter():
    """Exporters, quantizers and lowerings log to the root logger and warn about their internals."""
    return quiet_tools("")


def traced_input(model: MobileNet, batch_size: int, resolution: int | None) -> tuple[torch.Tensor, tuple]:
    """An example batch of `batch_size` images to trace, and a dynamic batch dimension (any batch
    from 1 to max(batch_size, MAX_DYNAMIC_BATCH)) for exports that take one. Tracing a dynamic
    batch needs at least two images (torch.export turns a dimension seen at size 1 into the
    constant 1): `with_dynamic_batch` gives them."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer; got {batch_size!r}")
    resolution = resolution or model.config.resolution
    example = torch.randn(
        batch_size,
        model.config.in_channels,
        resolution,
        resolution,
        generator=torch.Generator().manual_seed(0),
    )
    return example, ({0: torch.export.Dim("batch", min=1, max=max(batch_size, MAX_DYNAMIC_BATCH))},)


def with_dynamic_batch(example: torch.Tensor) -> torch.Tensor:
    return example if len(example) > 1 else torch.cat([example, example])


def check_calibration(calibration: np.ndarray | None, example: torch.Tensor) -> np.ndarray:
    if calibration is None or len(calibration) == 0:
        raise ValueError(
            "int8 export needs calibration images (N×C×H×W float32, preprocessed as the "
            "model expects; e.g. --calibration FOLDER)"
        )
    calibration = np.asarray(calibration, dtype=np.float32)
    if calibration.ndim != 4 or calibration.shape[1:] != tuple(example.shape[1:]):
        raise ValueError(
            f"calibration images must be N×{'×'.join(map(str, example.shape[1:]))}; "
            f"got shape {calibration.shape}"
        )
    return calibration


def calibrate(prepared: Callable[[torch.Tensor], object], calibration: np.ndarray) -> None:
    """Run the observers of a PT2E-prepared module over every calibration image."""
    with torch.no_grad():
        for start in range(0, len(calibration), CALIBRATION_BATCH):
            prepared(torch.from_numpy(calibration[start : start + CALIBRATION_BATCH]))


def quantize_pt2e(
    module: nn.Module,
    quantizer: Any,
    example: torch.Tensor,
    dynamic_shapes: tuple | None,
    calibration: np.ndarray,
    fold_quantize: bool = True,
) -> nn.Module:
    """PT2E static quantization of `module` with `quantizer`, calibrated on `calibration`: a
    module whose graph carries quantize/dequantize pairs, for a backend to lower."""
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    # Captured with a dynamic batch, so that calibration batches need not be the file's batch.
    captured = torch.export.export(module, (with_dynamic_batch(example),), dynamic_shapes=dynamic_shapes)
    prepared = prepare_pt2e(captured.module(), quantizer)
    calibrate(prepared, calibration)
    return convert_pt2e(prepared, fold_quantize=fold_quantize)


def export_executorch(
    model: MobileNet,
    path: str | os.PathLike,
    *,
    int8: bool = False,
    calibration: np.ndarray | None = None,
    batch_size: int = 1,
    resolution: int | None = None,
) -> Path:
    """Fold BatchNorm, lower `model` to an ExecuTorch program with the XNNPACK delegate (the
    whole network in one delegated segment), write it to `path` (.pte).

    The input is N×C×H×W float32 at `resolution` (default: the model's), N dynamic: the export
    declares 1 to max(batch_size, MAX_DYNAMIC_BATCH), but ExecuTorch plans the input's memory
    for the bound it derives itself (15 images with ExecuTorch 1.5.1, measured on MobileNetV1 at
    16 and 32 pixels), which the file records and `ExecutorchRunner` reads. The output is the
    logits.
    With int8, weights are int8 per channel and activations int8 per tensor, calibrated on
    `calibration` (N×C×H×W float32, preprocessed as the model expects).
    """
    require("executorch", "executorch", "ExecuTorch")
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
        XNNPACKQuantizer,
        get_symmetric_quantization_config,
    )
    from executorch.exir import to_edge_transform_and_lower

    module: nn.Module = DeployableClassifier(model)
    example, dynamic_shapes = traced_input(model, batch_size, resolution)
    example = with_dynamic_batch(example)
    with quiet_converter():
        if int8:
            quantizer = XNNPACKQuantizer().set_global(get_symmetric_quantization_config(is_per_channel=True))
            module = quantize_pt2e(
                module, quantizer, example, dynamic_shapes, check_calibration(calibration, example)
            )
        program = torch.export.export(module, (example,), dynamic_shapes=dynamic_shapes)
        program = program.run_decompositions({torch.ops.aten.hardsigmoid.default: hard_sigmoid_as_relu6})
        lowered = to_edge_transform_and_lower(program, partitioner=[XnnpackPartitioner()])
        check_one_segment(lowered.exported_program().graph_module)
        buffer = lowered.to_executorch().buffer
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(buffer)
    return path


def hard_sigmoid_as_relu6(x: torch.Tensor) -> torch.Tensor:
    """V3's hard-sigmoid as relu6(x + 3) / 6 on Python scalars (Keras's form). ExecuTorch's own
    decomposition of hardsigmoid computes on scalar tensor constants whose dtype copies it leaves
    outside the XNNPACK delegate, so V3 would run in pieces; relu6, add and mul are taken whole.
    (The ONNX export keeps the native HardSigmoid op.)"""
    return torch.nn.functional.relu6(x + 3.0) * (1.0 / 6.0)


def check_one_segment(graph_module: torch.fx.GraphModule) -> None:
    """The lowered graph must be one delegate call (and the getitem that unpacks its output)."""
    targets = [str(node.target) for node in graph_module.graph.nodes if node.op == "call_function"]
    delegates = sum("executorch_call_delegate" in target for target in targets)
    left = sorted(
        {target for target in targets if "executorch_call_delegate" not in target and "getitem" not in target}
    )
    if delegates != 1 or left:
        raise RuntimeError(
            f"XNNPACK took the network in {delegates} segments and left {left or 'nothing'} "
            "outside; a mobilenets layer needs a delegatable form (DeployableClassifier)"
        )


def run_in_batches(
    run_batch: Callable[[np.ndarray], np.ndarray], images: np.ndarray, batch_size: int | None, max_batch: int
) -> np.ndarray:
    """Logits of every image through `run_batch`, fed `batch_size` images at a time (the last
    chunk padded with zeros and the padding's outputs dropped), or up to `max_batch` at a time
    when the batch is dynamic (batch_size None)."""
    return export_run_in_batches(run_batch, images, batch_size or max_batch, pad=batch_size is not None)


def check_images(images: np.ndarray, input_shape: tuple, path: Path) -> None:
    if images.ndim != 4 or tuple(images.shape[1:]) != tuple(input_shape[1:]):
        raise ValueError(
            f"{path} takes N×{'×'.join(map(str, input_shape[1:]))} images; got shape {images.shape}"
        )


class ExecutorchRunner:
    """Runs a .pte classifier with ExecuTorch's Python runtime (XNNPACK kernels).

    `input_shape` is (N, C, H, W) with N None when the file takes any batch up to its bound;
    `run` takes any number of float32 images (normalized, N×C×H×W) and returns float32 logits.
    `threads` sets XNNPACK's thread pool, which is shared by the whole process.
    """

    def __init__(self, path: str | os.PathLike, threads: int | None = None):
        require("executorch", "executorch", "ExecuTorch")
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"no ExecuTorch program at {self.path}")
        try:
            with native_output_silenced():  # importing and loading log (torchao's kernels, CPU probing)
                from executorch.runtime import Runtime

                runtime = Runtime.get()
                if threads is not None:
                    from executorch.extension.pybindings.portable_lib import _unsafe_reset_threadpool

                    _unsafe_reset_threadpool(threads)
                method = runtime.load_program(self.path).load_method("forward")
            sizes = tuple(method.metadata.input_tensor_meta(0).sizes()) if method is not None else ()
        except (RuntimeError, ValueError) as error:
            raise ValueError(
                f"{self.path} is not a valid ExecuTorch program ({first_line(error)}); "
                "export it again: mobilenets export CHECKPOINT --format executorch"
            ) from None
        if len(sizes) != 4:
            raise ValueError(
                f"{self.path} does not hold a `forward` method taking N×C×H×W images; "
                "export it with: mobilenets export CHECKPOINT --format executorch"
            )
        self.method = method
        self.max_batch = sizes[0]
        self.dynamic = accepts_smaller_batches(method, sizes)
        self.input_shape = ((None,) if self.dynamic else (sizes[0],)) + sizes[1:]

    def run(self, images: np.ndarray) -> np.ndarray:
        images = np.asarray(images, dtype=np.float32)
        check_images(images, self.input_shape, self.path)
        return run_in_batches(self._run_batch, images, self.input_shape[0], self.max_batch)

    def _run_batch(self, batch: np.ndarray) -> np.ndarray:
        return self.method.execute([torch.from_numpy(batch)])[0].numpy().astype(np.float32, copy=True)


def accepts_smaller_batches(method: Any, sizes: tuple[int, ...]) -> bool:
    """Whether the program's batch is dynamic (bounded by sizes[0]) rather than fixed.

    The runtime's metadata gives the sizes memory was planned for, not whether they are bounds,
    so one image is offered: a fixed-shape program refuses it (and runs nothing)."""
    if sizes[0] == 1:
        return False
    try:
        method.execute([torch.zeros((1,) + sizes[1:])])
    except RuntimeError:
        return False
    return True


def first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return text[0] if text else type(error).__name__
