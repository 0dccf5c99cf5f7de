"""ExecuTorch export (.pte with the XNNPACK delegate) and a runner for the files, through
ExecuTorch's Python runtime: the path from a checkpoint to a phone.

    export_executorch(model, "model.pte")                                   # float32
    export_executorch(model, "model_int8.pte", int8=True, calibration=images)
    ExecutorchRunner("model.pte").run(images)                               # logits

The whole network is one XNNPACK segment. ExecuTorch runs, outside the delegate, every op the
partitioner leaves behind, each with its portable (slow) kernel and a copy of the activations
between segments; the classifier head's `mean((2, 3))` without keepdim is such an op (XNNPACK's
global average pooling keeps the spatial dimensions), which split MobileNetV1 into two segments.
`base.DeployableClassifier` (shared with LiteRT) pools with keepdim and then reshapes, which XNNPACK
takes whole.

int8: the XNNPACK PT2E quantizer, symmetric int8 with per-channel weight scales (what XNNPACK
recommends, and what keeps MobileNets accurate after BatchNorm folding: see export.INT8_SETTINGS),
calibrated on images preprocessed as the model expects.

ExecuTorch and the other phone runtimes are optional dependencies: `pip install
'mobilenets[executorch]'`. A missing package, a missing file or a file that is not a valid
program raises ValueError / FileNotFoundError with one line that says what to do.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..models import MobileNet
from .base import (
    DeployableClassifier,
    first_line,
    native_output_silenced,
    quantize_pt2e,
    quiet_converter,
    require,
    run_images,
    traced_input,
    with_dynamic_batch,
)


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
            module = quantize_pt2e(module, quantizer, example, dynamic_shapes, calibration)
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
        # a dynamic batch: up to the bound the file records at a time
        return run_images(self._run_batch, images, self.input_shape, self.path, self.max_batch)

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
