"""Sparse autoencoder layer: recovery of a planted dictionary, training invariants, I/O, metrics, encoding."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from rd_interp.io.serialize import ConfigError
from rd_interp.sae.encode import TopStrips, decoder_share, encode_proteins, encode_sequence_activations
from rd_interp.sae.io import load_sae, save_sae
from rd_interp.sae.metrics import evaluate, fvu
from rd_interp.sae.model import SAEConfig, SparseAutoencoder
from rd_interp.sae.run import split_rows
from rd_interp.sae.train import TrainConfig, train_sae

warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta state")


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    # Tiny matmuls: with 2 OpenMP threads on a shared 2-core machine, thread hand-offs dominate.
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def planted(n=16384, d=64, m=256, s=4, noise=0.01, seed=0):
    """x = sum of s random atoms of a unit-norm dictionary D [m, d], coefficients U(0.5, 1.5), plus noise."""
    rng = np.random.default_rng(seed)
    D = rng.standard_normal((m, d))
    D /= np.linalg.norm(D, axis=1, keepdims=True)
    offset = rng.normal(0, 3.0, d)
    idx = np.argsort(rng.random((n, m)), axis=1)[:, :s]
    coef = rng.uniform(0.5, 1.5, (n, s))
    X = np.einsum("ns,nsd->nd", coef, D[idx]) + noise * rng.standard_normal((n, d))
    # a large per-dimension offset, like PLM embeddings: pre-processing must remove it
    X += offset
    return X.astype(np.float32), D


@pytest.fixture(scope="module")
def planted_data():
    return planted()


@pytest.fixture(scope="module")
def planted_sae(planted_data):
    X, _ = planted_data
    cfg = TrainConfig(batch_size=1024, n_steps=200, lr=5e-3)
    return train_sae(X, SAEConfig("topk", n_latents=512, k=4), cfg, progress=False)


def same(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Bit-identical, NaN == NaN (the threshold buffer is NaN for non-BatchTopK SAEs)."""
    return a.shape == b.shape and a.dtype == b.dtype and bool(
        ((a == b) | (torch.isnan(a) & torch.isnan(b))).all())


def recovered(sae, D, thr=0.9):
    W = sae.W_dec.detach().cpu().double().numpy()
    W /= np.linalg.norm(W, axis=1, keepdims=True)
    best = (D @ W.T).max(1)
    return float((best >= thr).mean()), best


def test_planted_dictionary_recovered(planted_sae, planted_data):
    X, D = planted_data
    frac, best = recovered(planted_sae, D)
    print(f"planted recovery: {frac:.3f} of 256 atoms at cos>=0.9, median best cos {np.median(best):.4f}")
    assert frac >= 0.9
    # and an untrained SAE of the same size does not (the test can fail)
    frac0, _ = recovered(SparseAutoencoder(SAEConfig("topk", d_in=64, n_latents=512, k=4), seed=0), D)
    assert frac0 < 0.1


def test_decoder_rows_unit_norm(planted_sae):
    norms = planted_sae.W_dec.detach().norm(dim=1)
    assert torch.allclose(norms, torch.ones_like(norms), atol=1e-5)


def test_heldout_metrics_sane(planted_sae):
    X, _ = planted(n=4096, seed=0)  # same dictionary seed -> same distribution
    m = evaluate(planted_sae, X)
    assert m["fvu"] < 0.15 and m["cosine"] > 0.9
    assert 3.0 <= m["l0"] <= 4.0
    assert 0 <= m["dead_fraction"] < 1 and m["dense_fraction"] <= 0.05
    assert sum(m["freq_hist"]["counts"]) + m["freq_hist"]["dead"] == 512
    # MSE is in raw units and consistent with FVU
    var = ((X - X.mean(0)) ** 2).sum() / X.size
    assert m["mse"] == pytest.approx(m["fvu"] * var, rel=1e-4)


def test_fvu_of_mean_prediction_is_one(planted_data):
    X, _ = planted_data
    Xe = X[:3000]
    assert fvu(Xe, np.broadcast_to(Xe.astype(np.float64).mean(0), Xe.shape)) == pytest.approx(1.0, abs=1e-12)
    sae = SparseAutoencoder(SAEConfig("topk", d_in=64, n_latents=32, k=4), seed=0)
    with torch.no_grad():
        sae.pre_mean.copy_(torch.from_numpy(X.mean(0)))
        sae.pre_scale.fill_(0.5)
        sae.W_dec.zero_()  # reconstruction = b_dec: predict the evaluation set's mean
        sae.b_dec.copy_(sae.preprocess(torch.from_numpy(Xe.astype(np.float64).mean(0).astype(np.float32))))
    assert evaluate(sae, Xe)["fvu"] == pytest.approx(1.0, abs=1e-5)


