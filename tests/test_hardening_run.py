"""Hardening, end to end (issue 12): one tiny run made the hostile way, then probed.

The run (module fixture) is made by two `rd-interp run` processes started together on the same OUT, under
an ASCII locale (LC_ALL=C, no UTF-8 mode), with `out_dir = "."` next to the user's own commented
config.toml, a FASTA with a UTF-8 BOM, non-ASCII ids and one protein longer than ESM-2's 1,022 positions,
and a small model named like an ESM-1 checkpoint (esm_35m_finetuned.pt). Tests never mutate it: those that
damage or move files work on their own copy.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from rd_interp.cli import main

ROOT = Path(__file__).resolve().parents[1]
LOCALE_C = {"LC_ALL": "C", "PYTHONUTF8": "0", "PYTHONCOERCECLOCALE": "0"}
USER_TOML = """# my own notes: the run must never rewrite this file
out_dir = "."   # the run folder is the folder of this file
device = "cpu"

[data]
fasta = "{fasta}"
annotations = "{annotations}"

[models]
family = ["{small}", "{large}"]

[distill]
train_proteins = 20

[sae]
expansion = 2
k = 4
seeds = [0]
spaces = ["rd"]
n_steps = 20
batch_size = 256
checkpoint_every = 5

[enrich]
top_n = 8
min_proteins = 3

