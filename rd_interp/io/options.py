"""Declaring config options once: a dataclass field with its help text and its role.

Why: a stage's options are read by the run config (TOML/JSON), the stage's own CLI flags and the cache
key. Declaring each option as ``name: type = opt(default, "help")`` on the stage's config dataclass lets
all three be generated from that one definition (rd_interp.io.serialize, rd_interp.cli.args,
rd_interp.io.manifest.stage_key), so they cannot drift apart.

``key=False`` marks an option that says where something is, not what is computed (a weights folder):
it stays out of cache keys, which hold the content checksums of such inputs instead.
``fanout=True`` marks an option that multiplies a stage into several units (the list of models, SAE
seeds, spaces): each unit's cache key holds its own value instead of the whole list, so adding a seed
never invalidates the SAEs of the other seeds. ``cli=False`` keeps an option out of a stage command's
generated flags (the command takes it positionally or it has no meaning there).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from rd_interp.io.serialize import to_dict

_MISSING = dataclasses.MISSING


def opt(default: Any = _MISSING, help: str = "", *, factory: Callable[[], Any] | None = None,
        fanout: bool = False, cli: bool = True, key: bool = True) -> Any:
    """A dataclass field carrying its help text and role (see the module docstring)."""
    meta = {"help": help, "fanout": fanout, "cli": cli, "key": key}
    if factory is not None:
        return dataclasses.field(default_factory=factory, metadata=meta)
    if default is _MISSING:
        return dataclasses.field(metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def help_of(field: dataclasses.Field) -> str:
    return str(field.metadata.get("help", ""))


def is_fanout(field: dataclasses.Field) -> bool:
    return bool(field.metadata.get("fanout", False))


def on_cli(field: dataclasses.Field) -> bool:
    return bool(field.metadata.get("cli", True))


def key_dict(cfg: Any) -> dict[str, Any]:
    """The config as a plain dict for a cache key: every field, recursively, except fan-out and location fields."""
    out = {}
    for f in dataclasses.fields(cfg):
        if is_fanout(f) or not f.metadata.get("key", True):
            continue
        value = getattr(cfg, f.name)
        out[f.name] = key_dict(value) if dataclasses.is_dataclass(value) else to_dict(value)
    return out


def subset(cls: type, cfg: Any, **override: Any) -> Any:
    """An instance of dataclass `cls` from the same-named fields of `cfg` (plus overrides).

    Used where a stage config extends a smaller one by inheritance (e.g. the enrichment config holds the
    study-set options): the smaller one is rebuilt by introspection, never by listing fields by hand.
    """
    names = {f.name for f in dataclasses.fields(cls)}
    values = {n: getattr(cfg, n) for n in names if hasattr(cfg, n)}
    values.update(override)
    return cls(**values)
