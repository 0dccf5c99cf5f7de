"""Triton GPU kernels for depthwise separable convolutions, each with the PyTorch reference it is
tested against.

triton is an optional dependency (`pip install 'mobilenets[triton]'`): this package imports it only
in its `triton_*` modules, so `import mobilenets` and `import mobilenets.kernels` work without it.
Without a GPU, Triton's interpreter (TRITON_INTERPRET=1, set before triton is imported) runs the
kernels on CPU tensors: that is how the tests run on CPU machines and in CI.
"""

from .reference import ACTIVATION_CODES, depthwise_conv2d_reference, separable_conv2d_reference

__all__ = ["ACTIVATION_CODES", "depthwise_conv2d_reference", "separable_conv2d_reference"]
