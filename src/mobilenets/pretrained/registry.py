"""The weights registry: one typed `Weights` record per published file, and the queries on them.

Every source registers here: Keras applications, torchvision and timm (their files, tabulated from
their own code), and the checkpoints this project trained and ships in `published/` (their facts
read from each file's own header, so nothing about them is written twice). `create_model(...,
weights=KEY)`, `mobilenets weights`, `train --weights`, the accuracy gates and the benchmarks all
ask this module, in the spirit of torchvision's `Weights` enums and timm's pretrained configs.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from ..checkpoint import lineage_of, read_header
from ..data.images import Preprocess
from .download import WeightsUnavailable, check_hashes, file_digests, url_filename

KERAS_BASE = "https://storage.googleapis.com/tensorflow/keras-applications"
TORCHVISION_BASE = "https://download.pytorch.org/models"
TIMM_RELEASES = "https://github.com/rwightman/pytorch-image-models/releases/download"
HUGGING_FACE = "https://huggingface.co"


@dataclass(frozen=True)
class Weights:
    """One published set of weights: which of our models (and options) it fits, where the file is,
    and what it is (data, classes, input preprocessing, measured accuracy, the runs behind it)."""

    key: str  # what create_model(weights=...) takes, e.g. "keras-imagenet"; one key, many models
    model: str  # our model name
    width_mult: float
    source: str  # "keras" | "torchvision" | "timm" | "mobilenets" (trained here, a file in the package)
    url: str  # for "mobilenets": "package:FILE", FILE in mobilenets/published/
    resolution: int | None = None  # Keras V1/V2 publish one file per input size; None: any size
    minimalistic: bool = False
    include_top: bool = True
    sha256: str | None = None  # full hex digest, or its first digits as publishers put them in file names
    md5: str | None = None
    timm_name: str | None = None  # for timm files: the timm model name with its pretrained tag
    filename: str | None = None  # the cache file name, when the URL's own is not unique
    dataset: str = "ImageNet-1k"  # what the classifier was trained on
    num_classes: int = 1000
    # None: the data set's standard names (ImageNet-1k: pretrained.imagenet_class_names())
    class_names: tuple[str, ...] | None = field(default=None, compare=False)
    # The input recipe (size, resize, mean, std on 0..1 RGB). None for other libraries' files: their
    # converter reads it from the file (Keras V3 files carry their own Rescaling) into the config.
    preprocessing: dict | None = field(default=None, compare=False, hash=False)
    # Accuracy with where it was measured or who states it: {"top1", "top5", "on", "by"}.
    metrics: dict = field(default_factory=dict, compare=False, hash=False)
    # The runs behind weights trained here, oldest first (command, epochs, commit, result).
    lineage: tuple[dict, ...] = field(default=(), compare=False, hash=False)

    @property
    def cache_name(self) -> str:
        return self.filename or url_filename(self.url)

    @property
    def package_file(self) -> str | None:
        """The file name in mobilenets/published/ of weights shipped inside the package."""
        return self.url[len(PACKAGE_SCHEME) :] if self.url.startswith(PACKAGE_SCHEME) else None

    def transforms(self) -> Preprocess:
        """The input recipe as a callable: PIL image, file or C×H×W tensor → the normalized tensor
        these weights expect (`data.Preprocess`)."""
        if self.preprocessing is None:
            raise ValueError(
                f"the {self.key} weights of {self.model} record their preprocessing in the file itself: "
                f"model = create_model({self.model!r}, weights={self.key!r}); then "
                f"Preprocess(model.config.extra['preprocessing'])"
            )
        return Preprocess(dict(self.preprocessing))


def _keras_entries() -> list[Weights]:
    # Names and URLs as keras/src/applications/mobilenet*.py build them.
    entries = []
    v1_alpha_text = {0.25: "2_5", 0.5: "5_0", 0.75: "7_5", 1.0: "1_0"}
    for alpha, text in v1_alpha_text.items():
        for rows in (128, 160, 192, 224):
            for top in (True, False):
                file = f"mobilenet_{text}_{rows}_tf{'' if top else '_no_top'}.h5"
                entries.append(
                    Weights(
                        "keras-imagenet",
                        "mobilenet_v1",
                        alpha,
                        "keras",
                        f"{KERAS_BASE}/mobilenet/{file}",
                        resolution=rows,
                        include_top=top,
                    )
                )
    for alpha in (0.35, 0.5, 0.75, 1.0, 1.3, 1.4):
        for rows in (96, 128, 160, 192, 224):
            for top in (True, False):
                suffix = "" if top else "_no_top"
                file = f"mobilenet_v2_weights_tf_dim_ordering_tf_kernels_{float(alpha)}_{rows}{suffix}.h5"
                entries.append(
                    Weights(
                        "keras-imagenet",
                        "mobilenet_v2",
                        alpha,
                        "keras",
                        f"{KERAS_BASE}/mobilenet_v2/{file}",
                        resolution=rows,
                        include_top=top,
                    )
                )
    # keras/src/applications/mobilenet_v3.py WEIGHTS_HASHES: (with top, without top), MD5.
    v3_md5 = {
        ("large", 0.75, False): ("765b44a33ad4005b3ac83185abf1d0eb", "40af19a13ebea4e2ee0c676887f69a2e"),
        ("large", 1.0, False): ("59e551e166be033d707958cf9e29a6a7", "07fb09a5933dd0c8eaafa16978110389"),
        ("large", 1.0, True): ("675e7b876c45c57e9e63e6d90a36599c", "ec5221f64a2f6d1ef965a614bdae7973"),
        ("small", 0.75, False): ("cb65d4e5be93758266aa0a7f2c6708b7", "ebdb5cc8e0b497cd13a7c275d475c819"),
        ("small", 1.0, False): ("8768d4c2e7dee89b9d02b2d03d65d862", "d3e8ec802a04aa4fc771ee12a9a9b836"),
        ("small", 1.0, True): ("99cd97fb2fcdad2bf028eb838de69e37", "cde8136e733e811080d9fcd8a252f7e4"),
    }
    for (size, alpha, minimal), (md5_top, md5_no_top) in v3_md5.items():
        stem = f"{size}{'_minimalistic' if minimal else ''}_224_{alpha}_float"
        for top, md5 in ((True, md5_top), (False, md5_no_top)):
            file = f"weights_mobilenet_v3_{stem}{'' if top else '_no_top_v2'}.h5"
            entries.append(
                Weights(
                    "keras-imagenet",
                    f"mobilenet_v3_{size}",
                    alpha,
                    "keras",
                    f"{KERAS_BASE}/mobilenet_v3/{file}",
                    minimalistic=minimal,
                    include_top=top,
                    md5=md5,
                )
            )
    return entries


def _torchvision_entries() -> list[Weights]:
    # torchvision's MobileNet_V2_Weights / MobileNet_V3_*_Weights; the file name ends in the first
    # 8 hex digits of the SHA-256 (torch.hub's check_hash convention).
    # Accuracy as torchvision's weights meta states it (ImageNet-1k validation, 224 crop).
    files = [
        ("torchvision-imagenet-v1", "mobilenet_v2", "mobilenet_v2-b0353104.pth", 71.878, 90.286),
        ("torchvision-imagenet-v2", "mobilenet_v2", "mobilenet_v2-7ebf99e0.pth", 72.154, 90.822),
        ("torchvision-imagenet-v1", "mobilenet_v3_large", "mobilenet_v3_large-8738ca79.pth", 74.042, 91.340),
        ("torchvision-imagenet-v2", "mobilenet_v3_large", "mobilenet_v3_large-5c1a4163.pth", 75.274, 92.566),
        ("torchvision-imagenet-v1", "mobilenet_v3_small", "mobilenet_v3_small-047dcff4.pth", 67.668, 87.402),
    ]
    return [
        Weights(
            key,
            model,
            1.0,
            "torchvision",
            f"{TORCHVISION_BASE}/{file}",
            sha256=file.rsplit("-", 1)[1].split(".")[0],
            metrics={
                "top1": top1 / 100,
                "top5": top5 / 100,
                "on": "ImageNet-1k validation (50,000)",
                "by": "torchvision's weights meta",
            },
        )
        for key, model, file, top1, top5 in files
    ]


def _timm_entries() -> list[Weights]:
    # timm's pretrained configs (timm/models/efficientnet.py, mobilenetv3.py). GitHub release files
    # carry the SHA-256 prefix in their names; the Hugging Face-only ones have no published hash.
    released = [  # (key, model, width, minimalistic, timm name with tag, file)
        (
            "timm-imagenet",
            "mobilenet_v2",
            0.5,
            False,
            "mobilenetv2_050.lamb_in1k",
            "mobilenetv2_050-3d30d450.pth",
        ),
        (
            "timm-imagenet",
            "mobilenet_v2",
            1.0,
            False,
            "mobilenetv2_100.ra_in1k",
            "mobilenetv2_100_ra-b33bc2c4.pth",
        ),
        (
            "timm-imagenet",
            "mobilenet_v2",
            1.4,
            False,
            "mobilenetv2_140.ra_in1k",
            "mobilenetv2_140_ra-21a4e913.pth",
        ),
        (
            "timm-imagenet",
            "mobilenet_v3_large",
            1.0,
            False,
            "mobilenetv3_large_100.ra_in1k",
            "mobilenetv3_large_100_ra-f55367f5.pth",
        ),
        (
            "timm-in21k-imagenet",
            "mobilenet_v3_large",
            1.0,
            False,
            "mobilenetv3_large_100.miil_in21k_ft_in1k",
            "mobilenetv3_large_100_1k_miil_78_0-66471c13.pth",
        ),
        (
            "timm-imagenet",
            "mobilenet_v3_small",
            0.5,
            False,
            "mobilenetv3_small_050.lamb_in1k",
            "mobilenetv3_small_050_lambc-4b7bbe87.pth",
        ),
        (
            "timm-imagenet",
            "mobilenet_v3_small",
            0.75,
            False,
            "mobilenetv3_small_075.lamb_in1k",
            "mobilenetv3_small_075_lambc-384766db.pth",
        ),
        (
            "timm-imagenet",
            "mobilenet_v3_small",
            1.0,
            False,
            "mobilenetv3_small_100.lamb_in1k",
            "mobilenetv3_small_100_lamb-266a294c.pth",
        ),
        (
            "timm-tf-imagenet",
            "mobilenet_v3_large",
            0.75,
            False,
            "tf_mobilenetv3_large_075.in1k",
            "tf_mobilenetv3_large_075-150ee8b0.pth",
        ),
        (
            "timm-tf-imagenet",
            "mobilenet_v3_large",
            1.0,
            False,
            "tf_mobilenetv3_large_100.in1k",
            "tf_mobilenetv3_large_100-427764d5.pth",
        ),
        (
            "timm-tf-imagenet",
            "mobilenet_v3_large",
            1.0,
            True,
            "tf_mobilenetv3_large_minimal_100.in1k",
            "tf_mobilenetv3_large_minimal_100-8596ae28.pth",
        ),
        (
            "timm-tf-imagenet",
            "mobilenet_v3_small",
            0.75,
            False,
            "tf_mobilenetv3_small_075.in1k",
            "tf_mobilenetv3_small_075-da427f52.pth",
        ),
        (
            "timm-tf-imagenet",
            "mobilenet_v3_small",
            1.0,
            False,
            "tf_mobilenetv3_small_100.in1k",
            "tf_mobilenetv3_small_100-37f49e2b.pth",
        ),
        (
            "timm-tf-imagenet",
            "mobilenet_v3_small",
            1.0,
            True,
            "tf_mobilenetv3_small_minimal_100.in1k",
            "tf_mobilenetv3_small_minimal_100-922a7843.pth",
        ),
    ]
    entries = [
        Weights(
            key,
            model,
            width,
            "timm",
            f"{TIMM_RELEASES}/v0.1-weights/{file}"
            if "miil" not in file
            else f"{TIMM_RELEASES}/v0.1-tresnet/{file}",
            minimalistic=minimal,
            sha256=file.rsplit("-", 1)[1].split(".")[0],
            timm_name=name,
        )
        for key, model, width, minimal, name, file in released
    ]
    for width in (1.0, 1.25):  # MobileNetV1 weights are on the Hugging Face hub only
        name = f"mobilenetv1_{round(width * 100)}.ra4_e3600_r224_in1k"
        entries.append(
            Weights(
                "timm-imagenet",
                "mobilenet_v1",
                width,
                "timm",
                f"{HUGGING_FACE}/timm/{name}/resolve/main/model.safetensors",
                timm_name=name,
                filename=f"timm-{name}.safetensors",
            )
        )
    return entries


PACKAGE_SCHEME = "package:"
PUBLISHED_DIR = "published"  # inside the package: checkpoints trained by this project, with index.json


def _package_file(name: str) -> Path:
    return Path(str(resources.files("mobilenets").joinpath(PUBLISHED_DIR, name)))


def published_entry(key: str, path: Path, sha256: str) -> Weights:
    """The registry entry of a checkpoint trained here and shipped in the package: every fact (model,
    width, classes, preprocessing, accuracy, lineage) read from the file's own header."""
    header = read_header(path)
    config = header["config"]
    release = header.get("release") or {}
    split = header.get("split") or {}
    return Weights(
        key,
        config["name"],
        config["width_mult"],
        "mobilenets",
        PACKAGE_SCHEME + path.name,
        sha256=sha256,
        dataset=release.get("dataset") or _data_name(header.get("train_config", {}).get("data", "")),
        num_classes=config["head"]["num_classes"],
        class_names=tuple(header["class_names"]),
        preprocessing=header.get("preprocessing"),
        metrics={
            "top1": release.get("val_top1"),
            "top5": release.get("val_top5"),
            "on": f"its {len(split.get('val_files') or []) or 'held-out'} held-out validation images "
            f"(seed {split.get('seed')})",
            "by": "mobilenets train",
        },
        lineage=tuple(lineage_of(header)),
    )


