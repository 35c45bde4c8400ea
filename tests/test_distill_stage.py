"""Distill-side stages of issue 11: the fit set (disjoint from the analysis set), held-out leakage diagnostics,
the control spaces, and chain/direct modes on a 3-model family.

Oracles are plain numpy (lstsq, QR + SVD canonical correlations, a hand-written PCR) on the same rows.
"""

from __future__ import annotations

import logging

import numpy as np
import pytest
from plm_fixtures import appends_die_after

from rd_interp.data.config import FitSetConfig
from rd_interp.data.run import FITSET_STAGE, fit_fasta, fitset_config, fitset_inputs, select
from rd_interp.distill import ReverseDistillationChain, ReverseDistiller
from rd_interp.distill import controls as controls_stage
from rd_interp.distill import run as distill_stage
from rd_interp.distill.config import DistillConfig
from rd_interp.distill.fitset import overlap
from rd_interp.distill.leakage import DEFINITIONS, N_CANONICAL, leakage
from rd_interp.io import datasets
from rd_interp.io.fasta import read_fasta, write_fasta
from rd_interp.io.inputs import open_store, store_names
from rd_interp.io.manifest import input_digests, load_manifest, stage_key, write_manifest
from rd_interp.io.options import key_dict
from rd_interp.io.serialize import ConfigError
from rd_interp.io.split import seeded_subset
from rd_interp.io.store import StoreWriter

AA = np.array(list("ACDEFGHIKLMNPQRSTVWY"))
WIDTHS = (6, 10, 16)


# -- fixtures: a synthetic family with a shared data distribution, as embed stage folders ----------------------
def _maps(widths=WIDTHS, seed=7):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal((w + 2, w)) for w in widths]


def _embeddings(n_rows, rng, widths=WIDTHS, maps=None):
    maps = maps or _maps(widths)
    F = rng.standard_normal((n_rows, 24)) * np.linspace(3, 0.3, 24)
    return [(F[:, : w + 2] @ M + 0.1 * rng.standard_normal((n_rows, w)) + 1.5).astype(np.float32)
            for w, M in zip(widths, maps)]


def _protein_set(n_prot, seed, prefix):
    rng = np.random.default_rng(seed)
    lengths = rng.integers(5, 40, n_prot)
    ids = [f"{prefix}{i:04d}" for i in range(n_prot)]
    seqs = ["".join(rng.choice(AA, int(L))) for L in lengths]
    return ids, seqs, lengths, rng


def _data_stage(d, ids, seqs):
    d.mkdir(parents=True)
    write_fasta(d / "proteins.fasta", list(zip(ids, seqs)))
    return write_manifest(d, stage="data", config={}, inputs={}, outputs=["proteins.fasta"], result={})


def _embed_stage(d, data, ids, lengths, H, model):
    w = StoreWriter(d / "store", dim=H.shape[1], manifest={"model": model, "layer": 1}, dtype="float32",
                    shard_rows=250)
    o = 0
    for pid, L in zip(ids, lengths):
        w.append(pid, H[o:o + int(L)])
        o += int(L)
    w.close()
    return write_manifest(d, stage="embed", config={}, inputs={"data": data}, outputs=["store"],
                          params={"model": model, "model_sha256": f"sha-{model}"},
                          result={"store": "store", "dim": H.shape[1]})


def _family(root, name, ids, seqs, lengths, rng, widths=WIDTHS):
    data = _data_stage(root / f"{name}-data", ids, seqs)
    H = _embeddings(int(lengths.sum()), rng, widths)
    models = ["mini-S", "mini-M", "mini-L"][: len(widths)] if len(widths) <= 3 else [f"m{i}" for i in widths]
    return [_embed_stage(root / f"{name}-embed-{m}", data, ids, lengths, h, m) for h, m in zip(H, models)], H


@pytest.fixture()
def sets(tmp_path):
    """An analysis set (60 proteins) and a disjoint fit set (50 proteins) of the same 3-model family."""
    a_ids, a_seqs, a_len, a_rng = _protein_set(60, 1, "A")
    f_ids, f_seqs, f_len, f_rng = _protein_set(50, 2, "F")
    ana, Ha = _family(tmp_path, "ana", a_ids, a_seqs, a_len, a_rng)
    fit, Hf = _family(tmp_path, "fit", f_ids, f_seqs, f_len, f_rng)
    return {"ana": ana, "fit": fit, "Ha": Ha, "Hf": Hf, "a": (a_ids, a_seqs, a_len), "f": (f_ids, f_seqs, f_len)}


