"""The stage contract's record: what a stage wrote, from what, with which config and code.

Every stage's ``run(inputs, cfg, out_dir, ...)`` ends by writing ``out_dir/manifest.json`` (atomically, last:
a directory with a manifest is complete). The manifest lists each output file with its size and sha256,
the stage's config as a whole, the fan-out parameters of this unit (model, seed, space ...), the package
version, and each input as a path *relative to this directory* plus the input manifest's digest, so a
folder of stages can be moved and still be read, and a later stage can walk back to everything it
depends on.

Cache key of a stage = sha256(stage name, its config dataclass without fan-out fields, the digests of its
input manifests, its unit parameters, the package version): nothing lists options by hand, so an option
added to a stage config changes the key of exactly that stage and what depends on it.

Verification before reuse: every file's size always; its sha256 when the file is at most
``verify_max_bytes`` (default 64 MiB), else a quick hash of its size, first and last MiB; the full
checksum of everything on demand (``rd-interp verify OUT``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rd_interp import __version__
from rd_interp.io.atomic import read_json, sha256_file, sha256_json, write_json
from rd_interp.io.provenance import versions

MANIFEST = "manifest.json"
FORMAT = "rd_interp.stage_manifest/1"
VERIFY_MAX_BYTES = 64 << 20
_QUICK_BYTES = 1 << 20


class ManifestError(ValueError):
    """A stage directory is incomplete, corrupt or not what the caller expected."""


def quick_hash(path: str | os.PathLike, size: int | None = None) -> str:
    """sha256 of (size, first MiB, last MiB): catches truncation and most in-place edits of big files fast."""
    p = Path(path)
    size = p.stat().st_size if size is None else size
    h = hashlib.sha256(str(size).encode())
    with open(p, "rb") as fh:
        h.update(fh.read(_QUICK_BYTES))
        if size > 2 * _QUICK_BYTES:
            fh.seek(size - _QUICK_BYTES)
        h.update(fh.read(_QUICK_BYTES))
    return h.hexdigest()


@dataclass
class FileRecord:
    size: int
    sha256: str
    quick: str


def record_file(path: Path) -> FileRecord:
    size = path.stat().st_size
    return FileRecord(size=size, sha256=sha256_file(path), quick=quick_hash(path, size))


def _walk(out_dir: Path, outputs: Iterable[str]) -> list[str]:
    """Files under the stage's declared top-level outputs (files or folders), hidden/temp files excluded."""
    names = []
    for top in sorted(set(outputs)):
        p = out_dir / top
        if p.is_file():
            names.append(top)
            continue
        for root, dirs, files in os.walk(p):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            names += [Path(root, f).relative_to(out_dir).as_posix() for f in sorted(files) if not f.startswith(".")]
    return names


def claim_dir(out_dir: str | os.PathLike, stage: str, outputs: Iterable[str]) -> Path:
    """Create the stage folder, or accept it when it holds only this stage's outputs (a resume).

    A run never writes into a folder of someone else's files: anything else there is refused, by name.
    """
    d = Path(out_dir).expanduser()
    if d.exists() and not d.is_dir():
        raise ManifestError(f"{d}: exists and is not a folder; choose another output folder")
    d.mkdir(parents=True, exist_ok=True)
    allowed = set(outputs) | {MANIFEST}
    foreign = sorted(p.name for p in d.iterdir() if p.name not in allowed and not p.name.startswith("."))
    if foreign:
        raise ManifestError(f"{d}: not empty and not a {stage} stage folder (holds {', '.join(foreign[:3])}"
                            f"{' ...' if len(foreign) > 3 else ''}); choose another output folder")
    if (d / MANIFEST).is_file() and not is_stage_dir(d):
        raise ManifestError(f"{d}: holds a {MANIFEST} that is not a stage manifest; choose another output folder")
    return d


