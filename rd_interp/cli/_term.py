"""What the CLI writes to the terminal: never a raw control character, never a crash on encoding or a closed pipe.

Why one wrapper around stdout/stderr instead of escaping at each print: protein ids, FASTA headers, GO names
and file names reach the terminal through explain tables, data check reports, log lines and error
messages; an id holding ``ESC[2J`` or a bidi override must be shown, not executed, on every path.
"""

from __future__ import annotations

import errno
import os
import re
import sys
from typing import Any, TextIO

# C0 controls (minus the ones in `keep`), DEL, C1 controls, bidi embeddings/overrides/isolates, line and
# paragraph separators.
_CONTROL = "\x00-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069\u2028\u2029"


def _pattern(keep: str) -> re.Pattern[str]:
    chars = "".join(f"\\x{ord(c):02x}" for c in keep)
    return re.compile(f"(?![{chars}])[{_CONTROL}]" if keep else f"[{_CONTROL}]")


_STRICT = _pattern("")


def _escape(m: re.Match[str]) -> str:
    c = m.group(0)
    return f"\\x{ord(c):02x}" if ord(c) < 0x100 else f"\\u{ord(c):04x}"


def sanitize(text: str, keep: str = "") -> str:
    """`text` with control characters shown as escapes (``\\x1b``), except those in `keep`."""
    return (_STRICT if not keep else _pattern(keep)).sub(_escape, text)


def one_line(text: str) -> str:
    """An error message as one terminal-safe line (newlines inside it become spaces)."""
    return sanitize(" ".join(str(text).split()))


class SafeStream:
    """A text stream that escapes control characters (except `keep`) and never fails to encode."""

    def __init__(self, raw: TextIO, keep: str):
        self._raw = raw
        self._re = _pattern(keep)
        try:  # keep the terminal's encoding, but show what it cannot encode as escapes instead of crashing
            raw.reconfigure(errors="backslashreplace")  # type: ignore[attr-defined]
        except (AttributeError, ValueError, OSError):
            pass

    def write(self, text: str) -> int:
        self._raw.write(self._re.sub(_escape, text))
        return len(text)

    def writelines(self, lines: Any) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        self._raw.flush()

    def __getattr__(self, name: str) -> Any:  # fileno, isatty, encoding, buffer ... of the real stream
        return getattr(self._raw, name)


def install() -> tuple[TextIO, TextIO]:
    """Wrap sys.stdout/sys.stderr (stderr keeps '\\r' for progress bars); returns the originals."""
    old = sys.stdout, sys.stderr
    sys.stdout = SafeStream(old[0], "\t\n")  # type: ignore[assignment]
    sys.stderr = SafeStream(old[1], "\t\n\r")  # type: ignore[assignment]
    return old


def silence_stdout() -> None:
    """After a closed pipe (`rd-interp ... | head`): point stdout at /dev/null so the exit flush is quiet."""
    try:
        fd = sys.__stdout__.fileno() if sys.__stdout__ is not None else -1
        if fd >= 0:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, fd)
            os.close(devnull)
    except (OSError, ValueError, AttributeError):
        pass


def describe_oserror(exc: OSError) -> str:
    """One line for an OS-level failure: the path first, what went wrong, what to do."""
    path = exc.filename if exc.filename is not None else ""
    if exc.filename2 is not None:
        path = f"{path} -> {exc.filename2}"
    what = exc.strerror or str(exc)
    hints = {
        errno.ENOSPC: "free some space and rerun the same command: finished stages are kept and the run resumes",
        errno.EDQUOT: "free some space and rerun the same command: finished stages are kept and the run resumes",
        errno.EACCES: "choose a folder you can write to (or fix its permissions)",
        errno.EPERM: "choose a folder you can write to (or fix its permissions)",
        errno.EROFS: "choose a folder on a writable file system",
        errno.EEXIST: "a file is in the way: choose another output folder",
        errno.ENOTDIR: "choose another output folder",
        errno.EISDIR: "expected a file, got a folder",
    }
    hint = hints.get(exc.errno or -1)
    return f"{path + ': ' if path else ''}{what}{'; ' + hint if hint else ''}"
