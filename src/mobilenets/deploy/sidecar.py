"""The sidecar: the JSON beside every exported file (`model.onnx.json`, ...), written and read here.

It holds what running the model needs, and nothing of the exporting machine: the runtime and
precision, the batch and input shape, the model config, class names, preprocessing, the SHA-256 of
each file it describes, and the validation split by reference (seed, fraction, count and a hash of
the file names, never the names themselves), so that `eval` can tell whether a folder's recomputed
split is the recorded one. Every field is checked on read (types, ranges, lengths, nesting depth,
the class count against the model's outputs, the input size against the model's input), so a
damaged or hand-edited sidecar is one line naming the field, never a traceback or a "nan%".
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..config import ModelConfig

if TYPE_CHECKING:
    from ..costs.reference import ReferenceConfig

FORMAT_PREFIX = "mobilenets.exported/"
VERSION = 2  # 1: the split's file names themselves and the source's full path
FORMAT = f"{FORMAT_PREFIX}{VERSION}"
MAX_BYTES = 16 << 20  # a sidecar is a few kB (class names); larger is not one of ours
REQUIRED = ("runtime", "precision", "batch", "input", "config", "class_names", "preprocessing", "files")


class SidecarError(ValueError):
    """A sidecar that cannot describe its file; the message names the field and the fix."""


def names_digest(names: list[str]) -> str:
    """The SHA-256 of a list of file names (sorted, newline-joined): a split by reference."""
    return hashlib.sha256("\n".join(sorted(names)).encode()).hexdigest()


def split_reference(split: dict | None) -> dict | None:
    """A checkpoint's validation split as the sidecar records it: without the file names."""
    if not split:
        return None
    reference = {k: split[k] for k in ("kind", "seed", "val_fraction", "val") if k in split}
    if split.get("val_files") is not None:
        reference["count"] = len(split["val_files"])
        reference["val_files_sha256"] = names_digest(split["val_files"])
    return reference


def build(
    *,
    runtime: str,
    precision: str,
    batch: int | None,
    config: ModelConfig | ReferenceConfig,  # a reference model's, for `bench`
    class_names: list | None,
    preprocessing: dict,
    split: dict | None,
    source: str,
    calibration_images: int | None,
) -> dict:
    """The sidecar of a new export (its "files" are added once the files exist)."""
    size = int(preprocessing["size"])
    return {
        "format": FORMAT,
        "runtime": runtime,
        "precision": precision,
        "batch": batch,  # None: any
        "input": [config.in_channels, size, size],
        "config": config.to_dict(),
        "class_names": class_names,
        "preprocessing": preprocessing,
        "split": split_reference(split),
        "source": Path(source).name,  # the checkpoint's file name or the zoo name, no folders
        "calibration_images": calibration_images,
    }


def read(path: Path, again: str) -> dict:
    """The sidecar at `path`, parsed and checked; `again` says how to make a good one."""
    try:
        if path.stat().st_size > MAX_BYTES:
            raise SidecarError(f"{path} is {path.stat().st_size:,} bytes, not a sidecar (a few kB); {again}")
        text = path.read_text(encoding="utf-8")
        info = json.loads(text)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise SidecarError(f"{path} is not valid JSON ({error}); {again}") from None
    except RecursionError:
        raise SidecarError(f"{path} is nested too deeply to be a sidecar; {again}") from None
    check(info, path, again)
    return info


