"""Reverse distillation over embedding stores: pairing checks, streamed fit, rd stores, resume, CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest

from rd_interp.cli import main
from rd_interp.distill import ReverseDistillationChain, ReverseDistiller, paired_chunks
from rd_interp.io.store import EmbeddingStore, StoreWriter


def _family(n_prot=40, widths=(6, 10, 16), seed=0):
    rng = np.random.default_rng(seed)
    lengths = rng.integers(5, 60, n_prot)
    n = int(lengths.sum())
    F = rng.standard_normal((n, 24))
    H = [F[:, : w + 2] @ rng.standard_normal((w + 2, w)) + 0.1 * rng.standard_normal((n, w)) + 1.5 for w in widths]
    return [h.astype(np.float32) for h in H], lengths


def _write(path, H, lengths, model, dtype="float32", ids=None):
    ids = ids or [f"P{i:04d}" for i in range(len(lengths))]
    w = StoreWriter(path, dim=H.shape[1], manifest={"model": model}, dtype=dtype, shard_rows=300)
    o = 0
    for pid, L in zip(ids, lengths):
        w.append(pid, H[o:o + L])
        o += L
    return w.close()


@pytest.fixture()
def stores(tmp_path):
    H, lengths = _family()
    st = [_write(tmp_path / f"s{i}", h, lengths, m) for i, (h, m) in enumerate(zip(H, ["mini-S", "mini-M", "mini-L"]))]
    return H, lengths, st


def test_paired_chunks_and_fit_over_stores_equals_arrays(stores):
    H, lengths, st = stores
    got = list(paired_chunks(st[0], st[1], chunk_rows=97))
    assert np.array_equal(np.concatenate([a for a, _ in got]), H[0])
    assert np.array_equal(np.concatenate([b for _, b in got]), H[1])
    a = ReverseDistiller().fit(H[0], H[1])
    b = ReverseDistiller(chunk_rows=97).fit(st[0], st[1])
    assert (b.small_name_, b.large_name_) == ("mini-S", "mini-M")
    assert (b.small_name, b.large_name) == (None, None)  # fit never changes a parameter
    assert np.allclose(a.coef_, b.coef_, atol=1e-9) and np.allclose(a.components_, b.components_, atol=1e-8)


def test_misaligned_stores_are_refused(tmp_path, stores):
    H, lengths, st = stores
    other = _write(tmp_path / "other", H[1], lengths, "x", ids=[f"Q{i:04d}" for i in range(len(lengths))])
    with pytest.raises(ValueError, match="protein ids differ"):
        ReverseDistiller().fit(st[0], other)
    L2 = lengths.copy()
    L2[0] -= 1
    L2[1] += 1
    shifted = _write(tmp_path / "shifted", H[1], L2, "x")
    with pytest.raises(ValueError, match="has .* residues but"):
        list(paired_chunks(st[0], shifted))


def test_transform_store_matches_arrays_and_resumes(tmp_path, stores, monkeypatch):
    H, lengths, st = stores
    rd = ReverseDistiller(chunk_rows=120).fit(st[0], st[1])
    out = rd.transform_store(st[0], st[1], tmp_path / "rd")
    assert out.dim == 10 and out.ids == st[0].ids and np.array_equal(out.lengths, st[0].lengths)
    full = np.concatenate(list(out.iter_chunks()))
    assert np.array_equal(full, rd.transform(H[0], H[1]))
    assert np.array_equal(full[:, :6], H[0])
    assert out.manifest["distiller_fingerprint"] == rd.fingerprint()
    # interrupted run -> rerun resumes and gives the identical store
    from rd_interp.distill import reverse as chain_mod  # where ReverseDistiller.transform_store finds it

    calls = {"n": 0}
    real = chain_mod.transform_stores

    def crashing(fn, *a, **k):
        def bad(blocks):
            calls["n"] += 1
            if calls["n"] == 5:
                raise RuntimeError("simulated crash")
            return fn(blocks)
        return real(bad, *a, **{**k, "shard_rows": 150})

    monkeypatch.setattr(chain_mod, "transform_stores", crashing)
    with pytest.raises(RuntimeError, match="simulated crash"):
        rd.transform_store(st[0], st[1], tmp_path / "rd2")
    monkeypatch.setattr(chain_mod, "transform_stores",
                        lambda fn, *a, **k: real(fn, *a, **{**k, "shard_rows": 150}))
    again = rd.transform_store(st[0], st[1], tmp_path / "rd2")
    assert np.array_equal(np.concatenate(list(again.iter_chunks())), full)
    # a different model must not resume into that store
    other = ReverseDistiller(regressor="linear").fit(st[0], st[1])
    with pytest.raises(ValueError, match="different settings"):
        other.transform_store(st[0], st[1], tmp_path / "rd2")


def test_chain_over_stores_streams_and_nests(tmp_path, stores):
    H, lengths, st = stores
    ch_arr = ReverseDistillationChain(names=["mini-S", "mini-M", "mini-L"]).fit(H)
    ch = ReverseDistillationChain(chunk_rows=111).fit_stores(st)
    assert ch.names_ == ["mini-S", "mini-M", "mini-L"] and ch.names is None
    for a, b in zip(ch_arr.steps_, ch.steps_):
        assert np.allclose(a.coef_, b.coef_, atol=1e-8) and np.allclose(a.components_, b.components_, atol=1e-7)
    out = ch.transform_stores(st, tmp_path / "rd_L")
    rd1, rd2 = ch.transform(H)
    got = np.concatenate(list(out.iter_chunks()))
    assert np.array_equal(got, rd2) and np.array_equal(got[:, :10], rd1)
    # step by step through an intermediate rd store gives the same store contents
    s1 = ch.transform_store(st[0], st[1], tmp_path / "rd_M")
    s2 = ch.transform_store(s1, st[2], tmp_path / "rd_L2")
    assert np.array_equal(np.concatenate(list(s2.iter_chunks())), got)


def test_cli_fit_and_transform(tmp_path, stores, capsys):
    H, lengths, st = stores
    args = ["--small", str(st[0].path), "--large", str(st[1].path), "--chain", str(st[2].path)]
    assert main(["distill", "fit", *args, "--out", str(tmp_path / "model")]) == 0
    meta = json.loads((tmp_path / "model" / "chain.json").read_text())
    assert meta["names"] == ["mini-S", "mini-M", "mini-L"] and len(meta["steps"]) == 2
    assert main(["distill", "transform", "--model", str(tmp_path / "model"), *args, "--out", str(tmp_path / "rd"),
                 "--no-progress"]) == 0
    out = EmbeddingStore(tmp_path / "rd")
    ref = ReverseDistillationChain.load(tmp_path / "model").transform(H)[1]
    assert np.array_equal(np.concatenate(list(out.iter_chunks())), ref)
    assert main(["distill", "transform", "--model", str(tmp_path / "model"), *args, "--step", "1",
                 "--out", str(tmp_path / "rd1"), "--no-progress"]) == 0
    assert EmbeddingStore(tmp_path / "rd1").dim == 10
    # bad input -> one-line error, exit 1
    capsys.readouterr()
    rc = main(["distill", "fit", "--small", str(st[1].path), "--large", str(st[0].path), "--out", str(tmp_path / "x")])
    assert rc == 1 and "must increase" in capsys.readouterr().err
    rc = main(["distill", "transform", "--model", str(tmp_path / "nope"), *args, "--out", str(tmp_path / "y")])
    assert rc == 1 and "not a model directory" in capsys.readouterr().err
