"""analyses/gpu_check.py, the prepared device check, rehearsed on the CPU: every section runs and passes
(the transformers peer is skipped where it does not import), the JSON is written, bad arguments get one line."""

import json
import subprocess
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "analyses" / "gpu_check.py"


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, cwd=ROOT, timeout=600,
                          check=False)


def test_rehearsal_on_cpu_runs_every_section(tmp_path):
    proc = _run("--device", "cpu", "--quick", "--out", str(tmp_path))
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    res = json.loads((tmp_path / "gpu_check.json").read_text())
    assert res == json.loads(proc.stdout.strip().splitlines()[-1])
    sec = res["sections"]
    assert set(sec) == {"env", "embed_equal", "embed_speed", "sae_equal", "sae_speed", "distill"}
    assert all(s["status"] == "ok" for s in sec.values()) and res["failed"] == []
    assert sec["embed_equal"]["fp32_vs_cpu"]["max_rel"] == 0.0 and sec["embed_equal"]["residues"] > 0
    assert sec["embed_speed"]["shapes"]["35M"]["ours_fp32_residues_per_s"] > 0
    grads = {k: v for k, v in sec["sae_equal"].items() if k not in ("status", "seconds")}
    assert set(grads) == {f"{a}_{t}" for a in ("topk", "batchtopk") for t in ("float64", "float32")}
    assert all(r["same_selection"] and set(r["relative_error"]) == {"W_enc", "b_enc", "W_dec", "b_dec"}
               for r in grads.values())
    speed = next(iter(sec["sae_speed"].values()))["fp32"]
    assert speed["vectors_per_s"] > 0 and 0 < speed["floor_fraction"] and 0 < speed["last_batch_fvu"] < 1.5
    assert sec["distill"]["pcs"][0] == sec["distill"]["pcs"][1] > 0


def test_bad_arguments_get_one_line(tmp_path):
    proc = _run("--device", "cpu", "--only", "embed,nope", "--out", str(tmp_path))
    assert proc.returncode == 2 and proc.stderr.strip().count("\n") == 0
    assert "unknown section(s) embed, nope" in proc.stderr and "Traceback" not in proc.stderr
    if not torch.cuda.is_available():
        proc = _run("--out", str(tmp_path))
        assert proc.returncode == 2 and "no CUDA device" in proc.stderr and "Traceback" not in proc.stderr
