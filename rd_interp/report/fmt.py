"""Number formatting shared by the HTML and Markdown reports, so both show the same digits."""

from __future__ import annotations

import math
from typing import Any

MISSING = "—"


def _finite(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def num(x: Any, digits: int = 3) -> str:
    """General number: integers with thousands separators, floats with `digits` significant digits."""
    if not _finite(x):
        return MISSING
    if isinstance(x, int) or (isinstance(x, float) and x.is_integer() and abs(x) >= 10 ** digits):
        return f"{int(x):,}"
    if x == 0:
        return "0"
    a = abs(x)
    if a >= 10 ** digits:
        return f"{x:,.0f}"
    if a < 1e-3:
        return f"{x:.{max(digits - 1, 1)}e}"
    decimals = max(digits - 1 - math.floor(math.log10(a)), 0)
    return f"{x:.{decimals}f}"


def integer(x: Any) -> str:
    if not _finite(x):
        return MISSING
    return f"{round(x):,}"


def fixed(x: Any, decimals: int = 2) -> str:
    if not _finite(x):
        return MISSING
    return f"{x:,.{decimals}f}"


def pct(x: Any, decimals: int = 1) -> str:
    """A fraction in [0, 1] as a percentage."""
    if not _finite(x):
        return MISSING
    return f"{100.0 * x:.{decimals}f}%"


def pvalue(p: Any) -> str:
    """p-values always in scientific notation, e.g. 3.2e-05 (plain text form)."""
    if not _finite(p):
        return MISSING
    if p == 0:
        return "< 1e-300"
    return f"{p:.2e}"


def pvalue_parts(p: Any) -> tuple[str, str] | None:
    """(mantissa, exponent) for typesetting 3.2 × 10^-5; None when not a finite number or zero."""
    if not _finite(p) or p == 0:
        return None
    mant, exp = f"{p:.2e}".split("e")
    return mant[:-1] if mant.endswith("0") and "." in mant else mant, str(int(exp))


def mean_ci(mean: Any, ci: Any, digits: int = 3) -> str:
    """'123 [110, 135]'; the CI is omitted when absent."""
    out = num(mean, digits)
    if isinstance(ci, (list, tuple)) and len(ci) == 2 and all(_finite(c) for c in ci):
        out += f" [{num(ci[0], digits)}, {num(ci[1], digits)}]"
    return out


def duration(seconds: Any) -> str:
    """Wall time: 0.42 s, 12.3 s, 4 min 05 s, 1 h 02 min."""
    if not _finite(seconds):
        return MISSING
    s = float(seconds)
    if s < 10:
        return f"{s:.2f} s"
    if s < 60:
        return f"{s:.1f} s"
    if s < 3600:
        m, rest = divmod(round(s), 60)
        return f"{m} min {rest:02d} s"
    h, rest = divmod(round(s), 3600)
    return f"{h} h {rest // 60:02d} min"


def flatten(obj: Any, prefix: str = "") -> list[tuple[str, Any]]:
    """Nested config dict -> sorted (dotted.key, value) pairs; lists stay values."""
    if isinstance(obj, dict):
        if not obj and prefix:
            return [(prefix, {})]
        out: list[tuple[str, Any]] = []
        for key in sorted(obj):
            out.extend(flatten(obj[key], f"{prefix}.{key}" if prefix else str(key)))
        return out
    return [(prefix, obj)]


def value(v: Any) -> str:
    """A config value as text (JSON-like for lists/bools/None)."""
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, list):
        return "[" + ", ".join(value(x) if not isinstance(x, str) else repr(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{}"
    return str(v)
