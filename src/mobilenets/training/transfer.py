"""Training from weights: the parent a run starts from, and the model the run trains.

    mobilenets train --weights cifar10 --data PATH            fine-tune the shipped CIFAR-10 model
    mobilenets train --weights keras-imagenet --data PATH     transfer ImageNet features
    mobilenets train --weights runs/a/last.safetensors ...    continue a run with a new schedule

The parent is loaded through `pretrained_model`, so a published key, a checkpoint of ours or a
converted Keras/torchvision/timm file all pass the converters' shape checks and keep their own
conventions (padding, BatchNorm epsilon). The child is the parent's network with:
- a new, randomly initialised classifier when the class count differs (one line says so);
- the input size of the training data (the model is fully convolutional);
- the trainer's stride-1 stem for images of at most 64 px, unless --stem-stride says otherwise.
The stem stride changes no tensor shape, so every backbone tensor is copied as it is.

What the run records: the parent's key or path and SHA-256, and the lineage (each earlier run's
command, epochs, commit and result), so a shipped model can be traced to its first epoch.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from ..checkpoint import is_checkpoint, lineage_of, read_header
from ..files import portable_path
from ..models import MobileNet
from ..pretrained.registry import bundled_file, default_model, find_weights, weight_keys
from ..pretrained.weights import load_weights_file, pretrained_model

# Options that describe the parent's network: the user may state them (they are checked against
# the weights), while the ones below are decided by the training run.
DECIDED_BY_THE_RUN = ("num_classes", "resolution", "stem_stride", "features_only")


@dataclass(frozen=True)
class Parent:
    """The weights a training run starts from."""

    model: MobileNet  # the parent's own network and classifier
    label: str  # the weights as the user gave them: a key or a path
    sha256: str
    header: dict | None  # our checkpoint header, when the weights are one of our checkpoints

    @property
    def preprocessing(self) -> dict | None:
        """mean/std (and size) the parent was trained with: a fine-tune must feed it the same."""
        if self.header and self.header.get("preprocessing"):
            return self.header["preprocessing"]
        return self.model.config.extra.get("preprocessing")

    @property
    def val_files(self) -> list[str] | None:
        """The parent run's held-out validation files: a continuation must not train on them."""
        split = (self.header or {}).get("split") or {}
        return split.get("val_files") if split.get("kind") == "held_out" else None

    def record(self) -> dict:
        """What a child's checkpoint says of its parent."""
        config = self.model.config
        return {
            "weights": self.label,
            "sha256": self.sha256,
            "model": config.name,
            "width_mult": config.width_mult,
            "num_classes": config.num_classes,
        }

    def lineage(self) -> list[dict]:
        """Every run behind these weights, oldest first (`checkpoint.lineage_of`), the parent's own
        run marked with the weights as given and their SHA-256; another library's file is one entry
        with its source URL."""
        header = self.header or {}
        runs = lineage_of(header)
        if len(runs) > len(header.get("lineage") or []):  # the parent's header records its own run
            runs[-1] = {"weights": self.label, "sha256": self.sha256, **runs[-1]}
        else:
            url = (self.model.config.extra.get("weights") or {}).get("url")
            runs.append({"weights": self.label, "sha256": self.sha256, "url": url})
        return runs


def _checkpoint_file(name: str, weights: str, options: dict) -> Path | None:
    """The checkpoint of ours behind `weights` (a shipped key or a file path), else None."""
    if weights in weight_keys():
        entry = find_weights(
            name, weights, options.get("width_mult"), None, options.get("minimalistic", False)
        )
        return bundled_file(entry) if entry.source == "mobilenets" else None
    path = Path(weights)
    return path if path.is_file() and is_checkpoint(path) else None


def weights_model_name(weights: str) -> str | None:
    """The model that `weights` hold, for a command that was not told: a key's only model, the model
    of one of our checkpoints or of a converted file; None when a key publishes several."""
    if weights in weight_keys():
        return default_model(weights)
    path = Path(weights)
    if not path.is_file():
        return None  # load_parent says what is wrong
    if is_checkpoint(path):
        return read_header(path)["config"]["name"]
    return load_weights_file(path).config.name


def load_parent(name: str, weights: str, options: dict) -> Parent:
    """The parent model for `train --model NAME --weights WEIGHTS` with the user's model options;
    every mismatch (another model, another width, a file that is no MobileNet) is one ValueError."""
    parent_options = {k: v for k, v in options.items() if k not in DECIDED_BY_THE_RUN}
    model = pretrained_model(name, weights, parent_options)
    checkpoint = _checkpoint_file(name, weights, parent_options)
    header = read_header(checkpoint) if checkpoint is not None else None
    sha256 = model.config.extra["weights"]["sha256"]
    # The label goes into the child's header: a path relative to where the run started, like the rest.
    return Parent(model=model, label=portable_path(str(weights)), sha256=sha256, header=header)


def child_model(
    parent: Parent, num_classes: int, resolution: int, stem_stride: int | None
) -> tuple[MobileNet, list[str]]:
    """The model a run trains from `parent`, and the lines that tell the user what changed."""
    config = parent.model.config
    notes = []
    head = config.head
    if head is None:
        raise ValueError(
            f"the weights {parent.label} have no classifier (a feature extractor); train needs a "
            f"checkpoint or published weights with one"
        )
    if head.num_classes != num_classes:
        notes.append(
            f"a new classifier for {num_classes} classes replaces the {head.num_classes}-class one of "
            f"{parent.label}; the backbone keeps its weights"
        )
        head = dataclasses.replace(head, num_classes=num_classes)
    stem = config.blocks[0]
    if stem_stride is not None and stem_stride != stem.stride:
        notes.append(
            f"the stem runs at stride {stem_stride} for {resolution} px images ({parent.label} was "
            f"trained at stride {stem.stride}; no tensor changes shape)"
        )
        stem = dataclasses.replace(stem, stride=stem_stride)
    child_config = config.replace(
        blocks=(stem,) + config.blocks[1:],
        head=head,
        resolution=resolution,
        extra={"weights": parent.record()},
    )
    child = MobileNet(child_config)
    copy_backbone(parent.model, child, parent.label)
    return child, notes


def copy_backbone(source: MobileNet, target: MobileNet, label: str) -> None:
    """Every tensor of `target` from `source` (same name, same shape), except a classifier whose
    class count differs, which keeps its fresh initialisation."""
    state = source.state_dict()
    new_head = source.config.num_classes != target.config.num_classes
    kept = {}
    for name, tensor in target.state_dict().items():
        if new_head and name.startswith("head.fc."):
            continue
        if name not in state:
            raise ValueError(f"the weights {label} have no {name}; they are not a {target.config.name}")
        if state[name].shape != tensor.shape:
            raise ValueError(
                f"the weights {label} have {name} of shape {tuple(state[name].shape)}, the model "
                f"needs {tuple(tensor.shape)}"
            )
        kept[name] = state[name]
    target.load_state_dict(kept, strict=not new_head)
