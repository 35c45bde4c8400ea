"""Stage caching: a stage's outputs live in a directory named by a hash of everything it depends on.

Re-running skips stages whose `_done.json` exists; changing one option changes the keys of exactly the
stages downstream of it; a stage interrupted half-way finds its partial directory and resumes (the stage
functions themselves are resumable: the store writer, SAE checkpoints).
"""

from __future__ import annotations

import logging
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from rd_interp.io.atomic import read_json, sha256_json, write_json

log = logging.getLogger(__name__)

DONE = "_done.json"


@dataclass(frozen=True)
class Stage:
    name: str  # e.g. "embed-mini-S"
    key: str  # hex digest of the payload
    payload: dict
    dir: Path

    @property
    def done(self) -> bool:
        return (self.dir / DONE).is_file()

    def info(self) -> dict:
        return read_json(self.dir / DONE)


def make_stage(root: Path, name: str, payload: dict) -> Stage:
    key = sha256_json({"stage": name, **payload})
    return Stage(name=name, key=key, payload=payload, dir=Path(root) / "stages" / f"{name}-{key[:12]}")


def run_stage(stage: Stage, fn: Callable[[Path], dict[str, Any]], *, force: bool = False) -> dict:
    """Run `fn(stage_dir)` unless the stage is done; returns the stage's `_done.json` content."""
    if stage.done and not force:
        info = stage.info()
        log.info("stage %s: cached (%s)", stage.name, stage.dir.name)
        return info
    if force and stage.dir.exists():
        shutil.rmtree(stage.dir)
    stage.dir.mkdir(parents=True, exist_ok=True)
    log.info("stage %s: running in %s", stage.name, stage.dir)
    t0 = time.perf_counter()
    result = fn(stage.dir) or {}
    info = {"stage": stage.name, "key": stage.key, "payload": stage.payload,
            "seconds": round(time.perf_counter() - t0, 3), "result": result}
    write_json(stage.dir / DONE, info)
    log.info("stage %s: done in %.1f s", stage.name, info["seconds"])
    return info
