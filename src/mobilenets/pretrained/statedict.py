"""PyTorch state dicts (torchvision, timm): reading them safely, and filling our slots from them.

Files are read with `torch.load(..., weights_only=True)` or safetensors: never by unpickling
arbitrary objects, so a malicious .pth cannot run code here.
"""

from __future__ import annotations

import os
import pickle
import re
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..config import ModelConfig
from .slots import SLOT_TENSORS, Slot, SourceTensor, WeightMismatch, describe

# Keys a training checkpoint may wrap its state dict in (timm's train script, Lightning, ...).
WRAPPER_KEYS = ("state_dict", "model", "state_dict_ema", "model_ema")
IGNORED_SUFFIXES = (".num_batches_tracked",)  # BatchNorm bookkeeping, no weight


def sniff_format(path: str | os.PathLike) -> str:
    """A weights file's format from its first bytes, never its name: "hdf5" (Keras .h5), "zip"
    (torch.save's format, or a Keras 3 .keras archive), "safetensors", "pickle" (older torch.save),
    or "unknown"."""
    with open(path, "rb") as handle:
        head = handle.read(9)
    size = os.path.getsize(path)
    if head.startswith(b"\x89HDF\r\n\x1a\n"):
        return "hdf5"
    if head.startswith(b"PK\x03\x04"):
        return "zip"
    # safetensors: an 8-byte little-endian header length, then the JSON header itself
    if len(head) == 9 and head[8:9] == b"{" and int.from_bytes(head[:8], "little") <= size - 8:
        return "safetensors"
    if head[:1] == b"\x80":
        return "pickle"
    return "unknown"


FORMAT_NAMES = {"zip": "a PyTorch zip (torch.save)", "pickle": "a legacy PyTorch pickle"}


def read_state_dict(source: Any, library: str) -> tuple[dict[str, torch.Tensor], str, str | None]:
    """(state dict, label for messages, file path or None) from a path, a Mapping or an nn.Module."""
    if isinstance(source, nn.Module):
        return dict(source.state_dict()), f"{library} {type(source).__name__}", None
    if isinstance(source, Mapping):
        return _unwrap(dict(source), f"{library} state dict"), f"{library} state dict", None
    path = Path(source)
    if not path.is_file():
        raise FileNotFoundError(f"no {library} weights file at {path}")
    label = f"{library} file {path}"
    file_format = sniff_format(path)
    if file_format == "safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(path), device="cpu"), label, str(path)
        except SafetensorError as error:
            raise ValueError(f"{path} is not a safetensors file ({error})") from None
    if file_format == "hdf5":
        raise ValueError(f"{path} is an HDF5 (Keras) file, not a PyTorch state dict; convert it from keras")
    if path.suffix.lower() == ".safetensors":  # the bytes decide, and the user should know they disagree
        found = FORMAT_NAMES.get(file_format, "no known format")
        warnings.warn(
            f"{path} is named .safetensors but its bytes are {found}; reading it as that",
            stacklevel=2,
        )
    try:
        # From an open file, not the path: torch.load picks its reader by a path's name (.safetensors).
        with open(path, "rb") as handle:
            loaded = torch.load(handle, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        # torch's message is long; the line naming the refused object is the useful one
        refused = re.search(r"Unsupported global: GLOBAL (\S+)", str(error))
        what = refused.group(1) if refused else "objects other than tensors"
        raise ValueError(
            f"{path} is not a plain state dict: it holds {what}, which loading with "
            f"weights_only=True refuses to unpickle (by design: unpickling can run code)"
        ) from None
    except (RuntimeError, EOFError, OSError) as error:
        raise ValueError(f"{path} is not a PyTorch weights file ({error})") from None
    if not isinstance(loaded, Mapping):
        raise ValueError(f"{path} holds a {type(loaded).__name__}, not a state dict")
    return _unwrap(dict(loaded), label), label, str(path)


def _unwrap(state: dict, label: str) -> dict[str, torch.Tensor]:
    for key in WRAPPER_KEYS:
        if isinstance(state.get(key), Mapping):
            state = dict(state[key])
            break
    if all(k.startswith("module.") for k in state):  # saved from DataParallel / DDP
        state = {k[len("module.") :]: v for k, v in state.items()}
    not_tensors = [k for k, v in state.items() if not isinstance(v, torch.Tensor)]
    if not_tensors:
        raise ValueError(
            f"{label} is not a state dict: {not_tensors[0]!r} is a {type(state[not_tensors[0]]).__name__}"
        )
    return state


def weight_keys(state: dict[str, torch.Tensor]) -> list[str]:
    return [k for k in state if not k.endswith(IGNORED_SUFFIXES)]


def slot_reader(
    state: dict[str, torch.Tensor],
    module_name: Callable[[Slot], str],
    config: ModelConfig,
    source: str,
    used: set[str],
) -> Callable[[Slot], dict[str, SourceTensor]]:
    """read_slot(slot) for a PyTorch source whose module for `slot` is `module_name(slot)`; the tensors
    keep their names (weight, bias, running_mean, running_var) and layout, except that a 1×1
    convolution may stand for our nn.Linear (timm's conv_head)."""

    def read_slot(slot: Slot) -> dict[str, SourceTensor]:
        prefix = module_name(slot)
        tensors = {}
        for tensor_name in SLOT_TENSORS[slot.op]:
            key = f"{prefix}.{tensor_name}"
            if key not in state:
                raise WeightMismatch(
                    f"{source} has no {key!r} for {slot.path}.{tensor_name} of {describe(config)}; "
                    f"{_key_summary(state)}"
                )
            value = state[key]
            if slot.op == "linear" and value.dim() == 4 and value.shape[2:] == (1, 1):
                value = value.flatten(1)
            tensors[tensor_name] = SourceTensor(key, value.float(), tuple(state[key].shape))
            used.add(key)
        return tensors

    return read_slot


def _key_summary(state: dict) -> str:
    keys = weight_keys(state)
    return f"its keys begin {', '.join(keys[:3])}{', ...' if len(keys) > 3 else ''}"


def file_stem(path: str | os.PathLike | None) -> str:
    return "" if path is None else Path(path).name