def _data_name(data: str) -> str:
    """A training run's --data as a data set name: "../shared/data/cifar10/train" → "cifar10"."""
    parts = [part for part in data.replace("cifar10:", "").split("/") if part not in ("", ".", "..")]
    while parts and parts[-1] in ("train", "images"):
        parts.pop()
    name = parts[-1] if parts else data
    return {"cifar10": "CIFAR-10", "digits": "digits"}.get(name.lower(), name)


def _bundled_entries() -> list[Weights]:
    # Checkpoints trained by this project's own `mobilenets train` and shipped inside it, listed in
    # published/index.json by key, file and SHA-256 (the rest is in each file's header; docs/results.md
    # has each one's command and curves). The first entry of a key is its default.
    index = _package_file("index.json")
    if not index.is_file():
        return []
    return [
        published_entry(entry["key"], _package_file(entry["file"]), entry["sha256"])
        for entry in json.loads(index.read_text())
        if _package_file(entry["file"]).is_file()  # a damaged install: bundled_file says so on use
    ]


class UnknownWeightsError(ValueError):
    """A weights key that no source registered (and that is no file or URL)."""


_REGISTRY: list[Weights] = []


def register(entry: Weights) -> Weights:
    """Add `entry` to the registry; a second entry for the same key, model and options is refused."""
    if entry in _REGISTRY:
        raise ValueError(f"{entry.key} weights for {entry.model} (width {entry.width_mult:g}) are registered")
    _REGISTRY.append(entry)
    return entry


