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
from .files import fsync_folder, umask
from .models import MobileNet

FORMAT = "mobilenets.checkpoint/1"
METADATA_KEY = "mobilenets"
MODEL_PREFIX = "model."


def non_finite_tensors(tensors: dict[str, torch.Tensor]) -> list[str]:
    """Names of the floating-point tensors holding a NaN or an infinity (a diverged model)."""
    return [
        name
        for name, tensor in tensors.items()
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all())
    ]


def check_finite(model: torch.nn.Module, label: str) -> None:
    """Raise ValueError naming `label` and the first bad tensor when the weights are not all finite."""
    bad = non_finite_tensors(model.state_dict())
    if bad:
        more = f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""
        raise ValueError(
            f"{label}: the model's {bad[0]}{more} holds NaN or infinite values; "
            f"the training diverged (resume from an earlier checkpoint with a smaller --lr)"
        )


def check_matches_config(model: MobileNet, label: str) -> None:
    """Raise ValueError when the model's tensors are not the ones its config describes (a layer
    replaced by hand): such a file could not be loaded again. `reset_classifier` keeps both in step."""
    with torch.device("meta"):
        expected = {k: tuple(v.shape) for k, v in MobileNet(model.config).state_dict().items()}
    actual = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    for name in sorted(set(expected) | set(actual)):
        if expected.get(name) != actual.get(name):
            raise ValueError(
                f"{label}: the model's {name} is {actual.get(name) or 'missing'} but its config says "
                f"{expected.get(name) or 'no such tensor'}; replace a classifier with "
                f"model.reset_classifier(num_classes), which updates the config too"
            )


@dataclass
class Checkpoint:
    model: MobileNet
    class_names: list[str] | None = None
    preprocessing: dict | None = None  # e.g. {"size": 32, "mean": [...], "std": [...]}
    metadata: dict = field(default_factory=dict)  # everything else in the JSON header
    tensors: dict[str, torch.Tensor] = field(default_factory=dict)  # extra (non-model) tensors


def save_checkpoint(
    path: str | os.PathLike,
    model: MobileNet,
    *,
    class_names: list[str] | None = None,
    preprocessing: dict | None = None,
    metadata: dict | None = None,
    tensors: dict[str, torch.Tensor] | None = None,
) -> Path:
    """Write `model` (and optional extra tensors and JSON-able metadata) atomically to `path`."""
    from safetensors.torch import save_file

    path = Path(path)
    # A diverged model must never replace a good checkpoint (it may be the only resume point).
    check_finite(model, f"refusing to write {path}")
    check_matches_config(model, f"refusing to write {path}")
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
        os.chmod(tmp, 0o666 & ~umask())  # as open() would create it, not mkstemp's private 0600
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)  # atomic on POSIX and Windows
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    fsync_folder(path.parent)  # the rename itself survives a power loss
    return path


def read_metadata(path: str | os.PathLike) -> dict[str, str]:
    """The string metadata of any safetensors file, without reading its tensors."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as handle:
            return handle.metadata() or {}
    except Exception as error:  # safetensors raises its own error types for corrupt files
        raise ValueError(f"{path} is not a safetensors file ({error})") from None


def is_checkpoint(path: str | os.PathLike) -> bool:
    """Whether `path` is a file of this format (a safetensors file with our header), by its bytes."""
    try:
        return bool(read_metadata(path).get(METADATA_KEY))
    except (ValueError, OSError):
        return False


def lineage_of(header: dict) -> list[dict]:
    """The runs behind a checkpoint, oldest first: those its header's `lineage` records (the weights
    it was trained from), then the run that wrote it (command, commit, epochs, final top-1)."""
    runs = list(header.get("lineage") or [])
    provenance, history = header.get("provenance") or {}, header.get("history") or []
    if provenance or history:
        runs.append(
            {
                "command": provenance.get("command"),
                "git_commit": provenance.get("git_commit"),
                "epochs": len(history),
                "val_top1": history[-1]["val_top1"] if history else None,
            }
        )
    return runs


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
    try:
        header = json.loads(raw)
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}: the checkpoint header is not valid JSON ({error})") from None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        found = header.get("format") if isinstance(header, dict) else type(header).__name__
        raise ValueError(f"{path}: unsupported checkpoint format {found!r} (expected {FORMAT!r})")
    return header


def load_checkpoint(path: str | os.PathLike) -> Checkpoint:
    """Rebuild the model from the header's config and load its weights (on CPU)."""
    from safetensors.torch import load_file

    path = Path(path)
    header = read_header(path)
    config = _header_config(path, header)
    # Built once, on the meta device (which allocates nothing), so that the file's shapes are checked
    # before anything is allocated (an edited header could ask for terabytes); then given CPU memory
    # that load_state_dict fills whole (strict: every parameter and buffer comes from the file).
    with torch.device("meta"):
        model = MobileNet(config)
    _check_tensor_shapes(path, model)
    tensors = load_file(str(path), device="cpu")
    model = model.to_empty(device="cpu")
    state = {k[len(MODEL_PREFIX) :]: v for k, v in tensors.items() if k.startswith(MODEL_PREFIX)}
    bad = non_finite_tensors(state)
    if bad:  # it would answer "nan%" for every image
        more = f" (and {len(bad) - 1} more tensors)" if len(bad) > 1 else ""
        raise ValueError(
            f"{path}: {bad[0]} holds NaN or infinite values{more}; these weights cannot predict "
            f"anything: use an earlier checkpoint"
        )
    model.load_state_dict(state)
    extra = {k: v for k, v in tensors.items() if not k.startswith(MODEL_PREFIX)}
    known = {"format", "config", "class_names", "preprocessing"}
    return Checkpoint(
        model,
        header.get("class_names"),
        header.get("preprocessing"),
        {k: v for k, v in header.items() if k not in known},
        extra,
    )