def test_seeded_training_is_deterministic():
    X, _ = planted(n=2048, seed=3)
    cfg = TrainConfig(batch_size=256, n_steps=20, lr=3e-3)
    a = train_sae(X, SAEConfig("topk", n_latents=128, k=4), cfg, progress=False, seed=7)
    b = train_sae(X, SAEConfig("topk", n_latents=128, k=4), cfg, progress=False, seed=7)
    c = train_sae(X, SAEConfig("topk", n_latents=128, k=4), TrainConfig(batch_size=256, n_steps=20, lr=3e-3), seed=8,
                  progress=False)
    for name, p in a.state_dict().items():
        assert same(p, b.state_dict()[name]), name
    assert not torch.equal(a.W_dec, c.W_dec)


def test_resume_equals_uninterrupted(tmp_path):
    X, _ = planted(n=3000, seed=4)
    cfg = TrainConfig(batch_size=256, n_steps=30, lr=3e-3, checkpoint_every=7, aux_k=16, dead_window=512)
    full = train_sae(X, SAEConfig("batchtopk", n_latents=128, k=4), cfg, progress=False, seed=1)
    ck = tmp_path / "ck"
    part = train_sae(X, SAEConfig("batchtopk", n_latents=128, k=4), cfg, checkpoint_dir=ck, progress=False, seed=1,
                     stop_after=12)
    assert part.provenance.train["steps_done"] == 12 and not part.provenance.train["finished"]
    resumed = train_sae(X, SAEConfig("batchtopk", n_latents=128, k=4), cfg, checkpoint_dir=ck, progress=False, seed=1)
    assert resumed.provenance.train["finished"]
    for name, p in full.state_dict().items():
        assert same(p, resumed.state_dict()[name]), name
    # a checkpoint from another configuration is refused, not silently reused
    with pytest.raises(ValueError, match="different data/config"):
        train_sae(X, SAEConfig("batchtopk", n_latents=128, k=8), cfg, checkpoint_dir=ck, progress=False)


def test_auxk_revives_dead_latents():
    # As many atoms as latents and a too-high learning rate: latents die early in training. AuxK (the
    # k_aux largest dead pre-activations reconstruct the residual) gives them gradient again.
    X, _ = planted(n=8192, m=512, s=4, seed=5)
    Xh, _ = planted(n=4096, m=512, s=4, seed=5)
    sae_cfg = SAEConfig("topk", n_latents=512, k=4)
    base = dict(batch_size=512, n_steps=200, lr=2e-2, dead_window=8192)
    no_aux = train_sae(X, sae_cfg, TrainConfig(aux_k=0, **base), progress=False, seed=0)
    aux = train_sae(X, sae_cfg, TrainConfig(aux_k=32, **base), progress=False, seed=0)
    m0, m1 = evaluate(no_aux, Xh), evaluate(aux, Xh)
    print(f"held-out dead fraction: without AuxK {m0['dead_fraction']:.3f}, with AuxK {m1['dead_fraction']:.3f}; "
          f"FVU {m0['fvu']:.4f} vs {m1['fvu']:.4f}")
    assert m0["dead_fraction"] > 0.08
    assert m1["dead_fraction"] < 0.6 * m0["dead_fraction"]
    assert m1["fvu"] <= m0["fvu"] + 0.01


def test_batchtopk_threshold_reproduces_l0(planted_data):
    X, _ = planted_data
    sae = train_sae(X, SAEConfig("batchtopk", n_latents=512, k=4),
                    TrainConfig(batch_size=1024, n_steps=150, lr=5e-3), progress=False, seed=0)
    thr = float(sae.threshold)
    assert np.isfinite(thr) and thr > 0
    l0 = evaluate(sae, X[:4096])["l0"]
    assert abs(l0 - 4) / 4 <= 0.10, l0
    # exported threshold survives save/load
    assert float(load_sae(save_sae(sae, _tmp_dir())).threshold) == thr


def _tmp_dir():
    import tempfile

    return tempfile.mkdtemp(prefix="sae-test-")


