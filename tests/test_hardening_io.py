"""Hardening of the lower layers: damaged binary files, UTF-8 inputs, file permissions, write failures, the
per-stage lock, checkpoints chosen by content, and what the CLI does to the terminal (issue 12)."""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from rd_interp.cli import main
from rd_interp.io.integrity import CorruptFileError, load_npy, load_sparse_npz

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(__file__).parent / "data"


def _truncate(path: Path, keep: float = 0.5) -> None:
    raw = path.read_bytes()
    path.write_bytes(raw[: int(len(raw) * keep)])


def _cli(*args: str, env: dict | None = None, **kw) -> subprocess.CompletedProcess:
    """The CLI in a fresh interpreter (what a user's shell runs), with this checkout first on the path."""
    e = {k: v for k, v in os.environ.items() if k not in ("PYTHONIOENCODING", "PYTHONUTF8", "LC_ALL", "LANG")}
    e["PYTHONPATH"] = str(ROOT) + os.pathsep + e.get("PYTHONPATH", "")
    e.update(env or {})
    return subprocess.run([sys.executable, "-m", "rd_interp", *args], env=e, capture_output=True, check=False, **kw)


# -- integrity layer ------------------------------------------------------------------------------------------
def test_truncated_npy_is_named_not_mmap_error(tmp_path):
    p = tmp_path / "a.npy"
    np.save(p, np.arange(1000, dtype=np.float32).reshape(100, 10))
    _truncate(p)
    with pytest.raises(CorruptFileError, match=r"a\.npy: .* has \d+ bytes, its header implies \d+ \(truncated\); fix it"):
        load_npy(p, "test array", "fix it", mmap=True)


def test_truncated_npz_is_named_not_badzipfile(tmp_path):
    p = tmp_path / "scores.npz"
    sp.save_npz(p, sp.random(50, 20, density=0.2, format="csr", random_state=0))
    _truncate(p)
    with pytest.raises(CorruptFileError, match=r"scores\.npz: cannot read this score matrix \(truncated or corrupt"):
        load_sparse_npz(p, "score matrix", "rerun")


def test_load_scores_checks_rows_against_protein_list(tmp_path):
    from rd_interp.sae.run import load_scores, save_scores

    save_scores(tmp_path, sp.random(5, 4, density=0.5, format="csr", random_state=0), list("abcde"))
    assert load_scores(tmp_path)[0].shape == (5, 4)
    (tmp_path / "proteins.txt").write_text("a\nb\n", encoding="utf-8")
    with pytest.raises(CorruptFileError, match=r"scores\.npz: 5 rows but .*proteins\.txt lists 2 proteins"):
        load_scores(tmp_path)
    _truncate(tmp_path / "scores.npz")
    with pytest.raises(CorruptFileError, match=r"scores\.npz: cannot read .*; recompute them"):
        load_scores(tmp_path)


def _store(path: Path, n: int = 6, shard_rows: int = 8):
    from rd_interp.io.store import StoreWriter

    rng = np.random.default_rng(0)
    with StoreWriter(path, dim=4, manifest={"model": "t"}, dtype="float32", shard_rows=shard_rows) as w:
        for i in range(n):
            w.append(f"p{i}", rng.normal(size=(3 + i % 3, 4)))
    return path


def test_truncated_store_shard_names_file_and_fix(tmp_path):
    from rd_interp.io.store import EmbeddingStore, StoreError

    d = _store(tmp_path / "s")
    _truncate(d / "shards" / "shard-00001.npy", 0.7)
    with pytest.raises(StoreError, match=r"shard-00001\.npy: embedding shard has \d+ bytes.*truncated.*rd-interp run"):
        EmbeddingStore(d)
    (d / "offsets.npy").write_bytes(b"garbage")
    with pytest.raises(StoreError, match=r"offsets\.npy: cannot read this store index"):
        EmbeddingStore(d)


