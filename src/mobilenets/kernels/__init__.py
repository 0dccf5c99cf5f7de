"""Triton GPU kernels for depthwise separable convolutions, each with the PyTorch reference it is
tested against, and the switch that runs a model on them: `use_backend(model, "triton")`.

triton is an optional dependency (`pip install 'mobilenets[triton]'`): only the `triton_*` modules
import it, and only when it is installed, so `import mobilenets` and `import mobilenets.kernels`
work without it. Without a GPU, Triton's interpreter (TRITON_INTERPRET=1, set before triton is
imported) runs the kernels on CPU tensors: that is how the tests run on CPU machines and in CI.
See docs/kernels.md.
"""

from .backend import BACKENDS, TRITON_INSTALLED, backend_of, check_backend, unavailable_reason, use_backend
from .reference import ACTIVATION_CODES, depthwise_conv2d_reference, separable_conv2d_reference

__all__ = [
    "ACTIVATION_CODES",
    "BACKENDS",
    "TRITON_INSTALLED",
    "backend_of",
    "check_backend",
    "depthwise_conv2d_reference",
    "separable_conv2d_reference",
    "unavailable_reason",
    "use_backend",
]