[report]
top_latents = 3
"""


def _env(**extra: str) -> dict[str, str]:
    e = {k: v for k, v in os.environ.items() if k not in ("PYTHONIOENCODING", "PYTHONUTF8", "LANG", "LC_ALL")}
    e.update(PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1", **extra)
    return e


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    """(work dir = OUT, path of the user's config.toml, its bytes, stderr of the two concurrent runs)."""
    from rd_interp.io import datasets
    from rd_interp.io.fasta import read_fasta
    from rd_interp.plm.family import MemberSpec, alphabet, build_model, save_esm2_checkpoint

    inputs = tmp_path_factory.mktemp("inputs")
    small, large = inputs / "esm_35m_finetuned.pt", inputs / "tiny32.pt"
    for i, (path, layers, dim) in enumerate([(small, 1, 16), (large, 2, 32)]):
        save_esm2_checkpoint(build_model(MemberSpec(f"t{i}", layers, dim, 2, 1000), alphabet(), seed=i), path,
                             half=False)
    with gzip.open(datasets.shipped_annotations(), "rt", encoding="utf-8") as fh:
        lines = fh.read().splitlines()
    annotated = {ln.split("\t")[0] for ln in lines[1:]}
    recs = [r for r in read_fasta(datasets.shipped_proteins()) if len(r.sequence) <= 200 and r.id in annotated][:39]
    rename = {r.id: (f"{r.id}_é" if i % 2 == 0 else r.id) for i, r in enumerate(recs)}
    fasta = "\ufeff" + "".join(f">{rename[r.id]} Protéine 蛋白质 {i}\n{r.sequence}\n" for i, r in enumerate(recs))
    fasta += ">LONG1 a protein longer than the model's context\n" + ("".join(r.sequence for r in recs))[:1100] + "\n"
    (inputs / "proteins.fasta").write_bytes(fasta.encode("utf-8"))
    rows = [ln for ln in lines[1:] if ln.split("\t")[0] in rename]
    tsv = "\ufeff" + lines[0] + "\n" + "".join(
        "\t".join([rename[ln.split("\t")[0]], *ln.split("\t")[1:]]) + "\n" for ln in rows)
    (inputs / "annotations.tsv").write_bytes(tsv.encode("utf-8"))

    work = tmp_path_factory.mktemp("work")
    toml = USER_TOML.format(fasta=inputs / "proteins.fasta", annotations=inputs / "annotations.tsv",
                            small=small, large=large)
    (work / "config.toml").write_text(toml, encoding="utf-8")
    procs = [subprocess.Popen([sys.executable, "-m", "rd_interp", "run", "config.toml"], cwd=work,
                              env=_env(**LOCALE_C), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
             for _ in range(2)]
    outs = [p.communicate(timeout=900) for p in procs]
    errs = [e.decode("utf-8", "replace") for _, e in outs]
    assert [p.returncode for p in procs] == [0, 0], errs
    return work, work / "config.toml", toml.encode("utf-8"), errs


def _stage(root: Path, name: str) -> Path:
    index = json.loads((root / ".rd_interp" / "run.json").read_text(encoding="utf-8"))["stages"]
    return root / index[name]


def _copy(made, tmp_path: Path) -> Path:
    dst = tmp_path / "copy"
    shutil.copytree(made[0], dst)
    return dst


def _seq(n: int) -> str:
    return ("MKTAYIAKQRQISFVKSHFSRQLEERLGLIEVQAPILSRVGDGTQDNLSGAEKAVQVKVKALPDAQ" * 80)[:n]


def _one_error_line(capsys, rc: int, *must: str) -> str:
    out, err = capsys.readouterr()
    assert rc != 0, (out, err)
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("rd-interp: error: "), err
    assert "Traceback" not in err + out
    for text in must:
        assert text in lines[0], (text, lines[0])
    return lines[0]


# -- the run itself ----------------------------------------------------------------------------------------------
def test_two_concurrent_runs_compute_each_stage_once(made):
    work, _, _, errs = made
    stages = json.loads((work / ".rd_interp" / "run.json").read_text(encoding="utf-8"))["stages"]
    assert {"data", "distill", "sae-rd-s0", "encode-rd-s0", "enrich-rd-s0"} <= set(stages)
    for name in stages:
        if name == "report":
            continue
        ran = sum(len(re.findall(rf"stage {re.escape(name)}: running in ", e)) for e in errs)
        assert ran == 1, (name, ran)  # the other process waited on the lock, then reused the stage


def test_users_config_next_to_out_is_untouched(made):
    work, toml, original, _ = made
    assert toml.read_bytes() == original  # comments kept: run metadata lives in OUT/.rd_interp/
    assert (work / ".rd_interp" / "config.toml").is_file()
    assert sorted(p.name for p in work.iterdir()) == [".rd_interp", "config.toml", "report", "stages"]


def test_non_ascii_ids_and_bom_end_to_end_under_ascii_locale(made):
    data = _stage(made[0], "data")
    ids = [ln[1:].split()[0] for ln in (data / "proteins.fasta").read_text(encoding="utf-8").splitlines()
           if ln.startswith(">")]
    assert len(ids) == 40 and sum(i.endswith("_é") for i in ids) == 20
    summary = json.loads((made[0] / "report" / "summary.json").read_text(encoding="utf-8"))
    assert summary["title"]


def test_checkpoint_named_like_esm1_was_loaded_as_esm2(made):
    embed = json.loads((_stage(made[0], "embed-esm_35m_finetuned") / "manifest.json").read_text(encoding="utf-8"))
    assert embed["result"]["dim"] == 16


def test_report_counts_truncated_proteins(made):
    summary = json.loads((made[0] / "report" / "summary.json").read_text(encoding="utf-8"))
    assert any(n.startswith("1 proteins longer than 1022 residues were truncated") for n in summary["notes"])
    assert "were truncated to their first residues" in (made[0] / "report" / "report.md").read_text(encoding="utf-8")


def test_output_files_share_one_permission_mode(made):
    mask = os.umask(0)
    os.umask(mask)
    modes = {p.relative_to(made[0]).as_posix(): p.stat().st_mode & 0o777
             for p in made[0].rglob("*") if p.is_file() and p.name != "config.toml"}
    assert any(k.endswith("sae.safetensors") for k in modes)
    assert {k: v for k, v in modes.items() if v != 0o666 & ~mask} == {}  # sae.safetensors was 0600


# -- explain -----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("n", [50, 300, 1022, 5000])
def test_explain_bare_sequences(made, n, capsys):
    """A bare sequence of any length is a sequence (no 'File name too long'); truncation is said."""
    assert main(["explain", str(made[0]), _seq(n), "--json", "--top", "3"]) == 0
    row = json.loads(capsys.readouterr().out)[0]
    assert (row["id"], row["length"]) == ("query", n)
    assert row["residues_used"] == min(n, 1022) and row["truncated"] == (n > 1022)
    assert main(["explain", str(made[0]), _seq(n), "--top", "3"]) == 0
    head = capsys.readouterr().out.splitlines()[0]
    assert (f"({n} aa, TRUNCATED to its first 1022: set models.long_mode = 'window' to use all)" in head) == (n > 1022)


def test_explain_escapes_control_characters_in_ids(made, tmp_path, capsys):
    q = tmp_path / "q.fasta"
    q.write_bytes(b">evil\x1b[2J\xe2\x80\xaeid\nACDEFGHIKLMNPQ\n")
    assert main(["explain", str(made[0]), str(q), "--top", "2"]) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\u202e" not in out
    assert out.startswith("# evil\\x1b[2J\\u202eid (14 aa)")


def test_explain_rejects_a_non_sequence_that_is_no_file(made, capsys):
    _one_error_line(capsys, main(["explain", str(made[0]), "ACDJKL"]), "invalid residue 'J' at position 4")
    _one_error_line(capsys, main(["explain", str(made[0]), "no/such.fasta"]), "no/such.fasta: not a protein sequence")


def test_explain_needs_only_the_run_folder(made, tmp_path, capsys):
    """After the run, the input FASTA and annotations may move away: explain reads OUT (and the weights)."""
    cfg = json.loads((made[0] / ".rd_interp" / "config.json").read_text(encoding="utf-8"))
    moved = [Path(cfg["data"]["fasta"]), Path(cfg["data"]["annotations"])]
    for p in moved:
        p.rename(p.with_suffix(p.suffix + ".moved"))
    try:
        copy = _copy(made, tmp_path)  # and the run folder itself moves
        assert main(["explain", str(copy), _seq(120), "--json"]) == 0
        assert json.loads(capsys.readouterr().out)[0]["length"] == 120
    finally:
        for p in moved:
            p.with_suffix(p.suffix + ".moved").rename(p)


def test_explain_refuses_weights_that_changed(made, tmp_path, capsys):
    from rd_interp.plm.family import MemberSpec, alphabet, build_model, save_esm2_checkpoint

    cfg = json.loads((made[0] / ".rd_interp" / "config.json").read_text(encoding="utf-8"))
    large = Path(cfg["models"]["family"][-1])
    keep = large.read_bytes()
    try:
        save_esm2_checkpoint(build_model(MemberSpec("other", 2, 32, 2, 1000), alphabet(), seed=7), large, half=False)
        _one_error_line(capsys, main(["explain", str(made[0]), _seq(60)]), f"{large}: not the weights")
    finally:
        large.write_bytes(keep)


# -- a moved run resumes an interrupted SAE ----------------------------------------------------------------------
def test_interrupted_sae_resumes_after_the_run_folder_moved(made, tmp_path, monkeypatch, caplog):
    from rd_interp.config import RunConfig
    from rd_interp.pipeline.run import Pipeline
    from rd_interp.sae.model import SparseAutoencoder

    class Interrupted(Exception):
        pass

    first = _copy(made, tmp_path)
    want = hashlib.sha256((_stage(made[0], "sae-rd-s0") / "sae" / "sae.safetensors").read_bytes()).hexdigest()
    for name in ("sae-rd-s0", "encode-rd-s0", "enrich-rd-s0"):
        shutil.rmtree(_stage(first, name))
    cfg = RunConfig.load(made[1])
    cfg.out_dir = str(first)
    calls = {"n": 0}
    forward = SparseAutoencoder.train_forward

    def interrupt_at_step_12(self, *a, **kw):
        calls["n"] += 1
        if calls["n"] > 12:
            raise Interrupted
        return forward(self, *a, **kw)

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # bit-equal to the fixture's single-threaded training
    try:
        monkeypatch.setattr(SparseAutoencoder, "train_forward", interrupt_at_step_12)
        with pytest.raises(Interrupted):
            Pipeline(cfg, progress=False).run()
        monkeypatch.undo()
        assert (first / _stage(made[0], "sae-rd-s0").relative_to(made[0]) / ".checkpoints" / "checkpoint.pt").is_file()
        moved = tmp_path / "elsewhere" / "run"
        moved.parent.mkdir()
        shutil.move(str(first), moved)
        cfg.out_dir = str(moved)
        with caplog.at_level("INFO"):
            Pipeline(cfg, progress=False).run()
    finally:
        torch.set_num_threads(threads)
    assert re.search(r"resuming .*checkpoint\.pt from step 10/20", caplog.text), caplog.text
    got = hashlib.sha256((_stage(moved, "sae-rd-s0") / "sae" / "sae.safetensors").read_bytes()).hexdigest()
    assert got == want  # resumed after the move, to the same SAE as the uninterrupted run


# -- damaged cached files, through the commands that read them ---------------------------------------------------
def _truncate(path: Path) -> None:
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 2])


