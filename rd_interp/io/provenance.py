"""What produced a result: package versions, platform, device. Recorded with every artefact."""

from __future__ import annotations

import platform
import sys
from importlib import metadata

_PACKAGES = ("rd_interp", "torch", "fair-esm", "numpy", "scipy", "goatools", "pandas", "safetensors", "matplotlib")


def versions() -> dict[str, str]:
    out = {"python": sys.version.split()[0], "platform": platform.platform()}
    for name in _PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out
