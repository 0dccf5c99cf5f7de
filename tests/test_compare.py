"""`compare`: the speed ratios it prints come from interleaved timing, so load that hits one
model's training run does not change them; plus the timing helpers it is built on."""

import re
import subprocess
import sys
import time

import pytest
import torch

import mobilenets.training.compare as compare_module
from mobilenets.deploy.timing import median_ratio, time_interleaved
from mobilenets.training.compare import SEPARABLE, compare_twins, format_compare
from mobilenets.training.train import TrainConfig


def test_time_interleaved_fills_the_window_and_alternates():
    order = []

    def fast():
        order.append("fast")

    def slow():
        order.append("slow")
        time.sleep(0.01)

    times = time_interleaved({"fast": fast, "slow": slow}, warmup=1, repeats=3, min_window_s=0.02)
    assert len(times["fast"]) == len(times["slow"]) == 3
    assert all(t >= 0.01 for t in times["slow"]) and max(times["fast"]) < 0.005
    # warm-up once each, then rounds alternate: every slow window follows a run of fast calls
    assert order[:2] == ["fast", "slow"]
    assert order.count("fast") > order.count("slow")
    assert median_ratio(times, "slow", "fast") > 2


def test_median_ratio_pairs_rounds():
    times = {"a": [1.0, 10.0, 1.0], "b": [2.0, 20.0, 2.0]}  # a burst of load in round 2 hit both
    assert median_ratio(times, "b", "a") == pytest.approx(2.0)


def test_median_round_prints_times_that_divide_to_the_median_ratio():
    from mobilenets.deploy.timing import median_round

    times = {"a": [1.0, 10.0, 1.0, 1.0], "b": [3.0, 20.0, 2.5, 4.0]}  # ratios 3, 2, 2.5, 4
    index = median_round(times, "b", "a")
    assert index == 2 and times["b"][index] / times["a"][index] == 2.5


def printed_ratios(text: str) -> tuple[float, float]:
    match = re.search(r"measured: inference ([0-9.]+)× faster, training ([0-9.]+)× faster", text)
    assert match, text
    return float(match.group(1)), float(match.group(2))


def recipe(out) -> TrainConfig:
    return TrainConfig(
        data="digits",
        epochs=1,
        batch_size=32,
        lr=0.1,
        out=str(out),
        progress=False,
        model_options={"width_mult": 0.25},
    )


@pytest.mark.slow
def test_training_ratio_is_immune_to_load_during_one_run(tmp_path, monkeypatch):
    quiet = format_compare(compare_twins(recipe(tmp_path / "quiet")))
    _, quiet_ratio = printed_ratios(quiet)
    assert "wall time" in quiet and "alternating windows" in quiet

    real_train = compare_module.train

    def train_under_load(config):
        if config.model != SEPARABLE:
            return real_train(config)
        # Two busy processes: both cores of the machine are contended while MobileNet trains,
        # and idle again while its twin does.
        burners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(2)]
        try:
            return real_train(config)
        finally:
            for burner in burners:
                burner.kill()
                burner.wait()

    monkeypatch.setattr(compare_module, "train", train_under_load)
    loaded = compare_twins(recipe(tmp_path / "loaded"))
    _, loaded_ratio = printed_ratios(format_compare(loaded))
    assert loaded_ratio == pytest.approx(quiet_ratio, rel=0.25), (quiet_ratio, loaded_ratio)


def test_the_measurement_kit_sets_threads_records_conditions_and_restores(two_threads):
    from mobilenets.deploy.timing import measuring

    before = torch.get_num_threads()
    with pytest.raises(RuntimeError), measuring(1, warmup=2, repeats=5) as conditions:
        assert torch.get_num_threads() == 1
        assert conditions["load_average_after"] is None  # filled when the block ends
        raise RuntimeError("a failing measurement")
    assert torch.get_num_threads() == before  # restored, whatever happened inside
    assert {k: conditions[k] for k in ("threads", "warmup", "repeats")} == {
        "threads": 1,
        "warmup": 2,
        "repeats": 5,
    }
    assert "omp_wait_policy" in conditions and conditions["load_average_after"] is not None
