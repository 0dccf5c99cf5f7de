"""The checkpoint format: one safetensors file holding the weights and, in its header, a JSON
document with the model config, class names, preprocessing and (for training checkpoints) the
trainer's state.

One file means one atomic write: it is written to a temporary file in the same folder, flushed to
disk, then renamed over the target, so a crash at any moment leaves either the old or the new
checkpoint, never a torn one. Loading never unpickles anything.

Tensor names: `model.<state-dict key>` for the weights; any other prefix (e.g. `optimizer.`) is
extra state that only the trainer reads.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import torch

from .config import ModelConfig
from .models import MobileNet

FORMAT = "mobilenets.checkpoint/1"
METADATA_KEY = "mobilenets"
MODEL_PREFIX = "model."


@dataclass
class Checkpoint:
    model: MobileNet
    class_names: list[str] | None = None
    preprocessing: dict | None = None  # e.g. {"size": 32, "mean": [...], "std": [...]}
    metadata: dict = field(default_factory=dict)  # everything else in the JSON header
    tensors: dict[str, torch.Tensor] = field(default_factory=dict)  # extra (non-model) tensors


def save_checkpoint(path: str | os.PathLike, model: MobileNet, *, class_names: list[str] | None = None,
                    preprocessing: dict | None = None, metadata: dict | None = None,
                    tensors: dict[str, torch.Tensor] | None = None) -> Path:
    """Write `model` (and optional extra tensors and JSON-able metadata) atomically to `path`."""
    from safetensors.torch import save_file

    path = Path(path)
    header = {
        "format": FORMAT,
        "config": model.config.to_dict(),
        "class_names": class_names,
        "preprocessing": preprocessing,
        **(metadata or {}),
    }
    payload = {MODEL_PREFIX + k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    for name, tensor in (tensors or {}).items():
        if name.startswith(MODEL_PREFIX):
            raise ValueError(f"extra tensor name {name!r} may not start with {MODEL_PREFIX!r}")
        payload[name] = tensor.detach().cpu().contiguous()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        save_file(payload, tmp, metadata={METADATA_KEY: json.dumps(header)})
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)  # atomic on POSIX and Windows
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def read_metadata(path: str | os.PathLike) -> dict[str, str]:
    """The string metadata of any safetensors file, without reading its tensors."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as handle:
            return handle.metadata() or {}
    except Exception as error:  # safetensors raises its own error types for corrupt files
        raise ValueError(f"{path} is not a safetensors file ({error})") from None


def read_header(path: str | os.PathLike) -> dict:
    """The JSON header of a checkpoint, without reading its tensors."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    raw = read_metadata(path).get(METADATA_KEY)
    if raw is None:
        raise ValueError(
            f"{path} is a safetensors file but not a mobilenets checkpoint (no '{METADATA_KEY}' header)"
        )
    header = json.loads(raw)
    if header.get("format") != FORMAT:
        raise ValueError(
            f"{path}: unsupported checkpoint format {header.get('format')!r} (expected {FORMAT!r})"
        )
    return header


def load_checkpoint(path: str | os.PathLike) -> Checkpoint:
    """Rebuild the model from the header's config and load its weights (on CPU)."""
    from safetensors.torch import load_file

    header = read_header(path)
    tensors = load_file(str(path), device="cpu")
    model = MobileNet(ModelConfig.from_dict(header["config"]))
    state = {k[len(MODEL_PREFIX):]: v for k, v in tensors.items() if k.startswith(MODEL_PREFIX)}
    model.load_state_dict(state)
    extra = {k: v for k, v in tensors.items() if not k.startswith(MODEL_PREFIX)}
    known = {"format", "config", "class_names", "preprocessing"}
    return Checkpoint(model, header.get("class_names"), header.get("preprocessing"),
                      {k: v for k, v in header.items() if k not in known}, extra)


def load_model(path: str | os.PathLike) -> MobileNet:
    """Just the model of a checkpoint, in eval mode."""
    return load_checkpoint(path).model.eval()
