"""Loading ESM-2 models (and the shipped ESM-2-architecture mini family) through fair-esm.

Why our own resolver: fair-esm either downloads or fails with a bare HTTP/pickle error. We look for the
checkpoint in an explicit weights directory, then the torch hub cache, and download only when asked and
possible, so an offline user gets one error naming the file and how to obtain it. Checkpoints are read
with ``torch.load(weights_only=True)`` (only ``argparse.Namespace`` is allow-listed, which ESM-2
checkpoints need) and built by fair-esm's own ``load_model_and_alphabet_core``: real ESM-2 weights and
the shipped family go through exactly the same code.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import pickle
import urllib.error
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from rd_interp.io.atomic import sha256_file

log = logging.getLogger(__name__)

ESM2_MODELS: dict[str, str] = {
    "8M": "esm2_t6_8M_UR50D",
    "35M": "esm2_t12_35M_UR50D",
    "150M": "esm2_t30_150M_UR50D",
    "650M": "esm2_t33_650M_UR50D",
    "3B": "esm2_t36_3B_UR50D",
    "15B": "esm2_t48_15B_UR50D",
}
ESM_URL = "https://dl.fbaipublicfiles.com/fair-esm/models/{name}.pt"
# ESM-2 was trained on crops of 1024 tokens including BOS and EOS.
MAX_RESIDUES = 1022
SAFE_GLOBALS: list[Any] = [argparse.Namespace]


#: Embedding widths of the ESM-2 releases (to check a config before any weights are loaded).
ESM2_WIDTHS: dict[str, int] = {"8M": 320, "35M": 480, "150M": 640, "650M": 1280, "3B": 2560, "15B": 5120}


class ModelNotFoundError(FileNotFoundError):
    """The requested checkpoint is not on disk and cannot be downloaded."""


@dataclass
class ModelInfo:
    name: str  # canonical name (fair-esm name, family member name, or file stem)
    n_layers: int
    embed_dim: int
    n_params: int
    source_path: str
    sha256: str
    max_residues: int = MAX_RESIDUES

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _models_dir() -> Path:
    try:
        from rd_interp.io.datasets import data_dir  # io layer; may be absent in a partial checkout
    except ImportError:  # pragma: no cover
        env = os.environ.get("RD_INTERP_DATA")
        return Path(env) / "models" if env else Path(__file__).resolve().parents[2] / "data" / "models"
    return data_dir() / "models"


def shipped_models() -> dict[str, Path]:
    """Shipped family members (data/models/<name>.pt) by name."""
    d = _models_dir()
    return {p.stem: p for p in sorted(d.glob("*.pt"))} if d.is_dir() else {}


def known_width(name: str) -> int | None:
    """Embedding width of a model from its name alone (ESM-2 releases, shipped members); None if unknown.

    Reads no weights: it lets `config --check` catch sizes that cannot work (k > n_latents) in a second.
    """
    for size, fname in ESM2_MODELS.items():
        if name in (size, size.lower(), fname):
            return ESM2_WIDTHS[size]
    path = shipped_models().get(name)
    if path is not None and path.with_suffix(".json").is_file():
        try:
            return int(json.loads(path.with_suffix(".json").read_text(encoding="utf-8"))["dim"])
        except (ValueError, KeyError, TypeError):
            return None
    return None


def hub_checkpoint_dir() -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints"


def resolve_checkpoint(name: str | os.PathLike, *, weights_dir: str | os.PathLike | None = None,
                       download: bool | None = None) -> tuple[str, Path]:
    """Find the checkpoint file for `name` -> (canonical name, path).

    Order: an existing .pt path; a shipped family member; for ESM-2 names: `weights_dir`, the torch
    hub cache, then a download into the hub cache (unless offline: ``download=False`` or
    ``RD_INTERP_OFFLINE=1``).
    """
    sname = str(name)
    p = Path(sname).expanduser()
    if sname.endswith(".pt") or p.is_file():
        if not p.is_file():
            raise ModelNotFoundError(f"checkpoint file {p} does not exist")
        return p.stem, p
    shipped = shipped_models()
    if sname in shipped:
        return sname, shipped[sname]
    fname = ESM2_MODELS.get(sname.upper() if sname[-1:].lower() in "mb" else sname, sname)
    if fname not in ESM2_MODELS.values():
        known = sorted(ESM2_MODELS) + sorted(ESM2_MODELS.values()) + sorted(shipped)
        raise ValueError(f"unknown model {sname!r}: expected a .pt checkpoint path or one of {known}")
    file = f"{fname}.pt"
    candidates = ([Path(weights_dir).expanduser() / file] if weights_dir else []) + [hub_checkpoint_dir() / file]
    for c in candidates:
        if c.is_file():
            return fname, c
    if download is None:
        download = os.environ.get("RD_INTERP_OFFLINE", "").lower() not in ("1", "true", "yes")
    url = ESM_URL.format(name=fname)
    how = (f"download {url} (e.g. `wget {url}`) and pass its folder as --weights-dir / weights_dir=, or put it in "
           f"the torch hub cache {hub_checkpoint_dir()}/")
    where = ", ".join(str(c) for c in candidates)
    if not download:
        raise ModelNotFoundError(f"ESM-2 weights {file} not found (looked in: {where}) and downloads are off; {how}")
    target = hub_checkpoint_dir() / file
    target.parent.mkdir(parents=True, exist_ok=True)
    log.info("downloading %s to %s", url, target)
    try:
        torch.hub.download_url_to_file(url, str(target), progress=True)
    except (urllib.error.URLError, OSError, TimeoutError) as exc:
        raise ModelNotFoundError(
            f"ESM-2 weights {file} not found (looked in: {where}) and the download failed ({exc}); {how}"
        ) from None
    return fname, target


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """torch.load without arbitrary code execution (weights_only + the globals ESM checkpoints need)."""
    try:
        with torch.serialization.safe_globals(SAFE_GLOBALS):
            data = torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise ValueError(
            f"{path}: refusing to load: the checkpoint holds objects beyond tensors and plain containers "
            f"({str(exc).splitlines()[0]}). Only fair-esm checkpoints are supported."
        ) from None
    except (RuntimeError, EOFError, OSError, ValueError) as exc:
        raise ValueError(f"{path}: not a readable torch checkpoint (truncated or corrupt: "
                         f"{str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__}); "
                         "download or copy it again") from None
    if not isinstance(data, dict) or "model" not in data:
        raise ValueError(f"{path}: not a fair-esm checkpoint (expected a dict with a 'model' state dict)")
    return data


def builder_name(data: dict[str, Any], path: str | os.PathLike) -> str:
    """The name that makes fair-esm build the architecture the checkpoint's *contents* describe.

    fair-esm picks its builder from the model name (names starting with "esm2" get the ESM-2 builder,
    anything else ESM-1's, which needs an 'args' entry), so a user's ``esm_35m_finetuned.pt`` holding
    ESM-2 weights used to go to the wrong one. ESM-2 checkpoints carry ``cfg["model"]``, ESM-1 ones ``args``.
    """
    cfg = data.get("cfg")
    if isinstance(cfg, dict) and "model" in cfg:
        return "esm2_checkpoint"
    if "args" in data:
        return "esm1_checkpoint"
    raise ValueError(f"{path}: not a fair-esm checkpoint: it has neither cfg['model'] (ESM-2) nor args (ESM-1); "
                     f"keys: {sorted(map(str, data))[:8]}")


def load_model(name: str | os.PathLike, *, weights_dir: str | os.PathLike | None = None, device: str = "cpu",
               download: bool | None = None, with_sha256: bool = True):
    """Load an ESM model -> (model in eval mode, alphabet, ModelInfo).

    `name`: an ESM-2 size ("35M"), a fair-esm name ("esm2_t12_35M_UR50D"), a shipped family member
    ("mini-L"), or a path to a fair-esm .pt checkpoint.
    """
    import esm.pretrained

    canon, path = resolve_checkpoint(name, weights_dir=weights_dir, download=download)
    data = load_checkpoint(path)
    core_name = builder_name(data, path)
    with warnings.catch_warnings():
        # Contact-regression weights are only needed for contact prediction, which we do not use.
        warnings.filterwarnings("ignore", message="Regression weights not found")
        try:
            model, alphabet = esm.pretrained.load_model_and_alphabet_core(core_name, data, None)
        except (RuntimeError, KeyError, AttributeError) as exc:
            raise ValueError(f"{path}: fair-esm could not build a model from this checkpoint: {exc}") from None
    model = model.float().eval().to(device)
    n_layers = int(getattr(model, "num_layers", len(getattr(model, "layers", []))))
    embed_dim = int(getattr(model, "embed_dim", getattr(getattr(model, "args", None), "embed_dim", 0)))
    n_params = sum(p.numel() for n, p in model.named_parameters() if not n.startswith("contact_head"))
    info = ModelInfo(name=canon, n_layers=n_layers, embed_dim=embed_dim, n_params=int(n_params),
                     source_path=str(path), sha256=sha256_file(path) if with_sha256 else "")
    return model, alphabet, info
