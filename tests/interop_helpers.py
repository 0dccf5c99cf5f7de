"""Shared by the interop parity tests: random models with real BatchNorm statistics, the parity
check, and a one-thread fixture."""

import pytest
import torch
from torch import nn

TOLERANCE = 1e-4  # max abs difference of float32 outputs of order 1


@pytest.fixture(scope="module")
def one_thread():
    # On a small shared machine OpenMP's second thread spins waiting for a busy core: one thread
    # runs these forward passes up to 100× faster there. Restored for the rest of the suite.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def randomized(model: nn.Module, seed: int = 0) -> nn.Module:
    """Random weights and BatchNorm statistics, in eval mode, scaled so that outputs stay of order 1
    (then an absolute tolerance of 1e-4 is a meaningful one for float32)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.weight.uniform_(0.5, 1.0, generator=generator)
                module.bias.normal_(0, 0.2, generator=generator)
                module.running_mean.normal_(0, 0.2, generator=generator)
                module.running_var.uniform_(1.0, 2.0, generator=generator)
            elif isinstance(module, (nn.Conv2d, nn.Linear)):
                module.weight.normal_(0, module.weight[0].numel() ** -0.5, generator=generator)
                if module.bias is not None:
                    module.bias.normal_(0, 0.1, generator=generator)
    return model.eval()


def assert_parity(reference: nn.Module, model: nn.Module, size: int = 96) -> float:
    x = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        difference = (reference(x) - model(x)).abs().max().item()
    assert difference <= TOLERANCE
    return difference
