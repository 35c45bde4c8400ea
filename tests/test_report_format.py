"""Number formatting and Markdown escaping used by both report renderers."""

from __future__ import annotations

import math

from rd_interp.report import fmt, space_label
from rd_interp.report.markdown import code_md, escape_md


def test_numbers():
    assert fmt.num(1234567) == "1,234,567"
    assert fmt.num(0.81234) == "0.812"
    assert fmt.num(12.345) == "12.3"
    assert fmt.num(5.0) == "5.00"
    assert fmt.num(12345.6) == "12,346"
    assert fmt.num(0.0000123) == "1.23e-05"
    assert fmt.num(0) == "0" and fmt.num(-0.5) == "-0.500"
    assert fmt.num(None) == fmt.MISSING and fmt.num(math.nan) == fmt.MISSING and fmt.num(True) == fmt.MISSING
    assert fmt.pct(0.4231) == "42.3%" and fmt.pct(None) == fmt.MISSING
    assert fmt.integer(2048.0) == "2,048"
    assert fmt.mean_ci(746.0, [681.2, 811.0]) == "746 [681, 811]"
    assert fmt.mean_ci(7.5, None) == "7.50"


def test_pvalues_scientific():
    assert fmt.pvalue(3.2e-4) == "3.20e-04"
    assert fmt.pvalue(0.41) == "4.10e-01"
    assert fmt.pvalue(0.0) == "< 1e-300"
    assert fmt.pvalue(None) == fmt.MISSING
    assert fmt.pvalue_parts(1.7e-12) == ("1.7", "-12")
    assert fmt.pvalue_parts(0.0) is None


def test_durations():
    assert fmt.duration(4.214) == "4.21 s"
    assert fmt.duration(95.7) == "1 min 36 s"
    assert fmt.duration(1843) == "30 min 43 s"
    assert fmt.duration(7322) == "2 h 02 min"


def test_flatten_config():
    cfg = {"sae": {"k": 32, "seeds": [0, 1]}, "device": "auto", "empty": {}}
    assert fmt.flatten(cfg) == [("device", "auto"), ("empty", {}), ("sae.k", 32), ("sae.seeds", [0, 1])]
    assert fmt.value(None) == "null" and fmt.value(True) == "true" and fmt.value([0, "a"]) == "[0, 'a']"


def test_markdown_escaping():
    assert escape_md("a|b") == "a\\|b"
    assert escape_md("<script>") == "&lt;script>"
    assert escape_md("two\nlines") == "two lines"
    assert escape_md("ABC_HUMAN *x* _y_") == "ABC_HUMAN \\*x\\* \\_y\\_"
    assert escape_md("[click](https://x)") == "[click\\](https://x)"
    assert escape_md("746 [681, 811]") == "746 [681, 811]"
    assert escape_md("a -> b & c") == "a -> b & c"
    assert escape_md("&lt;b&gt;") == "&amp;lt;b&amp;gt;"
    assert code_md("GO:0005524") == "`GO:0005524`"
    assert code_md("a`b") == "``a`b``"
    assert code_md("x|y", in_table=True) == "`x\\|y`"


def test_space_label():
    assert space_label("rd_35M", "residual") == "rd_35M/residual"
    assert space_label("esm2_35M") == "esm2_35M"


def test_seed_statistics():
    t = {"mean": 631.33, "sd": 14.0, "lo": 596.6, "hi": 666.1, "method": "t", "per_seed": [620, 627, 647],
         "level": 0.95}
    assert fmt.stat_parts(t) == ("631", "[597, 666]", "t")
    assert fmt.stat(t) == "631 [597, 666] (t)"
    two = {**t, "method": "range", "lo": 620.0, "hi": 627.0, "per_seed": [620, 627]}
    assert fmt.stat(two) == "631 [620, 627] (range)"
    one = {"mean": 620.0, "sd": 0.0, "lo": None, "hi": None, "method": "none", "per_seed": [620]}
    assert fmt.stat(one) == "620 (n=1)"
    # An interval is never half shown, and never shown for method "none" even if ends were given.
    assert fmt.stat({**t, "hi": None}) == "631"
    assert fmt.stat({**one, "lo": 1.0, "hi": 2.0}) == "620 (n=1)"
    assert fmt.stat({"mean": 0.4231, "lo": 0.40, "hi": 0.45, "method": "t"}, fmt.pct) == "42.3% [40.0%, 45.0%] (t)"
    assert fmt.stat(None) == fmt.MISSING
    assert fmt.interval(1.0, None) == "" and fmt.interval(0.5, 2.0) == "[0.500, 2.00]"
    assert fmt.level(0.95) == "95%" and fmt.level(0.9) == "90%" and fmt.level(0.995) == "99.5%"


def test_signed_and_compact():
    assert fmt.signed(39.0) == "+39.0" and fmt.signed(-318) == "−318" and fmt.signed(0) == "0"
    assert fmt.signed_fixed(0.003) == "+0.003" and fmt.signed_fixed(-0.0123) == "−0.012"
    assert fmt.signed_fixed(0.0001) == "0.000"  # rounds to zero: no sign claims a direction
    assert fmt.signed_pct(-0.58) == "−58.0%" and fmt.signed_pct(0.062) == "+6.2%" and fmt.signed_pct(None) == "—"
    assert fmt.compact(215_360) == "215,360" and fmt.compact(125_000_000) == "125 M"
    assert fmt.compact(6.5e9) == "6.50 B" and fmt.compact(None) == fmt.MISSING
    assert fmt.mean_sd(0.0111, 0.00073) == "0.0111 ± 0.0007" and fmt.mean_sd(21.0, 0.0) == "21.0 ± 0.0"
    assert fmt.mean_sd(0.4, 0.02, fmt.pct) == "40.0% ± 2.0%" and fmt.mean_sd(3.0, None) == "3.00"
    assert fmt.median(7.0) == "7" and fmt.median(7.5) == "7.5" and fmt.median(5.4321) == "5.43"