def test_relu_l1_baseline_trains():
    X, _ = planted(n=4096, seed=6)
    sae = train_sae(X, SAEConfig("relu", n_latents=128, l1_coeff=1.0),
                    TrainConfig(batch_size=512, n_steps=80, lr=3e-3), progress=False, seed=0)
    m = evaluate(sae, X)
    assert m["fvu"] < 0.6
    assert m["l0"] < 128 * 0.5  # the L1 term makes it sparse
    # decoder norms are free in the ReLU baseline (the penalty is norm-weighted)
    assert not torch.allclose(sae.W_dec.norm(dim=1), torch.ones(128), atol=1e-3)


def test_save_load_bit_identical(planted_sae, tmp_path):
    planted_sae.provenance.source = {"name": "array", "columns": None}
    save_sae(planted_sae, tmp_path / "s", {"note": "test"})
    back = load_sae(tmp_path / "s")
    for name, t in planted_sae.state_dict().items():
        assert same(t, back.state_dict()[name]), name
    cfg = json.loads((tmp_path / "s" / "cfg.json").read_text())
    assert cfg["architecture"] == "topk" and cfg["d_in"] == 64 and cfg["n_latents"] == 512 and cfg["k"] == 4
    assert cfg["note"] == "test" and "torch" in cfg["versions"]
    X = np.random.default_rng(0).standard_normal((50, 64)).astype(np.float32)
    assert torch.equal(planted_sae.encode(X), back.encode(X))
    from safetensors.torch import load_file

    t = load_file(str(tmp_path / "s" / "sae.safetensors"))
    assert t["W_enc"].shape == (64, 512) and t["W_dec"].shape == (512, 64)
    # a corrupted tensor file is detected
    raw = bytearray((tmp_path / "s" / "sae.safetensors").read_bytes())
    raw[-1] ^= 0xFF
    (tmp_path / "s" / "sae.safetensors").write_bytes(bytes(raw))
    with pytest.raises(ValueError, match="checksum"):
        load_sae(tmp_path / "s")


def test_bad_inputs(planted_sae, tmp_path):
    X, _ = planted(n=512, seed=1)
    bad = X.copy()
    bad[100, 3] = np.nan
    with pytest.raises(ValueError, match=r"row 100 contains NaN"):
        train_sae(bad, SAEConfig("topk", n_latents=32, k=4), TrainConfig(batch_size=64, n_steps=2), progress=False)
    bad[100, 3] = np.inf
    with pytest.raises(ValueError, match=r"row 100 contains Inf"):
        planted_sae.encode(bad)
    bad[100, 3], bad[7, :3] = X[100, 3], [np.inf, -np.inf, 1.0]  # opposite infinities: the row sum is NaN
    with pytest.raises(ValueError, match=r"row 7 contains Inf"):
        planted_sae.encode(bad)
    huge = X.copy()
    huge[5, :4] = 3e38  # finite, but the row sum overflows: the screen must not call it bad
    assert planted_sae.check_input(huge).shape == huge.shape
    save_sae(planted_sae, tmp_path / "s")
    loaded = load_sae(tmp_path / "s")
    with pytest.raises(ValueError, match=r"dimension 48 but this SAE expects d_in=64"):
        loaded.encode(np.zeros((3, 48), dtype=np.float32))
    with pytest.raises(ValueError, match=r"dimension 48"):
        evaluate(loaded, np.zeros((3, 48), dtype=np.float32))
    with pytest.raises(ConfigError, match=r"k: 40 active latents requested but the SAE has only n_latents=32"):
        SAEConfig("topk", d_in=64, n_latents=32, k=40).validate()
    with pytest.raises(ValueError, match="k"):
        train_sae(X, SAEConfig("topk", n_latents=32, k=40), TrainConfig(batch_size=64, n_steps=2), progress=False)
    with pytest.raises(ValueError, match="d_in=10"):
        train_sae(X, SAEConfig("topk", d_in=10, n_latents=32, k=4), TrainConfig(batch_size=64, n_steps=2),
                  progress=False)
    with pytest.raises(FileNotFoundError, match="cfg.json"):
        load_sae(tmp_path / "nothing")


# -- store-backed training, column subsets, encoding -------------------------------------------------

@pytest.fixture(scope="module")
def tiny_store(tmp_path_factory):
    from rd_interp.io.store import StoreWriter

    rng = np.random.default_rng(11)
    X, _ = planted(n=6000, d=48, m=64, s=3, seed=11)
    lengths = []
    total = 0
    while total < X.shape[0]:
        L = int(min(rng.integers(20, 120), X.shape[0] - total))
        lengths.append(L)
        total += L
    path = tmp_path_factory.mktemp("store") / "emb"
    w = StoreWriter(path, dim=48, manifest={"model": "synthetic"}, dtype="float32", shard_rows=1000)
    o = 0
    for i, L in enumerate(lengths):
        w.append(f"P{i:04d}", X[o:o + L])
        o += L
    return w.close(), X