def _version(info: dict, path: Path, again: str) -> int:
    found = info.get("format")
    match = re.fullmatch(re.escape(FORMAT_PREFIX) + r"(\d+)", found) if isinstance(found, str) else None
    if match is None:
        raise SidecarError(
            f"{path} is not a mobilenets sidecar (format {found!r}, expected {FORMAT!r}); {again}"
        )
    version = int(match.group(1))
    if version > VERSION:
        raise SidecarError(
            f"{path} was written by a newer mobilenets (sidecar format {version}; this one reads up to "
            f"{VERSION}): upgrade mobilenets (pip install -U mobilenets), or {again}"
        )
    return version


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _is_count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def check(info: object, path: Path, again: str) -> None:
    """Raise SidecarError naming the first field that is missing, of the wrong type or out of range."""
    if not isinstance(info, dict):
        raise SidecarError(f"{path} is not a mobilenets sidecar (a JSON {type(info).__name__}); {again}")
    _version(info, path, again)
    missing = [name for name in REQUIRED if name not in info]
    if missing:
        raise SidecarError(f"{path} is not a mobilenets sidecar (missing {', '.join(missing)}); {again}")

    def bad(field: str, what: str) -> SidecarError:
        return SidecarError(f"{path}: {field} {what}; {again}")

    # One field at a time, in this order, so that the message names the first bad one.
    config = _checked_config(info["config"], bad)
    _check_runtime_and_batch(info, bad)
    shape = _checked_input(info["input"], config, bad)
    _check_preprocessing(info["preprocessing"], shape, config, bad)
    _check_class_names(info["class_names"], config, bad)
    files = info["files"]
    if not (isinstance(files, dict) and files and all(isinstance(v, str) for v in files.values())):
        raise bad("files", "must map each file name to its SHA-256")


# Each check below takes `bad(field, what)`, which makes the SidecarError naming the sidecar's path.
_Bad = Callable[[str, str], SidecarError]


def _checked_config(data: Any, bad: _Bad) -> ModelConfig:
    try:
        return ModelConfig.from_dict(data)
    except (TypeError, ValueError, KeyError, AttributeError) as error:
        raise bad("config", f"is no valid model config ({error})") from None


def _check_runtime_and_batch(info: dict, bad: _Bad) -> None:
    if not isinstance(info["runtime"], str) or not isinstance(info["precision"], str):
        raise bad("runtime/precision", "must be strings")
    if info["batch"] is not None and not _is_count(info["batch"]):
        raise bad("batch", f"must be a positive integer or null (any); got {info['batch']!r}")


def _checked_input(shape: Any, config: ModelConfig, bad: _Bad) -> list[int]:
    if not (isinstance(shape, list) and len(shape) == 3 and all(_is_count(v) for v in shape)):
        raise bad("input", f"must be [channels, height, width] of positive integers; got {shape!r}")
    if shape[0] != config.in_channels:
        raise bad("input", f"has {shape[0]} channels but the model reads {config.in_channels}")
    return shape


def _check_preprocessing(recipe: Any, shape: list[int], config: ModelConfig, bad: _Bad) -> None:
    if not isinstance(recipe, dict):
        raise bad("preprocessing", f"must be an object; got {type(recipe).__name__}")
    if not _is_count(recipe.get("size")):
        raise bad("preprocessing.size", f"must be a positive integer; got {recipe.get('size')!r}")
    if recipe["size"] != shape[1] or shape[1] != shape[2]:
        raise bad("preprocessing.size", f"is {recipe['size']} but the model's input is {shape[1]}×{shape[2]}")
    resize = recipe.get("resize")  # absent: the evaluation pipeline's default for the size
    if resize is not None and not (_is_count(resize) and resize >= recipe["size"]):
        raise bad(
            "preprocessing.resize",
            f"must be an integer of at least the crop {recipe['size']}; got {resize!r}",
        )
    for key in ("mean", "std"):
        values = recipe.get(key)
        if not (
            isinstance(values, list) and len(values) == config.in_channels and all(map(_is_number, values))
        ):
            raise bad(f"preprocessing.{key}", f"must be {config.in_channels} finite numbers; got {values!r}")
    if not all(v > 0 for v in recipe["std"]):
        raise bad("preprocessing.std", f"must be positive (it divides each channel); got {recipe['std']}")


def _check_class_names(names: Any, config: ModelConfig, bad: _Bad) -> None:
    if names is None:
        return
    if not (isinstance(names, list) and all(isinstance(n, str) for n in names)):
        raise bad("class_names", f"must be a list of strings or null; got {type(names).__name__}")
    if len(names) != config.num_classes:
        raise bad("class_names", f"lists {len(names)} names but the model has {config.num_classes} outputs")
