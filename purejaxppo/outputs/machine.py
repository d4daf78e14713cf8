"""The machine a run or a benchmark ran on: its device, the library versions, and the
default results directory named for it."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import re
from pathlib import Path

import jax

LIBRARIES = ("purejaxppo", "jax", "jaxlib", "flax", "optax", "gymnax", "chex")


def library_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in LIBRARIES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def device_description() -> str:
    device = jax.devices()[0]
    kind = getattr(device, "device_kind", device.platform)
    return f"{device.platform}:{kind} x{jax.device_count()}"


def device_slug() -> str:
    """A short directory name for this machine: `cpu-<cores>core-<vendor>` or the
    accelerator's kind, e.g. `nvidia-h100-80gb-hbm3`."""
    device = jax.devices()[0]
    if device.platform == "cpu":
        model = platform.processor() or "cpu"
        try:
            text = Path("/proc/cpuinfo").read_text()
            model = re.search(r"model name\s*:\s*(.+)", text).group(1)
        except (OSError, AttributeError):
            pass
        vendor = "amd" if "AMD" in model else "intel" if "Intel" in model else "cpu"
        return f"cpu-{os.cpu_count()}core-{vendor}"
    return re.sub(r"[^a-z0-9]+", "-", device.device_kind.lower()).strip("-")


def results_dir(out: Path | None, results_root: Path, *parts: str) -> Path:
    """`out`, or `results_root/<device_slug>/<parts...>` by default; created if missing."""
    path = out or results_root.joinpath(device_slug(), *parts)
    path.mkdir(parents=True, exist_ok=True)
    return path
