"""Loading weights: `create_model(..., weights=...)` and any weights file into our model.

    create_model("mobilenet_v1", width_mult=0.5, resolution=160, weights="keras-imagenet")
    create_model("mobilenet_v3_large", weights="torchvision-imagenet-v2", num_classes=10)
    create_model("mobilenet_v2", weights="path/to/file.h5")   # or .keras, .pth, .safetensors, a URL
    create_model("mobilenet_v1", weights="cifar10")           # trained by this project, ships inside it

Which file a key means is the registry's job (registry.py); fetching it, download.py's; this module
turns the file into a `MobileNet` with the options the user asked for.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..checkpoint import is_checkpoint, load_checkpoint
from ..config import HeadConfig
from ..models import MobileNet
from ..zoo import model_config, recorded_options
from .download import fetch, file_digests, is_url
from .imagenet import with_size
from .keras import from_keras
from .registry import UnknownWeightsError, Weights, bundled_file, find_weights, weight_keys
from .slots import describe
from .statedict import read_state_dict, sniff_format
from .timm import from_timm
from .torchvision import detect_model, from_torchvision


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
    if file_format == "safetensors" and is_checkpoint(path):
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

    weights: a registered key ("keras-imagenet", "torchvision-imagenet-v1", ...), a file path
    or a URL. Options choose the published file (width_mult, resolution, minimalistic) and adapt
    the model (num_classes: a new, randomly initialised classifier when it differs; features_only;
    dropout); padding, activation, bn_eps, in_channels and stem_stride are the weights' own.
    """
    model_config(name, **options)  # unknown model, unknown or invalid options: the usual messages
    if weights in weight_keys():
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
                looks_like_a_key = os.sep not in weights and "." not in weights
                error = UnknownWeightsError if looks_like_a_key else FileNotFoundError
                raise error(
                    f"weights must be one of {', '.join(weight_keys())}, a file or a URL; "
                    f"there is no file {weights!r} (`mobilenets weights` lists the published ones)"
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
    new_config = config.replace(
        head=head, resolution=resolution, extra=extra, out_indices=options.get("out_indices")
    )
    # The loaded network is fitted in place (a new classifier only where the class count changed),
    # so create_model(weights=...) builds the network once.
    return model.reconfigure(new_config)


def _convert_entry(entry: Weights, path: Path) -> MobileNet:
    if entry.source == "mobilenets":
        checkpoint = load_checkpoint(path)
        config = checkpoint.model.config
        # What predict needs to prepare images and name classes, where converted models keep it.
        if checkpoint.preprocessing is None:
            raise ValueError(f"{path} records no preprocessing; it is not a published mobilenets checkpoint")
        recipe = {**checkpoint.preprocessing, "resize": checkpoint.preprocessing["size"]}
        extra = {
            **config.extra,
            "class_names": checkpoint.class_names,
            "preprocessing": recipe,
            "source": "mobilenets",
        }
        return checkpoint.model.reconfigure(config.replace(extra=extra))
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
    "adapt_model",
    "load_weights_file",
    "pretrained_model",
]
