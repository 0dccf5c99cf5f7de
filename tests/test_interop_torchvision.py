"""torchvision MobileNetV2/V3 → our models.

Without torchvision (the default here): a transcription of torchvision's module layout (from
torchvision/models/mobilenetv2.py and mobilenetv3.py) provides the state dicts and reference
outputs, so the key mapping and the conventions are checked anyway. Where torchvision is
installed, the same checks run against the real thing.
"""

from functools import partial

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from mobilenets.pretrained import WeightMismatch, from_torchvision
from mobilenets.pretrained.torchvision import detect_model

from helpers import TorchvisionV2, assert_parity, conv_norm_act, make_divisible, randomized

pytestmark = pytest.mark.usefixtures("one_thread")


# --------------------------------------------------------------------------------------------
# torchvision's layout, transcribed (only what the state dict and the forward pass depend on)
# --------------------------------------------------------------------------------------------
class SqueezeExcitation(nn.Module):
    def __init__(self, channels):
        super().__init__()
        squeeze = make_divisible(channels // 4)
        self.fc1 = nn.Conv2d(channels, squeeze, 1)
        self.fc2 = nn.Conv2d(squeeze, channels, 1)

    def forward(self, x):
        return x * F.hardsigmoid(self.fc2(F.relu(self.fc1(F.adaptive_avg_pool2d(x, 1)))))


class V3Block(nn.Module):
    def __init__(self, cin, kernel, expanded, cout, use_se, activation, stride, norm):
        super().__init__()
        act = nn.Hardswish if activation == "HS" else nn.ReLU
        self.use_res_connect = stride == 1 and cin == cout
        layers = [conv_norm_act(cin, expanded, 1, act=act, norm=norm)] if expanded != cin else []
        layers.append(conv_norm_act(expanded, expanded, kernel, stride, expanded, act=act, norm=norm))
        if use_se:
            layers.append(SqueezeExcitation(expanded))
        layers.append(conv_norm_act(expanded, cout, 1, act=None, norm=norm))
        self.block = nn.Sequential(*layers)

    def forward(self, x):
        out = self.block(x)
        return out + x if self.use_res_connect else out


V3_LARGE = [
    (16, 3, 16, 16, False, "RE", 1),
    (16, 3, 64, 24, False, "RE", 2),
    (24, 3, 72, 24, False, "RE", 1),
    (24, 5, 72, 40, True, "RE", 2),
    (40, 5, 120, 40, True, "RE", 1),
    (40, 5, 120, 40, True, "RE", 1),
    (40, 3, 240, 80, False, "HS", 2),
    (80, 3, 200, 80, False, "HS", 1),
    (80, 3, 184, 80, False, "HS", 1),
    (80, 3, 184, 80, False, "HS", 1),
    (80, 3, 480, 112, True, "HS", 1),
    (112, 3, 672, 112, True, "HS", 1),
    (112, 5, 672, 160, True, "HS", 2),
    (160, 5, 960, 160, True, "HS", 1),
    (160, 5, 960, 160, True, "HS", 1),
]
V3_SMALL = [
    (16, 3, 16, 16, True, "RE", 2),
    (16, 3, 72, 24, False, "RE", 2),
    (24, 3, 88, 24, False, "RE", 1),
    (24, 5, 96, 40, True, "HS", 2),
    (40, 5, 240, 40, True, "HS", 1),
    (40, 5, 240, 40, True, "HS", 1),
    (40, 5, 120, 48, True, "HS", 1),
    (48, 5, 144, 48, True, "HS", 1),
    (48, 5, 288, 96, True, "HS", 2),
    (96, 5, 576, 96, True, "HS", 1),
    (96, 5, 576, 96, True, "HS", 1),
]


class TorchvisionV3(nn.Module):
    def __init__(self, setting, last_channel, num_classes=1000):
        super().__init__()
        norm = partial(nn.BatchNorm2d, eps=0.001, momentum=0.01)
        features = [conv_norm_act(3, setting[0][0], stride=2, act=nn.Hardswish, norm=norm)]
        features += [V3Block(*row, norm=norm) for row in setting]
        last_in = setting[-1][3]
        features.append(conv_norm_act(last_in, 6 * last_in, 1, act=nn.Hardswish, norm=norm))
        self.features = nn.Sequential(*features)
        self.classifier = nn.Sequential(
            nn.Linear(6 * last_in, last_channel),
            nn.Hardswish(inplace=True),
            nn.Dropout(p=0.2, inplace=True),
            nn.Linear(last_channel, num_classes),
        )

    def forward(self, x):
        return self.classifier(torch.flatten(F.adaptive_avg_pool2d(self.features(x), 1), 1))


TRANSCRIBED = {
    "mobilenet_v2": lambda: TorchvisionV2(),
    "mobilenet_v3_large": lambda: TorchvisionV3(V3_LARGE, 1280),
    "mobilenet_v3_small": lambda: TorchvisionV3(V3_SMALL, 1024),
}


@pytest.mark.parametrize("name", list(TRANSCRIBED))
def test_transcribed_torchvision_layout_converts_with_parity(name):
    reference = randomized(TRANSCRIBED[name]())
    state = reference.state_dict()
    assert detect_model(state) == name
    model = from_torchvision(state)  # every key must find its place, or the conversion fails
    assert model.config.name == name and model.config.padding == "torch"
    assert model.config.bn_eps == (1e-5 if name == "mobilenet_v2" else 1e-3)
    assert model.config.extra["preprocessing"]["mean"] == pytest.approx([0.485, 0.456, 0.406])
    assert_parity(reference, model)


def test_v2_width_is_read_from_the_weights_and_checked():
    reference = randomized(TorchvisionV2(num_classes=10, width_mult=0.5))
    model = from_torchvision(reference.state_dict())
    assert (model.config.width_mult, model.config.num_classes) == (0.5, 10)
    assert_parity(reference, model)
    with pytest.raises(
        WeightMismatch,
        match=r"features\.0\.0\.weight has shape \(16, 3, 3, 3\) but "
        r"features\.0\.conv\.weight of mobilenet_v2 \(width_mult=1",
    ):
        from_torchvision(reference.state_dict(), width_mult=1.0)


def test_a_v3_file_claimed_as_v2_fails_naming_the_layer(tmp_path):
    torch.save(randomized(TorchvisionV3(V3_SMALL, 1024)).state_dict(), tmp_path / "small.pth")
    with pytest.raises(WeightMismatch, match="features.1.conv"):
        from_torchvision(tmp_path / "small.pth", name="mobilenet_v2")
    with pytest.raises(WeightMismatch, match="not a torchvision mobilenet"):
        from_torchvision({"fc.weight": torch.zeros(2, 2)})


def test_published_file_names_set_the_evaluation_resize(tmp_path):
    path = tmp_path / "mobilenet_v3_large-5c1a4163.pth"  # torchvision's IMAGENET1K_V2 recipe: resize 232
    torch.save(randomized(TorchvisionV3(V3_LARGE, 1280)).state_dict(), path)
    recipe = from_torchvision(path).config.extra["preprocessing"]
    assert (recipe["resize"], recipe["size"]) == (232, 224)


# --------------------------------------------------------------------------------------------
# The real torchvision (installed on the GPU machine, not here)
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["mobilenet_v2", "mobilenet_v3_large", "mobilenet_v3_small"])
def test_real_torchvision_parity(tmp_path, name):
    torchvision = pytest.importorskip("torchvision")
    reference = randomized(getattr(torchvision.models, name)(weights=None))
    torch.save(reference.state_dict(), tmp_path / "tv.pth")
    assert_parity(reference, from_torchvision(tmp_path / "tv.pth"), size=128)
    assert_parity(reference, from_torchvision(reference), size=97)
