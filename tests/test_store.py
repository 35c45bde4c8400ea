"""EmbeddingStore / StoreWriter: round trip, resume == uninterrupted, refusal, readers."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from rd_interp.io.store import EmbeddingStore, StoreError, StoreWriter, as_float32, open_store

DIM = 6
MANIFEST = {"model": "tiny", "layer": 2, "sequence_sha256": "ab" * 32}


def _proteins(n=23, seed=0):
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        L = int(rng.integers(1, 15))
        out.append((f"P{i:03d}", rng.normal(size=(L, DIM)).astype(np.float32)))
    return out


def _write(path, prots, **kw):
    kw.setdefault("shard_rows", 20)
    with StoreWriter(path, dim=DIM, manifest=MANIFEST, **kw) as w:
        for pid, x in prots:
            if pid not in w.done:
                w.append(pid, x)
    return EmbeddingStore(path)


def _tree_digest(path):
    h = {}
    for f in sorted(path.rglob("*")):
        if f.is_file():
            h[str(f.relative_to(path))] = hashlib.sha256(f.read_bytes()).hexdigest()
    return h


def test_round_trip_and_index(tmp_path):
    prots = _proteins()
    st = _write(tmp_path / "s", prots, dtype="float32")
    assert st.n_proteins == len(prots) and st.ids == [p for p, _ in prots]
    assert st.n_rows == sum(len(x) for _, x in prots) and st.dim == DIM
    assert len(st.manifest["shards"]) > 1  # several shards exercised
    for pid, x in prots:
        np.testing.assert_array_equal(st.get(pid), x)
    np.testing.assert_array_equal(st.protein(3), prots[3][1])
    allrows = np.concatenate([x for _, x in prots])
    np.testing.assert_array_equal(np.concatenate(list(st.iter_chunks(7))), allrows)
    np.testing.assert_array_equal(np.concatenate(list(st.iter_chunks(7, columns=slice(1, 4)))), allrows[:, 1:4])
    cols = np.array([5, 0, 2])
    np.testing.assert_array_equal(np.concatenate(list(st.iter_chunks(1000, columns=cols))), allrows[:, cols])
    assert all(c.dtype == np.float32 for c in st.iter_chunks(5))
    pooled = st.pooled()
    np.testing.assert_allclose(pooled, np.stack([x.mean(0) for _, x in prots]), rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(st.pooled("max", chunk_rows=9), np.stack([x.max(0) for _, x in prots]))
    assert st.manifest["model"] == "tiny" and "created_by" in st.manifest
    with pytest.raises(KeyError):
        st.get("nope")


def test_float16_storage_and_overflow(tmp_path):
    prots = _proteins(5)
    st = _write(tmp_path / "s", prots)
    assert st.dtype == np.float16 and st.get("P000").dtype == np.float32
    np.testing.assert_allclose(st.get("P001"), prots[1][1], rtol=1e-3, atol=1e-3)
    with StoreWriter(tmp_path / "o", dim=DIM, manifest=MANIFEST) as w:
        with pytest.raises(StoreError, match="float32"):
            w.append("X", np.full((2, DIM), 1e6, dtype=np.float32))


def test_float16_reads_equal_numpys_cast_bit_for_bit(tmp_path):
    """as_float32 (torch's cast) against numpy's on every float16 bit pattern, as plain, column-subset,
    transposed and read-only memory-mapped arrays; and a store's rows/take/get equal the cast of its shard."""
    every = np.arange(1 << 16, dtype=np.uint32).astype(np.uint16).view(np.float16).reshape(256, 256)
    ref = every.astype(np.float32)
    nan = np.isnan(ref)
    for a, r in ((every, ref), (every[:, 3:200:7], ref[:, 3:200:7]), (every.T, ref.T), (every[5], ref[5])):
        got = as_float32(a)
        assert got.dtype == np.float32 and got.shape == r.shape
        np.testing.assert_array_equal(np.isnan(got), np.isnan(r))
        np.testing.assert_array_equal(got.view(np.uint32)[~np.isnan(r)], r.view(np.uint32)[~np.isnan(r)])
    assert nan.sum() == 2 * 1023  # every NaN pattern was in the test
    np.save(tmp_path / "h.npy", every)
    mm = np.load(tmp_path / "h.npy", mmap_mode="r")
    np.testing.assert_array_equal(as_float32(mm[10:20, 40:90]).view(np.uint32), ref[10:20, 40:90].view(np.uint32))
    f32 = np.ones((3, 4), np.float32)
    assert as_float32(f32) is f32 or np.shares_memory(as_float32(f32), f32)  # float32 is not copied
    prots = _proteins(6)
    st = _write(tmp_path / "s", prots)
    shard = np.concatenate([np.load(f) for f in sorted((tmp_path / "s" / "shards").glob("*.npy"))])
    assert shard.dtype == np.float16 and shard.shape[0] == st.n_rows
    cols = np.array([0, 3, 5])
    np.testing.assert_array_equal(st.rows(2, 30), shard[2:30].astype(np.float32))
    np.testing.assert_array_equal(st.rows(2, 30, cols), shard[2:30][:, cols].astype(np.float32))
    idx = np.array([17, 3, 3, 40, 0])
    np.testing.assert_array_equal(st.take(idx, slice(1, 6)), shard[idx, 1:6].astype(np.float32))


class _Boom(RuntimeError):
    pass


@pytest.mark.parametrize("kill_after", [4, 11, 22])
def test_interrupted_resume_equals_uninterrupted(tmp_path, kill_after):
    prots = _proteins()
    ref = _write(tmp_path / "ref", prots)
    # Interrupted run: raise mid-way (unflushed buffer lost, some shards committed).
    with pytest.raises(_Boom):
        with StoreWriter(tmp_path / "s", dim=DIM, manifest=MANIFEST, shard_rows=20) as w:
            for i, (pid, x) in enumerate(prots):
                if i == kill_after:
                    raise _Boom()
                w.append(pid, x)
    with pytest.raises(StoreError, match="incomplete"):
        EmbeddingStore(tmp_path / "s")
    # A half-written shard from a killed process (npy without its commit record) must be discarded.
    (tmp_path / "s" / "shards" / "shard-00099.npy").write_bytes(b"garbage")
    w2 = StoreWriter(tmp_path / "s", dim=DIM, manifest=MANIFEST, shard_rows=20)
    assert 0 < len(w2.done) <= kill_after or kill_after < 5
    assert w2.done == {p for p, _ in prots[: len(w2.done)]}  # committed prefix only
    for pid, x in prots:
        if pid not in w2.done:
            w2.append(pid, x)
    st = w2.close()
    assert _tree_digest(tmp_path / "s") == _tree_digest(tmp_path / "ref")
    np.testing.assert_array_equal(np.concatenate(list(st.iter_chunks())), np.concatenate(list(ref.iter_chunks())))


def test_killed_process_resume(tmp_path):
    """A real SIGKILL'd writer process leaves a resumable store."""
    import subprocess
    import sys
    import textwrap

    script = textwrap.dedent(f"""
        import os, signal, numpy as np
        from rd_interp.io.store import StoreWriter
        rng = np.random.default_rng(0)
        w = StoreWriter({str(tmp_path / 's')!r}, dim={DIM}, manifest={MANIFEST!r}, shard_rows=20)
        for i in range(23):
            L = int(rng.integers(1, 15)); x = rng.normal(size=(L, {DIM})).astype(np.float32)
            if i == 15:
                os.kill(os.getpid(), signal.SIGKILL)
            w.append(f"P{{i:03d}}", x)
    """)
    r = subprocess.run([sys.executable, "-c", script], capture_output=True)
    assert r.returncode != 0
    st = _write(tmp_path / "s", _proteins())
    _write(tmp_path / "ref", _proteins())
    assert _tree_digest(tmp_path / "s") == _tree_digest(tmp_path / "ref")
    assert st.n_proteins == 23


def test_mismatched_store_refused(tmp_path):
    _write(tmp_path / "s", _proteins(3))
    for bad in ({**MANIFEST, "model": "other"}, {**MANIFEST, "layer": 1}, {**MANIFEST, "sequence_sha256": "cd" * 32}):
        with pytest.raises(StoreError, match="different settings"):
            StoreWriter(tmp_path / "s", dim=DIM, manifest=bad, shard_rows=20)
    with pytest.raises(StoreError, match="dim"):
        StoreWriter(tmp_path / "s", dim=DIM + 1, manifest=MANIFEST, shard_rows=20)
    with pytest.raises(StoreError, match="dtype"):
        StoreWriter(tmp_path / "s", dim=DIM, manifest=MANIFEST, shard_rows=20, dtype="float32")
    with pytest.raises(StoreError, match="model is 'tiny'"):
        open_store(tmp_path / "s", expect={"model": "big"})
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "x.txt").write_text("x")
    with pytest.raises(StoreError, match="not an embedding store"):
        StoreWriter(tmp_path / "junk", dim=DIM, manifest=MANIFEST)
    with pytest.raises(StoreError, match="no manifest"):
        EmbeddingStore(tmp_path / "junk")