def stage_key(stage: str, config: Mapping[str, Any], inputs: Mapping[str, Any], params: Mapping[str, Any]) -> str:
    """The cache key (see module docstring). `inputs` values are digests (or lists/dicts of digests)."""
    return sha256_json({"stage": stage, "config": dict(config), "inputs": dict(inputs), "params": dict(params),
                        "version": __version__})


@dataclass
class Manifest:
    stage: str
    key: str
    config: dict[str, Any]
    params: dict[str, Any]
    inputs: dict[str, Any]
    files: dict[str, FileRecord]
    result: dict[str, Any] = field(default_factory=dict)
    version: str = __version__
    versions: dict[str, str] = field(default_factory=dict)
    seconds: float | None = None
    dir: Path = field(default=Path("."), compare=False)

    # -- identity ---------------------------------------------------------------------------------
    @property
    def digest(self) -> str:
        """Identity of what the stage produced (used in downstream cache keys): key + output checksums."""
        return sha256_json({"stage": self.stage, "key": self.key,
                            "files": {k: v.sha256 for k, v in sorted(self.files.items())}})

    def path(self, name: str) -> Path:
        if name not in self.files and not (self.dir / name).is_dir():
            raise ManifestError(f"{self.dir / MANIFEST}: no output {name!r} recorded")
        return self.dir / name

    # -- inputs -----------------------------------------------------------------------------------
    def input(self, name: str) -> Any:
        """The input manifest(s) recorded under `name` (a Manifest or a list of them), loaded from disk."""
        if name not in self.inputs:
            raise ManifestError(f"{self.dir / MANIFEST}: no input {name!r} (has {sorted(self.inputs)})")
        ref = self.inputs[name]
        if isinstance(ref, list):
            return [self._load_ref(r, name) for r in ref]
        return self._load_ref(ref, name)

    def _load_ref(self, ref: Mapping[str, Any], name: str) -> Manifest:
        if "dir" not in ref:
            raise ManifestError(f"{self.dir / MANIFEST}: input {name!r} is a file, not a stage")
        m = load_manifest(self.dir / ref["dir"])
        if m.digest != ref["digest"]:
            raise ManifestError(f"{m.dir}: changed since {self.dir} was made from it (input {name!r}); "
                                "rerun the stages downstream of it")
        return m

    # -- persistence --------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d.pop("dir")
        return {"format": FORMAT, **d}

    def write(self) -> Path:
        write_json(self.dir / MANIFEST, self.to_dict())
        return self.dir / MANIFEST

    def verify(self, *, full: bool = False, max_bytes: int = VERIFY_MAX_BYTES) -> list[str]:
        """Problems found with the recorded output files (empty list: all good)."""
        problems = []
        for name, rec in sorted(self.files.items()):
            p = self.dir / name
            if not p.is_file():
                problems.append(f"{p}: missing")
                continue
            size = p.stat().st_size
            if size != rec.size:
                problems.append(f"{p}: {size} bytes, manifest records {rec.size} (truncated or replaced)")
            elif full or size <= max_bytes:
                if sha256_file(p) != rec.sha256:
                    problems.append(f"{p}: sha256 differs from the manifest (file edited or corrupt)")
            elif quick_hash(p, size) != rec.quick:
                problems.append(f"{p}: content differs from the manifest (file edited or corrupt)")
        return problems


def input_ref(out_dir: Path, manifest: Manifest) -> dict[str, str]:
    """How a stage records an upstream stage: relative directory + digest."""
    return {"dir": os.path.relpath(manifest.dir.resolve(), Path(out_dir).resolve()), "digest": manifest.digest}


def input_digests(inputs: Mapping[str, Any]) -> dict[str, Any]:
    """Manifests / lists of manifests / plain digests -> digests, for stage_key."""
    def one(v: Any) -> Any:
        if isinstance(v, Manifest):
            return v.digest
        if isinstance(v, (list, tuple)):
            return [one(x) for x in v]
        if isinstance(v, Mapping):
            if "sha256" in v and "file" in v:  # a raw input file: its content keys the stage, not its name
                return v["sha256"]
            return {k: one(x) for k, x in v.items()}
        return v
    return {k: one(v) for k, v in inputs.items()}


