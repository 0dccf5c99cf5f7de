"""The machine a measurement runs on: the CPU's model name and the instruction-set features that
decide which kernels the runtimes use (VNNI and AMX for int8, AVX-512 BF16 and AMX for bf16), the
library versions (`machine_description`, recorded beside every bench, profile and choose figure).
Latency figures and accuracy gates are only comparable between machines with the same features;
how busy the machine was is recorded by `timing.measuring`."""

from __future__ import annotations

import contextlib
import os
import platform

import torch

# The instruction-set features that decide which kernels the backends can use.
CPU_FEATURES = (
    "avx2",
    "fma",
    "avx512f",
    "avx512bw",
    "avx512_vnni",
    "avx_vnni",
    "avx512_bf16",
    "avx512_fp16",
    "amx_tile",
    "amx_int8",
    "amx_bf16",
)


def cpu_model_and_features() -> tuple[str, list[str]]:
    """("Intel(R) Xeon(R) ...", ["avx2", "fma", ...]): /proc/cpuinfo's model name and which of
    CPU_FEATURES its flags list (on other systems: platform's name and no features)."""
    cpu_model, flags = platform.processor() or platform.machine(), set()
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                key, _, value = line.partition(":")
                if key.strip() == "model name":
                    cpu_model = value.strip()
                elif key.strip() == "flags":
                    flags = set(value.split())
                    break
    except OSError:  # not Linux: the model name from platform is all we have
        pass
    return cpu_model, [feature for feature in CPU_FEATURES if feature in flags]


def machine_description() -> dict:
    """CPU model, cores, ISA features and library versions: what a latency figure depends on."""
    import onnxruntime

    cpu_model, features = cpu_model_and_features()
    return {
        "cpu": cpu_model,
        "cores": os.cpu_count(),
        "cpu_features": features,
        "torch": torch.__version__,
        "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "onnxruntime": onnxruntime.__version__,
        **_optional_versions(),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def _optional_versions() -> dict:
    """Versions of the optional runtimes that are installed."""
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    for package in ("openvino", "nncf", "executorch", "ai-edge-litert"):
        with contextlib.suppress(PackageNotFoundError):
            found[package] = version(package)
    return found