def test_store_training_on_column_subset(tiny_store):
    store, X = tiny_store
    train_rows, held_rows, _ = split_rows(store, 0.1, seed=0)
    # split is by protein: no protein has residues on both sides
    prot_of = np.searchsorted(store.offsets, np.arange(store.n_rows), side="right") - 1
    assert not set(prot_of[train_rows]) & set(prot_of[held_rows])
    assert train_rows.size + held_rows.size == store.n_rows
    cfg = TrainConfig(batch_size=256, n_steps=40, lr=3e-3)
    sae = train_sae(store, SAEConfig("topk", n_latents=96, k=3), cfg, columns=slice(8, 40), rows=train_rows,
                    progress=False)
    assert sae.d_in == 32 and sae.provenance.source["columns"] == {"start": 8, "stop": 40}
    # identical to training on the sliced in-memory copy of the same rows
    ref = train_sae(X[:, 8:40].copy(), SAEConfig("topk", n_latents=96, k=3), cfg, rows=train_rows, progress=False)
    assert torch.equal(sae.W_dec, ref.W_dec)
    m_store = evaluate(sae, store, columns=slice(8, 40), rows=held_rows)
    m_arr = evaluate(sae, X[:, 8:40], rows=held_rows)
    assert m_store["fvu"] == pytest.approx(m_arr["fvu"], rel=1e-9)
    assert m_store["fvu"] < 0.7


def test_encode_proteins_pooling_matches_dense(tiny_store):
    store, X = tiny_store
    sae = train_sae(store, SAEConfig("topk", n_latents=96, k=3), TrainConfig(batch_size=256, n_steps=20), seed=0,
                    columns="8:40", progress=False)
    for pooling in ("max", "mean"):
        M = encode_proteins(sae, store, pooling=pooling, batch_rows=700, chunk_rows=128)
        assert sp.isspmatrix_csr(M) and M.shape == (store.n_proteins, 96) and M.dtype == np.float32
        for i in (0, 7, store.n_proteins - 1):
            Z = sae.encode(store.protein(i, slice(8, 40))).numpy()
            ref = Z.max(0) if pooling == "max" else Z.astype(np.float64).mean(0)
            np.testing.assert_allclose(M[i].toarray()[0], ref, rtol=1e-5, atol=1e-6)
    A = encode_sequence_activations(sae, store.protein(3, slice(8, 40)))
    np.testing.assert_array_equal(A.toarray(), sae.encode(store.protein(3, slice(8, 40))).numpy())
    assert (A.getnnz(axis=1) <= 3).all()


def test_encode_sparse_keeps_exactly_the_positive_topk_entries_in_row_major_order():
    """encode_sparse's (row, latent, value) triples are the non-zeros of the dense encode, row by row with
    latents ascending, also when many of a row's k largest pre-activations are <= 0 (ReLU drops those)."""
    sae = SparseAutoencoder(SAEConfig("topk", d_in=24, n_latents=200, k=12), seed=1)
    with torch.no_grad():
        sae.b_enc.copy_(torch.linspace(-12.0, 1.0, 200))  # most latents rarely positive
    x = torch.from_numpy(np.random.default_rng(4).standard_normal((300, 24)).astype(np.float32))
    rows, lat, val = sae.encode_sparse(x)
    Z = sae.encode(x)
    r, c = torch.nonzero(Z, as_tuple=True)
    assert 0 < rows.numel() < 300 * 12  # some top-k entries were not positive
    assert rows.dtype == torch.int64 and lat.dtype == torch.int64 and val.dtype == torch.float32
    assert torch.equal(rows, r) and torch.equal(lat, c) and torch.equal(val, Z[r, c])


def test_decoder_share():
    sae = SparseAutoencoder(SAEConfig("topk", d_in=10, n_latents=4, k=1), seed=0)
    with torch.no_grad():
        sae.W_dec.zero_()
        sae.W_dec[0, :6] = 1.0  # entirely in the first block
        sae.W_dec[1, 6:] = 2.0  # entirely in the second block
        sae.W_dec[2, 0] = 1.0
        sae.W_dec[2, 9] = 1.0  # half / half
    share = decoder_share(sae, slice(0, 6))
    np.testing.assert_allclose(share, [1.0, 0.0, 0.5, 0.0])
    np.testing.assert_allclose(decoder_share(sae, np.arange(6, 10))[:3], [0.0, 1.0, 0.5])


