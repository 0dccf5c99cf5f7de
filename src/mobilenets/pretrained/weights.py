"""Published weights: the registry, the download cache, and `create_model(..., weights=...)`.

    create_model("mobilenet_v1", width_mult=0.5, resolution=160, weights="keras-imagenet")
    create_model("mobilenet_v3_large", weights="torchvision-imagenet-v2", num_classes=10)
    create_model("mobilenet_v2", weights="path/to/file.h5")   # or .keras, .pth, .safetensors, a URL
    create_model("mobilenet_v1", weights="cifar10")           # trained by this project, ships inside it

Files are downloaded once into the cache folder (MOBILENETS_CACHE, default ~/.cache/mobilenets or
$XDG_CACHE_HOME/mobilenets) with a progress bar, written to a temporary file and renamed only
once complete and verified, so an interrupted download never leaves a file that looks valid.

Hashes: a file is checked against every hash its publisher states. Keras lists MD5s for its
MobileNetV3 files; torchvision and timm's GitHub releases put the first 8 hex digits of the
SHA-256 in the file name (what torch.hub checks). Where no hash is published (Keras MobileNet and
MobileNetV2, timm's Hugging Face files) the SHA-256 is printed at download and recorded in the
model's config, and the entry's sha256 is None: see docs/interop.md.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from ..checkpoint import METADATA_KEY, load_checkpoint, read_metadata
from ..config import HeadConfig
from ..models import MobileNet
from ..zoo import model_config, recorded_options
from .imagenet import with_size
from .keras import from_keras
from .slots import describe
from .statedict import read_state_dict, sniff_format
from .timm import from_timm
from .torchvision import detect_model, from_torchvision

KERAS_BASE = "https://storage.googleapis.com/tensorflow/keras-applications"
TORCHVISION_BASE = "https://download.pytorch.org/models"
TIMM_RELEASES = "https://github.com/rwightman/pytorch-image-models/releases/download"
HUGGING_FACE = "https://huggingface.co"
CHUNK = 1 << 20


@dataclass(frozen=True)
class PublishedWeights:
    """One published file, and which of our models (and options) it is for."""

    key: str  # what create_model(weights=...) takes, e.g. "keras-imagenet"
    model: str  # our model name
    width_mult: float
    source: str  # "keras" | "torchvision" | "timm" | "mobilenets" (trained here, a file in the package)
    url: str  # for "mobilenets": "package:FILE", FILE in mobilenets/published/
    resolution: int | None = (
        None  # Keras V1/V2 publish one file per input size; None: trained at 224, any size
    )
    minimalistic: bool = False
    include_top: bool = True
    sha256: str | None = None  # full hex digest, or its first digits as publishers put them in file names
    md5: str | None = None
    timm_name: str | None = None  # for timm files: the timm model name with its pretrained tag
    filename: str | None = None  # the cache file name, when the URL's own is not unique

    @property
    def cache_name(self) -> str:
        return self.filename or url_filename(self.url)


def _keras_entries() -> list[PublishedWeights]:
    # Names and URLs as keras/src/applications/mobilenet*.py build them.
    entries = []
    v1_alpha_text = {0.25: "2_5", 0.5: "5_0", 0.75: "7_5", 1.0: "1_0"}
    for alpha, text in v1_alpha_text.items():
        for rows in (128, 160, 192, 224):
            for top in (True, False):
                file = f"mobilenet_{text}_{rows}_tf{'' if top else '_no_top'}.h5"
                entries.append(
                    PublishedWeights(
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
                    PublishedWeights(
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
                PublishedWeights(
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


def _torchvision_entries() -> list[PublishedWeights]:
    # torchvision's MobileNet_V2_Weights / MobileNet_V3_*_Weights; the file name ends in the first
    # 8 hex digits of the SHA-256 (torch.hub's check_hash convention).
    files = [
        ("torchvision-imagenet-v1", "mobilenet_v2", "mobilenet_v2-b0353104.pth"),
        ("torchvision-imagenet-v2", "mobilenet_v2", "mobilenet_v2-7ebf99e0.pth"),
        ("torchvision-imagenet-v1", "mobilenet_v3_large", "mobilenet_v3_large-8738ca79.pth"),
        ("torchvision-imagenet-v2", "mobilenet_v3_large", "mobilenet_v3_large-5c1a4163.pth"),
        ("torchvision-imagenet-v1", "mobilenet_v3_small", "mobilenet_v3_small-047dcff4.pth"),
    ]
    return [
        PublishedWeights(
            key,
            model,
            1.0,
            "torchvision",
            f"{TORCHVISION_BASE}/{file}",
            sha256=file.rsplit("-", 1)[1].split(".")[0],
        )
        for key, model, file in files
    ]


def _timm_entries() -> list[PublishedWeights]:
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
        PublishedWeights(
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
            PublishedWeights(
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


def _bundled_entries() -> list[PublishedWeights]:
    # Checkpoints trained by this project's own `mobilenets train` and shipped inside it, listed in
    # published/index.json (docs/results.md has each one's command and curves). resolution None:
    # any input size runs; the model keeps the size it was trained at as its nominal one.
    index = _package_file("index.json")
    if not index.is_file():
        return []
    return [
        PublishedWeights(
            entry["key"],
            entry["model"],
            entry["width_mult"],
            "mobilenets",
            PACKAGE_SCHEME + entry["file"],
            sha256=entry["sha256"],
        )
        for entry in json.loads(index.read_text())
    ]


PUBLISHED: tuple[PublishedWeights, ...] = tuple(
    _keras_entries() + _torchvision_entries() + _timm_entries() + _bundled_entries()
)
WEIGHT_KEYS = tuple(dict.fromkeys(entry.key for entry in PUBLISHED))


def list_weights(name: str | None = None, key: str | None = None) -> list[PublishedWeights]:
    """The published files, optionally only those for model `name` and/or weights `key`."""
    return [e for e in PUBLISHED if (name is None or e.model == name) and (key is None or e.key == key)]


def find_weights(
    name: str,
    key: str,
    width_mult: float | None = None,
    resolution: int | None = None,
    minimalistic: bool = False,
    include_top: bool = True,
) -> PublishedWeights:
    """The published file for these options, or a ValueError listing what is published."""
    if key not in WEIGHT_KEYS:
        raise ValueError(
            f"unknown weights {key!r}; published: {', '.join(WEIGHT_KEYS)} (or pass a file path or URL)"
        )
    candidates = list_weights(name, key)
    if not candidates:
        models = sorted({e.model for e in list_weights(key=key)})
        raise ValueError(f"no {key} weights for {name}; {key} has {', '.join(models)}")
    if width_mult is None:  # the one width published, else the papers' 1.0
        widths = {e.width_mult for e in candidates}
        width_mult = widths.pop() if len(widths) == 1 else 1.0
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


def _published_options(entries: list[PublishedWeights]) -> str:
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


# --------------------------------------------------------------------------------------------
# Cache and download
# --------------------------------------------------------------------------------------------
class WeightsUnavailable(FileNotFoundError):
    """The file is not in the cache and could not be downloaded; the message says where to put it."""


class HashMismatch(ValueError):
    """The file is not the one published: its hash differs from the publisher's."""


