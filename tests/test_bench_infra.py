"""Benchmark plumbing (analyses/benchlib.py, analyses/run_bench.py): no peers are installed here."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "analyses"))
import benchlib  # noqa: E402
import run_bench  # noqa: E402


def test_interleave_runs_every_unit_each_round_in_relative_order():
    calls: list[tuple[str, int]] = []

    def unit(name, j, secs):
        def run():
            calls.append((name, j))
            return secs
        return run

    units = {"a": [unit("a", j, 1.0 + j) for j in range(4)], "b": [unit("b", j, 0.5) for j in range(2)]}
    out = benchlib.interleave(units, rounds=3)
    assert len(calls) == 3 * 6
    first = calls[:6]
    # relative positions: a0 (1/8), b0 (1/4), a1 (3/8), a2 (5/8), b1 (3/4), a3 (7/8)
    assert first == [("a", 0), ("b", 0), ("a", 1), ("a", 2), ("b", 1), ("a", 3)]
    assert out["a"]["round_s"] == [10.0, 10.0, 10.0] and out["a"]["best_s"] == 10.0
    assert out["b"]["median_s"] == 1.0


def test_last_json_line_and_emit(capsys):
    benchlib.emit({"bench": "x", "v": 1.5})
    text = "noise\n{not json at the start\n" + capsys.readouterr().out
    assert benchlib.last_json_line(text) == {"bench": "x", "v": 1.5}
    with pytest.raises(ValueError):
        benchlib.last_json_line("no json here\n")
    with pytest.raises(ValueError):  # NaN is not valid JSON: refuse to write it
        benchlib.emit({"v": float("nan")})


def test_unknown_peer_is_one_clear_error():
    with pytest.raises(benchlib.PeerError, match="unknown peer"):
        benchlib.peer_python("no-such-peer")


def test_peer_spec_pins_torch_to_the_running_version():
    spec = benchlib.peer_spec("transformers")
    import torch

    assert spec["constraints"] == [f"torch=={torch.__version__.split('+')[0]}"]
    assert all("==" in r for r in spec["requirements"])


def test_readme_section_is_replaced_between_markers(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text("# t\nprose\n<!-- bench:start -->\nold table\n<!-- bench:end -->\nmore prose\n")
    results = {"date": "2026-01-02", "machine": {"cpu_model": "CPU <x>", "cpu_count": 2, "torch": "2"},
               "benchmarks": {"enrich": {"error": "exit 1 | boom"}}}
    benchlib.replace_section("bench", run_bench.markdown(results), readme)
    text = readme.read_text()
    assert "old table" not in text and text.startswith("# t\nprose\n") and text.endswith("more prose\n")
    assert "CPU &lt;x&gt;" in text and "exit 1 \\| boom" in text  # escaped for Markdown/HTML
    readme.write_text("no markers\n")
    with pytest.raises(SystemExit, match="markers"):
        benchlib.replace_section("bench", "x", readme)


def test_results_file_renders(tmp_path):
    res = Path(__file__).resolve().parents[1] / "analyses" / "results"
    files = sorted(res.glob("[0-9]*.json"))  # the dated `make bench` files (rehearsal.json is another script's)
    if not files:
        pytest.skip("no results file yet")
    table = run_bench.markdown(json.loads(files[-1].read_text()))
    assert table.count("\n| ") >= 3


def test_header_states_the_gemm_ceiling_of_the_run():
    """The machine's speed during the run (the embedding benchmark's GEMM ceiling readings) is in the header when
    that benchmark ran, and absent (not invented) when it did not."""
    base = {"date": "2026-01-02", "machine": {"cpu_model": "c", "cpu_count": 2, "torch": "2"}}
    embed = {"error": "exit 1", "gemm_ceiling_start": {"gflops": 140.64}, "gemm_ceiling_end": {"gflops": 156.0}}
    text = run_bench.markdown({**base, "benchmarks": {"embed": embed}})
    assert "140.6 GFLOP/s at its start and 156.0 at its end" in text
    assert "GFLOP/s" not in run_bench.markdown({**base, "benchmarks": {"enrich": {"error": "x"}}})
