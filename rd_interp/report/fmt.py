"""Number formatting shared by the HTML and Markdown reports, so both show the same digits."""

from __future__ import annotations

import math
from collections.abc import Callable
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


def compact(x: Any) -> str:
    """Large counts (parameters, tokens) as 7.84 M / 1.20 B; below a million with thousands separators."""
    if not _finite(x):
        return MISSING
    a = abs(x)
    for size, unit in ((1e12, "T"), (1e9, "B"), (1e6, "M")):
        if a >= size:
            return f"{num(x / size)} {unit}"
    return integer(x)


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


# Interval methods of a seed statistic (summary STAT "method") and how a cell marks them.
METHOD_MARKS = {"t": "t", "range": "range"}


def interval(lo: Any, hi: Any, f: Callable[[Any], str] = num) -> str:
    """'[lo, hi]', or '' when either end is missing (an interval is never half shown)."""
    if not (_finite(lo) and _finite(hi)):
        return ""
    return f"[{f(lo)}, {f(hi)}]"


def stat_parts(stat: Any, f: Callable[[Any], str] = num) -> tuple[str, str, str | None]:
    """(mean, "[lo, hi]" or "", method mark or None) of a seed statistic {"mean", "lo", "hi", "method", ...}.

    The interval is shown only for the methods that produce one ("t": Student t over seeds, "range": min-max
    of two seeds); method "none" (one seed) shows the mean alone, marked with the seed count, so a reader
    never mistakes a single value for a summary with an interval.
    """
    if not isinstance(stat, dict):
        return MISSING, "", None
    text = f(stat.get("mean"))
    method = stat.get("method")
    if method in METHOD_MARKS:
        ci = interval(stat.get("lo"), stat.get("hi"), f)
        return (text, ci, METHOD_MARKS[method]) if ci else (text, "", None)
    seeds = stat.get("per_seed")
    if isinstance(seeds, list) and text != MISSING:
        return text, "", f"n={len(seeds)}"
    return text, "", None


def stat(stat_: Any, f: Callable[[Any], str] = num) -> str:
    """A seed statistic as one plain string: '631 [598, 664] (t)'."""
    text, ci, mark = stat_parts(stat_, f)
    out = f"{text} {ci}" if ci else text
    return f"{out} ({mark})" if mark else out


def signed(x: Any, digits: int = 3) -> str:
    """A difference with an explicit sign: '+12.3', '−4.50' (true minus sign), '0'."""
    if not _finite(x):
        return MISSING
    if x == 0:
        return "0"
    return ("+" if x > 0 else "−") + num(abs(x), digits)


def signed_fixed(x: Any, decimals: int = 3) -> str:
    """A difference on a fixed scale (AUROC): '+0.003', '−0.012'."""
    if not _finite(x):
        return MISSING
    text = f"{abs(x):,.{decimals}f}"
    if float(text.replace(",", "")) == 0:
        return text
    return ("+" if x > 0 else "−") + text


def signed_pct(x: Any, decimals: int = 1) -> str:
    """A relative difference as '+6.2%' / '−58.0%'."""
    text = pct(abs(x), decimals) if _finite(x) else MISSING
    if text == MISSING or float(text[:-1]) == 0:
        return text
    return ("+" if x > 0 else "−") + text


def mean_sd(mean: Any, sd: Any, f: Callable[[Any], str] = num) -> str:
    """'0.0111 ± 0.0007': the sd with the mean's decimals (one more when it would round to 0)."""
    text = f(mean)
    if not _finite(sd) or text == MISSING:
        return text
    if f is not num or "e" in text:
        return f"{text} ± {f(sd)}"
    decimals = len(text.split(".")[1]) if "." in text else 0
    if sd > 0 and round(sd, decimals) == 0:
        decimals += 1
    return f"{text} ± {sd:,.{decimals}f}"


def median(x: Any) -> str:
    """A median of integer data: '7' or '7.5' (no false precision), other numbers as num()."""
    if _finite(x) and float(x) * 2 == round(float(x) * 2):
        return f"{x:,.0f}" if float(x).is_integer() else f"{x:,.1f}"
    return num(x)


def level(x: Any) -> str:
    """A confidence level in [0, 1] as '95%' (no trailing zeros)."""
    if not _finite(x):
        return MISSING
    return f"{100.0 * x:.3g}%"


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
