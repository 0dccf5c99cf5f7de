"""Training: one function, `train(TrainConfig)`, used by `mobilenets train`, `compare` and torchrun.

Reproducibility contract: on CPU with a fixed seed, a run interrupted at any checkpoint and
resumed with `--resume` ends with the same weights, bit for bit, as an uninterrupted run. It
holds because every random draw comes from (seed, epoch, step) (see data.py) or from the global
RNG whose state is saved, the learning rate is a pure function of the global step, and the
optimizer state is saved exactly.

Distributed: under torchrun (WORLD_SIZE > 1) the model is wrapped in DistributedDataParallel
(gloo on CPU, NCCL on GPU), each rank reads its shard of every epoch's order, and rank 0 alone
evaluates and writes.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import io
import json
import math
import os
import shlex
import signal
import subprocess
import sys
import threading
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..checkpoint import load_checkpoint, non_finite_tensors, read_header, save_checkpoint
from ..config import ModelOptions, flag_field
from ..data import DataBundle, load_data, make_loader
from ..factory import create_model
from ..files import (
    OutputError,
    OutputLock,
    check_writable_folder,
    missing_folders,
    portable_path,
    remove_stale_temporaries,
    remove_unused_folders,
    replace_folder,
    write_atomically,
)
from ..layers import DepthwiseConv2d
from ..models import MobileNet
from .evaluate import evaluate
from .plots import plot_curves
from .transfer import Parent, child_model, load_parent

OPTIMIZERS = ("sgd", "rmsprop")
MAX_IMAGE_SIZE = 2048  # larger inputs are a typo that would try to allocate a batch of gigabytes
# Bounds on the numbers a user types, each far beyond any real recipe: past them a value is a typo
# that would overflow (an lr of 1e308 cannot even be stored in float32) or run for years.
MAX_LR = 1000.0
MAX_WEIGHT_DECAY = 1.0
MAX_EPOCHS = 10_000
MAX_BATCH = 65_536
# What --resume may change: the rest decides the data, the model or the optimizer state's meaning.
# A changed --lr or --epochs is allowed (to recover from divergence, or to train longer); the run
# is then no longer bit-identical to an uninterrupted one, and a warning says so.
RESUME_MAY_CHANGE = ("lr", "epochs", "out", "resume", "force", "workers", "progress", "skip_bad_images")
RESUME_CHANGES_SCHEDULE = ("lr", "epochs")
SCHEDULES = ("cosine", "step")


@dataclass(frozen=True)
class TrainConfig:
    """Everything a training run depends on besides the model options; saved in checkpoints."""

    model: str = "mobilenet_v1"
    data: str = flag_field("digits", "--data", "image folder PATH, 'digits' (built in) or 'cifar10:PATH'")
    epochs: int = flag_field(10, "--epochs", "training epochs")
    batch_size: int = flag_field(128, "--batch-size", "images per step (per process under torchrun)")
    lr: float | None = flag_field(
        None, "--lr", "peak learning rate (default 0.2·batch/128 for sgd, 0.008·batch/128 for rmsprop)"
    )
    optimizer: str = flag_field(
        "sgd", "--optimizer", "sgd (momentum 0.9, Nesterov) or rmsprop (the paper's)", choices=OPTIMIZERS
    )
    schedule: str = flag_field(
        "cosine", "--schedule", "cosine to zero, or step (×0.1 at 50% and 75%)", choices=SCHEDULES
    )
    warmup: float = flag_field(0.0, "--warmup-epochs", "linear warm-up length in epochs")
    label_smoothing: float = flag_field(0.1, "--label-smoothing", "cross-entropy label smoothing")
    weight_decay: float = flag_field(5e-4, "--weight-decay", "L2 weight decay")
    no_decay_on_depthwise_and_norm: bool = flag_field(
        False,
        "--no-decay-on-depthwise-and-norm",
        "no weight decay on depthwise filters, norm layers and biases (MobileNet paper §4)",
    )
    cutout: int = flag_field(
        0, "--cutout", "erase one random square of this side in pixels per training image (Cutout; 0: off)"
    )
    weights: str | None = flag_field(
        None,
        "--weights",
        "start from these weights: a published key (cifar10, keras-imagenet, ...), a checkpoint or a "
        "converted file; the classifier is replaced when the class count differs",
    )
    freeze_backbone: bool = flag_field(
        False,
        "--freeze-backbone",
        "with --weights: train the classifier only (the backbone, BatchNorm "
        "statistics included, stays as loaded)",
    )
    amp: bool = flag_field(False, "--amp", "bfloat16 autocast (CPU or GPU)")
    # NHWC by default: measured faster for training on CPU (docs/results.md) and the layout tensor
    # cores want on a GPU.
    channels_last: bool = flag_field(
        True, "--channels-last", "NHWC memory layout (default; --no-channels-last for NCHW)", negatable=True
    )
    seed: int = flag_field(0, "--seed", "seed of initialisation, data order, augmentation and split")
    out: str = flag_field("runs/train", "--output", "output folder (checkpoints, metrics, plot)")
    resume: bool = flag_field(False, "--resume", "continue from OUT/last.safetensors")
    force: bool = flag_field(
        False,
        "--force",
        "replace a run already in --output (trained in OUT.new; the old run stays until the new one ends)",
    )
    image_size: int | None = flag_field(
        None, "--image-size", "model input size (default: the images' own if ≤ 64 px, else 224)"
    )
    val_fraction: float = flag_field(
        0.1, "--val-fraction", "held-out fraction when the data has no split of its own"
    )
    workers: int = flag_field(2, "--workers", "data-loading worker processes for image trees on disk")
    skip_bad_images: bool = flag_field(False, "--skip-bad-images", "warn about and skip unreadable images")
    progress: bool = flag_field(True, "--no-progress", "hide the progress bar", action="store_false")
    model_options: dict = field(default_factory=dict)  # ModelOptions fields the user set

    def __post_init__(self) -> None:
        self._check_numbers()
        self._check_bounds()
        self._check_choices()
        ModelOptions.from_kwargs(self.model_options)  # validates names and values early

    def _flag(self, name: str) -> str:
        return next(f.metadata["flag"] for f in dataclasses.fields(self) if f.name == name)

    def _check_numbers(self) -> None:
        """Types: finite numbers where numbers are expected, positive integers for counts."""
        for name in ("lr", "weight_decay", "warmup", "label_smoothing", "val_fraction"):
            value = getattr(self, name)
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value)
            ):
                raise ValueError(f"{name} ({self._flag(name)}) must be a finite number; got {value!r}")
        for name in ("epochs", "batch_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer; got {value!r}")
        if (
            not isinstance(self.cutout, int)
            or isinstance(self.cutout, bool)
            or not 0 <= self.cutout <= MAX_IMAGE_SIZE
        ):
            raise ValueError(
                f"cutout (--cutout) must be a side in pixels from 0 to {MAX_IMAGE_SIZE}; got {self.cutout!r}"
            )
        if self.image_size is not None and not (
            isinstance(self.image_size, int) and 32 <= self.image_size <= MAX_IMAGE_SIZE
        ):
            raise ValueError(
                f"image_size must be an integer from 32 to {MAX_IMAGE_SIZE}; got {self.image_size!r}"
            )

    def _check_bounds(self) -> None:
        """Ranges: past them a value is a typo (see MAX_LR and its neighbours)."""
        if self.lr is not None and not 0 < self.lr <= MAX_LR:
            raise ValueError(
                f"lr (--lr) must be in (0, {MAX_LR:g}]; got {self.lr:g} (MobileNet recipes use 0.01-0.5; "
                f"beyond {MAX_LR:g} a value is a typo)"
            )
        if self.weight_decay > MAX_WEIGHT_DECAY:
            raise ValueError(
                f"weight_decay (--weight-decay) must be at most {MAX_WEIGHT_DECAY:g}; got "
                f"{self.weight_decay:g} (typical: 1e-5 to 5e-4)"
            )
        if self.weight_decay < 0:
            raise ValueError(f"weight_decay must be ≥ 0; got {self.weight_decay}")
        for name, limit in (("epochs", MAX_EPOCHS), ("batch_size", MAX_BATCH)):
            if getattr(self, name) > limit:
                raise ValueError(
                    f"{name} ({self._flag(name)}) must be at most {limit:,}; got {getattr(self, name):,} "
                    f"(a typo?)"
                )
        if not 0 <= self.warmup < self.epochs:
            raise ValueError(f"warmup must be in [0, epochs); got {self.warmup}")
        if not 0 <= self.label_smoothing < 1:
            raise ValueError(f"label_smoothing must be in [0, 1); got {self.label_smoothing}")

    def _check_choices(self) -> None:
        """Names and combinations of options."""
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {', '.join(OPTIMIZERS)}; got {self.optimizer!r}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {', '.join(SCHEDULES)}; got {self.schedule!r}")
        if self.freeze_backbone and self.weights is None:
            raise ValueError(
                "--freeze-backbone needs --weights: a randomly initialised backbone would stay random"
            )
        if self.force and self.resume:
            raise ValueError(
                "--force and --resume contradict each other: --resume continues the run in --output, "
                "--force replaces it; pass one"
            )
        if self.model_options.get("features_only"):
            raise ValueError(
                "features_only (--features-only) builds a model without a classifier, which "
                "cannot be trained here; train a classifier, then use create_model(..., "
                "features_only=True, weights=CHECKPOINT)"
            )

    @property
    def peak_lr(self) -> float:
        if self.lr is not None:
            return self.lr
        # Linear scaling with batch size; SGD's 0.2 per 128 images suits the short budgets of
        # small data sets (the ImageNet recipes use 0.1 per 256 over hundreds of epochs).
        base = 0.2 if self.optimizer == "sgd" else 0.008
        return base * self.batch_size / 128

    def lr_at(self, step: int, steps_per_epoch: int) -> float:
        """The learning rate of global step `step`: a pure function, so resuming needs no state."""
        total = self.epochs * steps_per_epoch
        warmup = round(self.warmup * steps_per_epoch)
        if step < warmup:
            return self.peak_lr * (step + 1) / warmup
        if self.schedule == "cosine":
            progress = (step - warmup) / max(1, total - warmup)
            return self.peak_lr * 0.5 * (1 + math.cos(math.pi * progress))
        epoch = step / steps_per_epoch
        return self.peak_lr * (0.1 ** ((epoch >= 0.5 * self.epochs) + (epoch >= 0.75 * self.epochs)))


# --------------------------------------------------------------------------------------------
# Pieces
# --------------------------------------------------------------------------------------------
def build_model(config: TrainConfig, bundle: DataBundle, parent: Parent | None = None) -> MobileNet:
    """The model a run trains: the zoo's, randomly initialised, or `parent`'s network adapted to the
    data (class count, input size, stem stride; see transfer.py)."""
    options = dict(config.model_options)
    classes = len(bundle.class_names)
    if options.get("num_classes", classes) != classes:
        raise ValueError(
            f"num_classes (--num-classes) is {options['num_classes']} but {config.data} has "
            f"{classes} classes; leave it unset (it follows the data)"
        )
    if options.get("resolution", bundle.image_size) != bundle.image_size:
        raise ValueError(
            f"resolution (--resolution) {options['resolution']} differs from the training input size "
            f"{bundle.image_size}; set --image-size instead (the recorded resolution follows it)"
        )
    options.setdefault("resolution", bundle.image_size)
    options["num_classes"] = len(bundle.class_names)
    # CIFAR-style stem for small inputs: keep the first layer at full resolution so a 32 px
    # image still ends in a 2×2 map instead of 1×1.
    small = bundle.image_size <= 64
    if parent is not None:
        stem_stride = options.get("stem_stride", 1 if small else None)
        model, notes = child_model(parent, len(bundle.class_names), bundle.image_size, stem_stride)
        for note in notes:
            print(f"mobilenets train: {note}", file=sys.stderr, flush=True)
        return model
    options.setdefault("stem_stride", 1 if small else 2)
    return create_model(config.model, **options)


def freeze_backbone(model: MobileNet) -> None:
    """Train the classifier only: no gradient for the backbone, and its BatchNorm layers kept in
    eval mode (their running statistics would otherwise still move), so every backbone tensor stays
    bit-identical. Call after every `model.train()`."""
    model.features.eval()
    for parameter in model.features.parameters():
        parameter.requires_grad_(False)


def parameter_groups(model: nn.Module, weight_decay: float, exclude_depthwise_and_norm: bool) -> list[dict]:
    if not exclude_depthwise_and_norm or weight_decay == 0:
        return [{"params": [p for p in model.parameters() if p.requires_grad], "weight_decay": weight_decay}]
    no_decay: set[int] = set()
    for module in model.modules():
        if isinstance(module, (nn.BatchNorm2d, DepthwiseConv2d)):
            no_decay.update(id(p) for p in module.parameters(recurse=False))
    for name, param in model.named_parameters():
        if name.endswith(".bias"):
            no_decay.add(id(param))
    params = [p for p in model.parameters() if p.requires_grad]
    return [
        {"params": [p for p in params if id(p) not in no_decay], "weight_decay": weight_decay},
        {"params": [p for p in params if id(p) in no_decay], "weight_decay": 0.0},
    ]


def build_optimizer(config: TrainConfig, model: nn.Module) -> torch.optim.Optimizer:
    groups = parameter_groups(model, config.weight_decay, config.no_decay_on_depthwise_and_norm)
    if config.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=config.peak_lr, momentum=0.9, nesterov=True)
    # The paper trained with RMSprop (TF defaults: decay 0.9, momentum 0.9, epsilon 1.0 inside
    # the square root, which is ~sqrt(1.0) outside it in PyTorch's formulation; 0.0316 is the
    # usual port of TF's epsilon 1e-3 that timm also uses).
    return torch.optim.RMSprop(groups, lr=config.peak_lr, alpha=0.9, eps=0.0316, momentum=0.9)


def _optimizer_to_checkpoint(optimizer: torch.optim.Optimizer) -> tuple[dict, dict[str, torch.Tensor]]:
    """Split optimizer.state_dict() into JSON (structure, scalars) and tensors."""
    state = optimizer.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    json_state: dict[str, dict] = {}
    for index, entry in state["state"].items():
        json_state[str(index)] = {}
        for key, value in entry.items():
            if torch.is_tensor(value):
                tensors[f"optimizer.{index}.{key}"] = value
                json_state[str(index)][key] = "__tensor__"
            else:
                json_state[str(index)][key] = value
    return {"state": json_state, "param_groups": state["param_groups"]}, tensors


def _optimizer_from_checkpoint(document: dict, tensors: dict[str, torch.Tensor]) -> dict:
    state = {}
    for index, entry in document["state"].items():
        state[int(index)] = {
            key: tensors[f"optimizer.{index}.{key}"] if value == "__tensor__" else value
            for key, value in entry.items()
        }
    return {"state": state, "param_groups": document["param_groups"]}


def provenance() -> dict:
    """What produced a checkpoint: the command line, the source's git commit (and whether the
    working tree had uncommitted changes) and the library versions."""
    source = Path(__file__).resolve().parents[1]  # the whole package, not only training/
    commit, dirty = None, None
    try:
        commit = (
            subprocess.run(
                ["git", "-C", str(source), "rev-parse", "HEAD"],
                capture_output=True,
                text=True,
                timeout=10,
                check=True,
            ).stdout.strip()
            or None
        )
        dirty = bool(
            subprocess.run(
                ["git", "-C", str(source), "status", "--porcelain", "--", "."],
                capture_output=True,
                text=True,
                timeout=10,
                check=True,
            ).stdout.strip()
        )
    except (OSError, subprocess.SubprocessError):  # not a git checkout (an installed wheel) or no git
        pass
    return {
        "command": portable_command([Path(sys.argv[0]).name, *sys.argv[1:]]),
        "git_commit": commit,
        "git_dirty": dirty,
        "torch": torch.__version__,
    }


def portable_config(config: TrainConfig) -> dict:
    """The TrainConfig as checkpoint headers and train_config.json record it: absolute paths made
    relative to where the run started (the data, the output and a weights file), so a shared
    checkpoint carries no path of the machine that trained it."""
    recorded = dataclasses.asdict(config)
    recorded["out"] = portable_path(config.out)
    if config.weights is not None:
        recorded["weights"] = portable_path(config.weights)
    kind, colon, path = config.data.partition(":")
    if colon and kind == "cifar10":
        recorded["data"] = f"cifar10:{portable_path(path)}"
    else:
        recorded["data"] = portable_path(config.data)
    return recorded


def portable_command(argv: list[str]) -> str:
    """The command line as a header records it: each absolute path (alone or after `--flag=`)
    relative to where the run started."""
    words = []
    for word in argv:
        flag, equals, value = word.partition("=")
        words.append(
            f"{flag}={portable_path(value)}" if equals and flag.startswith("-") else portable_path(word)
        )
    return shlex.join(words)


def _distributed() -> tuple[int, int]:
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size > 1 and not torch.distributed.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        torch.distributed.init_process_group(backend)
    return (torch.distributed.get_rank(), world_size) if world_size > 1 else (0, 1)


def _device() -> torch.device:
    if torch.cuda.is_available():
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local_rank)
        return torch.device("cuda", local_rank)
    return torch.device("cpu")


def metrics_files(history: list[dict]) -> dict[str, str]:
    """metrics.jsonl and metrics.csv of a run's history, by file name."""
    table = io.StringIO(newline="")
    writer = csv.DictWriter(table, fieldnames=list(history[0]))
    writer.writeheader()
    writer.writerows(history)
    lines = "".join(json.dumps(row) + "\n" for row in history)
    return {"metrics.jsonl": lines, "metrics.csv": table.getvalue()}


