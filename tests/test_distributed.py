"""torch.distributed scale-out, in real 2-process torchrun groups (gloo, CPU) against one process.

Embedding: same ids, same order, same values, bit for bit. SAE training: the same weights to float rounding."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from plm_fixtures import appends_die_after, save_tiny

from rd_interp.io.fasta import write_fasta
from rd_interp.io.store import EmbeddingStore, StoreError, StoreWriter
from rd_interp.plm.embed import EmbedConfig, embed_fasta, rank_of_units
from rd_interp.plm.sharded import shares_dir

ROOT = Path(__file__).resolve().parents[1]
AA = np.array(list("ACDEFGHIKLMNPQRSTVWY"))


def _proteins(n, seed=0):
    rng = np.random.default_rng(seed)
    lens = rng.integers(5, 40, size=n)
    lens[[3, 11]] = [95, 130]  # longer than max_residues below: windows spanning several batches
    return [(f"p{i}", "".join(rng.choice(AA, size=int(L)))) for i, L in enumerate(lens)]


def _same(a: EmbeddingStore, b: EmbeddingStore) -> None:
    assert a.ids == b.ids
    assert np.array_equal(a.offsets, b.offsets) and np.array_equal(a.lengths, b.lengths)
    assert np.array_equal(a.rows(0, a.n_rows), b.rows(0, b.n_rows))  # exact, not close
    assert a.settings == b.settings


def test_rank_of_units_is_contiguous_balanced_and_complete():
    costs = [1] * 50 + [10] * 10
    for size in (1, 2, 3, 7):
        r = rank_of_units(costs, size)
        assert np.all(np.diff(r) >= 0) and r[0] == 0 and r[-1] == size - 1  # contiguous, in rank order
        load = np.bincount(r, weights=costs, minlength=size)
        assert np.abs(load - sum(costs) / size).max() <= max(costs)  # each share within one unit of 1/size
    assert rank_of_units([], 4).size == 0 and rank_of_units([5, 5], 4).tolist() == [1, 3]


@pytest.mark.parametrize("long_mode", ["truncate", "window"])
def test_shares_concatenate_to_the_single_process_store(tmp_path, long_mode):
    """Each rank's share computes the single-process batches; adopting the shares in rank order gives the
    single-process store exactly (windowed proteins never split across ranks)."""
    model = tmp_path / "tiny.pt"
    save_tiny(model, layers=2, dim=16, heads=2)
    fasta = tmp_path / "p.fasta"
    write_fasta(fasta, _proteins(40))
    cfg = EmbedConfig(dtype="float32", max_tokens=128, max_residues=40, window_overlap=8, long_mode=long_mode,
                      shard_rows=50)
    one = embed_fasta(fasta, tmp_path / "one", cfg, model=str(model), progress=False)
    parts = [embed_fasta(fasta, tmp_path / f"share{r}", cfg, model=str(model), progress=False, rank=r,
                         world_size=3) for r in range(3)]
    assert sum(p.n_proteins for p in parts) == 40 and min(p.n_proteins for p in parts) > 0
    assert parts[1].manifest["share"] == {"rank": 1, "world_size": 3}
    settings = {k: v for k, v in parts[0].settings.items() if k != "share"}
    w = StoreWriter(tmp_path / "merged", dim=16, manifest=settings, dtype="float32", shard_rows=50)
    for p in parts:
        w.adopt(p)
    w.adopt(parts[0])  # already taken: skipped, as in a resumed merge
    _same(w.close(), one)
    w2 = StoreWriter(tmp_path / "bad", dim=16, manifest=settings, dtype="float16", shard_rows=50)
    with pytest.raises(StoreError, match="float32"):
        w2.adopt(parts[0])


def _torchrun(args, env_extra=None):
    env = {**os.environ, "OMP_NUM_THREADS": "1", **(env_extra or {})}
    env.pop("RANK", None), env.pop("WORLD_SIZE", None)
    return subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                           "-m", "rd_interp", *args], cwd=ROOT, env=env, capture_output=True, text=True, check=False,
                          timeout=300)


def test_torchrun_two_ranks_gloo_equal_one_process_and_resume_a_killed_rank(tmp_path):
    """Real 2-process group (torchrun, gloo): the store equals a single-process run; a rank killed half-way
    (its share left partial) resumes on the rerun; the manifest records world size and backend."""
    import torch

    model = tmp_path / "tiny.pt"
    save_tiny(model, layers=2, dim=16, heads=2)
    fasta = tmp_path / "p.fasta"
    write_fasta(fasta, _proteins(60, seed=1))
    opts = ["--model", str(model), "--no-progress", "--threads", "1", "--dtype", "float32", "--max-tokens", "256",
            "--shard-rows", "64", "--max-residues", "100", "--long-mode", "window", "--window-overlap", "20"]
    cfg = EmbedConfig(dtype="float32", max_tokens=256, shard_rows=64, max_residues=100, long_mode="window",
                      window_overlap=20)
    torch.set_num_threads(1)  # the ranks run one thread each: the same kernels as this reference
    one = embed_fasta(fasta, tmp_path / "one" / "store", cfg, model=str(model), progress=False)
    torch.set_num_threads(2)

    # rank 1 "was killed" after committing part of its share
    out = tmp_path / "dist"
    share1 = shares_dir(out / "store") / "rank-00001-of-00002"
    with appends_die_after(8), pytest.raises(KeyboardInterrupt):
        embed_fasta(fasta, share1, cfg, model=str(model), progress=False, rank=1, world_size=2)
    assert (share1 / "shards" / "shard-00000.json").is_file()
    kept = (share1 / "shards" / "shard-00000.npy").stat().st_ino

    r = _torchrun(["embed", str(fasta), "--out", str(out), *opts])
    assert r.returncode == 0, r.stderr[-3000:]
    # rank 1 took up its committed shard (not recomputed): the merged store holds that very file
    assert kept in {f.stat().st_ino for f in (out / "store" / "shards").glob("*.npy")}
    _same(EmbeddingStore(out / "store"), one)
    assert not shares_dir(out / "store").exists()
    result = json.loads((out / "manifest.json").read_text())["result"]
    assert result["world_size"] == 2 and result["backend"] == "gloo"
    assert r.stdout.count("60 proteins") == 1  # rank 0 alone reports

    # bad input on a 2-rank run: one line from rank 0, no traceback of ours (torchrun adds its own report), no hang
    r = _torchrun(["embed", str(tmp_path / "missing.fasta"), "--out", str(tmp_path / "x"), *opts])
    ours = [line for line in r.stderr.splitlines() if line.startswith("rd-interp:")]
    assert r.returncode != 0 and len(ours) == 1 and "missing.fasta: file not found" in ours[0]
    assert str(ROOT / "rd_interp") not in r.stderr


def test_torchrun_sae_training_equals_one_process(tmp_path):
    """Two ranks, each reading its half of every global batch, with AuxK active: the weights equal a
    single-process run with the same global batch and seed to float rounding; cfg.json records the group."""
    import torch

    from rd_interp.sae.io import load_sae

    rng = np.random.default_rng(0)
    w = StoreWriter(tmp_path / "store", dim=16, manifest={"model": "synthetic"}, dtype="float32", shard_rows=500)
    basis = rng.normal(size=(24, 16))
    for i in range(150):
        codes = rng.exponential(size=(20, 24)) * (rng.random((20, 24)) < 0.15)
        w.append(f"p{i}", codes @ basis + 0.05 * rng.normal(size=(20, 16)))
    w.close()
    opts = ["sae", "train", "--store", str(tmp_path / "store"), "--no-progress", "--threads", "1", "--n-latents", "64",
            "--k", "4", "--k-ratio", "0", "--batch-size", "256", "--n-steps", "40", "--dead-window", "1024",
            "--checkpoint-every", "10"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    one = subprocess.run([sys.executable, "-m", "rd_interp", *opts, "--out", str(tmp_path / "one")], cwd=ROOT,
                         env=env, capture_output=True, text=True, check=False, timeout=300)
    assert one.returncode == 0, one.stderr[-2000:]
    two = _torchrun([*opts, "--out", str(tmp_path / "two")])
    assert two.returncode == 0, two.stderr[-3000:]
    a, b = load_sae(tmp_path / "one" / "sae"), load_sae(tmp_path / "two" / "sae")
    assert a.provenance.train["world_size"] == 1 and b.provenance.train["world_size"] == 2
    assert b.provenance.train["backend"] == "gloo"
    assert a.provenance.train["dead_fraction_train"] == b.provenance.train["dead_fraction_train"]
    worst = 0.0
    for (name, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items()):
        assert torch.equal(x.isnan(), y.isnan()), name  # (the TopK SAE's unused threshold is NaN in both)
        x, y = x.nan_to_num(), y.nan_to_num()
        scale = float(x.abs().max()) or 1.0
        worst = max(worst, float((x - y).abs().max()) / scale)
        assert float((x - y).abs().max()) <= 1e-4 * scale, name
    print(f"largest relative weight difference, 2 ranks vs 1: {worst:.2e}")
    # and the difference is rounding, not a different run: another seed is far away
    other = subprocess.run([sys.executable, "-m", "rd_interp", *opts, "--seed", "1", "--out", str(tmp_path / "s1")],
                           cwd=ROOT, env=env, capture_output=True, text=True, check=False, timeout=300)
    assert other.returncode == 0
    c = load_sae(tmp_path / "s1" / "sae")
    assert float((a.W_dec - c.W_dec).detach().abs().max()) > 100 * float((a.W_dec - b.W_dec).detach().abs().max())
    assert torch.equal(a.pre_mean, b.pre_mean)


def test_torchrun_pipeline_spreads_embedding_and_sae_training(tmp_path):
    """`torchrun -m rd_interp run CONFIG`: the embed stages and the SAE are spread over 2 ranks, the rest runs
    on rank 0; stores equal a one-process run exactly, SAEs to float rounding."""
    from rd_interp.config import RunConfig
    from rd_interp.pipeline.run import run_pipeline
    from rd_interp.plm.family import MemberSpec, alphabet, build_model, save_esm2_checkpoint
    from rd_interp.sae.io import load_sae

    family = []
    for i, (layers, dim) in enumerate([(1, 16), (2, 32)]):
        p = tmp_path / f"tiny{dim}.pt"
        save_esm2_checkpoint(build_model(MemberSpec(f"tiny{i}", layers, dim, 2, 1000), alphabet(), seed=i), p,
                             half=False)
        family.append(str(p))

    def config(out):
        cfg = RunConfig(out_dir=str(out), device="cpu")
        cfg.data.max_proteins, cfg.data.max_length, cfg.models.family = 60, 200, family
        cfg.distill.train_proteins = 30
        cfg.sae.n_latents, cfg.sae.k_ratio, cfg.sae.n_steps, cfg.sae.batch_size = 32, 0.125, 15, 128
        cfg.sae.spaces = ["large", "rd"]
        cfg.probe.enabled = False
        cfg.validate()
        return cfg

    (tmp_path / "run.toml").write_text(config(tmp_path / "two").to_toml())
    r = _torchrun(["run", str(tmp_path / "run.toml"), "--until", "sae"], {"OMP_NUM_THREADS": "1"})
    assert r.returncode == 0, r.stderr[-3000:]
    import torch

    torch.set_num_threads(1)
    try:
        one = run_pipeline(config(tmp_path / "one"), until="sae")
    finally:
        torch.set_num_threads(2)

    def stage(root, prefix):
        (d,) = [p for p in (root / "stages").iterdir() if p.name.startswith(prefix)]
        return json.loads((d / "manifest.json").read_text()), d

    for name in ("embed-tiny16", "embed-tiny32", "fitembed-tiny32"):
        (m2, d2), (_, d1) = stage(tmp_path / "two", name), stage(tmp_path / "one", name)
        assert m2["result"]["world_size"] == 2
        _same(EmbeddingStore(d2 / "store"), EmbeddingStore(d1 / "store"))
    for space in ("large", "rd"):
        (m2, d2), (_, d1) = stage(tmp_path / "two", f"sae-{space}-s0"), stage(tmp_path / "one", f"sae-{space}-s0")
        a, b = load_sae(d1 / "sae"), load_sae(d2 / "sae")
        assert b.provenance.train["world_size"] == 2
        for (name, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items()):
            x, y = x.nan_to_num(), y.nan_to_num()
            assert float((x - y).abs().max()) <= 1e-4 * (float(x.abs().max()) or 1.0), (space, name)
    assert one.stages  # the one-process run finished too


def _broadcast_worker(rank: int, world_size: int, port: int, out_dir: str) -> None:
    import torch.distributed as tdist

    from rd_interp import dist

    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world_size), MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    tdist.init_process_group("gloo", rank=rank, world_size=world_size)
    rng = np.random.default_rng(7)
    rows = rng.integers(0, 1 << 40, 100_003)  # odd byte count: the last chunk is short
    table = rng.normal(size=(321, 7)).astype(np.float32)
    got_rows = dist.broadcast_array(rows if rank == 0 else None, chunk_bytes=4099)
    got_table = dist.broadcast_array(table if rank == 0 else None, chunk_bytes=1000)
    np.save(Path(out_dir) / f"rows{rank}.npy", got_rows)
    np.save(Path(out_dir) / f"table{rank}.npy", got_table)
    tdist.destroy_process_group()


def test_broadcast_array_sends_raw_bytes_in_chunks(tmp_path):
    """Large arrays of a job (a training index list) reach every rank exactly, in bounded chunks (gloo)."""
    import socket

    import torch.multiprocessing as mp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(_broadcast_worker, args=(2, port, str(tmp_path)), nprocs=2, join=True)
    rng = np.random.default_rng(7)
    rows, table = rng.integers(0, 1 << 40, 100_003), rng.normal(size=(321, 7)).astype(np.float32)
    for r in (0, 1):
        got_rows, got_table = np.load(tmp_path / f"rows{r}.npy"), np.load(tmp_path / f"table{r}.npy")
        assert got_rows.dtype == rows.dtype and np.array_equal(got_rows, rows)
        assert got_table.dtype == table.dtype and got_table.shape == table.shape and np.array_equal(got_table, table)
