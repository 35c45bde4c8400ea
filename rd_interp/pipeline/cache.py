"""Stage caching: a stage's outputs live in OUT/stages/<name>-<key>/, the key a hash of all it depends on.

The key comes from rd_interp.io.manifest.stage_key over the stage's config dataclass as a whole (fan-out
and location fields aside), its inputs' manifest digests, its unit parameters and the package version;
the stage's own run() computes the same key when it writes its manifest, and a mismatch is a bug that
fails loudly. A finished stage is reused only after its manifest's files verify (size always; checksum
up to a size); a corrupt one is recomputed with a warning (or refused with ``no_recompute``). A stage
interrupted half-way finds its partial folder and resumes (the store writer and SAE checkpoints are
resumable). Each stage is locked while it is checked or made, so concurrent runs on one OUT never
duplicate work.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import socket
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rd_interp.io.manifest import (
    MANIFEST,
    VERIFY_MAX_BYTES,
    Manifest,
    ManifestError,
    input_digests,
    load_manifest,
    stage_key,
)
from rd_interp.io.options import key_dict

try:
    import fcntl
except ImportError:  # pragma: no cover (Windows)
    fcntl = None

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Stage:
    name: str  # e.g. "embed-mini-S"
    kind: str  # e.g. "embed": the stage function that makes it
    key: str
    dir: Path

    @property
    def done(self) -> bool:
        return (self.dir / MANIFEST).is_file()


def plan(root: Path, name: str, kind: str, cfg: Any, inputs: Mapping[str, Any], params: Mapping[str, Any]) -> Stage:
    """Where a stage's outputs go, from what it depends on (cfg: its config dataclass)."""
    key = stage_key(kind, key_dict(cfg), input_digests(inputs), params)
    return Stage(name=name, kind=kind, key=key, dir=Path(root) / "stages" / f"{name}-{key[:12]}")


@contextlib.contextmanager
def stage_lock(stage: Stage) -> Iterator[None]:
    """Hold an advisory lock on one stage (OUT/stages/.locks/<stage folder>.lock) while it is checked or made.

    Why: two `rd-interp run` on the same OUT would compute the same stage twice and race on its files.
    The second waits, saying which process holds the lock, then finds the stage finished and reuses it.
    The lock dies with its process (kill -9 included), so a stale lock file never blocks anyone.
    """
    if fcntl is None:  # pragma: no cover (Windows: no advisory locks; concurrent runs are not supported)
        yield
        return
    lock = stage.dir.parent / ".locks" / f"{stage.dir.name}.lock"
    lock.parent.mkdir(parents=True, exist_ok=True)
    with open(lock, "a+", encoding="utf-8") as fh:
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            holder = fh.read().strip() or "unknown"
            log.warning("stage %s: another rd-interp process (pid %s) is working on it (lock %s); waiting for it",
                        stage.name, holder, lock)
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            fh.seek(0)
            fh.truncate()
            fh.write(f"{os.getpid()} on {socket.gethostname()}\n")
            fh.flush()
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def run_stage(stage: Stage, fn: Callable[[Path], Manifest], *, force: bool = False, no_recompute: bool = False,
              verify_max_bytes: int = VERIFY_MAX_BYTES) -> Manifest:
    """Return the stage's manifest, running `fn(stage_dir)` unless a verified finished copy exists.

    The stage is locked for the whole check-or-make (see stage_lock), so concurrent runs never duplicate it."""
    with stage_lock(stage):
        return _run_stage(stage, fn, force=force, no_recompute=no_recompute, verify_max_bytes=verify_max_bytes)


def _run_stage(stage: Stage, fn: Callable[[Path], Manifest], *, force: bool, no_recompute: bool,
               verify_max_bytes: int) -> Manifest:
    if stage.done and not force:
        try:
            m = load_manifest(stage.dir)
            problems = [] if m.key == stage.key else [f"{stage.dir / MANIFEST}: key {m.key[:12]} != {stage.key[:12]}"]
            problems += m.verify(max_bytes=verify_max_bytes) if not problems else []
        except (ManifestError, ValueError) as exc:
            problems = [str(exc)]
        if not problems:
            log.info("stage %s: cached (%s)", stage.name, stage.dir.name)
            return m
        if no_recompute:
            raise ManifestError(f"stage {stage.name}: cached outputs fail verification ({problems[0]}"
                                f"{f'; {len(problems) - 1} more' if len(problems) > 1 else ''}); "
                                "rerun without --no-recompute to recompute it")
        log.warning("stage %s: cached outputs fail verification (%s); recomputing", stage.name,
                    "; ".join(problems[:3]))
        shutil.rmtree(stage.dir)
    elif force and stage.dir.exists():
        shutil.rmtree(stage.dir)
    stage.dir.mkdir(parents=True, exist_ok=True)
    log.info("stage %s: running in %s", stage.name, stage.dir)
    m = fn(stage.dir)
    if m.key != stage.key:  # the planner and the stage disagree on what the stage depends on
        raise AssertionError(f"stage {stage.name}: planned key {stage.key[:12]} but the stage recorded {m.key[:12]}")
    log.info("stage %s: done in %.1f s", stage.name, m.seconds or 0.0)
    return m