# -- numpy oracles ---------------------------------------------------------------------------------------------
def _ols_share(X, R):
    A = np.c_[np.ones(len(X)), X]
    coef, *_ = np.linalg.lstsq(A, R, rcond=None)
    E = R - A @ coef
    Rc = R - R.mean(0)
    return 1 - (E ** 2).sum() / (Rc ** 2).sum(), np.mean(1 - (E ** 2).sum(0) / (Rc ** 2).sum(0))


def _cca(X, R):
    qx, _ = np.linalg.qr(X - X.mean(0))
    qr, _ = np.linalg.qr(R - R.mean(0))
    return np.linalg.svd(qx.T @ qr, compute_uv=False)


def _r2(Y, P):
    sse, sst = ((Y - P) ** 2).sum(0), ((Y - Y.mean(0)) ** 2).sum(0)
    return 1 - sse.sum() / sst.sum(), np.mean(1 - sse / sst)


# -- the fit-set stage -----------------------------------------------------------------------------------------
def test_select_writes_a_seeded_length_filtered_subset_keyed_by_fit_options(tmp_path):
    rng = np.random.default_rng(0)
    lengths = rng.integers(30, 90, 40)
    recs = [(f"T{i:03d}", "".join(rng.choice(AA, int(L)))) for i, L in enumerate(lengths)]
    src = tmp_path / "pool.fasta"
    write_fasta(src, recs)
    cfg = DistillConfig(fasta=str(src), train_proteins=12, fit_min_length=50, fit_max_length=80)
    inputs = fitset_inputs(cfg)
    m = select(inputs, cfg, tmp_path / "fitset", seed=3)
    ok = [r for r in recs if 50 <= len(r[1]) <= 80]
    want = [ok[i][0] for i in seeded_subset([r[0] for r in ok], 12, 3)]
    got = [r.id for r in read_fasta(m.path("proteins.fasta"))]
    assert got == want and len(got) == 12
    assert m.stage == FITSET_STAGE and m.result["n_length_ok"] == len(ok) and m.result["n_input"] == 40
    # the planner's key (fit-set options only) is the key the stage records; the regressor is not part of it
    key = stage_key(FITSET_STAGE, key_dict(fitset_config(cfg)), input_digests(inputs), {"seed": 3})
    assert m.key == key
    cfg2 = DistillConfig(fasta=str(src), train_proteins=12, fit_min_length=50, fit_max_length=80, regressor="linear")
    assert key_dict(fitset_config(cfg2)) == key_dict(fitset_config(cfg))
    assert set(key_dict(fitset_config(cfg))) == {f for f in FitSetConfig.__dataclass_fields__}
    # the same call again reproduces the same bytes
    m2 = select(inputs, cfg, tmp_path / "fitset2", seed=3)
    assert m2.files["proteins.fasta"].sha256 == m.files["proteins.fasta"].sha256


def test_fit_fasta_resolves_shipped_and_refuses_analysis_and_missing(tmp_path):
    assert fit_fasta(DistillConfig()) == datasets.shipped_train_pool()
    with pytest.raises(ValueError, match="distill.fasta = 'analysis'"):
        fit_fasta(DistillConfig(fasta="analysis"))
    with pytest.raises(FileNotFoundError, match="distill.fasta: .*nope.fasta does not exist"):
        fitset_inputs(DistillConfig(fasta=str(tmp_path / "nope.fasta")))
    with pytest.raises(ConfigError, match="distill.fit_min_length/fit_max_length"):
        DistillConfig(fit_min_length=100, fit_max_length=50).validate()
    with pytest.raises(ConfigError, match="distill.train_proteins"):
        DistillConfig(train_proteins=5).validate()


# -- leakage: hand-checkable cases -----------------------------------------------------------------------------
def _pair(n, rng, A, B, scales):
    X = rng.standard_normal((n, len(scales))) * scales
    return X, X @ A + 0.25 * rng.standard_normal((n, B.shape[0])) @ B + 2.0


@pytest.fixture()
def pair_data():
    rng = np.random.default_rng(0)
    scales = np.array([5, 4, 3, 1, .8, .5, .3, .2, .1, .05])
    A, B = rng.standard_normal((10, 16)), rng.standard_normal((16, 16))
    return _pair(4000, rng, A, B, scales), _pair(3000, rng, A, B, scales)


