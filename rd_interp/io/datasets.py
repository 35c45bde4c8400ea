"""Where the shipped offline data live, and a check that they are the files data/manifest.json describes.

Why a module: every layer needs "the default proteins / annotations / ontology"; one place resolves them
(``RD_INTERP_DATA`` overrides the repository's data/ directory, e.g. for an installed package or a
copy on fast storage) and one place verifies checksums.
"""

from __future__ import annotations

import os
from pathlib import Path

from rd_interp.io.atomic import read_json, sha256_file

#: Files shipped under data/ (fixed names; other layers may read them directly).
SHIPPED_FILES = {
    "obo": "go/go.obo.gz",
    "proteins": "proteins/eval.fasta.gz",
    "annotations": "proteins/eval_go.tsv.gz",
    "train_pool": "proteins/train_pool.fasta.gz",
}


def data_dir() -> Path:
    """The data/ directory: ``$RD_INTERP_DATA`` if set, else the repository's data/."""
    env = os.environ.get("RD_INTERP_DATA")
    path = Path(env).expanduser() if env else Path(__file__).resolve().parents[2] / "data"
    if not path.is_dir():
        raise FileNotFoundError(
            f"{path}: shipped data directory not found (set RD_INTERP_DATA to the repository's data/ folder)"
        )
    return path


def cache_dir() -> Path:
    """Writable cache (decompressed OBO, ...): ``$RD_INTERP_CACHE``, else ``$XDG_CACHE_HOME/rd_interp``."""
    env = os.environ.get("RD_INTERP_CACHE")
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "rd_interp"


def _shipped(key: str) -> Path:
    path = data_dir() / SHIPPED_FILES[key]
    if not path.is_file():
        raise FileNotFoundError(f"{path}: shipped file missing; regenerate it with `python data/rebuild.py`")
    return path


def shipped_obo() -> Path:
    """GO release 2022-07-01 as gzipped OBO (Ontology.load decompresses it into a verified cache)."""
    return _shipped("obo")


def shipped_proteins() -> Path:
    """Gzipped FASTA of the ~20,000 annotated Swiss-Prot 2014-01 evaluation proteins."""
    return _shipped("proteins")


def shipped_annotations() -> Path:
    """Gzipped TSV (protein_id, go_id, namespace) of the evaluation proteins' GO annotations."""
    return _shipped("annotations")


def shipped_train_pool() -> Path:
    """Gzipped FASTA of sequences disjoint from the evaluation set, for training the shipped PLM family."""
    return _shipped("train_pool")


def manifest() -> dict:
    """data/manifest.json: counts, checksums and source versions written by data/rebuild.py."""
    return read_json(data_dir() / "manifest.json")


def verify_shipped() -> dict[str, bool]:
    """sha256 of each shipped file against the manifest: {relative path: matches}."""
    files = manifest()["files"]
    root = data_dir()
    return {name: (root / name).is_file() and sha256_file(root / name) == meta["sha256"]
            for name, meta in sorted(files.items())}
