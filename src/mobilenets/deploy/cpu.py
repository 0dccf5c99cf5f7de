"""The CPU this process runs on: its model name and the instruction-set features that decide which
kernels the runtimes use (VNNI and AMX for int8, AVX-512 BF16 and AMX for bf16). Latency figures
and accuracy gates are only comparable between machines with the same features."""

from __future__ import annotations

import platform

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
