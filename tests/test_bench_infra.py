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


def test_embedding_time_breakdown_profiles_each_part_of_our_forward():
    """bench_embed's breakdown: the FLOPs of each part add up to the roofline's, and a profiled pass of the real
    forward of a shipped model finds time in both the linear layers' GEMMs and the attention kernel."""
    import bench_embed
    import torch

    from rd_interp.plm.embed import embed_sequences
    from rd_interp.plm.esm import load_model, shipped_models

    assert bench_embed.flops_by_part([1], 1, 2, 4) == {"linear": 192.0, "attention": 72.0}  # T = 3: 64 T, 4 C T^2
    assert bench_embed.useful_flops([5, 9], 3, 8, 32) == sum(bench_embed.flops_by_part([5, 9], 3, 8, 32).values())

    model, alphabet, _ = load_model(shipped_models()["mini-S"], device="cpu", with_sha256=False)
    seqs = ["MKTAYIAKQRQISFVKSHFSRQ" * 4, "MSEQNNTEMTFQIQRIYTKDISFEAPNAPH" * 3, "ACDEFGHIKLMNPQRSTVWY" * 5]
    C, n_layers, ffn = int(model.embed_dim), int(model.num_layers), int(model.layers[0].fc1.out_features)

    def run() -> None:
        with torch.no_grad():
            for _ in embed_sequences(model, alphabet, seqs, device="cpu"):
                pass

    bd = bench_embed.time_breakdown(run, [len(s) for s in seqs], n_layers, C, ffn, gflops_ceiling=100.0)
    flops = bench_embed.flops_by_part([len(s) for s in seqs], n_layers, C, ffn)
    for part in ("linear", "attention"):
        p = bd[part]
        assert p["seconds"] > 0 and 0 < p["share_of_time"] <= 1
        assert p["gflop"] == round(flops[part] / 1e9, 2)
        assert p["fraction_of_ceiling"] == pytest.approx(p["gflops"] / 100.0, abs=2e-3)
    assert bd["other_s"] >= 0
    assert bd["linear"]["seconds"] + bd["attention"]["seconds"] <= bd["wall_s"] + 1e-3
    row = run_bench._breakdown(bd)
    assert "of the GEMM ceiling" in row and "GFLOP/s" in row
    assert run_bench._breakdown(None) == ""


def test_sae_step_breakdown_finds_each_part_of_a_real_training_step():
    """bench_sae's breakdown profiles a short real fit: the matmul, decode, sparse backward and Adam each take
    time, and with the rest they add up to the fit's mean step."""
    import bench_sae

    from rd_interp.sae.model import SAEConfig
    from rd_interp.sae.train import train_sae

    X = bench_sae.synthetic(1024, 16, n_atoms=64, s=4)
    cfg = bench_sae.our_train_config(3, 256, 1e-3, X.shape[0])
    bd = bench_sae.step_breakdown(lambda: train_sae(X, SAEConfig("topk", n_latents=128, k=4), cfg, progress=False,
                                                    seed=0, device="cpu"), 3)
    for part in ("encoder_matmul", "decode", "sparse_backward", "adam"):
        assert bd[part] > 0, part
    assert bd["rest"] + sum(bd[p] for p in bench_sae._STEP_PARTS) == pytest.approx(bd["step_mean"], abs=0.05)
    text = run_bench._step_parts(bd)
    assert f"encoder matmul {bd['encoder_matmul']:.0f}" in text and run_bench._step_parts(None) == ""