def test_store_resume_reembeds_from_a_damaged_shard(tmp_path, caplog):
    """A damaged committed shard (and those after it) is dropped on resume; the result equals a clean store."""
    from rd_interp.io.store import EmbeddingStore, StoreWriter

    clean = EmbeddingStore(_store(tmp_path / "clean"))
    d = _store(tmp_path / "damaged")
    arr = np.load(d / "shards" / "shard-00001.npy")
    arr[0, 0] += 1  # edited in place: same size, wrong bytes
    np.save(d / "shards" / "shard-00001.npy", arr)
    rng = np.random.default_rng(0)
    data = [(f"p{i}", rng.normal(size=(3 + i % 3, 4))) for i in range(6)]
    with caplog.at_level("WARNING"):
        w = StoreWriter(d, dim=4, manifest={"model": "t"}, dtype="float32", shard_rows=8)
    assert "shard-00001.npy: sha256 differs from its record" in caplog.text
    assert w.done == {"p0", "p1"}  # shard 0 kept, shards 1.. dropped
    for pid, x in data:
        if pid not in w.done:
            w.append(pid, x)
    again = w.close()
    assert again.ids == clean.ids
    assert np.array_equal(again.rows(0, again.n_rows), clean.rows(0, clean.n_rows))


def _sae(tmp_path: Path) -> Path:
    from rd_interp.sae.io import save_sae
    from rd_interp.sae.model import SAEConfig, SparseAutoencoder

    return save_sae(SparseAutoencoder(SAEConfig(d_in=4, n_latents=8, k=2), seed=0), tmp_path / "sae")


def test_truncated_sae_weights_name_file_and_fix(tmp_path):
    from rd_interp.sae.io import load_sae

    d = _sae(tmp_path)
    _truncate(d / "sae.safetensors")
    with pytest.raises(CorruptFileError, match=r"sae\.safetensors: checksum does not match cfg\.json .*retrain it"):
        load_sae(d)
    cfg = json.loads((d / "cfg.json").read_text(encoding="utf-8"))
    cfg.pop("sha256")  # no checksum to compare with: the parser's failure is still named
    (d / "cfg.json").write_text(json.dumps(cfg), encoding="utf-8")
    with pytest.raises(CorruptFileError, match=r"sae\.safetensors: cannot read this SAE weights file"):
        load_sae(d)
    (d / "cfg.json").write_text('{"format": "rd_interp.sae/1", "d_in"', encoding="utf-8")
    with pytest.raises(ValueError, match=r"cfg\.json: not valid JSON"):
        load_sae(d)


def test_truncated_training_checkpoint_restarts_training(tmp_path, caplog):
    """A damaged checkpoint.pt is discarded with a warning naming it; training restarts to the same SAE."""
    from rd_interp.sae.model import SAEConfig
    from rd_interp.sae.train import CHECKPOINT, TrainConfig, train_sae

    x = np.random.default_rng(0).normal(size=(512, 8)).astype(np.float32)
    args = {"sae_cfg": SAEConfig(n_latents=16, k=2), "seed": 0, "device": "cpu", "progress": False,
            "train_cfg": TrainConfig(batch_size=64, n_steps=8, checkpoint_every=2)}
    ref = train_sae(x, **args)
    ck = tmp_path / "ck"
    train_sae(x, **args, checkpoint_dir=ck, stop_after=4)
    _truncate(ck / CHECKPOINT)
    with caplog.at_level("WARNING"):
        sae = train_sae(x, **args, checkpoint_dir=ck)
    assert f"{ck / CHECKPOINT}: cannot read this SAE training checkpoint (truncated or corrupt" in caplog.text
    assert "training from step 0" in caplog.text
    assert torch.equal(sae.W_dec, ref.W_dec)


# -- checkpoints of language models -----------------------------------------------------------------------------
def test_esm2_checkpoint_named_like_esm1_loads_by_content(tmp_path):
    from rd_interp.plm.esm import load_model
    from rd_interp.plm.family import MemberSpec, alphabet, build_model, save_esm2_checkpoint

    p = tmp_path / "esm_35m_finetuned.pt"  # starts with "esm" but not "esm2": fair-esm took it for ESM-1
    save_esm2_checkpoint(build_model(MemberSpec("t", 1, 16, 2, 100), alphabet(), seed=0), p, half=False)
    _, _, info = load_model(p)
    assert info.embed_dim == 16 and info.name == "esm_35m_finetuned"
    _truncate(p)
    with pytest.raises(ValueError, match=r"esm_35m_finetuned\.pt: not a readable torch checkpoint \(truncated or "
                                         r"corrupt.*download or copy it again"):
        load_model(p)


