"""`convert()`: our model from a Keras, torchvision or timm weights file, and `save_converted()`:
that model as one of our checkpoints (what `mobilenets convert` does)."""

from __future__ import annotations

import os
from pathlib import Path

from ..checkpoint import save_checkpoint
from ..models import MobileNet
from .keras import from_keras
from .slots import describe
from .timm import from_timm
from .torchvision import from_torchvision

SOURCES = ("keras", "torchvision", "timm")
CONVERTIBLE = ("mobilenet_v1", "mobilenet_v2", "mobilenet_v3_large", "mobilenet_v3_small")


def convert(
    source: str,
    src: str | os.PathLike,
    name: str | None = None,
    width_mult: float | None = None,
    resolution: int | None = None,
    timm_name: str | None = None,
) -> MobileNet:
    """Our model from a `source` ("keras", "torchvision" or "timm") weights file."""
    if source not in SOURCES:
        raise ValueError(f"source must be one of {', '.join(SOURCES)}; got {source!r}")
    if not Path(src).is_file():
        raise FileNotFoundError(f"no {source} weights file at {src}")
    if source != "timm" and timm_name:
        raise ValueError("timm_name (--timm-model) applies to --from timm only")
    if source == "keras":
        return from_keras(src, name=name, width_mult=width_mult, resolution=resolution)
    if resolution is not None:
        raise ValueError(
            f"resolution (--resolution) applies to --from keras only; {source} models are "
            f"trained at 224 and run at any size"
        )
    if source == "torchvision":
        return from_torchvision(src, name=name, width_mult=width_mult)
    model = from_timm(src, timm_name=timm_name, name=name)
    if width_mult is not None and abs(width_mult - model.config.width_mult) > 1e-9:
        raise ValueError(f"{src} is {describe(model.config)}, not width_mult={width_mult:g}")
    return model


def check_convert_output(src: str | os.PathLike, out: str | os.PathLike, force: bool) -> None:
    """OUT may not be SRC (that would destroy the source), nor an existing file unless forced."""
    src, out = Path(src), Path(out)
    if out.is_dir():
        raise ValueError(f"OUT {out} is a folder; name the checkpoint file to write")
    if out.exists() and src.exists() and os.path.samefile(src, out):
        raise ValueError(f"OUT {out} is the source file itself; name another OUT")
    if out.exists() and not force:
        raise ValueError(f"OUT {out} exists; pass --force to overwrite it, or name another OUT")


def save_converted(model: MobileNet, out: str | os.PathLike) -> Path:
    """Write a converted model in our checkpoint format, with ImageNet class names and the source's
    preprocessing, so `mobilenets predict/eval/export` can use it like a trained checkpoint."""
    extra = model.config.extra
    return save_checkpoint(
        out,
        model,
        class_names=extra.get("class_names"),
        preprocessing=extra.get("preprocessing"),
        metadata={"converted_from": extra.get("source")},
    )


__all__ = ["CONVERTIBLE", "SOURCES", "convert", "save_converted"]
