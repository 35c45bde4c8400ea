"""Extraction: exactness vs fair-esm, BOS/EOS removal, truncation/window modes, resume, refusal, CLI."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
import torch
from plm_fixtures import appends_die_after, save_tiny

from rd_interp.io.fasta import write_fasta
from rd_interp.io.store import StoreError
from rd_interp.plm import embed as emb
from rd_interp.plm.embed import EmbedConfig, _windows, embed_fasta, forward_layer

AA = np.array(list("ACDEFGHIKLMNPQRSTVWY"))


def _seqs(n, lo, hi, seed=0):
    rng = np.random.default_rng(seed)
    return ["".join(rng.choice(AA, size=int(rng.integers(lo, hi)))) for _ in range(n)]


@pytest.fixture
def tiny(tmp_path):
    path = tmp_path / "tiny.pt"
    model = save_tiny(path, layers=3, dim=16, heads=2)
    return path, model


def _reference(model, seq, layer=None):
    """Plain fair-esm: one sequence, BatchConverter, model(...)['representations']."""
    layer = model.num_layers if layer is None else layer
    _, _, toks = model.alphabet.get_batch_converter()([("x", seq)])
    with torch.no_grad():
        rep = model(toks, repr_layers=[layer])["representations"][layer]
    return rep[0, 1:len(seq) + 1].numpy()


def test_forward_layer_matches_fair_esm(tiny):
    _, model = tiny
    _, _, toks = model.alphabet.get_batch_converter()([("a", "MKTAYIAKQR"), ("b", "GAV")])  # padded batch
    with torch.no_grad():
        full = model(toks, repr_layers=[0, 1, 3])["representations"]
        for layer in (0, 1, 3):
            torch.testing.assert_close(forward_layer(model, toks, layer), full[layer], rtol=1e-6, atol=1e-6)


def test_embed_fasta_exact_and_ordered(tmp_path, tiny):
    path, model = tiny
    seqs = _seqs(12, 5, 40)
    fasta = tmp_path / "p.fasta"
    write_fasta(fasta, [(f"p{i}", s) for i, s in enumerate(seqs)])
    cfg = EmbedConfig(dtype="float32", max_tokens=200, max_residues=64)
    st = embed_fasta(fasta, tmp_path / "s", cfg, model=str(path), device="cpu", progress=False)
    assert st.n_proteins == 12 and st.dim == 16 and st.n_rows == sum(map(len, seqs))
    # rows in ascending length order, ties in file order
    lens = [len(s) for s in seqs]
    assert st.ids == [f"p{i}" for i in sorted(range(12), key=lambda i: (lens[i], i))]
    for i, s in enumerate(seqs):
        np.testing.assert_allclose(st.get(f"p{i}"), _reference(model, s), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(st.pooled()[st.index_of("p3")], _reference(model, seqs[3]).mean(0), rtol=1e-4, atol=1e-5)
    m = st.manifest
    assert m["model"] == "tiny" and m["layer"] == 3 and len(m["sequence_sha256"]) == 64 and m["dtype"] == "float32"
    # fair-esm's own layer code (fast=False) gives the same store to float rounding
    slow = embed_fasta(fasta, tmp_path / "slow", EmbedConfig(**{**cfg.__dict__, "fast": False}), model=str(path),
                       progress=False)
    np.testing.assert_allclose(np.concatenate(list(slow.iter_chunks())), np.concatenate(list(st.iter_chunks())),
                               rtol=1e-4, atol=1e-5)
    # an intermediate layer on request
    st1 = embed_fasta(fasta, tmp_path / "s1", EmbedConfig(layer=1, dtype="float32"), model=str(path), progress=False)
    np.testing.assert_allclose(st1.get("p0"), _reference(model, seqs[0], layer=1), rtol=1e-4, atol=1e-5)


def test_truncate_and_window_modes(tmp_path, tiny, caplog):
    path, model = tiny
    seqs = _seqs(3, 10, 20, seed=1) + _seqs(2, 50, 60, seed=2)
    fasta = tmp_path / "p.fasta"
    write_fasta(fasta, [(f"p{i}", s) for i, s in enumerate(seqs)])
    base = dict(dtype="float32", max_residues=20)
    caplog.set_level("INFO")
    st = embed_fasta(fasta, tmp_path / "t", EmbedConfig(**base), model=str(path), progress=False)
    assert st.manifest["n_truncated"] == 2
    assert "2 of 5 sequences are longer than 20 residues and are truncated" in caplog.text
    np.testing.assert_allclose(st.get("p3"), _reference(model, seqs[3][:20]), rtol=1e-4, atol=1e-5)
    assert st.get("p0").shape[0] == len(seqs[0])
    sw = embed_fasta(fasta, tmp_path / "w", EmbedConfig(**base, long_mode="window", window_overlap=8),
                     model=str(path), progress=False)
    x = sw.get("p4")
    assert x.shape == (len(seqs[4]), 16)
    plan = _windows(len(seqs[4]), 20, 8)
    assert plan[0][2] == 0 and plan[-1][3] == len(seqs[4])
    assert all(a[3] == b[2] for a, b in zip(plan, plan[1:]))  # contributions tile the protein
    for s, e, kf, kt in plan:
        np.testing.assert_allclose(x[kf:kt], _reference(model, seqs[4][s:e])[kf - s:kt - s], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(sw.get("p0"), st.get("p0"), rtol=0, atol=0)  # short ones unaffected


def _digest(path):
    return {str(f.relative_to(path)): hashlib.sha256(f.read_bytes()).hexdigest()
            for f in sorted(path.rglob("*")) if f.is_file()}


def test_interrupted_embedding_resumes_identically(tmp_path, tiny):
    path, _ = tiny
    seqs = _seqs(30, 5, 30, seed=3)
    fasta = tmp_path / "p.fasta"
    write_fasta(fasta, [(f"p{i}", s) for i, s in enumerate(seqs)])
    cfg = EmbedConfig(shard_rows=60, max_tokens=128, max_residues=60)
    ref = embed_fasta(fasta, tmp_path / "ref", cfg, model=str(path), progress=False)
    with appends_die_after(19), pytest.raises(KeyboardInterrupt):
        embed_fasta(fasta, tmp_path / "s", cfg, model=str(path), progress=False)
    st = embed_fasta(fasta, tmp_path / "s", cfg, model=str(path), progress=False)
    assert _digest(tmp_path / "s") == _digest(tmp_path / "ref") and st.n_rows == ref.n_rows


def test_other_model_layer_or_fasta_refused(tmp_path, tiny):
    path, _ = tiny
    fasta = tmp_path / "p.fasta"
    write_fasta(fasta, [(f"p{i}", s) for i, s in enumerate(_seqs(4, 5, 9))])
    embed_fasta(fasta, tmp_path / "s", EmbedConfig(), model=str(path), progress=False)
    with pytest.raises(StoreError, match="layer"):
        embed_fasta(fasta, tmp_path / "s", EmbedConfig(layer=1), model=str(path), progress=False)
    other = tmp_path / "other.pt"
    save_tiny(other, layers=3, dim=16, heads=2, seed=5)
    with pytest.raises(StoreError, match="model"):
        embed_fasta(fasta, tmp_path / "s", EmbedConfig(), model=str(other), progress=False)
    fasta2 = tmp_path / "q.fasta"
    write_fasta(fasta2, [("q0", "MKV")])
    with pytest.raises(StoreError, match="sequence_sha256"):
        embed_fasta(fasta2, tmp_path / "s", EmbedConfig(), model=str(path), progress=False)


def test_config_validation():
    with pytest.raises(ValueError, match="long_mode"):
        EmbedConfig(long_mode="chop").validate()
    with pytest.raises(ValueError, match="window_overlap"):
        EmbedConfig(long_mode="window", window_overlap=1022).validate()
    with pytest.raises(ValueError, match="CUDA"):
        emb.resolve_device("cuda") if not torch.cuda.is_available() else (_ for _ in ()).throw(ValueError("CUDA"))


def test_cli_embed(tmp_path, tiny, capsys):
    from rd_interp.cli import main

    path, _ = tiny
    fasta = tmp_path / "p.fasta"
    write_fasta(fasta, [(f"p{i}", s) for i, s in enumerate(_seqs(5, 5, 15))])
    rc = main(["embed", str(fasta), "--model", str(path), "--out", str(tmp_path / "s"), "--no-progress",
               "--dtype", "float32", "--max-tokens", "2048"])
    assert rc == 0
    assert "5 proteins" in capsys.readouterr().out
    from rd_interp.io.inputs import open_store
    from rd_interp.io.manifest import load_manifest

    m = load_manifest(tmp_path / "s")
    store, _ = open_store(tmp_path / "s")
    assert m.stage == "embed" and m.config["dtype"] == "float32" and m.config["max_tokens"] == 2048
    assert store.n_proteins == 5 and not m.verify(full=True)
    rc = main(["embed", str(fasta), "--model", str(path), "--out", str(tmp_path / "s"), "--max-tokens", "100"])
    assert rc == 1 and "max_tokens must be >= max_residues + 2" in capsys.readouterr().err
    rc = main(["embed", str(fasta), "--model", "nonexistent-model", "--out", str(tmp_path / "x")])
    assert rc == 1 and "unknown model" in capsys.readouterr().err


def test_bf16_on_cpu_only_when_asked_for(tmp_path, tiny):
    """autocast = "auto" keeps fp32 on the CPU (the default store equals fair-esm); "bf16" runs the matmuls in
    bf16 there: a different store, recorded in its manifest, close to fp32 but not equal."""
    path, _ = tiny
    seqs = _seqs(10, 5, 40, seed=3)
    fasta = tmp_path / "p.fasta"
    write_fasta(fasta, [(f"p{i}", s) for i, s in enumerate(seqs)])
    cpu = torch.device("cpu")
    assert emb._autocast_dtype(EmbedConfig(), cpu) is None
    assert emb._autocast_dtype(EmbedConfig(autocast="fp16"), cpu) is None
    assert emb._autocast_dtype(EmbedConfig(autocast="bf16"), cpu) == torch.bfloat16
    fp32 = embed_fasta(fasta, tmp_path / "a", EmbedConfig(dtype="float32"), model=str(path), progress=False)
    bf16 = embed_fasta(fasta, tmp_path / "b", EmbedConfig(dtype="float32", autocast="bf16"), model=str(path),
                       progress=False)
    assert fp32.manifest["autocast"] is None and bf16.manifest["autocast"] == "bfloat16"
    a, b = (np.concatenate(list(s.iter_chunks())).astype(np.float64) for s in (fp32, bf16))
    assert not np.array_equal(a, b)
    cos = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
    assert cos.min() > 0.99