def test_checkpoint_without_model_description_is_refused(tmp_path):
    from rd_interp.plm.esm import builder_name

    assert builder_name({"cfg": {"model": object()}, "model": {}}, "x.pt") == "esm2_checkpoint"
    assert builder_name({"args": object(), "model": {}}, "x.pt") == "esm1_checkpoint"
    with pytest.raises(ValueError, match=r"x\.pt: not a fair-esm checkpoint: it has neither"):
        builder_name({"model": {}}, "x.pt")


# -- UTF-8 inputs -----------------------------------------------------------------------------------------------
def test_bom_and_non_ascii_headers_round_trip(tmp_path):
    from rd_interp.io.fasta import read_fasta, write_fasta

    src = tmp_path / "in.fasta"
    src.write_bytes("\ufeff>P1_é Protéine 蛋白质\nACDE\n>P2\nKLMN\n".encode())
    recs = list(read_fasta(src))
    assert [(r.id, r.description, r.line) for r in recs] == [("P1_é", "Protéine 蛋白质", 1), ("P2", "", 3)]
    out = tmp_path / "out.fasta"
    write_fasta(out, recs)  # was encoding="ascii": UnicodeEncodeError naming nothing
    assert [(r.id, r.description) for r in read_fasta(out)] == [("P1_é", "Protéine 蛋白质"), ("P2", "")]


def test_bom_in_annotation_tsv_and_obo(tmp_path):
    from rd_interp.io.annotations import read_annotations
    from rd_interp.io.go import Ontology

    obo = tmp_path / "bom.obo"
    obo.write_bytes(b"\xef\xbb\xbf" + (DATA / "io" / "mini.obo").read_bytes())
    onto = Ontology.load(obo)
    tsv = tmp_path / "a.tsv"
    tsv.write_bytes("\ufeffprotein_id\tgo_id\tnamespace\nP1_é\tGO:0000002\tBP\n".encode())
    ann = read_annotations(tsv, ontology=onto)
    assert dict(ann) == {"P1_é": frozenset({"GO:0000002"})}


def test_goatools_reads_the_obo_as_utf8_whatever_the_locale(tmp_path):
    """goatools opens the OBO with the locale's encoding; under an ASCII locale a non-ASCII name failed."""
    text = (DATA / "io" / "mini.obo").read_text(encoding="utf-8")
    obo = tmp_path / "accents.obo"
    obo.write_text(text.replace("name: ", "name: é ", 1), encoding="utf-8")
    code = ("import sys, locale; from rd_interp.io.go import Ontology; o = Ontology.load(sys.argv[1]); "
            "print(locale.getpreferredencoding(False), sum(o.name(t).startswith('\\u00e9 ') for t in o.terms()))")
    e = {k: v for k, v in os.environ.items() if k not in ("PYTHONIOENCODING", "PYTHONUTF8", "LANG")}
    e.update(PYTHONPATH=str(ROOT), LC_ALL="C", PYTHONUTF8="0", PYTHONCOERCECLOCALE="0",
             RD_INTERP_CACHE=str(tmp_path / "cache"))
    r = subprocess.run([sys.executable, "-c", code, str(obo)], env=e, capture_output=True, text=True, timeout=120, check=False)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["ANSI_X3.4-1968", "1"]  # an ASCII locale, and the accented name read right


# -- output files ------------------------------------------------------------------------------------------------
def test_atomic_outputs_get_umask_permissions_even_when_the_writer_replaces_the_file(tmp_path):
    mask = os.umask(0)
    os.umask(mask)
    d = _sae(tmp_path)
    for f in ("sae.safetensors", "cfg.json"):
        assert (d / f).stat().st_mode & 0o777 == 0o666 & ~mask, f  # safetensors made 0600


