"""Side-by-side timing: competitors measured in alternating rounds inside one process.

Why interleave: on a shared machine, load from another program comes and goes. Two runs timed one
after the other can see different machines (measured: a busy neighbour turned MobileNet's 1.9×
training advantage into "0.22× faster"). When every round times each competitor once, a burst of
load hits all of them alike, and the median of per-round ratios stays put.

Why a minimum window: a call that takes 1 ms is timed over several calls per round, so that the
timer's resolution and Python's overhead do not dominate it; a call that takes a second is timed
once per round.
"""

from __future__ import annotations

import contextlib
import os
import statistics
import sys
import time
from collections.abc import Callable, Hashable, Iterator, Mapping
from typing import Any, TypeVar

import torch
import torch.nn.functional as F

from ..models import MobileNet

Runner = Callable[[], object]


KeyT = TypeVar("KeyT", bound=Hashable)


def load_average() -> list[float] | None:
    """1-, 5- and 15-minute load averages: how busy the machine was besides us."""
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return None


@contextlib.contextmanager
def measuring(threads: int, warmup: int, repeats: int) -> Iterator[dict[str, Any]]:
    """The one measurement kit of bench, profile, choose: PyTorch's intra-op threads set to
    `threads` for the block (and restored after it, whatever happens), and the conditions every
    report prints beside its figures: threads, warm-up calls, rounds, OMP_WAIT_POLICY (busy-waiting
    OpenMP threads make a neighbour's load stretch every step) and the load average before and
    after. Yields that dict; the "after" entry is filled when the block ends."""
    conditions: dict[str, Any] = {
        "threads": threads,
        "warmup": warmup,
        "repeats": repeats,
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "unset (active spinning)"),
        "load_average_before": load_average(),
        "load_average_after": None,
    }
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield conditions
    finally:
        torch.set_num_threads(previous)
        conditions["load_average_after"] = load_average()


def time_interleaved(
    runners: Mapping[KeyT, Runner],
    warmup: int = 3,
    repeats: int = 10,
    min_window_s: float = 0.0,
    clock: Callable[[], float] = time.perf_counter,
    progress: str | None = None,
) -> dict[KeyT, list[float]]:
    """Seconds per call of every runner: `warmup` untimed calls each, then `repeats` rounds in
    which every runner is timed once, over as many calls as it takes to fill `min_window_s`.

    progress: a label for stderr: a bar with ETA over the rounds on a terminal, else one line."""
    rounds = range(repeats)
    if progress:
        if sys.stderr.isatty():
            from tqdm import tqdm

            rounds = tqdm(rounds, desc=f"{progress}: timing rounds", file=sys.stderr, leave=False)
        else:
            print(
                f"{progress}: timing {len(runners)} runners, {warmup} warm-up calls then {repeats} "
                "interleaved rounds",
                file=sys.stderr,
                flush=True,
            )
    for runner in runners.values():
        for _ in range(warmup):
            runner()
    times: dict[KeyT, list[float]] = {key: [] for key in runners}
    for _ in rounds:
        for key, runner in runners.items():
            calls = 0
            start = clock()
            while True:
                runner()
                calls += 1
                elapsed = clock() - start
                if elapsed >= min_window_s:
                    break
            times[key].append(elapsed / calls)
    return times


def median_ratio(times: dict[str, list[float]], numerator: str, denominator: str) -> float:
    """The median over rounds of times[numerator][i] / times[denominator][i]: each round's two
    windows saw the same machine, so their ratio is the honest one."""
    return statistics.median(a / b for a, b in zip(times[numerator], times[denominator], strict=True))


def best(times_ms: list[float]) -> float:
    """The fastest round. Load from other programs only ever adds time (measured here: the same
    batch-2 forward took 8 to 48 ms in 15 rounds beside a training run), so the fastest round is
    the closest to the uncontended cost, per layer and end to end alike (profile and choose)."""
    return min(times_ms)


def median_round(times: dict[str, list[float]], numerator: str, denominator: str) -> int:
    """The round whose ratio times[numerator][i] / times[denominator][i] is the median one (the lower
    middle for an even count): its two times are real measurements whose ratio is `median_ratio`'s, so
    a report can print both times and a ratio a reader can check by dividing them."""
    ratios = [a / b for a, b in zip(times[numerator], times[denominator], strict=True)]
    order = sorted(range(len(ratios)), key=ratios.__getitem__)
    return order[(len(order) - 1) // 2]


def training_step_runner(
    model: MobileNet,
    batch_size: int,
    image_size: int,
    lr: float = 0.01,
    channels_last: bool = False,
    amp: bool = False,
    seed: int = 0,
    compiled: bool = False,
) -> Runner:
    """One SGD training step (forward, cross-entropy, backward, update) of `model` on a fixed
    random batch: what an epoch repeats, without the data loading that both models share.
    amp: bfloat16 autocast; compiled: the model under torch.compile (inductor, forward and backward;
    the first calls compile, so warm up before timing)."""
    generator = torch.Generator().manual_seed(seed)
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    images = torch.randn(
        batch_size, model.config.in_channels, image_size, image_size, generator=generator
    ).contiguous(memory_format=memory_format)
    num_classes = model.config.num_classes
    if num_classes is None:
        raise ValueError(f"{model.config.name} is a feature extractor: it has no classifier to train")
    labels = torch.randint(0, num_classes, (batch_size,), generator=generator)
    # torch's overloads of Module.to leave out memory_format, which it takes (and documents)
    model = model.to(memory_format=memory_format).train()  # type: ignore[call-overload]
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, nesterov=True)
    autocast = torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp)
    network = torch.compile(model) if compiled else model

    def step() -> None:
        with autocast:
            loss = F.cross_entropy(network(images).float(), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return step


def inference_runner(model: MobileNet, batch_size: int, image_size: int, seed: int = 0) -> Runner:
    """One forward pass of `model` in eval mode on a fixed random batch."""
    images = torch.randn(
        batch_size,
        model.config.in_channels,
        image_size,
        image_size,
        generator=torch.Generator().manual_seed(seed),
    )
    model = model.eval()

    def forward() -> None:
        with torch.inference_mode():
            model(images)

    return forward
