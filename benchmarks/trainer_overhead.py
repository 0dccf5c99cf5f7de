"""Trainer overhead: images/s of `mobilenets train` against a bare PyTorch loop on the same model,
batch, layout and data, measured interleaved in one process; plus what channels_last and bf16
autocast give on this CPU.

    .venv/bin/python benchmarks/trainer_overhead.py [--rounds 3] [--batch-size 64] [--width 0.5]

Both sides read the same in-memory batches (the built-in digits at 32 px, augmented on tensors),
so the difference is the trainer's own work: per-step learning rate, metrics, progress
bookkeeping, per-epoch evaluation and checkpoints (evaluation and checkpoint time are outside
its images/s, as they are outside the bare loop's).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time

import torch
import torch.nn.functional as F

from mobilenets.data import load_data, make_loader
from mobilenets.training.train import TrainConfig, build_model, build_optimizer, train


def bare_epoch(config: TrainConfig, bundle, memory_format, amp: bool) -> float:
    """One epoch of the plainest loop: forward, loss, backward, step. Returns images/s."""
    torch.manual_seed(config.seed)
    model = build_model(config, bundle).to(memory_format=memory_format)
    optimizer = build_optimizer(config, model)
    loader = make_loader(bundle.train, bundle, config.batch_size, True, config.seed)
    model.train()
    seen = 0
    started = time.perf_counter()
    for images, labels in loader.batches(0):
        images = images.contiguous(memory_format=memory_format)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp):
            loss = F.cross_entropy(model(images).float(), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        seen += labels.numel()
    return seen / (time.perf_counter() - started)


def trainer_epoch(config: TrainConfig) -> float:
    with tempfile.TemporaryDirectory() as out:
        result = train(TrainConfig(**{**config.__dict__, "out": out}))
    return result.history[0]["images_per_second"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--width", type=float, default=0.5)
    parser.add_argument("--model", default="mobilenet_v1")
    args = parser.parse_args()

    bundle = load_data("digits")
    variants = [
        ("NCHW fp32", False, False),
        ("channels_last fp32", True, False),
        ("NCHW bf16 autocast", False, True),
        ("channels_last bf16 autocast", True, True),
    ]
    results = {name: {"trainer": [], "bare": []} for name, _, _ in variants}
    for _ in range(args.rounds):
        for name, channels_last, amp in variants:  # interleaved: noise hits every variant alike
            config = TrainConfig(
                model=args.model,
                data="digits",
                epochs=1,
                batch_size=args.batch_size,
                lr=0.1,
                channels_last=channels_last,
                amp=amp,
                progress=True,
                model_options={"width_mult": args.width},
            )
            memory_format = torch.channels_last if channels_last else torch.contiguous_format
            results[name]["bare"].append(bare_epoch(config, bundle, memory_format, amp))
            results[name]["trainer"].append(trainer_epoch(config))

    cpuinfo = ""
    if os.path.exists("/proc/cpuinfo"):
        with open("/proc/cpuinfo") as handle:
            cpuinfo = handle.read()
    cpu = next(
        (line.split(":", 1)[1].strip() for line in cpuinfo.splitlines() if line.startswith("model name")),
        "unknown",
    )
    isa = [f for f in ("avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16", "amx_int8") if f" {f}" in cpuinfo]
    print(
        f"machine: {cpu} ({platform.machine()}), {os.cpu_count()} cores, ISA {' '.join(isa) or 'n/a'}; "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads"
    )
    print(
        f"model: {args.model} width {args.width}, stem stride 1, 32×32 digits (1,617 training images), "
        f"batch {args.batch_size}, SGD; median of {args.rounds} interleaved epochs\n"
    )
    base = statistics.median(results["NCHW fp32"]["bare"])
    print(
        f"{'variant':<30} {'bare loop img/s':>16} {'trainer img/s':>14} {'trainer/bare':>13} "
        f"{'bare vs NCHW fp32':>18}"
    )
    for name, _, _ in variants:
        bare = statistics.median(results[name]["bare"])
        trainer = statistics.median(results[name]["trainer"])
        print(f"{name:<30} {bare:16.0f} {trainer:14.0f} {trainer / bare:12.3f}× {bare / base:17.2f}×")


if __name__ == "__main__":
    main()