def test_linear_regressor_leaves_nothing_predictable_on_training_rows_and_little_on_held_out(pair_data):
    (Xt, Yt), (Xh, Yh) = pair_data
    st = ReverseDistiller("linear").fit(Xt, Yt)
    train = leakage(st, [Xt, Yt], rows="training")
    s = train["steps"][0]
    assert s["regressor"] == "linear" and s["n_rows"] == 4000 and s["n_canonical"] == N_CANONICAL
    assert abs(s["residual_predictable_share"]) < 1e-12 and max(s["canonical_correlations"]) < 1e-8
    held = leakage(st, [Xh, Yh], rows="held-out")["steps"][0]
    assert 0 < held["residual_predictable_share"] < 0.02 and max(held["canonical_correlations"]) < 0.2
    share, per_dim = _ols_share(Xh, st.transform(Xh, Yh)[:, 10:])
    assert held["residual_predictable_share"] == pytest.approx(share, rel=1e-9)
    assert held["residual_predictable_per_dim_mean"] == pytest.approx(per_dim, rel=1e-9)
    # the regression part equals OLS fitted on the training rows by lstsq (an independent oracle)
    coef, *_ = np.linalg.lstsq(np.c_[np.ones(4000), Xt], Yt, rcond=None)
    vw, pd = _r2(Yh, np.c_[np.ones(3000), Xh] @ coef)
    assert held["r2_large_from_small_variance_weighted"] == pytest.approx(vw, rel=1e-9)
    assert held["r2_large_from_small_per_dim_mean"] == pytest.approx(pd, rel=1e-9)
    assert set(train["definitions"]) == set(DEFINITIONS) and "not a variance share" in \
        DEFINITIONS["r2_large_from_small_per_dim_mean"]


def test_pcr_with_few_pcs_leaves_a_predictable_share_equal_to_numpy_oracles(pair_data):
    (Xt, Yt), (Xh, Yh) = pair_data
    st = ReverseDistiller("pcr", sigma_sq=1.0).fit(Xt, Yt)
    assert st.n_significant_pcs_ == 3  # eigenvalues 25, 16, 9 clear tau = 1.0 * (1 + sqrt(10/4000))^2
    for X, Y in ((Xt, Yt), (Xh, Yh)):
        s = leakage(st, [X, Y])["steps"][0]
        R = st.transform(X, Y)[:, 10:]
        share, per_dim = _ols_share(X, R)
        assert s["residual_predictable_share"] == pytest.approx(share, rel=1e-9) and share > 0.5
        assert s["residual_predictable_per_dim_mean"] == pytest.approx(per_dim, rel=1e-9)
        assert np.allclose(s["canonical_correlations"], _cca(X, R)[:N_CANONICAL], atol=1e-9)
    # the regression part: PCR by hand (top-3 PCs of the training rows, lstsq on their scores)
    mu = Xt.mean(0)
    _, vecs = np.linalg.eigh(np.cov(Xt, rowvar=False))
    V = vecs[:, ::-1][:, :3]
    coef, *_ = np.linalg.lstsq(np.c_[np.ones(4000), (Xt - mu) @ V], Yt, rcond=None)
    vw, pd = _r2(Yh, np.c_[np.ones(3000), (Xh - mu) @ V] @ coef)
    s = leakage(st, [Xh, Yh])["steps"][0]
    assert s["r2_large_from_small_variance_weighted"] == pytest.approx(vw, rel=1e-9)
    assert s["r2_large_from_small_per_dim_mean"] == pytest.approx(pd, rel=1e-9)
    assert s["r2_large_from_small_variance_weighted"] != pytest.approx(s["r2_large_from_small_per_dim_mean"])


def test_reconstruction_r2_is_one_when_the_residual_has_the_residual_blocks_rank():
    rng = np.random.default_rng(1)
    A, B = rng.standard_normal((5, 9)), rng.standard_normal((4, 9))
    scale = np.array([1, 10, 1, 1, 1, 1, 1, 1, 0.1])  # unequal column variances: the two averages differ

    def draw(n):
        X = rng.standard_normal((n, 5))
        return X, (X @ A + rng.standard_normal((n, 4)) @ B) * scale  # residual of rank 4 = 9 - 5

    (Xt, Yt), (Xh, Yh) = draw(3000), draw(2000)
    st = ReverseDistiller("linear").fit(Xt, Yt)
    s = leakage(st, [Xh, Yh])["steps"][0]
    assert s["r2_large_from_rd_variance_weighted"] == pytest.approx(1.0, abs=1e-9)
    assert s["r2_large_from_rd_per_dim_mean"] == pytest.approx(1.0, abs=1e-9)
    rs = (Yt - Yt.mean(0)) - (Xt - Xt.mean(0)) @ np.linalg.lstsq(Xt - Xt.mean(0), Yt - Yt.mean(0), rcond=None)[0]
    assert s["residual_block_variance_share"] == pytest.approx(
        np.var(st.transform(Xh, Yh)[:, 5:], axis=0).sum() / np.var(st.transform(Xh, Yh), axis=0).sum(), rel=1e-9)
    assert np.linalg.matrix_rank(rs, tol=1e-8) == 4