def test_cli_train_and_eval(tiny_store, tmp_path, capsys):
    from rd_interp.cli import main

    store, _ = tiny_store
    out = tmp_path / "sae"
    rc = main(["sae", "train", "--store", str(store.path), "--columns", "0:48", "--out", str(out), "--n-latents", "64",
               "--k", "3", "--n-steps", "15", "--batch-size", "256", "--lr", "3e-3", "--no-progress"])
    assert rc == 0
    line = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    cfg = json.loads((out / "sae" / "cfg.json").read_text())
    assert cfg["metrics"]["fvu"] == pytest.approx(line["fvu"])
    assert cfg["split"]["fraction"] == 0.1 and not (out / ".checkpoints").exists()
    rc = main(["sae", "eval", str(out), "--json", str(tmp_path / "m.json")])
    assert rc == 0
    again = json.loads((tmp_path / "m.json").read_text())
    # the held-out proteins are re-derived from the recorded split: the same rows, the same FVU
    assert again["fvu"] == pytest.approx(line["fvu"], rel=1e-12)
    rc = main(["sae", "eval", str(out), "--rows", "all", "--json", str(tmp_path / "all.json")])
    assert rc == 0 and json.loads((tmp_path / "all.json").read_text())["n_vectors"] == store.n_rows
    assert main(["sae", "train", "--store", str(store.path), "--out", str(tmp_path / "x"), "--k", "999",
                 "--n-latents", "64", "--no-progress"]) == 1


def test_one_split_for_pipeline_cli_and_eval(tiny_store):
    """The split depends on the protein ids and the seed only; eval refuses a store with other proteins."""
    from rd_interp.io.split import protein_split

    store, _ = tiny_store
    tr, held, rec = split_rows(store, 0.1, 1)
    t2, h2 = protein_split(list(reversed(store.ids)), 0.1, 1)
    assert sorted(store.ids[i] for i in np.unique(np.searchsorted(store.offsets, held, side="right") - 1)) == \
        sorted(list(reversed(store.ids))[i] for i in h2)
    assert rec["n_heldout_proteins"] == h2.size == round(0.1 * store.n_proteins)


@pytest.mark.parametrize("arch,aux", [("topk", 0), ("batchtopk", 0), ("topk", 6), ("topk", 16), ("topk", 30)])
def test_sparse_backward_equals_dense_autograd(arch, aux):
    """The sparse backward passes (encoder gather, decoder gradient through the step's pattern, AuxK on the
    dead latents: 6 of 22 on the sparse pattern, 16 of 22 and all 22 as dense products over the dead
    columns) give autograd's dense gradients."""
    import torch.nn.functional as F

    sae = SparseAutoencoder(SAEConfig(arch, d_in=16, n_latents=64, k=4), seed=1).double()
    g = torch.Generator().manual_seed(0)
    x = torch.randn(32, 16, dtype=torch.float64, generator=g)
    with torch.no_grad():  # non-zero biases, so b_dec's path through the encoder counts
        sae.b_dec.copy_(0.3 * torch.randn(16, dtype=torch.float64, generator=g))
        sae.b_enc.copy_(0.1 * torch.randn(64, dtype=torch.float64, generator=g))
    dead = torch.zeros(64, dtype=torch.bool)
    dead[::3] = True  # 22 dead latents, AuxK ranks 6 of them per row
    out = sae.train_forward(x, dead_mask=dead if aux else None, k_aux=aux)
    (out["loss"] + out["aux"]).backward()
    ours = {n: p.grad.clone() for n, p in sae.named_parameters()}
    sae.zero_grad()
    pre = (x - sae.b_dec) @ sae.W_enc + sae.b_enc
    if arch == "topk":
        idx = pre.detach().topk(4, dim=1).indices
        z = torch.zeros_like(pre).scatter(1, idx, F.relu(pre.gather(1, idx)))
    else:
        keep = torch.zeros(pre.numel(), dtype=torch.bool)
        keep[F.relu(pre).detach().reshape(-1).topk(32 * 4).indices] = True
        z = F.relu(pre) * keep.view_as(pre)
    x_hat = z @ sae.W_dec + sae.b_dec
    loss = (x_hat - x).pow(2).sum(1).mean() / 16
    if aux:
        dead_idx = torch.nonzero(dead).squeeze(1)
        aidx = dead_idx[pre.detach()[:, dead_idx].topk(min(aux, 22), dim=1).indices]
        za = torch.zeros_like(pre).scatter(1, aidx, F.relu(pre.gather(1, aidx)))
        e = (x - x_hat).detach()
        loss = loss + (za @ sae.W_dec - e).pow(2).sum(1).mean() / (e - e.mean(0)).pow(2).sum(1).mean()
        assert float(out["aux"].detach()) > 0
    loss.backward()
    for name, p in sae.named_parameters():
        torch.testing.assert_close(ours[name], p.grad, rtol=1e-9, atol=1e-12)


