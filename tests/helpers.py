"""Plain helpers shared by several test modules (fixtures live in conftest.py): models with the
BatchNorm statistics and weights of a trained network, and the output parity check."""

import torch
from torch import nn

TOLERANCE = 1e-4  # max abs difference of float32 outputs of order 1


def with_trained_statistics(model: nn.Module, seed: int = 0) -> nn.Module:
    """Fresh BatchNorms are identities (mean 0, var 1, γ 1, β 0), which would make folding trivial;
    give every one the kind of statistics a trained network has. In eval mode."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                n = module.num_features
                module.running_mean.copy_(torch.rand(n, generator=generator) - 0.5)
                module.running_var.copy_(0.2 + 2 * torch.rand(n, generator=generator))
                module.weight.copy_(0.5 + torch.rand(n, generator=generator))
                module.bias.copy_(0.4 * torch.rand(n, generator=generator) - 0.2)
    return model.eval()


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


def one_error_line(capsys, *fragments):
    err = capsys.readouterr().err
    # the per-epoch progress lines of a run that trained before failing are not part of the error
    lines = [line for line in err.splitlines() if line.strip() and not line.startswith("epoch ")]
    assert len(lines) == 1, err
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]