def _header_config(path: Path, header: dict) -> ModelConfig:
    if not isinstance(header.get("config"), dict):
        raise ValueError(f"{path}: the checkpoint header has no model config")
    try:
        config = ModelConfig.from_dict(header["config"])
    except (TypeError, ValueError, KeyError, AttributeError) as error:
        raise ValueError(f"{path}: the checkpoint's model config is invalid ({error})") from None
    names = header.get("class_names")
    if names is not None and (not isinstance(names, list) or len(names) != config.num_classes):
        raise ValueError(
            f"{path}: the header lists {len(names) if isinstance(names, list) else names!r} class "
            f"names for a model with {config.num_classes} classes"
        )
    if isinstance(config.extra.get("class_names"), str):
        # Converted checkpoints written before class names were a list in the config named them
        # "imagenet-1k" there; their header holds the names themselves.
        config = config.replace(extra={**config.extra, "class_names": names})
    return config


def _check_tensor_shapes(path: Path, model: MobileNet) -> None:
    """The file's tensors have exactly the shapes of `model`'s (built from the header's config)."""
    from safetensors import safe_open

    expected = {MODEL_PREFIX + k: tuple(v.shape) for k, v in model.state_dict().items()}
    with safe_open(str(path), framework="pt") as handle:
        found = {
            k: tuple(handle.get_slice(k).get_shape())
            for k in handle.keys()  # noqa: SIM118 (a safe_open handle is not iterable; keys() lists it)
            if k.startswith(MODEL_PREFIX)
        }
    for name, shape in expected.items():
        if name not in found:
            raise ValueError(
                f"{path}: the header's config has {name[len(MODEL_PREFIX) :]}, which the file lacks; "
                f"the header does not describe these weights"
            )
        if found[name] != shape:
            raise ValueError(
                f"{path}: {name[len(MODEL_PREFIX) :]} has shape {found[name]} in the file but "
                f"{shape} in the header's config; the header does not describe these weights"
            )
    extra = sorted(set(found) - set(expected))
    if extra:
        raise ValueError(
            f"{path}: the file has {extra[0][len(MODEL_PREFIX) :]}, which the header's config "
            f"does not; the header does not describe these weights"
        )


# Header entries that only resuming needs; a released checkpoint drops them with their tensors.
TRAINING_STATE = ("optimizer", "schedule", "step")


def release_checkpoint(
    source: str | os.PathLike, destination: str | os.PathLike, metadata: dict | None = None
) -> Path:
    """A copy of a training checkpoint for publishing: the model, class names, preprocessing and
    the record of the run (config, split, history, provenance) kept, the optimizer and RNG state
    dropped (they double the file and only `--resume` reads them); `metadata` is added."""
    checkpoint = load_checkpoint(source)
    kept = {k: v for k, v in checkpoint.metadata.items() if k not in TRAINING_STATE}
    return save_checkpoint(
        destination,
        checkpoint.model,
        class_names=checkpoint.class_names,
        preprocessing=checkpoint.preprocessing,
        metadata={**kept, **(metadata or {})},
    )


def load_model(path: str | os.PathLike) -> MobileNet:
    """Just the model of a checkpoint, in eval mode."""
    return load_checkpoint(path).model.eval()