def test_latent_sorted_product_kernel_equals_torch_csr():
    """The CPU kernel of the gradient products (sae/spmm.py) gives torch's sparse-CSR product bit for bit, the
    dense product to float rounding, zero rows for latents that never fire, and the same bits on 2 threads."""
    from rd_interp.sae.model import _Pattern

    g = torch.Generator().manual_seed(4)
    B, n, k, d = 700, 300, 5, 24
    idx = torch.stack([torch.randperm(n - 40, generator=g)[:k] for _ in range(B)]).sort(1).values
    vals, Y = torch.randn(B, k, generator=g), torch.randn(B, d, generator=g)
    pat = _Pattern(idx, n)
    ours = pat.st_mm(vals, Y)
    S = torch.sparse_csr_tensor(pat.crow, pat.rows_sorted, vals.reshape(-1)[pat.order], size=(n, B),
                                check_invariants=True)
    assert torch.equal(ours, S @ Y)
    dense = torch.zeros(B, n, dtype=torch.float64).scatter(1, idx, vals.double())
    torch.testing.assert_close(ours.double(), dense.t() @ Y.double(), rtol=1e-5, atol=1e-5)
    assert not ours[n - 40:].any()
    old = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        assert torch.equal(pat.st_mm(vals, Y), ours)
    finally:
        torch.set_num_threads(old)


def test_top_strips_rank_ties_by_row_and_skip_silent_proteins():
    """TopStrips keeps the atlas's ranking over a stream of blocks: score descending, lower row first on a
    tie, never a protein with score 0; each kept pair holds exactly its own residue triples."""
    st = TopStrips(2, 2)
    # block 1: proteins 0, 1 (latent 0 scores 1.0, 2.0; latent 1 silent); residues (protein, position)
    st.update(0, np.array([[1.0, 0], [2.0, 0]], np.float32), prot=np.array([0, 1, 1]), pos=np.array([3, 0, 4]),
              lat=np.array([0, 0, 0]), val=np.array([1.0, 2.0, 0.5], np.float32))
    # block 2: proteins 2, 3 (protein 2 ties protein 1 on latent 0: it ranks after it and evicts protein 0)
    st.update(2, np.array([[2.0, 0], [0, 0]], np.float32), prot=np.array([0, 0]), pos=np.array([1, 2]),
              lat=np.array([0, 0]), val=np.array([2.0, 1.5], np.float32))
    a = st.arrays()
    assert a["rows"].tolist() == [[1, -1], [2, -1]] and a["scores"][:, 0].tolist() == [2.0, 2.0]
    assert a["key"].tolist() == [2, 2, 4, 4]  # row * n_latents + latent, protein 0's triple dropped
    assert a["pos"].tolist() == [0, 4, 1, 2] and a["value"].tolist() == [2.0, 0.5, 2.0, 1.5]
    with pytest.raises(ValueError, match="k must be"):
        TopStrips(0, 3)