def test_truncated_scores_npz(made, tmp_path, capsys):
    run = _copy(made, tmp_path)
    enc, data = _stage(run, "encode-rd-s0"), _stage(run, "data")
    _truncate(enc / "scores.npz")
    rc = main(["enrich", str(enc), "--data", str(data), "--out", str(tmp_path / "e")])
    _one_error_line(capsys, rc, f"{enc / 'scores.npz'}: ", "truncated or replaced", "recompute the encode stage")
    bare = tmp_path / "bare"
    bare.mkdir()
    shutil.copy(enc / "scores.npz", bare / "scores.npz")
    shutil.copy(enc / "proteins.txt", bare / "proteins.txt")
    rc = main(["enrich", "--scores", str(bare / "scores.npz"), "--proteins", str(bare / "proteins.txt"),
               "--data", str(data), "--out", str(tmp_path / "e2")])
    _one_error_line(capsys, rc, f"{bare / 'scores.npz'}: cannot read this score matrix (truncated or corrupt")


def test_truncated_embedding_shard(made, tmp_path, capsys):
    run = _copy(made, tmp_path)
    small, large = _stage(run, "embed-esm_35m_finetuned"), _stage(run, "embed-tiny32")
    shard = large / "store" / "shards" / "shard-00000.npy"
    _truncate(shard)
    rc = main(["distill", "fit", "--small", str(small), "--large", str(large), "--out", str(tmp_path / "d")])
    _one_error_line(capsys, rc, f"{shard}: ", "truncated or replaced")
    rc = main(["sae", "train", "--store", str(large / "store"), "--out", str(tmp_path / "s"), "--n-steps", "2"])
    _one_error_line(capsys, rc, f"{shard}: embedding shard has ", "truncated")


