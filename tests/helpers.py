"""Plain helpers shared by several test modules (fixtures live in conftest.py): models with the
BatchNorm statistics and weights of a trained network, the output parity check, and torchvision's
MobileNetV2 module layout, transcribed (test modules never import from one another)."""

import torch
import torch.nn.functional as F
from torch import nn

TOLERANCE = 1e-4  # max abs difference of float32 outputs of order 1


def randomize_batchnorm(model: nn.Module, seed: int = 0, damped: bool = False) -> nn.Module:
    """Fresh BatchNorms are identities (mean 0, var 1, γ 1, β 0), which would hide a mix-up of their
    four vectors and make folding trivial; give every one the kind of statistics a trained network
    has: variance 0.2 to 2.2 and γ 0.5 to 1.5 (some channels amplified, some damped), or with
    `damped` variance 1 to 2 and γ 0.5 to 1 (no channel amplified: a deep random network's outputs
    stay of order 1). Returns `model`, in eval mode."""
    variance_low, variance_span, gamma_span = (1.0, 1.0, 0.5) if damped else (0.2, 2.0, 1.0)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                n = module.num_features
                module.running_mean.copy_(torch.rand(n, generator=generator) - 0.5)
                module.running_var.copy_(variance_low + variance_span * torch.rand(n, generator=generator))
                module.weight.copy_(0.5 + gamma_span * torch.rand(n, generator=generator))
                module.bias.copy_(0.4 * torch.rand(n, generator=generator) - 0.2)
    return model.eval()


def randomized(model: nn.Module, seed: int = 0) -> nn.Module:
    """Random weights (scaled so that outputs stay of order 1: then an absolute tolerance of 1e-4 is
    a meaningful one for float32) and BatchNorm statistics (`randomize_batchnorm`), in eval mode."""
    generator = torch.Generator().manual_seed(seed)
    randomize_batchnorm(model, seed, damped=True)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, (nn.Conv2d, nn.Linear)):
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


# --------------------------------------------------------------------------------------------
# torchvision's layout, transcribed from torchvision/models/mobilenetv2.py (only what the state
# dict and the forward pass depend on); test_interop_torchvision adds V3 on these pieces.
# --------------------------------------------------------------------------------------------
def make_divisible(v, divisor=8):
    new_v = max(divisor, int(v + divisor / 2) // divisor * divisor)
    return new_v + divisor if new_v < 0.9 * v else new_v


def conv_norm_act(cin, cout, kernel=3, stride=1, groups=1, act=nn.ReLU6, norm=nn.BatchNorm2d):
    layers = [nn.Conv2d(cin, cout, kernel, stride, (kernel - 1) // 2, groups=groups, bias=False), norm(cout)]
    return nn.Sequential(*layers, *([act(inplace=True)] if act else []))


class V2Block(nn.Module):
    def __init__(self, inp, oup, stride, expand_ratio):
        super().__init__()
        hidden = int(round(inp * expand_ratio))
        self.use_res_connect = stride == 1 and inp == oup
        layers = [conv_norm_act(inp, hidden, 1)] if expand_ratio != 1 else []
        layers += [
            conv_norm_act(hidden, hidden, stride=stride, groups=hidden),
            nn.Conv2d(hidden, oup, 1, 1, 0, bias=False),
            nn.BatchNorm2d(oup),
        ]
        self.conv = nn.Sequential(*layers)

    def forward(self, x):
        return x + self.conv(x) if self.use_res_connect else self.conv(x)


class TorchvisionV2(nn.Module):
    def __init__(self, num_classes=1000, width_mult=1.0):
        super().__init__()
        setting = [
            [1, 16, 1, 1],
            [6, 24, 2, 2],
            [6, 32, 3, 2],
            [6, 64, 4, 2],
            [6, 96, 3, 1],
            [6, 160, 3, 2],
            [6, 320, 1, 1],
        ]
        channels = make_divisible(32 * width_mult)
        last = make_divisible(1280 * max(1.0, width_mult))
        features = [conv_norm_act(3, channels, stride=2)]
        for t, c, n, s in setting:
            out = make_divisible(c * width_mult)
            for i in range(n):
                features.append(V2Block(channels, out, s if i == 0 else 1, t))
                channels = out
        features.append(conv_norm_act(channels, last, 1))
        self.features = nn.Sequential(*features)
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(last, num_classes))

    def forward(self, x):
        return self.classifier(torch.flatten(F.adaptive_avg_pool2d(self.features(x), 1), 1))


def one_error_line(capsys, *fragments):
    err = capsys.readouterr().err
    # the per-epoch progress lines of a run that trained before failing are not part of the error
    lines = [line for line in err.splitlines() if line.strip() and not line.startswith("epoch ")]
    assert len(lines) == 1, err
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


def native_stderr(module: str, runner: str, path, verbose: bool) -> str:
    """What loading `path` with deploy.<module>.<runner> and running one image writes to stderr, in
    a fresh process (MOBILENETS_VERBOSE as `mobilenets -v` would set it)."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "MOBILENETS_VERBOSE": "1" if verbose else "0"}
    code = (
        f"from mobilenets.deploy.{module} import {runner}; import numpy as np; "
        f"r = {runner}({str(path)!r}); r.run(np.zeros((1, 3, 32, 32), np.float32))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr
    return result.stderr