def test_write_error_names_the_file(tmp_path, monkeypatch):
    from rd_interp.io import atomic

    def no_space(self, data):
        raise OSError(errno.ENOSPC, "No space left on device")  # as a write() raises it: no file name

    monkeypatch.setattr(Path, "write_bytes", no_space)
    with pytest.raises(OSError) as info:
        atomic.write_bytes(tmp_path / "x.bin", b"data")
    assert info.value.errno == errno.ENOSPC and info.value.filename == str(tmp_path / "x.bin")
    assert not list(tmp_path.iterdir())  # no temp file left behind
    monkeypatch.undo()

    def torch_like(self, data):  # writers that are not file objects raise their own error on a full disk
        raise RuntimeError("PytorchStreamWriter failed writing file data/0: file write failed")

    monkeypatch.setattr(Path, "write_bytes", torch_like)
    monkeypatch.setattr(atomic.shutil, "disk_usage", lambda p: shutil._ntuple_diskusage(10, 10, 0))
    with pytest.raises(OSError) as info:
        atomic.write_bytes(tmp_path / "y.bin", b"data")
    assert info.value.errno == errno.ENOSPC and info.value.filename == str(tmp_path / "y.bin")


def test_out_dir_that_is_a_file_or_unwritable(tmp_path, capsys):
    f = tmp_path / "afile"
    f.write_text("mine", encoding="utf-8")
    for out, what in ((f, "exists and is not a folder"), (f / "sub", "cannot write in the output folder")):
        cfg = tmp_path / "c.toml"
        cfg.write_text(f'out_dir = "{out}"\n', encoding="utf-8")
        rc = main(["-q", "run", str(cfg)])
        err = capsys.readouterr().err.splitlines()
        assert rc == 1 and len(err) == 1 and err[0].startswith(f"rd-interp: error: {out}: ") and what in err[0], err
    assert f.read_text(encoding="utf-8") == "mine"


def _mount_tmpfs(path: Path, size: str, ro: bool = False) -> bool:
    path.mkdir(parents=True, exist_ok=True)
    opts = f"size={size}" + (",ro" if ro else "")
    try:
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(path)], capture_output=True, timeout=20, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return r.returncode == 0


def test_out_dir_on_a_read_only_file_system(tmp_path, capsys):
    mnt = tmp_path / "ro"
    if not _mount_tmpfs(mnt, "1m", ro=True):
        if os.geteuid() == 0:
            pytest.skip("cannot mount a read-only tmpfs here (and root writes through permissions)")
        mnt.chmod(0o500)  # a non-root user: a folder without write permission
    try:
        cfg = tmp_path / "c.toml"
        cfg.write_text(f'out_dir = "{mnt / "out"}"\n', encoding="utf-8")
        rc = main(["-q", "run", str(cfg)])
        err = capsys.readouterr().err.splitlines()
        assert rc == 1 and len(err) == 1, err
        assert err[0].startswith(f"rd-interp: error: {mnt / 'out'}: cannot write in the output folder"), err
    finally:
        subprocess.run(["umount", str(mnt)], capture_output=True, check=False)
        mnt.chmod(0o700)


# -- the per-stage lock -----------------------------------------------------------------------------------------
_LOCK_SCRIPT = textwrap.dedent("""
    import logging, sys, time
    from pathlib import Path
    from rd_interp.io.manifest import write_manifest
    from rd_interp.pipeline.cache import Stage, run_stage
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    root, counter = Path(sys.argv[1]), Path(sys.argv[2])
    stage = Stage(name="slow", kind="slow", key="k" * 64, dir=root / "stages" / "slow-kkkk")
    def make(d):
        with open(counter, "a") as fh:
            fh.write("made\\n")
        time.sleep(1.5)
        (d / "out.txt").write_text("x")
        m = write_manifest(d, stage="slow", config={}, inputs={}, outputs=["out.txt"])
        m.key = stage.key
        m.write()
        return m
    run_stage(stage, make)
""")