def test_truncated_sae_weights(made, tmp_path, capsys):
    run = _copy(made, tmp_path)
    sae = _stage(run, "sae-rd-s0")
    weights = sae / "sae" / "sae.safetensors"
    _truncate(weights)
    _one_error_line(capsys, main(["sae", "encode", str(sae), "--out", str(tmp_path / "e")]), f"{weights}: ")
    _one_error_line(capsys, main(["sae", "eval", str(sae)]), f"{weights}: ")
    _one_error_line(capsys, main(["explain", str(run), _seq(60)]), f"{weights}: ")


def test_malformed_stage_manifest(made, tmp_path, capsys):
    run = _copy(made, tmp_path)
    enc = _stage(run, "encode-rd-s0")
    _truncate(enc / "manifest.json")
    rc = main(["enrich", str(enc), "--out", str(tmp_path / "e")])
    _one_error_line(capsys, rc, f"{enc / 'manifest.json'}: not valid JSON")
    assert main(["verify", str(run)]) == 1
    assert f"DAMAGED {enc / 'manifest.json'}: not valid JSON" in capsys.readouterr().out


def test_edited_cached_table_is_verified_recomputed_or_refused(made, tmp_path, capsys, caplog):
    run = _copy(made, tmp_path)
    table = _stage(run, "enrich-rd-s0") / "real" / "table.tsv"
    data = table.read_bytes()
    table.write_bytes(data[: len(data) // 2])  # truncated mid-file (the tiny run's table may be a header only)
    toml = tmp_path / "run.toml"
    toml.write_text(made[1].read_text(encoding="utf-8").replace('out_dir = "."', f'out_dir = "{run}"'),
                    encoding="utf-8")
    assert main(["verify", str(run)]) == 1
    assert f"DAMAGED {table}: " in capsys.readouterr().out
    _one_error_line(capsys, main(["-q", "run", str(toml), "--no-recompute"]), f"{table}: ", "--no-recompute")
    with caplog.at_level("WARNING"):
        assert main(["-q", "run", str(toml)]) == 0
    assert "stage enrich-rd-s0: cached outputs fail verification" in caplog.text
    before = json.loads((made[0] / "report" / "summary.json").read_text(encoding="utf-8"))
    after = json.loads((run / "report" / "summary.json").read_text(encoding="utf-8"))
    assert after == before


def test_full_disk_loses_nothing_and_resumes_identically(made, tmp_path):
    """A run on a tmpfs too small for it fails with one line naming a file; on a bigger one it resumes."""
    mnt = tmp_path / "disk"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2400k", "tmpfs", str(mnt)], capture_output=True, check=False)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.decode(errors='replace').strip()}")
    try:
        toml = tmp_path / "run.toml"
        toml.write_text(made[1].read_text(encoding="utf-8").replace('out_dir = "."', f'out_dir = "{mnt / "o"}"'),
                        encoding="utf-8")
        p = subprocess.run([sys.executable, "-m", "rd_interp", "-q", "run", str(toml)], env=_env(),
                           capture_output=True, text=True, timeout=600, check=False)
        assert p.returncode == 1, p.stderr
        lines = p.stderr.splitlines()
        assert len(lines) == 1 and "Traceback" not in p.stderr, p.stderr
        assert re.match(rf"rd-interp: error: {re.escape(str(mnt))}/o/\S+: No space left on device; free some space "
                        "and rerun the same command", lines[0]), lines[0]
        assert not [f for f in (mnt / "o").rglob(".*.tmp*")]  # no half-written file left behind
        subprocess.run(["mount", "-o", "remount,size=64m", str(mnt)], check=True, capture_output=True)
        p = subprocess.run([sys.executable, "-m", "rd_interp", "-q", "run", str(toml)], env=_env(),
                           capture_output=True, text=True, timeout=600, check=False)
        assert p.returncode == 0, p.stderr
        before = json.loads((made[0] / "report" / "summary.json").read_text(encoding="utf-8"))
        after = json.loads((mnt / "o" / "report" / "summary.json").read_text(encoding="utf-8"))
        # run_id hashes the SAE stages' digests, and sae/cfg.json records this run's training throughput
        before.pop("run_id"), after.pop("run_id")
        assert after == before
    finally:
        subprocess.run(["umount", str(mnt)], capture_output=True, check=False)