def test_leakage_accepts_row_blocks_and_stores_alike(pair_data, tmp_path):
    (Xt, Yt), (Xh, Yh) = pair_data
    st = ReverseDistiller("pcr").fit(Xt, Yt)
    whole = leakage(st, [Xh, Yh])
    blocks = leakage(st, ([Xh[a:a + 700], Yh[a:a + 700]] for a in range(0, 3000, 700)))
    for k in ("residual_predictable_share", "r2_large_from_rd_variance_weighted"):
        assert blocks["steps"][0][k] == pytest.approx(whole["steps"][0][k], rel=1e-9)
    with pytest.raises(TypeError, match="expected a fitted ReverseDistiller"):
        leakage(object(), [Xh, Yh])


# -- the distill stage ------------------------------------------------------------------------------------------
def test_distill_stage_fits_on_the_fit_set_and_reports_held_out_leakage(sets, tmp_path):
    cfg = DistillConfig(regressor="linear")
    m = distill_stage.run({"embed": sets["ana"], "fit": sets["fit"]}, cfg, tmp_path / "distill")
    fs = m.result["fit_set"]
    assert fs["proteins"] == 50 and fs["rows"] == int(sets["f"][2].sum()) and fs["disjoint"]
    assert fs["overlap"]["shared_ids"] == 0 and fs["overlap"]["checked_by"] == ["id", "sequence"]
    assert fs["held_out_proteins"] == 60
    chain = ReverseDistillationChain.load(m.path("chain"))
    direct = ReverseDistillationChain(names=["mini-S", "mini-M", "mini-L"], regressor="linear").fit(sets["Hf"])
    for a, b in zip(chain.steps_, direct.steps_):
        assert np.allclose(a.coef_, b.coef_, atol=1e-8) and a.n_samples_ == int(sets["f"][2].sum())
    rd, _ = open_store(m)
    assert rd.ids == sets["a"][0] and rd.dim == 16
    assert np.allclose(np.concatenate(list(rd.iter_chunks())), chain.transform(sets["Ha"])[-1], atol=1e-5)
    leak = m.result["leakage"]
    assert leak["rows"].startswith("held-out") and leak["n_rows"] == int(sets["a"][2].sum())
    assert leak["n_proteins"] == 60 and leak["definitions"] == DEFINITIONS and len(leak["steps"]) == 2
    ref = leakage(chain, [open_store(e)[0] for e in sets["ana"]])
    for got, want in zip(leak["steps"], ref["steps"]):
        assert got["residual_predictable_share"] == pytest.approx(want["residual_predictable_share"], rel=1e-9)
    on_fit = leakage(chain, [open_store(e)[0] for e in sets["fit"]])  # the fit rows: exactly orthogonal
    assert max(s["residual_predictable_share"] for s in on_fit["steps"]) < 1e-9
    assert min(s["residual_predictable_share"] for s in leak["steps"]) > 1e-6
    assert load_manifest(m.dir).result == m.result and m.input("fit")[0].params["model"] == "mini-S"


