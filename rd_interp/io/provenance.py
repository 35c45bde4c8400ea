"""What produced a result: package versions, platform, device. Recorded with every artefact."""

from __future__ import annotations

import functools
import platform
import sys
from importlib import metadata

_PACKAGES = ("rd_interp", "torch", "fair-esm", "numpy", "scipy", "goatools", "pandas", "safetensors", "matplotlib")


def versions() -> dict[str, str]:
    """A copy of this process's record (read once: the package metadata lookups cost ~20 ms, and every stage
    of a run records them)."""
    return dict(_versions())


@functools.cache
def _versions() -> dict[str, str]:
    out = {"python": sys.version.split()[0], "platform": platform.platform()}
    for name in _PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out