def test_two_processes_on_one_stage_do_the_work_once(tmp_path):
    script = tmp_path / "lock.py"
    script.write_text(_LOCK_SCRIPT, encoding="utf-8")
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    counter = tmp_path / "made.txt"
    procs = [subprocess.Popen([sys.executable, str(script), str(tmp_path / "out"), str(counter)], env=env,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    errs = [p.communicate(timeout=120)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], errs
    assert counter.read_text().splitlines() == ["made"]  # one process made it, the other reused it
    assert sum("stage slow: cached" in e for e in errs) == 1


def test_waiting_process_says_which_pid_holds_the_lock(tmp_path):
    from rd_interp.pipeline.cache import Stage, stage_lock

    script = tmp_path / "lock.py"
    script.write_text(_LOCK_SCRIPT, encoding="utf-8")
    root = tmp_path / "out"
    stage = Stage(name="slow", kind="slow", key="k" * 64, dir=root / "stages" / "slow-kkkk")
    with stage_lock(stage):
        p = subprocess.Popen([sys.executable, str(script), str(root), str(tmp_path / "made.txt")],
                             env=dict(os.environ, PYTHONPATH=str(ROOT)), stderr=subprocess.PIPE, text=True)
        line = p.stderr.readline()  # blocks until the other process reports the lock holder
        assert f"stage slow: another rd-interp process (pid {os.getpid()} on " in line, line
        assert not (tmp_path / "made.txt").exists()  # it waits: nothing done while we hold the lock
    assert p.wait(timeout=120) == 0
    assert (tmp_path / "made.txt").read_text() == "made\n"


# -- the terminal ------------------------------------------------------------------------------------------------
def test_control_characters_are_escaped_on_the_terminal(capsys):
    from rd_interp.cli._term import sanitize

    assert sanitize("a\x1b[2Jb\u202ec\td\n", keep="\t\n") == "a\\x1b[2Jb\\u202ec\td\n"
    bad = DATA / "bad" / "fasta" / "escape_in_sequence.fasta"
    assert main(["data", "check", str(bad)]) == 1
    err = capsys.readouterr().err
    assert "\x1b" not in err and "'\\x1b'" in err


def test_data_check_into_a_closed_pipe_exits_quietly(tmp_path):
    """`rd-interp data check FILE | head` when head has already exited: no BrokenPipeError traceback."""
    fasta = tmp_path / "p.fasta"
    fasta.write_text("".join(f">p{i}\nACDEFGHIK\n" for i in range(50)), encoding="utf-8")
    e = {k: v for k, v in os.environ.items() if k != "PYTHONIOENCODING"}
    e["PYTHONPATH"] = str(ROOT)
    p = subprocess.Popen([sys.executable, "-m", "rd_interp", "data", "check", str(fasta), "--json"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=e)
    p.stdout.close()  # the reader is gone before anything is written
    err = p.stderr.read().decode()
    assert p.wait(timeout=120) == 0, err
    assert err == ""


def test_non_ascii_ids_under_an_ascii_locale(tmp_path):
    """LC_ALL=C without Python's UTF-8 mode: files are still read as UTF-8, the terminal never crashes."""
    fasta = tmp_path / "p.fasta"
    fasta.write_bytes("\ufeff>P1_é Protéine\nACDE\n>P2_蛋白\nKLMN\n".encode())
    ann = tmp_path / "a.tsv"
    ann.write_bytes("\ufeffP1_é\tGO:0000002\nP2_蛋白\tGO:0000003\n".encode())
    r = _cli("data", "check", str(fasta), "--annotations", str(ann), "--obo", str(DATA / "io" / "mini.obo"),
             env={"LC_ALL": "C", "PYTHONUTF8": "0", "PYTHONCOERCECLOCALE": "0"})
    assert r.returncode == 0, r.stderr
    assert b"overlap: 2 of 2 FASTA proteins annotated" in r.stdout
    assert r.stderr == b""
    bad = tmp_path / "bad.fasta"
    bad.write_bytes(">P1_é\nAC*E\n".encode())
    r = _cli("explain", str(tmp_path), "ACDE", env={"LC_ALL": "C", "PYTHONUTF8": "0", "PYTHONCOERCECLOCALE": "0"})
    assert r.returncode == 1 and b"Traceback" not in r.stderr and len(r.stderr.splitlines()) == 1, r.stderr
    r = _cli("data", "check", str(bad), env={"LC_ALL": "C", "PYTHONUTF8": "0", "PYTHONCOERCECLOCALE": "0"})
    assert r.returncode == 1 and len(r.stderr.splitlines()) == 1, r.stderr
    assert b"bad.fasta:2: invalid residue '*'" in r.stderr and b"Traceback" not in r.stderr


def test_keyboard_interrupt_is_one_line(monkeypatch, capsys):
    import rd_interp.cli.run as run_cli

    def boom(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(run_cli, "_cmd_config", boom)
    assert main(["config"]) == 130
    assert capsys.readouterr().err.splitlines() == [
        "rd-interp: interrupted; rerun the same command to resume (finished work is kept)"]

