"""Where a result was computed: library versions, processor, threads, accelerator.

Written into every result file (``alignment.json``, ``training.json``, ``kfold.json``,
``steering.json``) beside the run's settings. Why: float32 kernels give answers that differ by
~10⁻⁴ between processors and thread counts, enough to flip a near-tie in a search, so two runs with
the same seed agree only where these agree. Never part of the settings a resume compares: a run may
resume on another machine, and the file then says where it finished.
"""

from __future__ import annotations

import os
import platform
import sys
from importlib import metadata

# tokenizers decides the token ids (and so every score) apart from transformers' own version
PACKAGES = ("torch", "transformers", "tokenizers", "peft", "lm_eval", "accelerate")


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def cpu_name() -> str:
    """The processor's model name (``/proc/cpuinfo`` on Linux), else what ``platform`` knows."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def accelerator(device: str | None) -> str | None:
    """The GPU's name when ``device`` is a CUDA device, else None (CUDA is never initialised otherwise)."""
    if not device or not str(device).startswith("cuda"):
        return None
    import torch

    return torch.cuda.get_device_name(torch.device(device)) if torch.cuda.is_available() else None


def kernels(device: str | None) -> dict:
    """What picks the kernels, and so the rounding, of a half-precision score beyond the device's name: the GPU
    model (an H100's bfloat16 sums differ from an A100's) or the CPU's dispatch level, and torch's and
    transformers' releases. A run resumed elsewhere compares them."""
    import torch

    return {"accelerator": accelerator(device), "cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "torch": _version("torch"), "transformers": _version("transformers")}


def rounding_settings(dtype: str, batch_size: int, device: str | None, prefix: str = "") -> dict:
    """The batch size, device and kernels of a half-precision computation, as settings a continued run compares
    (``prefix`` names them, e.g. ``eval_``): they move its rounding, and with it a score or a sampled token, so
    results made before and after a restart must share them. None in float32, whose results do not depend on
    them (tested)."""
    if dtype == "float32":
        return {}
    return {f"{prefix}batch_size": batch_size, f"{prefix}device": device, f"{prefix}kernels": kernels(device)}


def environment(device: str | None = None) -> dict:
    """What a reader needs to reproduce a number to the last digit: versions, processor, threads."""
    import torch

    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpu": cpu_name(),
        "cpu_count": os.cpu_count(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),  # the kernels torch dispatches to
        "torch_threads": torch.get_num_threads(),
        "device": str(device) if device else None,
        "accelerator": accelerator(device),
        "versions": {p: _version(p) for p in PACKAGES},
    }


def describe(env: dict | None) -> list[str]:
    """One markdown line (and a blank) saying where the numbers were computed; nothing for old files."""
    if not env:
        return []
    versions = ", ".join(f"{k} {v}" for k, v in env["versions"].items() if v)
    where = env["accelerator"] or f"{env['cpu']}, {env['cpu_capability']}"
    return [f"Computed on {where} ({env['device']}, {env['torch_threads']} torch threads); "
            f"{versions}.", ""]