@pytest.mark.parametrize("n_dead", [0, 10, 20, 60])
def test_float32_cpu_step_kernels_equal_dense_autograd(n_dead):
    """The float32 CPU path (decoder and its value gradient on sae/spmm.py's row kernels, encoder gradient
    written transposed; AuxK over 10 or 20 dead latents as the dense block with its batch sums in a kernel,
    20 with the 8 least active per row dropped, over 60 as a sparse pattern) gives float64 dense autograd's
    gradients to float32 rounding, on 1 and 2 threads with the same bits (BLAS's [10, 24] sums over the 1,100-row batch differ in the last bits between 1
    and 2 threads on this project's machines)."""
    import torch.nn.functional as F

    k_aux = 12
    dead = torch.zeros(300, dtype=torch.bool)
    dead[torch.randperm(300, generator=torch.Generator().manual_seed(3))[:n_dead]] = True

    def grads(threads):
        old = torch.get_num_threads()
        torch.set_num_threads(threads)
        try:
            sae = SparseAutoencoder(SAEConfig("topk", d_in=24, n_latents=300, k=6), seed=2)
            g = torch.Generator().manual_seed(5)
            x = torch.randn(1100, 24, generator=g)
            with torch.no_grad():
                sae.b_dec.copy_(0.3 * torch.randn(24, generator=g))
                sae.b_enc.copy_(0.1 * torch.randn(300, generator=g))
            out = sae.train_forward(x, dead_mask=dead if n_dead else None, k_aux=k_aux)
            (out["loss"] + out["aux"]).backward()
            return sae, x, {n: p.grad.clone() for n, p in sae.named_parameters()}
        finally:
            torch.set_num_threads(old)

    sae, x, ours = grads(2)
    assert all(torch.equal(ours[n], g) for n, g in grads(1)[2].items())
    ref = {n: p.detach().double().requires_grad_() for n, p in sae.named_parameters()}
    xd = x.double()
    pre = (xd - ref["b_dec"]) @ ref["W_enc"] + ref["b_enc"]
    idx = pre.detach().topk(6, dim=1).indices
    z = torch.zeros_like(pre).scatter(1, idx, F.relu(pre.gather(1, idx)))
    x_hat = z @ ref["W_dec"] + ref["b_dec"]
    loss = (x_hat - xd).pow(2).sum(1).mean() / 24
    if n_dead:
        dead_idx = torch.nonzero(dead).squeeze(1)
        aidx = dead_idx[pre.detach()[:, dead_idx].topk(min(k_aux, n_dead), dim=1).indices]
        za = torch.zeros_like(pre).scatter(1, aidx, F.relu(pre.gather(1, aidx)))
        e = (xd - x_hat).detach()
        loss = loss + (za @ ref["W_dec"] - e).pow(2).sum(1).mean() / (e - e.mean(0)).pow(2).sum(1).mean()
    loss.backward()
    for name, p in ref.items():
        torch.testing.assert_close(ours[name].double(), p.grad, rtol=1e-4, atol=1e-6)


def test_sampled_rows_dot_and_transposed_product():
    """sampled_rows_dot gives the dense (G W^T) at the pattern, with the same bits on 1 and 2 threads, and
    the transposed S^T Y (blocks of latents, a partial last block) is the plain one's transpose bit for bit."""
    from rd_interp.sae.model import _Pattern
    from rd_interp.sae.spmm import sampled_rows_dot

    g = torch.Generator().manual_seed(7)
    B, n, k, d = 900, 200, 5, 33
    idx = torch.stack([torch.randperm(n - 3, generator=g)[:k] for _ in range(B)]).sort(1).values
    vals, W, G = torch.randn(B, k, generator=g), torch.randn(n, d, generator=g), torch.randn(B, d, generator=g)
    ours = sampled_rows_dot(idx, G, W)
    torch.testing.assert_close(ours.double(), (G.double() @ W.double().t()).gather(1, idx), rtol=1e-5, atol=1e-5)
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert torch.equal(sampled_rows_dot(idx, G, W), ours)
    finally:
        torch.set_num_threads(old)
    pat = _Pattern(idx, n - 3)  # 197 latents: the last block of 16 is partial
    assert torch.equal(pat.st_mm(vals, G, transposed=True), pat.st_mm(vals, G).t().contiguous())