def write_manifest(out_dir: str | os.PathLike, *, stage: str, config: Mapping[str, Any],
                   inputs: Mapping[str, Any], outputs: Iterable[str], params: Mapping[str, Any] | None = None,
                   result: Mapping[str, Any] | None = None, seconds: float | None = None) -> Manifest:
    """Record every file under the stage's `outputs` (top-level names in `out_dir`) and commit the manifest.

    `inputs` values: Manifest (upstream stage), list of Manifests, or {"file": name, "sha256": ...}
    records for raw input files. The key is computed here from the same values as stage_key().
    """
    out = Path(out_dir)
    params = dict(params or {})
    refs: dict[str, Any] = {}
    for name, v in inputs.items():
        if isinstance(v, Manifest):
            refs[name] = input_ref(out, v)
        elif isinstance(v, (list, tuple)) and all(isinstance(x, Manifest) for x in v):
            refs[name] = [input_ref(out, x) for x in v]
        else:
            refs[name] = v
    key = stage_key(stage, config, input_digests(inputs), params)
    names = _walk(out, outputs)
    m = Manifest(stage=stage, key=key, config=dict(config), params=params, inputs=refs,
                 files={n: record_file(out / n) for n in names}, result=dict(result or {}),
                 versions=versions(), seconds=None if seconds is None else round(float(seconds), 3), dir=out)
    m.write()
    return m


def load_manifest(stage_dir: str | os.PathLike) -> Manifest:
    d = Path(stage_dir)
    p = d / MANIFEST
    if not p.is_file():
        raise ManifestError(f"{d}: not a finished stage directory (no {MANIFEST}); run the stage that makes it")
    raw = read_json(p)
    if raw.get("format") != FORMAT:
        raise ManifestError(f"{p}: unknown manifest format {raw.get('format')!r}, expected {FORMAT!r}")
    try:
        files = {k: FileRecord(**v) for k, v in raw["files"].items()}
        return Manifest(stage=raw["stage"], key=raw["key"], config=raw["config"], params=raw["params"],
                        inputs=raw["inputs"], files=files, result=raw.get("result", {}),
                        version=raw.get("version", ""), versions=raw.get("versions", {}),
                        seconds=raw.get("seconds"), dir=d)
    except (KeyError, TypeError) as exc:
        raise ManifestError(f"{p}: malformed manifest ({exc})") from None


def open_stage(stage_dir: str | os.PathLike, *, max_bytes: int = VERIFY_MAX_BYTES) -> Manifest:
    """A finished stage given by the user (a command's input), verified like a cached one before use.

    Why: the run's cache verifies every stage it reuses; a stage folder passed to a stage command
    (`rd-interp enrich ENCODED`, `sae encode SAE_DIR` ...) gets the same check, so an edited or truncated
    output fails here, named, instead of being read.
    """
    m = load_manifest(Path(stage_dir).expanduser())
    problems = m.verify(max_bytes=max_bytes)
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise ManifestError(f"{problems[0]}{more}; recompute the {m.stage} stage (`rd-interp run` recomputes a "
                            f"damaged stage, or rerun the command that made {m.dir})")
    return m


def is_stage_dir(path: str | os.PathLike) -> bool:
    """True for a folder holding a stage manifest (an embedding store's own manifest.json is not one)."""
    p = Path(path) / MANIFEST
    if not p.is_file():
        return False
    try:
        return read_json(p).get("format") == FORMAT
    except ValueError:
        return False


def file_input(path: str | os.PathLike) -> dict[str, str]:
    """Record of a raw input file: name, absolute path (provenance) and sha256 (the content, not the path,
    keys the stage)."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise FileNotFoundError(f"{p}: file not found")
    return {"file": p.name, "path": str(p.resolve()), "sha256": sha256_file(p)}