def cache_dir() -> Path:
    """Where downloads go: $MOBILENETS_CACHE, else $XDG_CACHE_HOME/mobilenets or ~/.cache/mobilenets."""
    if os.environ.get("MOBILENETS_CACHE"):
        return Path(os.environ["MOBILENETS_CACHE"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "mobilenets"


def url_filename(url: str) -> str:
    name = Path(urllib.parse.unquote(urllib.parse.urlparse(url).path)).name
    if not name:
        raise ValueError(f"cannot tell a file name from the URL {url!r}")
    return name


def url_cache_name(url: str) -> str:
    """The cache path of a URL outside the registry: its file name under a folder named by a hash of
    the whole URL, so two URLs ending in the same file name never share (or return) one file."""
    return f"url-{hashlib.sha256(url.encode()).hexdigest()[:16]}/{url_filename(url)}"


def is_url(text: str) -> bool:
    return urllib.parse.urlparse(text).scheme in ("http", "https", "file")


@dataclass
class _Digests:
    sha256: Any = field(default_factory=hashlib.sha256)
    md5: Any = field(default_factory=hashlib.md5)

    def update(self, chunk: bytes) -> None:
        self.sha256.update(chunk)
        self.md5.update(chunk)


def file_digests(path: Path) -> tuple[str, str]:
    """(sha256, md5) hex digests of a file."""
    digests = _Digests()
    with open(path, "rb") as handle:
        while chunk := handle.read(CHUNK):
            digests.update(chunk)
    return digests.sha256.hexdigest(), digests.md5.hexdigest()


def _check_hashes(
    sha256: str, md5: str, expected_sha256: str | None, expected_md5: str | None, what: str, fix: str
) -> None:
    if expected_sha256 and not sha256.startswith(expected_sha256.lower()):
        raise HashMismatch(
            f"{what} has SHA-256 {sha256}, but the published one is {expected_sha256}"
            f"{'...' if len(expected_sha256) < 64 else ''}; {fix}"
        )
    if expected_md5 and md5 != expected_md5.lower():
        raise HashMismatch(f"{what} has MD5 {md5}, but the published one is {expected_md5}; {fix}")


def bundled_file(entry: PublishedWeights) -> Path:
    """The checkpoint file of a "mobilenets" entry, inside the installed package, hash-checked."""
    path = _package_file(entry.url[len(PACKAGE_SCHEME) :])
    if not path.is_file():  # a damaged install, not a user mistake
        raise WeightsUnavailable(f"the package file {path} is missing; reinstall mobilenets")
    digest, md5_digest = file_digests(path)
    _check_hashes(
        digest, md5_digest, entry.sha256, entry.md5, f"the package file {path}", "reinstall mobilenets"
    )
    return path


def default_model(key: str) -> str | None:
    """The model of weights `key` when it publishes exactly one (e.g. "cifar10": mobilenet_v1)."""
    models = {e.model for e in PUBLISHED if e.key == key}
    return models.pop() if len(models) == 1 else None


def bundled_checkpoint(key: str) -> Path | None:
    """The checkpoint file of the weights `key` when this project trained and ships them (e.g.
    "cifar10"), for the commands that take a checkpoint; None for any other key."""
    entries = [e for e in PUBLISHED if e.key == key and e.source == "mobilenets"]
    return bundled_file(entries[0]) if entries else None


def fetch(
    url: str,
    filename: str | None = None,
    sha256: str | None = None,
    md5: str | None = None,
    progress: bool = True,
) -> tuple[Path, str]:
    """The cached file for `url` (downloaded on first use) and its SHA-256, checked against the
    published hashes given. Raises WeightsUnavailable (offline, interrupted) or HashMismatch."""
    destination = cache_dir() / (filename or url_cache_name(url))
    if destination.is_file():
        digest, md5_digest = file_digests(destination)
        _check_hashes(
            digest,
            md5_digest,
            sha256,
            md5,
            f"the cached {destination}",
            f"delete it to download {url} again, or replace it with that file",
        )
        return destination, digest
    digest = _download(url, destination, sha256, md5, progress)
    if not sha256 and not md5:
        print(
            f"downloaded {url}: SHA-256 {digest} (no published hash to check it against; "
            f"it is recorded in the model's config)",
            file=sys.stderr,
        )
    return destination, digest


def _download(url: str, destination: Path, sha256: str | None, md5: str | None, progress: bool) -> str:
    from tqdm import tqdm

    place = (
        f"download it yourself and place it at {destination} "
        f"(the folder is $MOBILENETS_CACHE, now {destination.parent})"
    )
    destination.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(prefix=f".{destination.name}.", suffix=".part", dir=destination.parent)
    try:
        digests = _Digests()
        received = 0
        with os.fdopen(fd, "wb") as out:
            try:
                response = urllib.request.urlopen(
                    urllib.request.Request(url, headers={"User-Agent": "mobilenets"}), timeout=60
                )
            except (urllib.error.URLError, OSError, ValueError) as error:
                reason = getattr(error, "reason", error)
                raise WeightsUnavailable(f"cannot download {url} ({reason}); {place}") from None
            with response:
                length = response.headers.get("Content-Length")
                total = int(length) if length and length.isdigit() else None
                # disable=None: tqdm draws only on a terminal
                with tqdm(
                    total=total,
                    unit="B",
                    unit_scale=True,
                    desc=destination.name,
                    disable=None if progress else True,
                    file=sys.stderr,
                ) as bar:
                    try:
                        while chunk := response.read(CHUNK):
                            out.write(chunk)
                            digests.update(chunk)
                            received += len(chunk)
                            bar.update(len(chunk))
                    except (OSError, ValueError, EOFError) as error:  # connection reset, IncompleteRead, ...
                        raise WeightsUnavailable(
                            f"download of {url} failed after {received} bytes ({error!r}); {place}"
                        ) from None
            if total is not None and received != total:
                raise WeightsUnavailable(
                    f"download of {url} stopped after {received} of {total} bytes; {place}"
                )
            out.flush()
            os.fsync(out.fileno())
        digest = digests.sha256.hexdigest()
        _check_hashes(
            digest,
            digests.md5.hexdigest(),
            sha256,
            md5,
            f"the file downloaded from {url}",
            f"it was not kept; if the publisher changed it, {place} and pass its path instead",
        )
        os.replace(temporary, destination)
        return digest
    except BaseException:
        if os.path.exists(temporary):
            os.unlink(temporary)
        raise


# --------------------------------------------------------------------------------------------
# Loading any weights file, and create_model(weights=...)
# --------------------------------------------------------------------------------------------
def load_weights_file(
    path: str | os.PathLike,
    name: str | None = None,
    timm_name: str | None = None,
    width_mult: float | None = None,
    resolution: int | None = None,
) -> MobileNet:
    """Our model from any supported weights file, its format read from its content: a Keras
    .h5/.keras, our own checkpoint, or a torchvision/timm state dict (.pth, .pt, .safetensors)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no weights file at {path}")
    file_format = sniff_format(path)  # from the bytes: a converted file may have any name
    if (
        file_format == "hdf5"
        or (file_format == "zip" and _is_keras_archive(path))
        or (file_format == "unknown" and path.suffix in (".h5", ".hdf5", ".keras"))
    ):  # for Keras's own message
        return from_keras(path, name=name, width_mult=width_mult, resolution=resolution)
    if file_format == "safetensors" and read_metadata(path).get(METADATA_KEY):
        model = load_checkpoint(path).model.eval()
        if name is not None and model.config.name != name:
            raise ValueError(f"{path} holds a {model.config.name}, not {name}")
        return model
    state, _, _ = read_state_dict(path, "PyTorch")
    if "conv_stem.weight" in state:
        return from_timm(path, timm_name=timm_name, name=name)
    if detect_model(state) is not None:
        return from_torchvision(path, name=name, width_mult=width_mult)
    raise ValueError(
        f"{path} is neither a Keras, torchvision, timm nor mobilenets checkpoint of a MobileNet "
        f"(its keys begin {', '.join(list(state)[:3])})"
    )


def _is_keras_archive(path: Path) -> bool:
    """A Keras 3 .keras file is a zip holding model.weights.h5; torch.save's zip holds data.pkl."""
    import zipfile

    try:
        with zipfile.ZipFile(path) as archive:
            return any(name.endswith("model.weights.h5") for name in archive.namelist())
    except zipfile.BadZipFile:
        return False


# Options that select which published file to use, and those fixed by the weights (the source's
# conventions): setting one of either differently from what the weights are is an error. The rest
# (num_classes, features_only, dropout) adapt the loaded model.
SELECTING = ("width_mult", "resolution", "minimalistic", "depth_multiplier")
FIXED_BY_WEIGHTS = ("padding", "activation", "bn_eps", "in_channels", "stem_stride")


def pretrained_model(name: str, weights: str, options: dict) -> MobileNet:
    """`create_model(name, weights=..., **options)`: the model with published or given weights.

    weights: a key of WEIGHT_KEYS ("keras-imagenet", "torchvision-imagenet-v1", ...), a file path
    or a URL. Options choose the published file (width_mult, resolution, minimalistic) and adapt
    the model (num_classes: a new, randomly initialised classifier when it differs; features_only;
    dropout); padding, activation, bn_eps, in_channels and stem_stride are the weights' own.
    """
    model_config(name, **options)  # unknown model, unknown or invalid options: the usual messages
    if weights in WEIGHT_KEYS:
        if options.get("depth_multiplier", 1) != 1:
            raise ValueError(f"{weights} weights have depth_multiplier 1; got {options['depth_multiplier']}")
        entry = find_weights(
            name,
            weights,
            options.get("width_mult"),
            options.get("resolution"),
            options.get("minimalistic", False),
            include_top=not options.get("features_only", False),
        )
        if entry.source == "mobilenets":
            path = bundled_file(entry)
            digest = file_digests(path)[0]
        else:
            path, digest = fetch(entry.url, entry.cache_name, entry.sha256, entry.md5)
        model = _convert_entry(entry, path)
        provenance = {
            "weights": weights,
            "url": entry.url,
            "sha256": digest,
            "hash_checked": bool(entry.sha256 or entry.md5),
        }
    else:
        if is_url(weights):
            path, digest = fetch(weights)
        else:
            path = Path(weights)
            if not path.is_file():
                raise FileNotFoundError(
                    f"weights must be one of {', '.join(WEIGHT_KEYS)}, a file or a URL; "
                    f"there is no file {weights!r}"
                )
            digest = file_digests(path)[0]
        model = load_weights_file(
            path, name=name, width_mult=options.get("width_mult"), resolution=options.get("resolution")
        )
        provenance = {"weights": str(weights), "sha256": digest}
    if model.config.name != name:
        raise ValueError(f"{weights} holds a {model.config.name}, not {name}")
    return adapt_model(model, options, provenance, str(weights))


def adapt_model(model: MobileNet, options: dict, provenance: dict, label: str) -> MobileNet:
    """`model` with the options the user set: checked against what the weights fix, then the
    classifier replaced or removed and the nominal resolution set as asked."""
    config = model.config
    actual = recorded_options(config)
    for option in FIXED_BY_WEIGHTS + SELECTING:
        if option == "resolution":  # any: the model is fully convolutional, the recipe is rescaled
            continue
        if option in options and option in actual and options[option] != actual[option]:
            if option == "width_mult" and abs(options[option] - actual[option]) < 1e-9:
                continue
            raise ValueError(
                f"{option}={options[option]!r} does not fit the weights {label}, which are "
                f"{describe(config)} with {option}={actual[option]!r}; leave {option} unset"
            )
    extra = {**config.extra, "weights": provenance}
    head = config.head
    if options.get("features_only"):
        head = None
    elif head is not None and ("num_classes" in options or "dropout" in options):
        head = HeadConfig(
            head.in_channels,
            options.get("num_classes", head.num_classes),
            head.hidden_channels,
            head.hidden_activation,
            options.get("dropout", head.dropout),
        )
    elif head is None and not options.get("features_only"):
        raise ValueError(
            f"the weights {label} have no classifier (a Keras include_top=False file); "
            f"pass features_only=True"
        )
    if head is None or head.num_classes != config.num_classes:
        extra["class_names"] = None
    resolution = options.get("resolution", config.resolution)
    if "preprocessing" in extra and resolution != config.resolution:
        extra["preprocessing"] = with_size(extra["preprocessing"], resolution)
    new_config = config.replace(head=head, resolution=resolution, extra=extra)
    adapted = MobileNet(new_config)
    state = model.state_dict()
    target = adapted.state_dict()
    kept = {k: v for k, v in state.items() if k in target and target[k].shape == v.shape}
    missing = adapted.load_state_dict(kept, strict=False).missing_keys
    assert all(k.startswith("head.fc.") for k in missing), missing  # only a new classifier starts fresh
    return adapted.eval()


def _convert_entry(entry: PublishedWeights, path: Path) -> MobileNet:
    if entry.source == "mobilenets":
        checkpoint = load_checkpoint(path)
        config = checkpoint.model.config
        # What predict needs to prepare images and name classes, where converted models keep it.
        recipe = {**checkpoint.preprocessing, "resize": checkpoint.preprocessing["size"]}
        extra = {
            **config.extra,
            "class_names": checkpoint.class_names,
            "preprocessing": recipe,
            "source": "mobilenets",
        }
        model = MobileNet(config.replace(extra=extra))
        model.load_state_dict(checkpoint.model.state_dict())
        return model.eval()
    if entry.source == "keras":
        return from_keras(
            path,
            name=entry.model,
            width_mult=entry.width_mult,
            minimalistic=entry.minimalistic,
            resolution=entry.resolution or 224,
        )
    if entry.source == "torchvision":
        return from_torchvision(path, name=entry.model, width_mult=entry.width_mult)
    return from_timm(path, timm_name=entry.timm_name, name=entry.model)


__all__ = [
    "HashMismatch",
    "PUBLISHED",
    "PublishedWeights",
    "WEIGHT_KEYS",
    "WeightsUnavailable",
    "adapt_model",
    "bundled_checkpoint",
    "cache_dir",
    "default_model",
    "fetch",
    "find_weights",
    "list_weights",
    "load_weights_file",
    "pretrained_model",
]