@pytest.mark.parametrize("B,m,n", [(1, 1, 1), (7, 3, 50), (300, 8, 64), (64, 32, 70_000)])
def test_sort_by_latent_is_a_stable_csr_pattern(B, m, n):
    """The CPU counting sort gives torch's stable argsort, bincount offsets and rows (latents that never occur,
    repeated latents within a row, more latents than int16 holds)."""
    from rd_interp.sae.spmm import sort_by_latent

    g = torch.Generator().manual_seed(B * m)
    idx = torch.randint(0, n, (B, m), generator=g)
    crow, order, rows = sort_by_latent(idx, n)
    flat = idx.reshape(-1)
    want = torch.argsort(flat, stable=True)
    assert torch.equal(order, want)
    assert torch.equal(rows, want // m)
    assert torch.equal(crow, torch.cat([torch.zeros(1, dtype=torch.long), torch.bincount(flat, minlength=n).cumsum(0)]))


def test_squared_error_function_equals_float64_and_mse_loss_gradient():
    """_SquaredError: the sum of squares (float64 oracle), a's gradient equal bit for bit to F.mse_loss's,
    b's gradient its negative when b needs one, and a second backward refused (the difference is scaled in place).
    With add=True and b = -(the target), everything equals the subtracting form bit for bit (AuxK's use)."""
    import torch.nn.functional as F

    from rd_interp.sae.model import _SquaredError

    g = torch.Generator().manual_seed(12)
    a0, b0 = torch.randn(300, 17, generator=g), torch.randn(300, 17, generator=g)
    a, b = a0.clone().requires_grad_(), b0.clone().requires_grad_()
    sq, diff = _SquaredError.apply(a, b)
    assert torch.equal(diff, a0 - b0) and not diff.requires_grad
    torch.testing.assert_close(sq.double(), (a0.double() - b0.double()).pow(2).sum(), rtol=1e-6, atol=0)
    (0.37 * sq).backward(retain_graph=True)
    ra, rb = a0.clone().requires_grad_(), b0.clone().requires_grad_()
    (0.37 * F.mse_loss(ra, rb, reduction="sum")).backward()
    assert torch.equal(a.grad, ra.grad) and torch.equal(b.grad, rb.grad)
    with pytest.raises(RuntimeError):
        sq.backward()
    c = a0.clone().requires_grad_()
    _SquaredError.apply(c, b0)[0].backward()
    assert torch.equal(c.grad, 2 * (a0 - b0))
    # add=True: sum((a + (-b))^2) is sum((a - b)^2) in every bit, and so are both gradients
    a2, nb = a0.clone().requires_grad_(), (-b0).requires_grad_()
    sq2, diff2 = _SquaredError.apply(a2, nb, True)
    assert torch.equal(sq2, _SquaredError.apply(a0, b0)[0]) and torch.equal(diff2, a0 - b0)
    (0.37 * sq2).backward()
    assert torch.equal(a2.grad, ra.grad) and torch.equal(nb.grad, -rb.grad)


def test_bias_row_block_and_column_slices_change_no_bit(tmp_path):
    """The trainer's in-place layouts give the same bits as plain tensors: W_enc and b_enc as views of one
    block (model.bias_row_block, read by the forward's product without a copy), and S^T Y over a column slice
    of a wider matrix (spmm._rows_with_margin: the kernel reads the first d columns of the slice's rows)."""
    from rd_interp.sae.io import load_sae, save_sae
    from rd_interp.sae.model import _bias_row_view, _Pattern, bias_row_block

    sae = SparseAutoencoder(SAEConfig("topk", d_in=24, n_latents=64, k=4), seed=3)
    g = torch.Generator().manual_seed(5)
    with torch.no_grad():
        sae.b_enc.copy_(0.1 * torch.randn(64, generator=g))
        sae.b_dec.copy_(0.2 * torch.randn(24, generator=g))
    x = torch.randn(200, 24, generator=g)
    dead = torch.zeros(64, dtype=torch.bool)
    dead[::4] = True

    def step():
        sae.zero_grad()
        out = sae.train_forward(x, dead_mask=dead, k_aux=6)
        (out["loss"] + out["aux"]).backward()
        return out["x_hat"], {n: p.grad.clone() for n, p in sae.named_parameters()}

    assert _bias_row_view(sae.W_enc, sae.b_enc) is None
    want_hat, want = step()
    W0, b0 = sae.W_enc.detach().clone(), sae.b_enc.detach().clone()
    params = list(sae.parameters())
    with bias_row_block(sae):
        assert sae.W_enc.untyped_storage().data_ptr() == sae.b_enc.untyped_storage().data_ptr()
        assert torch.equal(_bias_row_view(sae.W_enc, sae.b_enc), torch.cat([W0, b0[None]]))
        got_hat, got = step()
    assert list(sae.parameters()) == params and torch.equal(sae.W_enc, W0) and torch.equal(sae.b_enc, b0)
    assert sae.W_enc.untyped_storage().data_ptr() != sae.b_enc.untyped_storage().data_ptr()
    assert torch.equal(got_hat, want_hat) and all(torch.equal(got[n], want[n]) for n in want)
    save_sae(sae, tmp_path / "s")  # safetensors refuses shared storage: none is left
    assert torch.equal(load_sae(tmp_path / "s").W_enc, W0)

    B, n, k, d = 300, 700, 5, 24  # 700 latents: two threads, blocks of 64 with a partial last one
    idx = torch.stack([torch.randperm(n, generator=g)[:k] for _ in range(B)]).sort(1).values
    vals, wide = torch.randn(B, k, generator=g), torch.randn(B, d + 3, generator=g)
    pat = _Pattern(idx, n)
    old = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        for Y in (wide[:, :d], wide[:, 3:]):  # the second's rows would run past the storage: a copy is read
            assert not Y.is_contiguous()
            plain = pat.st_mm(vals, Y)
            assert torch.equal(plain, pat.st_mm(vals, Y.contiguous()))
            assert torch.equal(pat.st_mm(vals, Y, transposed=True), plain.t().contiguous())
    finally:
        torch.set_num_threads(old)