def unregister(entry: Weights) -> None:
    _REGISTRY.remove(entry)


for _entry in _keras_entries() + _torchvision_entries() + _timm_entries() + _bundled_entries():
    register(_entry)


def registered() -> tuple[Weights, ...]:
    """Every registered entry, in registration order."""
    return tuple(_REGISTRY)


def weight_keys() -> tuple[str, ...]:
    return tuple(dict.fromkeys(entry.key for entry in _REGISTRY))


def list_weights(name: str | None = None, key: str | None = None) -> list[Weights]:
    """The registered files, optionally only those for model `name` and/or weights `key`."""
    return [e for e in _REGISTRY if (name is None or e.model == name) and (key is None or e.key == key)]


def find_weights(
    name: str,
    key: str,
    width_mult: float | None = None,
    resolution: int | None = None,
    minimalistic: bool = False,
    include_top: bool = True,
) -> Weights:
    """The published file for these options, or a ValueError listing what is published."""
    if key not in weight_keys():
        raise UnknownWeightsError(
            f"unknown weights {key!r}; published: {', '.join(weight_keys())} (or pass a file path or URL)"
        )
    candidates = list_weights(name, key)
    if not candidates:
        models = sorted({e.model for e in list_weights(key=key)})
        raise ValueError(f"no {key} weights for {name}; {key} has {', '.join(models)}")
    if width_mult is None:  # the one width published, else the papers' 1.0, else the key's first
        widths = [e.width_mult for e in candidates]
        width_mult = widths[0] if len(set(widths)) == 1 or 1.0 not in widths else 1.0
    matching = [
        e for e in candidates if abs(e.width_mult - width_mult) < 1e-9 and e.minimalistic == minimalistic
    ]
    if matching and matching[0].resolution is not None:  # Keras V1/V2: one file per input size
        matching = [e for e in matching if e.resolution == (resolution or 224)]
    if not matching:
        wanted = (
            f"width_mult={width_mult:g}"
            + (f", resolution={resolution}" if resolution else "")
            + (", minimalistic" if minimalistic else "")
        )
        raise ValueError(
            f"no {key} weights for {name} with {wanted}; published: {_published_options(candidates)}"
        )
    # A feature extractor prefers the smaller file without the classifier where there is one.
    return min(matching, key=lambda e: e.include_top != include_top)