def test_writer_rejects_bad_input(tmp_path):
    with StoreWriter(tmp_path / "s", dim=DIM, manifest=MANIFEST) as w:
        w.append("A", np.zeros((2, DIM)))
        with pytest.raises(StoreError, match="already"):
            w.append("A", np.zeros((2, DIM)))
        with pytest.raises(StoreError, match="shape"):
            w.append("B", np.zeros((2, DIM + 1)))
        with pytest.raises(StoreError, match="non-finite"):
            w.append("C", np.full((1, DIM), np.nan))
    with pytest.raises(StoreError, match="complete"):
        StoreWriter(tmp_path / "s", dim=DIM, manifest=MANIFEST).append("D", np.zeros((1, DIM)))


def test_random_batches_cover_shuffle_and_determinism(tmp_path):
    prots = _proteins(40, seed=1)
    st = _write(tmp_path / "s", prots, dtype="float32")
    allrows = np.concatenate([x for _, x in prots])
    b1 = list(st.random_batches(16, seed=7))
    b2 = list(st.random_batches(16, seed=7))
    b3 = list(st.random_batches(16, seed=8))
    assert all(np.array_equal(a, b) for a, b in zip(b1, b2)) and len(b1) == len(b2)
    assert not all(np.array_equal(a, b) for a, b in zip(b1, b3))
    got = np.concatenate(b1)
    assert got.shape == allrows.shape
    # every row exactly once per epoch
    key = lambda a: np.lexsort(a.T[::-1])
    np.testing.assert_array_equal(got[key(got)], allrows[key(allrows)])
    # shuffled across the whole store: the first batch draws from more than one shard
    first = b1[0]
    shard_of = [np.searchsorted(st._starts, np.flatnonzero((allrows == r).all(1))[0], side="right") - 1 for r in first]
    assert len(set(shard_of)) > 1 and len(st.manifest["shards"]) > 2
    assert [len(b) for b in st.random_batches(16, seed=0, drop_last=True)] == [16] * (len(allrows) // 16)
    assert sum(len(b) for b in st.random_batches(16, seed=0, epochs=3)) == 3 * len(allrows)
    # rows subset + columns
    rows = st.protein_rows([0, 5, 9])
    np.testing.assert_array_equal(allrows[rows], np.concatenate([prots[i][1] for i in (0, 5, 9)]))
    sub = np.concatenate(list(st.random_batches(4, seed=3, rows=rows, columns=slice(2, 5))))
    exp = allrows[rows][:, 2:5]
    np.testing.assert_array_equal(sub[key(sub)], exp[key(exp)])
    np.testing.assert_array_equal(st.take(np.array([7, 0, 3]), columns=[1]), allrows[[7, 0, 3]][:, [1]])
    with pytest.raises(IndexError):
        next(st.random_batches(4, seed=0, rows=np.array([st.n_rows])))


def test_empty_and_large_protein(tmp_path):
    st = _write(tmp_path / "e", [])
    assert st.n_proteins == 0 and st.n_rows == 0 and list(st.iter_chunks()) == []
    big = [("BIG", np.ones((50, DIM), np.float32)), ("S", np.zeros((3, DIM), np.float32))]
    st = _write(tmp_path / "b", big)  # protein longer than shard_rows gets its own shard
    assert st.get("BIG").shape == (50, DIM) and st.n_rows == 53


def test_appends_are_linear(tmp_path):
    """Appending N proteins costs O(N) (the duplicate-id check is incremental, not rebuilt per append)."""
    import time

    x = np.zeros((1, 4), np.float32)

    def cost(n):
        best = float("inf")
        for rep in range(3):
            w = StoreWriter(tmp_path / f"s{n}_{rep}", dim=4, manifest={"model": "x"}, dtype="float32")
            t = time.perf_counter()
            for i in range(n):
                w.append(f"P{i}", x)
            best = min(best, time.perf_counter() - t)
        return best

    small, large = cost(2000), cost(16000)
    assert large / small < 16, (small, large)  # linear: ~8x; the old quadratic check gave ~60x


def test_pooled_blocks_columns_and_empty_proteins(tmp_path):
    """Mean and max pooling over several row blocks, a column selection and a protein without residues (NaN),
    against float64 numpy."""
    prots = _proteins(12, seed=4)
    prots.insert(5, ("EMPTY", np.zeros((0, DIM), dtype=np.float32)))
    st = _write(tmp_path / "s", prots, dtype="float32")
    cols = slice(1, 5)
    for chunk in (7, 1 << 18):
        mean = st.pooled("mean", columns=cols, chunk_rows=chunk)
        mx = st.pooled("max", chunk_rows=chunk)
        for r, (_, x) in enumerate(prots):
            if len(x) == 0:
                assert np.isnan(mean[r]).all() and np.isnan(mx[r]).all()
                continue
            np.testing.assert_allclose(mean[r], x[:, cols].astype(np.float64).mean(0), rtol=1e-6, atol=1e-7)
            np.testing.assert_array_equal(mx[r], x.max(0))