def test_overlapping_fit_set_is_counted_and_warned_about_and_total_overlap_refused(sets, tmp_path, caplog):
    a_ids, a_seqs, a_len = sets["a"]
    f_ids, f_seqs, f_len = sets["f"]
    # 4 fit proteins reuse analysis ids, 3 more reuse analysis sequences under new ids
    ids = list(f_ids)
    seqs = list(f_seqs)
    lens = np.array(f_len)
    for k in range(4):
        ids[k], seqs[k], lens[k] = a_ids[k], a_seqs[k], a_len[k]
    for k in range(4, 7):
        seqs[k], lens[k] = a_seqs[k + 10], a_len[k + 10]
    fit, _ = _family(tmp_path, "fit2", ids, seqs, lens, np.random.default_rng(5))
    with caplog.at_level(logging.WARNING):
        m = distill_stage.run({"embed": sets["ana"], "fit": fit}, DistillConfig(), tmp_path / "d")
    ov = m.result["fit_set"]["overlap"]
    assert (ov["shared_ids"], ov["shared_sequences"], ov["fit_proteins_overlapping"],
            ov["analysis_proteins_overlapping"]) == (4, 7, 7, 7)
    assert not m.result["fit_set"]["disjoint"] and m.result["fit_set"]["held_out_proteins"] == 53
    assert m.result["leakage"]["n_rows"] == int(a_len.sum() - a_len[:4].sum() - a_len[14:17].sum())
    assert "7 of 50 fit-set proteins are also in the analysis set" in caplog.text
    with pytest.raises(ValueError, match="all 60 fit-set proteins are also in the analysis set"):
        distill_stage.run({"embed": sets["ana"], "fit": sets["ana"]}, DistillConfig(), tmp_path / "d2")
    sup, _ = _family(tmp_path, "sup", list(a_ids) + list(f_ids[:5]), list(a_seqs) + list(f_seqs[:5]),
                     np.concatenate([a_len, f_len[:5]]), np.random.default_rng(6))
    with pytest.raises(ValueError, match="every one of the 60 analysis proteins is also in the fit set"):
        distill_stage.run({"embed": sets["ana"], "fit": sup}, DistillConfig(), tmp_path / "d3")


def test_overlap_counts_by_id_only_when_sequences_are_unknown():
    ov = overlap(["a", "b", "c"], ["c", "d"], None, None)
    assert ov["checked_by"] == ["id"] and ov["shared_sequences"] is None
    assert (ov["shared_ids"], ov["fit_proteins_overlapping"], list(ov["analysis_overlapping"])) == (1, 1, [0])


def test_without_a_fit_set_the_chain_is_fitted_on_an_analysis_subset_and_the_rest_is_held_out(sets, tmp_path):
    cfg = DistillConfig(fasta="analysis", train_proteins=20)
    m = distill_stage.run({"embed": sets["ana"]}, cfg, tmp_path / "d", seed=4)
    fs = m.result["fit_set"]
    stores = [open_store(e)[0] for e in sets["ana"]]
    chain, fit = distill_stage.fit_chain(stores, cfg, ["mini-S", "mini-M", "mini-L"], seed=4)
    assert (fs["source"], fs["disjoint"], fs["proteins"], fs["rows"]) == ("analysis", False, 20, fit["rows"])
    assert fs["held_out_proteins"] == 40 and m.result["leakage"]["n_proteins"] == 40
    assert np.allclose(ReverseDistillationChain.load(m.path("chain")).steps_[1].coef_, chain.steps_[1].coef_)
    held = np.setdiff1d(np.arange(60), seeded_subset(stores[0].ids, 20, 4))
    assert m.result["leakage"]["n_rows"] == int(sets["a"][2][held].sum())
    every = distill_stage.run({"embed": sets["ana"]}, DistillConfig(fasta="analysis", train_proteins=0),
                              tmp_path / "d0")
    assert every.result["leakage"]["rows"].startswith("training rows")


