"""`rd-interp` command line: a thin shell over the Python API.

Each stage has its own module in this package exposing ``register(subparsers)``; they are discovered
here so stages can be added without touching a central list.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import pkgutil
import sys
import zipfile
import zlib

from rd_interp import __version__
from rd_interp.cli import _term


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rd-interp",
        description="Audit feature disentanglement in protein language model embeddings.",
    )
    parser.add_argument("--version", action="version", version=f"rd-interp {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging (and tracebacks on errors)")
    parser.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors on stderr")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    modules = []
    for info in pkgutil.iter_modules(__path__):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        if hasattr(module, "register"):
            modules.append(module)
    for module in sorted(modules, key=lambda m: (getattr(m, "ORDER", 50), m.__name__)):
        module.register(sub)
    return parser


# Bad input reaches the user as one line (use -v for a traceback): our own errors are ValueErrors or
# FileNotFoundErrors naming the file/key/record; OSErrors name their path; the rest are parser failures on
# damaged files that the integrity layer did not see first.
_BAD_INPUT = (ValueError, KeyError, EOFError, zlib.error, zipfile.BadZipFile)


def _expand_home(args: argparse.Namespace) -> None:
    """`~` in every argument: a shell leaves it alone in `--out=~/x` or when quoted, and so would open()."""
    for key, value in vars(args).items():
        if isinstance(value, str) and value.startswith("~"):
            setattr(args, key, os.path.expanduser(value))
        elif isinstance(value, list) and any(isinstance(v, str) and v.startswith("~") for v in value):
            setattr(args, key, [os.path.expanduser(v) if isinstance(v, str) else v for v in value])


def _call(args: argparse.Namespace) -> int | None:
    """Run the command. Under torchrun, rank 0 runs it and the other ranks serve the steps it spreads over
    them (embedding, SAE training; see rd_interp.dist)."""
    from rd_interp import dist

    w = dist.world()
    if not w.distributed:
        return args.func(args)
    import rd_interp.plm.sharded  # registers the embedding job
    import rd_interp.sae.train  # registers the SAE training job
    from rd_interp.device import resolve_device

    dist.init(resolve_device(getattr(args, "device", None) or "auto"))
    try:
        if not w.is_main:
            logging.getLogger().setLevel(logging.WARNING)  # one rank speaks
            dist.serve()
            return 0
        try:
            return args.func(args)
        finally:
            dist.release()
    finally:
        dist.shutdown()


def main(argv: list[str] | None = None) -> int:
    old = _term.install()
    try:
        code = _main(argv)
    finally:
        sys.stdout, sys.stderr = old
    ranked = sys.modules.get("rd_interp.dist")  # imported only by a command run under torchrun
    if ranked is not None:
        ranked.exit_if_grouped(code)
    return code


def _main(argv: list[str] | None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    _expand_home(args)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING if args.quiet else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        code = int(_call(args) or 0)
        sys.stdout.flush()  # a closed pipe shows up here, not in the interpreter's exit flush
        return code
    except BrokenPipeError:  # `rd-interp ... | head`: the reader has what it wanted
        _term.silence_stdout()
        return 0
    except KeyboardInterrupt:
        print("rd-interp: interrupted; rerun the same command to resume (finished work is kept)", file=sys.stderr)
        return 130
    except OSError as exc:
        if args.verbose:
            raise
        print(f"rd-interp: error: {_term.one_line(_term.describe_oserror(exc))}", file=sys.stderr)
        return 1
    except _BAD_INPUT as exc:
        if args.verbose:
            raise
        text = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        print(f"rd-interp: error: {_term.one_line(str(text) or type(exc).__name__)}", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
