"""timm MobileNetV1/V2/V3 → our models.

Without timm (the default here): a transcription of timm's builder (arch strings such as
"ir_r2_k3_s1_e2.3_c80", round_channels, DepthwiseSeparableConv / InvertedResidual / ConvBnAct
with timm's module names, TF "same" padding for the tf_ ports) provides state dicts and reference
outputs. Where timm is installed, the same checks run against the real models.
"""

import math
import re

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from mobilenets.pretrained import WeightMismatch, from_timm
from mobilenets.pretrained.timm import parse_timm_name, timm_name_from_file

from helpers import assert_parity as parity_at
from helpers import randomized

pytestmark = pytest.mark.usefixtures("one_thread")


def assert_parity(reference, model, size: int = 97) -> float:
    return parity_at(reference, model, size)


# --------------------------------------------------------------------------------------------
# timm's builder, transcribed (timm/models/_efficientnet_builder.py, _efficientnet_blocks.py,
# efficientnet.py `_gen_mobilenet_v1/_v2`, mobilenetv3.py `_gen_mobilenet_v3`)
# --------------------------------------------------------------------------------------------
def round_channels(channels, multiplier=1.0, divisor=8):
    value = channels * multiplier
    new_v = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return new_v + divisor if new_v < 0.9 * value else new_v