# --------------------------------------------------------------------------------------------
# The loop
# --------------------------------------------------------------------------------------------
class Interrupted(Exception):
    """Ctrl-C during training: the last checkpoint was saved; exit code 130."""


class Diverged(Exception):
    """The loss or the weights became NaN or infinite: nothing was saved from that point; exit code 3."""


@contextlib.contextmanager
def _sigint_deferred():
    """Ctrl-C while checkpoints and metrics are written takes effect once they are all written, so
    `last`, `best` and metrics.csv always describe the same epoch."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: received.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if received:
        raise KeyboardInterrupt


def check_resume_config(saved: dict | None, config: TrainConfig, last_path: Path) -> None:
    """Refuse a --resume whose options change the data, model or optimizer of the saved run; warn
    when they change the learning-rate schedule."""
    if not saved:
        return
    current = portable_config(config)  # recorded the way the saved run recorded its own
    flags = {f.name: f.metadata.get("flag", f.name) for f in dataclasses.fields(TrainConfig)}
    for name in current:
        if name in saved and name not in RESUME_MAY_CHANGE and saved[name] != current[name]:
            raise ValueError(
                f"--resume: {last_path} was trained with {flags[name]} {saved[name]!r}, this command "
                f"has {current[name]!r}; repeat the run's options (only "
                f"{', '.join(flags[n] for n in RESUME_MAY_CHANGE if n in flags)} may change) "
                f"or choose another --output"
            )
    changed = [
        f"{flags[n]} {saved[n]!r} → {current[n]!r}"
        for n in RESUME_CHANGES_SCHEDULE
        if n in saved and saved[n] != current[n]
    ]
    if changed:
        warnings.warn(
            f"--resume with {', '.join(changed)}: the run continues with the new schedule and is no "
            f"longer bit-identical to an uninterrupted one",
            stacklevel=3,
        )


def _diverged_message(what: str, epoch: int, step: int, last_path: Path) -> str:
    kept = (
        f"{last_path} and best.safetensors keep the last finite state; continue with --resume and a "
        f"smaller --lr"
        if last_path.is_file()
        else "nothing was saved; start again with a smaller --lr"
    )
    return f"training diverged: {what} at epoch {epoch + 1}, step {step + 1}; {kept}"


@dataclass
class TrainResult:
    """What `train` returns. Under torchrun every rank returns one; only rank 0 keeps the history."""

    history: list[dict]  # one row per epoch: train_loss, train_acc, val_loss, val_top1, val_top5, lr, ...
    best_val_top1: float
    out: str  # the output folder
    model: nn.Module  # the model after the last epoch
    rank: int
    epochs_trained: int  # by this call (0 when --resume found every epoch done)
    class_names: list[str]
    skipped_images: int  # unreadable files skipped with --skip-bad-images
    validation_images: int  # the size of the validation split
    last_metrics: dict | None = None  # the last validation by this call (evaluate's dict)


def train(config: TrainConfig) -> TrainResult:
    """Train, evaluate every epoch, checkpoint `last` and `best`; returns the final metrics.

    Rank 0 first proves it can write --output and locks it for the whole run, before any data is
    read. With --force, a folder that holds a run is replaced only once the new run is complete: it
    trains in OUT.new beside it, and the two are swapped at the end (see `replacing_run`).
    """
    rank, world_size = _distributed()
    if rank != 0:
        return TrainingRun(config, Path(config.out), rank, world_size).run()
    target = Path(config.out)
    if config.force and (target / "last.safetensors").exists():
        return replacing_run(config, target, world_size)
    return run_in_folder(config, target, rank, world_size)


def run_in_folder(config: TrainConfig, folder: Path, rank: int, world_size: int) -> TrainResult:
    """Rank 0's run with its output in `folder`: created if needed, locked, removed again when the
    run fails before writing anything."""
    created = missing_folders(folder)  # runs/ too for runs/x: a run that fails early removes them
    try:
        out = check_writable_folder(folder, "--output folder")
        with OutputLock(out):
            remove_stale_temporaries(out)  # of writes a killed run left; no one else writes here now
            last_path = out / "last.safetensors"
            if not config.resume and last_path.exists():
                raise ValueError(
                    f"{last_path} exists: pass --resume to continue that run, --force to replace it "
                    f"(the old run stays until the new one finishes), or choose another --output"
                )
            if config.resume and last_path.is_file():  # before minutes of data loading
                check_resume_config(read_header(last_path).get("train_config"), config, last_path)
            return TrainingRun(config, out, rank, world_size).run()
    except BaseException:
        remove_unused_folders(created)  # a run that failed before writing anything leaves no folder
        raise


def replacing_run(config: TrainConfig, target: Path, world_size: int) -> TrainResult:
    """--force over a folder that holds a run: train in TARGET.new, then swap it in whole. Until
    then the old run stays as it was; an interrupted or failed replacement leaves it untouched and
    says where the new run is."""
    staging = target.with_name(target.name + ".new")
    if staging.exists():
        raise ValueError(
            f"{staging} exists (an earlier --force run that did not finish?): continue it with "
            f"--resume --output {staging}, or delete it, then run again"
        )
    with OutputLock(target):  # nobody resumes the old run while it is being replaced
        try:
            result = run_in_folder(config, staging, 0, world_size)
        except (Interrupted, Diverged, OutputError) as error:
            kept = f"{target} still holds the old run" + (
                f"; the new one is in {staging}" if staging.exists() else ""
            )
            raise type(error)(f"{error} ({kept})") from None
        replace_folder(staging, target)
    return dataclasses.replace(result, out=str(target))


class TrainingRun:
    """One call of `train` on one process: the recipe's steps, in order, as methods.

    `run()` reads like the recipe: build (parent weights, data, model, optimizer, loaders), resume
    (a saved run's weights, optimizer, RNG and history), then per epoch train, evaluate and
    checkpoint, and at the end the curves. The state a checkpoint saves lives on the object.
    """

    def __init__(self, config: TrainConfig, out: Path, rank: int, world_size: int):
        self.config, self.out, self.rank, self.world_size = config, out, rank, world_size
        self.device = _device()
        self.memory_format = torch.channels_last if config.channels_last else torch.contiguous_format
        self.last_path, self.best_path = out / "last.safetensors", out / "best.safetensors"
        self.epoch, self.start_step = 0, 0  # the next step to train: (epoch, step within it)
        self.history: list[dict] = []
        self.best = -1.0
        self.pending_validation: dict | None = None  # an epoch trained but not validated (Ctrl-C)
        self.last_metrics: dict = {}
        self.bar = None  # one progress bar for the whole run (its ETA is the run's), on rank 0
        self.provenance = provenance()
        # The TrainConfig as files record it (absolute paths relative to where the run started)
        self.recorded_config = portable_config(config)

    def run(self) -> TrainResult:
        self.build()
        if self.config.resume:
            self.resume()
        self.begin()
        first_epoch = self.epoch
        while self.epoch < self.config.epochs:
            trained = self.train_epoch()
            self.epoch += 1
            self.start_step = 0
            if self.rank == 0:
                self.finish_epoch(trained)
            self.barrier()
        return self.end(first_epoch)

    # ---- build ------------------------------------------------------------------------------
    def build(self) -> None:
        config = self.config
        # The parent first: a wrong weights file fails before minutes of data loading.
        self.parent = (
            load_parent(config.model, config.weights, config.model_options) if config.weights else None
        )
        torch.manual_seed(config.seed)
        self.bundle = self.load_data()
        self.model = build_model(config, self.bundle, self.parent).to(self.device)
        if config.freeze_backbone:
            freeze_backbone(self.model)
        # torch's overloads of Module.to leave out memory_format, which it takes (and documents)
        self.model = self.model.to(memory_format=self.memory_format)  # type: ignore[call-overload]
        self.optimizer = build_optimizer(config, self.model)
        self.train_loader = make_loader(
            self.bundle.train,
            self.bundle,
            config.batch_size,
            True,
            config.seed,
            self.rank,
            self.world_size,
            config.workers,
            cutout=config.cutout,
        )
        self.val_loader = make_loader(
            self.bundle.val, self.bundle, max(config.batch_size, 256), False, workers=config.workers
        )
        self.steps_per_epoch = len(self.train_loader)
        if self.steps_per_epoch == 0:
            per_process = len(self.bundle.train) // self.world_size
            raise ValueError(
                f"batch_size {config.batch_size} is larger than the {per_process} training images"
                + (f" per process ({self.world_size} processes)" if self.world_size > 1 else "")
                + f" of {config.data}; pass --batch-size {max(1, per_process // 2)} (at most {per_process})"
            )

    def load_data(self) -> DataBundle:
        config, parent = self.config, self.parent
        bundle = load_data(
            config.data,
            config.image_size,
            config.val_fraction,
            config.seed,
            config.skip_bad_images,
            config.workers,
            keep_out=parent.val_files if parent else None,
        )
        if parent is not None and bundle.split.get("from_parent") and self.rank == 0:
            print(
                f"mobilenets train: validation split: the {len(bundle.val)} images of {config.weights}'s "
                f"own validation split found in {config.data} (of {len(parent.val_files or [])}), so none is "
                f"trained on",
                file=sys.stderr,
                flush=True,
            )
        if parent is not None and parent.preprocessing:  # the features expect the parent's input scaling
            bundle = dataclasses.replace(
                bundle, mean=tuple(parent.preprocessing["mean"]), std=tuple(parent.preprocessing["std"])
            )
        return bundle

    # ---- resume -----------------------------------------------------------------------------
    def resume(self) -> None:
        if not self.last_path.is_file():
            raise FileNotFoundError(f"--resume: no checkpoint at {self.last_path}")
        saved = load_checkpoint(self.last_path)
        if saved.model.config != self.model.config:
            raise ValueError(f"--resume: {self.last_path} holds a different model than this command builds")
        self.model.load_state_dict(saved.model.state_dict())
        self.optimizer.load_state_dict(_optimizer_from_checkpoint(saved.metadata["optimizer"], saved.tensors))
        self.epoch, self.start_step = saved.metadata["epoch"], saved.metadata["step"]
        self.history, self.best = saved.metadata["history"], saved.metadata["best_val_top1"]
        self.pending_validation = saved.metadata.get("pending_validation")
        torch.set_rng_state(saved.tensors["rng.torch"])
        saved_provenance = saved.metadata.get("provenance")
        if saved_provenance:
            # The run is the command that started it; each --resume (and the code it ran) is added,
            # so a resumed run's header still says how it began.
            resumed = {k: self.provenance[k] for k in ("command", "git_commit", "git_dirty")}
            resumed["at_epoch"] = self.epoch
            self.provenance = {
                **saved_provenance,
                "resumes": [*saved_provenance.get("resumes", []), resumed],
            }

    # ---- epochs -----------------------------------------------------------------------------
    def begin(self) -> None:
        """The network every process steps (DistributedDataParallel under torchrun, wrapped once the
        weights are final), the run's first writes, an epoch validation a Ctrl-C left pending and
        the progress bar."""
        self.network: nn.Module = self.model
        if self.world_size > 1:
            self.network = nn.parallel.DistributedDataParallel(
                self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None
            )
        if self.rank == 0:
            self.out.mkdir(parents=True, exist_ok=True)
            self.write_run_file(self.out / "train_config.json", json.dumps(self.recorded_config, indent=2))
        if self.pending_validation is not None:
            if self.rank == 0:
                self.finish_epoch(self.pending_validation)
            self.barrier()
        if self.config.progress and self.rank == 0 and self.epoch < self.config.epochs:
            from tqdm import tqdm

            self.bar = tqdm(
                total=self.config.epochs * self.steps_per_epoch,
                initial=self.epoch * self.steps_per_epoch + self.start_step,
                unit="step",
                file=sys.stderr,
                dynamic_ncols=True,
                leave=False,
                disable=None,  # a bar on a terminal; in a log file only the per-epoch lines
            )

    def train_epoch(self) -> dict:
        """Train epoch `self.epoch` from `self.start_step`; returns its loss, accuracy and speed."""
        config = self.config
        self.network.train()
        if config.freeze_backbone:
            freeze_backbone(self.model)
        started = time.perf_counter()
        totals = {"seen": 0, "loss_sum": 0.0, "correct": 0}
        if self.bar is not None:
            self.bar.set_description(f"{config.model} epoch {self.epoch + 1}/{config.epochs}", refresh=False)
        next_step = self.start_step  # the first step whose update is not yet in the weights
        try:
            batches = self.train_loader.batches(self.epoch, self.start_step)
            for step, (images, labels) in enumerate(batches, start=self.start_step):
                self.train_step(step, images, labels, totals)
                next_step = step + 1
                self.show_step(totals, started)
        except KeyboardInterrupt:
            self.close_bar()
            if self.rank == 0:
                # A step in flight is either fully applied or not at all; resume at the first one
                # that is not. (This partial epoch's running train metrics start afresh.)
                self.save(self.last_path, self.epoch, next_step)
            raise Interrupted(
                f"interrupted in epoch {self.epoch + 1}; saved {self.last_path}; continue with --resume"
            ) from None
        seconds = time.perf_counter() - started
        bad_weights = non_finite_tensors(self.model.state_dict())
        if bad_weights:  # a finite last loss can still leave an overflowed weight behind
            self.diverged(f"{bad_weights[0]} holds NaN or infinite values", self.steps_per_epoch - 1)
        counts = torch.tensor([totals["seen"], totals["loss_sum"], totals["correct"]], dtype=torch.float64)
        if self.world_size > 1:
            torch.distributed.all_reduce(counts)
        seen, loss_sum, correct = (value.item() for value in counts)
        return {
            "train_loss": loss_sum / max(1, seen),
            "train_acc": correct / max(1, seen),
            "lr": self.optimizer.param_groups[0]["lr"],
            "epoch_seconds": seconds,
            "images_per_second": seen / seconds,
        }

    def train_step(self, step: int, images: torch.Tensor, labels: torch.Tensor, totals: dict) -> None:
        """One optimizer step at the schedule's learning rate; stops before it when the loss is not
        finite, so the checkpoints on disk keep the last finite state."""
        config = self.config
        lr = config.lr_at(self.epoch * self.steps_per_epoch + step, self.steps_per_epoch)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        images = images.to(self.device, memory_format=self.memory_format, non_blocking=True)
        labels = labels.to(self.device, non_blocking=True)
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=config.amp):
            logits = self.network(images)
            loss = F.cross_entropy(logits.float(), labels, label_smoothing=config.label_smoothing)
        loss_value = loss.item()
        if not self.all_finite(math.isfinite(loss_value)):
            self.diverged(f"the loss is {loss_value}", step)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        totals["seen"] += labels.numel()
        totals["loss_sum"] += loss_value * labels.numel()
        totals["correct"] += (logits.argmax(1) == labels).sum().item()
        totals["lr"] = lr

    def all_finite(self, finite: bool) -> bool:
        """`finite` agreed over every process: all must stop at the same step, or the others wait forever."""
        if self.world_size == 1:
            return finite
        flag = torch.tensor([float(finite)], device=self.device)
        torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MIN)
        return bool(flag.item())

    def diverged(self, what: str, step: int) -> None:
        self.close_bar()
        raise Diverged(_diverged_message(what, self.epoch, step, self.last_path))

    def show_step(self, totals: dict, started: float) -> None:
        if self.bar is None:
            return
        seen = totals["seen"]
        self.bar.set_postfix(
            loss=f"{totals['loss_sum'] / seen:.3f}",
            acc=f"{100 * totals['correct'] / seen:.1f}%",
            img_s=f"{seen * self.world_size / (time.perf_counter() - started):.0f}",
            lr=f"{totals['lr']:.3g}",
            refresh=False,
        )
        self.bar.update(1)

    def close_bar(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def barrier(self) -> None:
        if self.world_size > 1:
            torch.distributed.barrier()

    # ---- evaluate and checkpoint ------------------------------------------------------------
    def finish_epoch(self, trained: dict) -> None:
        """Validate the epoch just trained (`self.epoch` counts it), record it, write `best` and `last`."""
        # Creating a worker DataLoader draws from the global RNG: a resumed validation must start
        # from the state the uninterrupted run had here.
        rng_state = torch.get_rng_state()
        try:
            metrics = evaluate(
                self.model,
                self.val_loader,
                len(self.bundle.class_names),
                self.device,
                self.memory_format,
                self.config.amp,
            )
        except KeyboardInterrupt:
            self.save(self.last_path, self.epoch, 0, pending=trained, rng_state=rng_state)
            raise Interrupted(
                f"interrupted while validating epoch {self.epoch}; its training is saved in "
                f"{self.last_path}; continue with --resume (which validates it first)"
            ) from None
        self.last_metrics.update(metrics)
        row = {
            "epoch": self.epoch,
            "train_loss": trained["train_loss"],
            "train_acc": trained["train_acc"],
            "val_loss": metrics["loss"],
            "val_top1": metrics["top1"],
            "val_top5": metrics["top5"],
            **{key: trained[key] for key in ("lr", "epoch_seconds", "images_per_second")},
        }
        self.history.append(row)
        improved = metrics["top1"] > self.best
        self.best = max(self.best, metrics["top1"])
        try:
            with _sigint_deferred():
                if improved:  # best first: a crash between the two leaves the older `last`, so a
                    self.save(self.best_path, self.epoch, 0)  # resume redoes this epoch and writes both
                self.save(self.last_path, self.epoch, 0)
                for name, text in metrics_files(self.history).items():
                    self.write_run_file(self.out / name, text)
        except KeyboardInterrupt:
            raise Interrupted(
                f"interrupted after epoch {self.epoch}; saved {self.last_path}; continue with --resume"
            ) from None
        self.report(row)

    def report(self, row: dict) -> None:
        line = (
            f"epoch {row['epoch']}/{self.config.epochs}: train loss {row['train_loss']:.4f} "
            f"acc {100 * row['train_acc']:.2f}% | val loss {row['val_loss']:.4f} "
            f"top-1 {100 * row['val_top1']:.2f}% top-5 {100 * row['val_top5']:.2f}% | "
            f"{row['images_per_second']:.0f} img/s"
        )
        if self.bar is not None:  # above the run's progress bar, which stays at the bottom
            self.bar.write(line, file=sys.stderr)
        else:
            print(line, file=sys.stderr, flush=True)

    def save(
        self,
        path: Path,
        next_epoch: int,
        next_step: int,
        pending: dict | None = None,
        rng_state: torch.Tensor | None = None,
    ) -> None:
        optimizer_doc, optimizer_tensors = _optimizer_to_checkpoint(self.optimizer)
        parent = self.parent
        try:
            save_checkpoint(
                path,
                self.model,
                class_names=self.bundle.class_names,
                preprocessing=self.bundle.preprocessing,
                metadata={
                    "epoch": next_epoch,
                    "step": next_step,
                    "train_config": self.recorded_config,
                    "split": self.bundle.split,
                    "optimizer": optimizer_doc,
                    "schedule": {"global_step": next_epoch * self.steps_per_epoch + next_step},
                    "history": self.history,
                    "best_val_top1": self.best,
                    "pending_validation": pending,
                    "provenance": self.provenance,
                    **({"parent": parent.record(), "lineage": parent.lineage()} if parent else {}),
                },
                tensors={
                    **optimizer_tensors,
                    "rng.torch": torch.get_rng_state() if rng_state is None else rng_state,
                },
            )
        except OSError as error:  # disk full, permissions changed, disk gone: the old file is untouched
            raise self.write_failed(path, error) from None

    def write_failed(self, path: Path, error: OSError) -> OutputError:
        return OutputError(
            f"cannot write {path} ({error.strerror or error}); the checkpoints already in "
            f"{self.out} are intact: free space or fix the folder, then continue with --resume"
        )

    def write_run_file(self, path: Path, text: str) -> None:
        try:
            write_atomically(path, text)
        except OSError as error:
            raise self.write_failed(path, error) from None

    # ---- end --------------------------------------------------------------------------------
    def end(self, first_epoch: int) -> TrainResult:
        self.close_bar()
        if self.rank == 0 and self.history:
            title = f"{self.config.model} on {self.config.data} ({Path(self.config.out).name})"
            plot_curves(self.history, self.out / "curves.png", title)
        if self.world_size > 1:
            torch.distributed.destroy_process_group()
        return TrainResult(
            history=self.history,
            best_val_top1=self.best,
            out=str(self.out),
            model=self.model,
            rank=self.rank,
            epochs_trained=self.epoch - first_epoch,
            class_names=self.bundle.class_names,
            skipped_images=self.bundle.skipped,
            validation_images=len(self.bundle.val),
            last_metrics=self.last_metrics or None,
        )