def _published_options(entries: list[Weights]) -> str:
    """E.g. "width_mult 0.25, 0.5, 0.75, 1 × resolution 128, 160, 192, 224" or
    "width_mult 0.75, 1; minimalistic: width_mult 1"."""
    parts = []
    for minimal in sorted({e.minimalistic for e in entries}):
        group = [e for e in entries if e.minimalistic == minimal]
        text = "width_mult " + ", ".join(f"{w:g}" for w in sorted({e.width_mult for e in group}))
        resolutions = sorted({e.resolution for e in group if e.resolution})
        if resolutions:
            text += " × resolution " + ", ".join(map(str, resolutions))
        parts.append(("minimalistic: " if minimal else "") + text)
    return "; ".join(parts)


def bundled_file(entry: Weights) -> Path:
    """The checkpoint file of a "mobilenets" entry, inside the installed package, hash-checked."""
    if entry.package_file is None:
        raise ValueError(f"the {entry.key} weights of {entry.model} are not in the package ({entry.url})")
    path = _package_file(entry.package_file)
    if not path.is_file():  # a damaged install, not a user mistake
        raise WeightsUnavailable(f"the package file {path} is missing; reinstall mobilenets")
    digest, md5_digest = file_digests(path)
    check_hashes(
        digest, md5_digest, entry.sha256, entry.md5, f"the package file {path}", "reinstall mobilenets"
    )
    return path


def default_model(key: str) -> str | None:
    """The model of weights `key` when it publishes one, or for weights trained here the model of
    the key's first entry (e.g. "cifar10": mobilenet_v1); None when a library publishes several."""
    entries = list_weights(key=key)
    models = {e.model for e in entries}
    if len(models) == 1 or (entries and entries[0].source == "mobilenets"):
        return entries[0].model
    return None


def bundled_checkpoint(key: str, name: str | None = None, width_mult: float | None = None) -> Path | None:
    """The checkpoint file of the weights `key` when this project trained and ships them (e.g.
    "cifar10"), for the commands that take a checkpoint: the key's default entry, or the one for
    model `name` and `width_mult`; None for any other key."""
    entries = [e for e in list_weights(key=key) if e.source == "mobilenets"]
    if not entries:
        return None
    if name is None and width_mult is None:
        return bundled_file(entries[0])
    return bundled_file(find_weights(name or entries[0].model, key, width_mult))