# -- controls and modes -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["chain", "direct"])
def test_controls_and_diagnostics_in_both_modes_on_a_three_model_chain(sets, tmp_path, mode):
    cfg = DistillConfig(mode=mode, regressor="pcr", chunk_rows=300)
    ins = {"embed": sets["ana"], "fit": sets["fit"]}
    dm = distill_stage.run(ins, cfg, tmp_path / "distill")
    cm = controls_stage.run(ins, cfg, tmp_path / "controls", seed=2)
    res_w = dm.result["blocks"]["residual"][1] - dm.result["blocks"]["residual"][0]
    assert res_w == (16 - 10 if mode == "chain" else 16 - 6)
    assert cm.result["widths"] == {"random_subspace": res_w, "naive_pca": 16}
    assert cm.result["stores"] == {"random_subspace": "random_subspace", "naive_pca": "naive_pca"}
    assert store_names(cm) == ["naive_pca", "random_subspace"]
    # diagnostics: one entry per step, each with its own small input width
    steps = dm.result["leakage"]["steps"]
    assert [s["k_small"] for s in steps] == ([6, 10] if mode == "chain" else [6, 6])
    chain = ReverseDistillationChain.load(dm.path("chain"))
    Ha = [h.astype(np.float64) for h in sets["Ha"]]
    out = chain.transform(Ha)
    small = out[0] if mode == "chain" else Ha[0]
    share, _ = _ols_share(small[:, : steps[1]["k_small"]], out[1][:, steps[1]["k_small"]:])
    assert steps[1]["residual_predictable_share"] == pytest.approx(share, rel=1e-4)
    # random subspace: (H_large - fit mean) Q with Q orthonormal and seeded
    rs, _ = open_store(cm, "random_subspace")
    Q = controls_stage.random_basis(16, res_w, 2)
    assert np.allclose(Q.T @ Q, np.eye(res_w), atol=1e-12)
    mean_fit = sets["Hf"][2].astype(np.float64).mean(0)
    assert np.allclose(np.concatenate(list(rs.iter_chunks())), (Ha[2] - mean_fit) @ Q, atol=1e-4)
    assert rs.ids == sets["a"][0] and rs.manifest["kind"] == "control:random_subspace"
    # naive PCA of the members rd draws on, fitted on the fit set
    members = [0, 1, 2] if mode == "chain" else [0, 2]
    concat_fit = np.concatenate([sets["Hf"][i].astype(np.float64) for i in members], axis=1)
    _, vecs = np.linalg.eigh(np.cov(concat_fit, rowvar=False))
    V = vecs[:, ::-1][:, :16]
    concat_ana = np.concatenate([Ha[i] for i in members], axis=1)
    want = (concat_ana - concat_fit.mean(0)) @ V
    got = np.concatenate(list(open_store(cm, "naive_pca")[0].iter_chunks()))
    assert np.allclose(np.abs(got), np.abs(want), atol=1e-3)  # PCs are defined up to sign
    assert cm.result["naive_pca"]["members"] == [["mini-S", "mini-M", "mini-L"][i] for i in members]
    with pytest.raises(ValueError, match="holds no store named None .*naive_pca, random_subspace"):
        open_store(cm)


def test_controls_are_seeded_resumable_and_selectable(sets, tmp_path):
    cfg = DistillConfig()
    ins = {"embed": sets["ana"], "fit": sets["fit"]}
    a = controls_stage.run(ins, cfg, tmp_path / "a", seed=1, which=["random_subspace"])
    assert a.result["stores"] == {"random_subspace": "random_subspace"} and a.params["controls"] == ["random_subspace"]
    assert open_store(a)[0].dim == 6  # one named store: the name may be left out
    b = controls_stage.run(ins, cfg, tmp_path / "b", seed=1, which=["random_subspace"])
    assert a.files == b.files  # same inputs + seed -> same bytes
    c = controls_stage.run(ins, cfg, tmp_path / "c", seed=2, which=["random_subspace"])
    assert a.files["random_subspace/shards/shard-00000.npy"].sha256 != c.files["random_subspace/shards/shard-00000.npy"].sha256
    with pytest.raises(ValueError, match="unknown control"):
        controls_stage.run(ins, cfg, tmp_path / "x", which=["untrained_sae"])
    # an interrupted write resumes to the same store
    with appends_die_after(30), pytest.raises(KeyboardInterrupt):
        controls_stage.run(ins, cfg, tmp_path / "r", seed=1, which=["random_subspace"])
    r = controls_stage.run(ins, cfg, tmp_path / "r", seed=1, which=["random_subspace"])
    assert r.files["random_subspace/shards/shard-00000.npy"] == a.files["random_subspace/shards/shard-00000.npy"]


def test_stage_keys_match_what_a_planner_computes(sets, tmp_path):
    cfg = DistillConfig()
    ins = {"embed": sets["ana"], "fit": sets["fit"]}
    dm = distill_stage.run(ins, cfg, tmp_path / "d", seed=5)
    assert dm.key == stage_key("distill", key_dict(cfg), input_digests(ins), {"seed": 5})
    cm = controls_stage.run(ins, cfg, tmp_path / "c", seed=5)
    assert cm.key == stage_key("controls", key_dict(cfg), input_digests(ins), controls_stage.controls_params(5))


def test_fit_set_of_other_models_is_refused(sets, tmp_path):
    f_ids, f_seqs, f_len = sets["f"]
    other, _ = _family(tmp_path, "other", f_ids, f_seqs, f_len, np.random.default_rng(3), widths=(6, 12, 16))
    with pytest.raises(ValueError, match="fit-set embedding 1 .* is not from the same model"):
        distill_stage.run({"embed": sets["ana"], "fit": other}, DistillConfig(), tmp_path / "d")
