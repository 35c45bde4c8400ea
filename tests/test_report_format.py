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
