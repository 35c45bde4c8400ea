"""Command-line flags generated from a stage's config dataclass, so `--help` and the run config agree.

Every field of the dataclass (except those declared ``cli=False``) becomes ``--field-name`` with the
field's own help text, type, choices and default; `--config FILE` reads the same options from a TOML/JSON
file (the stage's table of a run config, e.g. `[sae]`, or a file holding just that table), and flags given
on the command line override it. Values pass the dataclass's own validation, with errors naming the flag.
"""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from typing import Any, TypeVar

from rd_interp.io.options import help_of, on_cli
from rd_interp.io.serialize import ConfigError, from_dict, read_config_file, to_dict

T = TypeVar("T")
PREFIX = "cfg__"


def _strip_optional(tp: Any) -> tuple[Any, bool]:
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0], True
    return tp, False


def _none_or(conv):
    def parse(text: str):
        return None if text.lower() in ("none", "null", "") else conv(text)
    parse.__name__ = getattr(conv, "__name__", "value")
    return parse


def add_config_args(parser: argparse.ArgumentParser, cls: type, *, table: str | None = None,
                    skip: tuple[str, ...] = ()) -> None:
    """Add one flag per field of `cls`, and --config FILE (reading `[table]` when the file has it)."""
    hints = typing.get_type_hints(cls)
    defaults = cls()
    group = parser.add_argument_group(f"options ({table or cls.__name__}; also settable in --config FILE)")
    group.add_argument("--config", dest=f"{PREFIX}_file", metavar="FILE", default=None,
                       help=f"TOML/JSON file with these options{f' (its [{table}] table, if present)' if table else ''}; "
                            "flags override it")
    for f in dataclasses.fields(cls):
        if not on_cli(f) or f.name in skip:
            continue
        tp, optional = _strip_optional(hints[f.name])
        origin = typing.get_origin(tp)
        default = getattr(defaults, f.name)
        text = help_of(f) or f.name
        kw: dict[str, Any] = {"dest": PREFIX + f.name, "default": argparse.SUPPRESS}
        flag = "--" + f.name.replace("_", "-")
        if tp is bool:
            kw["action"] = argparse.BooleanOptionalAction
        elif origin is typing.Literal:
            kw["choices"] = list(typing.get_args(tp))
            kw["metavar"] = "{" + ",".join(map(str, kw["choices"])) + "}"
        elif origin in (list, tuple):
            inner = (typing.get_args(tp) or (str,))[0]
            kw["nargs"] = "+"
            kw["type"] = inner if inner in (int, float, str) else str
        elif tp in (int, float, str):
            kw["type"] = _none_or(tp) if optional else tp
            kw["metavar"] = tp.__name__.upper()
        shown = "none" if default is None else (" ".join(map(str, default)) if isinstance(default, (list, tuple))
                                                else default)
        group.add_argument(flag, help=f"{text} (default: {shown})".replace("%", "%%"), **kw)


def config_from_args(cls: type[T], args: argparse.Namespace, *, table: str | None = None) -> T:
    """The dataclass from --config FILE (if any) overlaid with the flags given; validated."""
    data: dict[str, Any] = {}
    path = getattr(args, f"{PREFIX}_file", None)
    if path:
        raw = read_config_file(path)
        if table and isinstance(raw.get(table), dict):  # a run config: its table, minus other stages' options
            names = {f.name for f in dataclasses.fields(cls)}
            data = {k: v for k, v in raw[table].items() if k in names}
        else:
            data = dict(raw)
    for key, value in vars(args).items():
        if key.startswith(PREFIX) and key != f"{PREFIX}_file":
            data[key[len(PREFIX):]] = value
    try:
        return from_dict(cls, to_dict(data), table or "")
    except ConfigError as exc:
        where = f"{path}: " if path else ""
        raise ConfigError(f"{where}{exc}") from None