class Conv(nn.Conv2d):
    """timm's create_conv2d: symmetric padding, or TensorFlow "same" computed on each call."""

    def __init__(self, cin, cout, kernel, stride=1, groups=1, bias=False, same=False):
        super().__init__(
            cin, cout, kernel, stride, 0 if same else (kernel - 1) // 2, groups=groups, bias=bias
        )
        self.same = same

    def forward(self, x):
        if self.same:
            pads = []
            for size in (x.shape[-1], x.shape[-2]):
                total = max(
                    (math.ceil(size / self.stride[0]) - 1) * self.stride[0] + self.kernel_size[0] - size, 0
                )
                pads += [total // 2, total - total // 2]
            x = F.pad(x, pads)
        return super().forward(x)


ACTS = {"relu": nn.ReLU, "relu6": nn.ReLU6, "hard_swish": nn.Hardswish}


class SqueezeExcite(nn.Module):
    def __init__(self, channels, reduced):
        super().__init__()
        self.conv_reduce = nn.Conv2d(channels, reduced, 1, bias=True)
        self.conv_expand = nn.Conv2d(reduced, channels, 1, bias=True)

    def forward(self, x):
        return x * F.hardsigmoid(self.conv_expand(F.relu(self.conv_reduce(x.mean((2, 3), keepdim=True)))))


class Block(nn.Module):
    def __init__(self, kind, cin, cout, kernel, stride, expansion, se, act, eps, same, pw_act):
        super().__init__()
        bn = lambda c: nn.BatchNorm2d(c, eps=eps)  # noqa: E731
        self.kind, self.act = kind, act()
        self.has_skip = kind in ("ds", "ir") and stride == 1 and cin == cout and not pw_act  # dsa: noskip
        if kind == "cn":
            self.conv, self.bn1 = Conv(cin, cout, kernel, stride, same=same), bn(cout)
            return
        mid = cin if kind in ("ds", "dsa") else round_channels(cin * expansion)
        if kind == "ir":
            self.conv_pw, self.bn1 = Conv(cin, mid, 1), bn(mid)
        self.conv_dw = Conv(mid, mid, kernel, stride, groups=mid, same=same)
        dw_bn = bn(mid)
        self.se = SqueezeExcite(mid, round_channels(mid * se)) if se else None
        if kind == "ir":
            self.bn2, self.conv_pwl, self.bn3 = dw_bn, Conv(mid, cout, 1), bn(cout)
        else:
            self.bn1, self.conv_pw, self.bn2 = dw_bn, Conv(mid, cout, 1), bn(cout)
        self.pw_act = pw_act

    def forward(self, x):
        if self.kind == "cn":
            return self.act(self.bn1(self.conv(x)))
        out = x
        if self.kind == "ir":
            out = self.act(self.bn1(self.conv_pw(out)))
            out = self.act(self.bn2(self.conv_dw(out)))
        else:
            out = self.act(self.bn1(self.conv_dw(out)))
        if self.se is not None:
            out = self.se(out)
        out = self.bn3(self.conv_pwl(out)) if self.kind == "ir" else self.bn2(self.conv_pw(out))
        if self.pw_act:
            out = self.act(out)
        return out + x if self.has_skip else out


ARCH = {
    "mobilenetv1": [
        ["dsa_r1_k3_s1_c64"],
        ["dsa_r2_k3_s2_c128"],
        ["dsa_r2_k3_s2_c256"],
        ["dsa_r6_k3_s2_c512"],
        ["dsa_r2_k3_s2_c1024"],
    ],
    "mobilenetv2": [
        ["ds_r1_k3_s1_c16"],
        ["ir_r2_k3_s2_e6_c24"],
        ["ir_r3_k3_s2_e6_c32"],
        ["ir_r4_k3_s2_e6_c64"],
        ["ir_r3_k3_s1_e6_c96"],
        ["ir_r3_k3_s2_e6_c160"],
        ["ir_r1_k3_s1_e6_c320"],
    ],
    "mobilenetv3_large": [
        ["ds_r1_k3_s1_e1_c16_nre"],
        ["ir_r1_k3_s2_e4_c24_nre", "ir_r1_k3_s1_e3_c24_nre"],
        ["ir_r3_k5_s2_e3_c40_se0.25_nre"],
        ["ir_r1_k3_s2_e6_c80", "ir_r1_k3_s1_e2.5_c80", "ir_r2_k3_s1_e2.3_c80"],
        ["ir_r2_k3_s1_e6_c112_se0.25"],
        ["ir_r3_k5_s2_e6_c160_se0.25"],
        ["cn_r1_k1_s1_c960"],
    ],
    "mobilenetv3_large_minimal": [
        ["ds_r1_k3_s1_e1_c16"],
        ["ir_r1_k3_s2_e4_c24", "ir_r1_k3_s1_e3_c24"],
        ["ir_r3_k3_s2_e3_c40"],
        ["ir_r1_k3_s2_e6_c80", "ir_r1_k3_s1_e2.5_c80", "ir_r2_k3_s1_e2.3_c80"],
        ["ir_r2_k3_s1_e6_c112"],
        ["ir_r3_k3_s2_e6_c160"],
        ["cn_r1_k1_s1_c960"],
    ],
    "mobilenetv3_small": [
        ["ds_r1_k3_s2_e1_c16_se0.25_nre"],
        ["ir_r1_k3_s2_e4.5_c24_nre", "ir_r1_k3_s1_e3.67_c24_nre"],
        ["ir_r1_k5_s2_e4_c40_se0.25", "ir_r2_k5_s1_e6_c40_se0.25"],
        ["ir_r2_k5_s1_e3_c48_se0.25"],
        ["ir_r3_k5_s2_e6_c96_se0.25"],
        ["cn_r1_k1_s1_c576"],
    ],
    "mobilenetv3_small_minimal": [
        ["ds_r1_k3_s2_e1_c16"],
        ["ir_r1_k3_s2_e4.5_c24", "ir_r1_k3_s1_e3.67_c24"],
        ["ir_r1_k3_s2_e4_c40", "ir_r2_k3_s1_e6_c40"],
        ["ir_r2_k3_s1_e3_c48"],
        ["ir_r3_k3_s2_e6_c96"],
        ["cn_r1_k1_s1_c576"],
    ],
}


class TimmMobileNet(nn.Module):
    def __init__(self, timm_name, num_classes=1000):
        super().__init__()
        tf, family, minimal, width = re.match(
            r"(tf_)?(mobilenetv1|mobilenetv2|mobilenetv3_large|mobilenetv3_small)(_minimal)?_(\d+)", timm_name
        ).groups()
        mult, same, eps = int(width) / 100, bool(tf), 1e-3 if tf else 1e-5
        v3 = family.startswith("mobilenetv3")
        default_act = "relu6" if not v3 else ("relu" if minimal else "hard_swish")
        stem = 16 if v3 else 32
        stem = stem if v3 and mult < 0.75 else round_channels(stem, mult)
        self.conv_stem, self.bn1 = Conv(3, stem, 3, 2, same=same), nn.BatchNorm2d(stem, eps=eps)
        self.act1 = ACTS[default_act]()
        stages, channels = [], stem
        for stage in ARCH[family + (minimal or "")]:
            blocks = []
            for spec in stage:
                options = dict(re.findall(r"([a-z]+)([\d.]+)", "_".join(spec.split("_")[1:])))
                kind = spec.split("_")[0]
                act = ACTS["relu" if "nre" in spec else default_act]
                out = round_channels(int(options["c"]), mult)
                for i in range(int(options["r"])):
                    blocks.append(
                        Block(
                            kind,
                            channels,
                            out,
                            int(options["k"]),
                            int(options["s"]) if i == 0 else 1,
                            float(options.get("e", 1)),
                            float(options.get("se", 0)),
                            act,
                            eps,
                            same,
                            pw_act=kind == "dsa",
                        )
                    )
                    channels = out
            stages.append(nn.Sequential(*blocks))
        self.blocks = nn.Sequential(*stages)
        self.head_kind = "v3" if v3 else ("v2" if family == "mobilenetv2" else "v1")
        if v3:
            features = 1024 if "small" in family else 1280
            self.conv_head, self.act2 = nn.Conv2d(channels, features, 1, bias=True), ACTS[default_act]()
        elif family == "mobilenetv2":
            features = max(1280, round_channels(1280, mult))
            self.conv_head, self.bn2 = Conv(channels, features, 1), nn.BatchNorm2d(features, eps=eps)
            self.act2 = ACTS[default_act]()
        else:
            features = channels
        self.classifier = nn.Linear(features, num_classes)

    def forward(self, x):
        x = self.blocks(self.act1(self.bn1(self.conv_stem(x))))
        if self.head_kind == "v2":
            x = self.act2(self.bn2(self.conv_head(x)))
        x = x.mean((2, 3), keepdim=True)
        if self.head_kind == "v3":
            x = self.act2(self.conv_head(x))
        return self.classifier(x.flatten(1))


TIMM_NAMES = [
    "mobilenetv1_100",
    "mobilenetv2_035",
    "mobilenetv2_140",
    "mobilenetv3_large_100",
    "mobilenetv3_small_050",
    "mobilenetv3_small_075",
    "tf_mobilenetv3_large_minimal_100",
    "tf_mobilenetv3_small_100",
]


@pytest.mark.parametrize("timm_name", TIMM_NAMES)
def test_transcribed_timm_layout_converts_with_parity(timm_name):
    reference = randomized(TimmMobileNet(timm_name))
    state = reference.state_dict()
    model = from_timm(state, timm_name=timm_name)  # every key must find its place
    name, width, minimal, tf_port = parse_timm_name(timm_name)
    assert (model.config.name, model.config.width_mult) == (name, width)
    assert model.config.padding == ("same" if tf_port else "torch")
    assert model.config.bn_eps == (1e-3 if tf_port else 1e-5)
    assert_parity(reference, model)  # odd size: TF "same" padding of the tf_ ports matters


def test_timm_needs_its_model_name_unless_the_file_name_says_it(tmp_path):
    state = randomized(TimmMobileNet("tf_mobilenetv3_small_100")).state_dict()
    with pytest.raises(ValueError, match="pass timm_name"):
        from_timm(state)
    torch.save(state, tmp_path / "tf_mobilenetv3_small_100-37f49e2b.pth")
    assert from_timm(tmp_path / "tf_mobilenetv3_small_100-37f49e2b.pth").config.padding == "same"
    assert timm_name_from_file("mobilenetv3_large_100_ra-f55367f5.pth") == "mobilenetv3_large_100"
    assert timm_name_from_file("model.safetensors") is None


@pytest.mark.parametrize(
    "timm_name, why",
    [
        ("mobilenetv2_110d", "more blocks"),
        ("mobilenetv1_100h", "head convolution"),
        ("mobilenetv3_rw", "re-implementation"),
        ("mobilenetv4_conv_small", "MobileNetV4"),
    ],
)
def test_unsupported_timm_models_say_why(timm_name, why):
    with pytest.raises(ValueError, match=why):
        parse_timm_name(timm_name)


def test_wrong_timm_name_names_the_first_mismatching_layer():
    state = randomized(TimmMobileNet("mobilenetv3_small_075")).state_dict()
    with pytest.raises(
        WeightMismatch,
        match=r"blocks\.0\.0\.conv_pw\.weight has shape \(16, 16, 1, 1\) but "
        r"features\.1\.project\.conv\.weight of mobilenet_v3_small "
        r"\(width_mult=0\.5, num_classes=1000\) has shape \(8, 16, 1, 1\)",
    ):
        from_timm(state, timm_name="mobilenetv3_small_050")


def test_weights_left_over_mean_another_architecture():
    state = randomized(TimmMobileNet("mobilenetv3_large_100")).state_dict()
    with pytest.raises(WeightMismatch, match="no place in mobilenet_v3_large .*: extra.weight"):
        from_timm(state | {"extra.weight": torch.zeros(1)}, timm_name="mobilenetv3_large_100")


# --------------------------------------------------------------------------------------------
# The real timm (installed on the GPU machine, not here)
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("timm_name", TIMM_NAMES + ["mobilenetv1_125", "mobilenetv3_large_075"])
def test_real_timm_parity(tmp_path, timm_name):
    timm = pytest.importorskip("timm")
    reference = randomized(timm.create_model(timm_name, pretrained=False))
    torch.save(reference.state_dict(), tmp_path / "timm.pth")
    assert_parity(reference, from_timm(tmp_path / "timm.pth", timm_name=timm_name))
    assert_parity(reference, from_timm(reference), size=128)  # the name read from the model itself
