"""Reverse distillation core: exactness, equivalence to an independent numpy SVD implementation,
Eckart-Young optimality, streaming, bad input, persistence."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import scipy.linalg
import torch

from rd_interp.distill import NaiveConcatPCA, ReverseDistillationChain, ReverseDistiller
from rd_interp.distill.pcr import johnstone_sigma_sq, select_pcs
from rd_interp.distill.stats import PairedMoments


def make_pair(n=3000, p=16, q=28, d_private=None, seed=0, noise=0.05, offset=3.0):
    """Low-rank shared signal + a private block only the large model sees + noise, non-zero means."""
    rng = np.random.default_rng(seed)
    d = q - p if d_private is None else d_private
    F = rng.standard_normal((n, 10)) * np.linspace(3, 1, 10)
    G = rng.standard_normal((n, d)) * np.linspace(2.5, 1.2, d)
    X = F @ rng.standard_normal((10, p)) + noise * rng.standard_normal((n, p)) + offset
    Y = (F @ rng.standard_normal((10, q)) + G @ rng.standard_normal((d, q))
         + noise * rng.standard_normal((n, q)) - offset * np.arange(q) / q)
    return X, Y


# ---------------------------------------------------------------------------------------------
# Independent plain-numpy implementation of the reference algorithm (full SVDs, no moments).
# ---------------------------------------------------------------------------------------------
def numpy_rd(X, Y, sigma_sq=None, min_var=0.95):
    N, p = X.shape
    q = Y.shape[1]
    d = q - p
    Xc = X - X.mean(0)
    Yc = Y - Y.mean(0)
    _, S, Vt = np.linalg.svd(Xc, full_matrices=False)
    eig = S**2 / (N - 1)
    edge = (1 + np.sqrt(p / N)) ** 2
    if sigma_sq is None:
        noise = eig[eig / eig.mean() < edge]
        sigma_sq = np.median(noise) if len(noise) else np.median(eig[-max(1, p // 4):])
    n = int(np.sum(eig > sigma_sq * edge))
    if n < 1:
        n = int(np.searchsorted(np.cumsum(eig) / eig.sum(), min_var) + 1)
    Z = Xc @ Vt[:n].T
    B = np.linalg.lstsq(np.hstack([np.ones((N, 1)), Z]), Yc, rcond=None)[0]
    R = Yc - np.hstack([np.ones((N, 1)), Z]) @ B
    Rc = R - R.mean(0)
    _, s2, Wt = np.linalg.svd(Rc, full_matrices=False)
    comps = Wt[:d].copy()
    idx = np.argmax(np.abs(comps), axis=1)
    comps *= np.sign(comps[np.arange(d), idx])[:, None]
    return np.hstack([X, Rc @ comps.T]), n, comps, sigma_sq


def rel_err(a, b):
    return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))


def test_matches_independent_numpy_svd_implementation():
    X, Y = make_pair(n=4000, p=16, q=28, seed=1)
    rd = ReverseDistiller().fit(X, Y)
    out = rd.transform(X, Y)
    ref, n_ref, comps_ref, sigma_ref = numpy_rd(X, Y)
    assert rd.n_significant_pcs_ == n_ref
    assert rd.sigma_sq_ == pytest.approx(sigma_ref, rel=1e-9)
    # signs are fixed by the same deterministic rule in both, so no alignment is needed
    assert rel_err(out, ref) < 1e-4
    angles = scipy.linalg.subspace_angles(rd.components_.T, comps_ref.T)
    assert np.max(angles) < 1e-3
    assert rel_err(out, ref) < 1e-9  # in float64 the two agree far beyond the required 1e-4


def test_matches_numpy_when_johnstone_falls_back_and_with_user_sigma():
    X, Y = make_pair(n=2000, p=12, q=20, seed=2)
    for sigma in (1e9, 0.5):  # 1e9: nothing clears tau -> 95% variance rule
        rd = ReverseDistiller(sigma_sq=sigma).fit(X, Y)
        ref, n_ref, _, _ = numpy_rd(X, Y, sigma_sq=sigma)
        assert rd.n_significant_pcs_ == n_ref
        assert rd.pc_fallback_ == (sigma == 1e9)
        assert rel_err(rd.transform(X, Y), ref) < 1e-9


def test_johnstone_estimator_branches():
    # Both branches of the reference estimator: some eigenvalues below the MP edge (median of them) ...
    eig = np.array([50.0, 20.0, 1.2, 1.0, 0.9, 0.8])
    n, p = 1000, 6
    edge = (1 + np.sqrt(p / n)) ** 2
    below = eig[eig / eig.mean() < edge]
    assert johnstone_sigma_sq(eig, n, p) == pytest.approx(np.median(below))
    # ... and none below, which (the normalised eigenvalues average 1 < edge) only all-zero spectra
    # reach: the reference's NaN ratios select nothing and it takes the median of the last quarter.
    assert johnstone_sigma_sq(np.array([0.0, 0.0, 0.0, 0.0]), 10, 4) == 0.0
    sel = select_pcs(eig, n)
    assert sel.n_significant == int(np.sum(eig > sel.sigma_sq * edge))
    sel = select_pcs(eig, n, sigma_sq=1e6)
    assert sel.fallback and sel.n_significant == int(np.searchsorted(np.cumsum(eig) / eig.sum(), 0.95) + 1)


def test_prefix_exact_all_input_kinds():
    X, Y = make_pair(n=1500, p=8, q=14, seed=3)
    rd = ReverseDistiller(chunk_rows=256).fit(X, Y)
    for x, y in [(X, Y), (X.astype(np.float32), Y.astype(np.float32)), (X.astype(np.float16), Y.astype(np.float32))]:
        out = rd.transform(x, y)
        assert out.shape == (1500, 14)
        assert np.array_equal(out[:, :8], x.astype(out.dtype))
        assert out.dtype == np.result_type(x.dtype, y.dtype, np.float32)
    xt, yt = torch.from_numpy(X.astype(np.float32)), torch.from_numpy(Y.astype(np.float32))
    outt = rd.transform(xt, yt)
    assert isinstance(outt, torch.Tensor) and torch.equal(outt[:, :8], xt)
    assert np.allclose(outt.numpy(), rd.transform(X, Y), atol=1e-3)
    # the torch code path (what CUDA runs) gives the same numbers on CPU
    rd._torch_path = True
    got = rd.transform(X, Y)
    rd._torch_path = False
    assert np.allclose(got, rd.transform(X, Y), rtol=1e-12, atol=1e-12)


def test_chain_prefix_nested_and_direct_mode():
    rng = np.random.default_rng(4)
    n = 2000
    F = rng.standard_normal((n, 30))
    H = [F[:, :w] @ rng.standard_normal((w, w)) + 0.1 * rng.standard_normal((n, w)) for w in (6, 10, 16)]
    ch = ReverseDistillationChain(names=["s", "m", "l"], chunk_rows=300).fit(H)
    rd1, rd2 = ch.transform(H)
    assert np.array_equal(rd1[:, :6], H[0])
    assert np.array_equal(rd2[:, :10], rd1)  # rd.2's prefix is exactly rd.1
    # each step equals a standalone distiller on the accumulated embedding
    s2 = ReverseDistiller().fit(rd1, H[2])
    assert np.allclose(s2.transform(rd1, H[2]), rd2, atol=1e-9)
    summ = ch.summary()
    assert [s["k_small"] for s in summ["steps"]] == [6, 10] and summ["steps"][1]["small"] == "s+m"
    assert summ["steps"][1]["step"] == "rd:s+m->l"
    direct = ReverseDistillationChain(names=["s", "m", "l"], mode="direct").fit(H)
    j1, j2 = direct.transform(H)
    assert np.array_equal(j2[:, :6], H[0]) and j2.shape == (n, 16)
    assert np.allclose(j2, ReverseDistiller().fit(H[0], H[2]).transform(H[0], H[2]))


def _cov(a, b):
    a = a - a.mean(0)
    b = b - b.mean(0)
    return a.T @ b / (len(a) - 1)


def test_blocks_uncorrelated_on_training_data():
    X, Y = make_pair(n=3000, p=10, q=18, seed=5)
    # Plain OLS: the residual block is uncorrelated with every column of H_small.
    rd = ReverseDistiller(regressor="linear").fit(X, Y)
    H = rd.transform(X, Y)[:, 10:]
    scale = np.sqrt(np.outer(X.var(0), H.var(0)))
    assert np.max(np.abs(_cov(X, H)) / scale) < 1e-10
    # residual components are mutually uncorrelated with the eigenvalues as variances
    assert np.allclose(_cov(H, H), np.diag(rd.explained_variance_), atol=1e-8 * rd.explained_variance_[0])
    # PCR: uncorrelated with the kept PCs of H_small exactly; with all of H_small up to the discarded
    # noise PCs' share, which the closed form gives.
    rd = ReverseDistiller().fit(X, Y)
    H = rd.transform(X, Y)[:, 10:]
    m = rd.n_significant_pcs_
    Z = (X - rd.mean_small_) @ rd.input_components_[:, :m]
    assert np.max(np.abs(_cov(Z, H)) / np.sqrt(np.outer(Z.var(0), H.var(0)))) < 1e-10
    Vr = rd.input_components_[:, m:]
    expected = Vr @ Vr.T @ _cov(X, Y) @ rd.components_.T
    assert np.allclose(_cov(X, H), expected, atol=1e-10 * np.abs(_cov(X, Y)).max())
    # when every PC clears the threshold PCR is OLS and the blocks are fully uncorrelated
    Xs, Ys = make_pair(n=3000, p=8, q=14, seed=6, noise=1.0)
    rd = ReverseDistiller(sigma_sq=0.0).fit(Xs, Ys)
    assert rd.n_significant_pcs_ == 8
    H = rd.transform(Xs, Ys)[:, 8:]
    assert np.max(np.abs(_cov(Xs, H))) < 1e-9


def _ls_error(Y, cols):
    A = np.hstack([np.ones((len(Y), 1))] + cols)
    coef = np.linalg.lstsq(A, Y, rcond=None)[0]
    return float(np.sum((Y - A @ coef) ** 2))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_reconstruction_reaches_eckart_young_optimum(seed):
    rng = np.random.default_rng(seed)
    n, p, q = 300, 3, 7
    d = q - p
    X = rng.standard_normal((n, p)) @ rng.standard_normal((p, p)) + 2
    Y = X @ rng.standard_normal((p, q)) + rng.standard_normal((n, q)) @ np.diag(rng.uniform(0.2, 2, q))
    rd = ReverseDistiller(regressor="linear").fit(X, Y)
    H = rd.transform(X, Y)[:, p:]
    ours = _ls_error(Y, [X, H])
    # brute force: every d-subset of an independently computed eigenbasis of the OLS residual, and
    # random d-dim subspaces of the large model's space; none beats ours, the best subset equals it
    Xa = np.hstack([np.ones((n, 1)), X])
    R = Y - Xa @ np.linalg.lstsq(Xa, Y, rcond=None)[0]
    _, s, Vt = np.linalg.svd(R, full_matrices=False)
    subsets = [_ls_error(Y, [X, R @ Vt[list(c)].T]) for c in itertools.combinations(range(q), d)]
    assert ours == pytest.approx(min(subsets), rel=1e-9)
    assert ours == pytest.approx(float(np.sum(s[d:] ** 2)), rel=1e-9)  # Eckart-Young value
    for _ in range(200):
        assert _ls_error(Y, [X, Y @ rng.standard_normal((q, d))]) >= ours * (1 - 1e-12)
    # PCR: the optimum for its own residual, reconstructing from the kept PCs and H_res
    X2 = np.hstack([X[:, :2] * 5, 0.01 * rng.standard_normal((n, 1))])
    rd = ReverseDistiller().fit(X2, Y)
    m = rd.n_significant_pcs_
    assert m < p
    Z = (X2 - rd.mean_small_) @ rd.input_components_[:, :m]
    H = rd.transform(X2, Y)[:, p:]
    Za = np.hstack([np.ones((n, 1)), Z])
    R = Y - Za @ np.linalg.lstsq(Za, Y, rcond=None)[0]
    _, s, Vt = np.linalg.svd(R, full_matrices=False)
    ours = _ls_error(Y, [Z, H])
    assert ours == pytest.approx(float(np.sum(s[d:] ** 2)), rel=1e-9)
    best = min(_ls_error(Y, [Z, R @ Vt[list(c)].T]) for c in itertools.combinations(range(q), d))
    assert ours == pytest.approx(best, rel=1e-9)


def test_streamed_equals_in_memory_and_torch_path():
    X, Y = make_pair(n=2500, p=12, q=20, seed=7, offset=1e3)  # large offset: the shift keeps precision
    a = ReverseDistiller().fit(X, Y)
    cuts = [0, 1, 8, 1000, 1001, 2500]
    chunks = ((X[s:e], Y[s:e]) for s, e in zip(cuts, cuts[1:]))
    b = ReverseDistiller().fit(chunks)
    torch_chunks = ((torch.from_numpy(X[s:e]), torch.from_numpy(Y[s:e])) for s, e in zip(cuts, cuts[1:]))
    c = ReverseDistiller().fit(torch_chunks)
    for other in (b, c):
        assert other.n_significant_pcs_ == a.n_significant_pcs_
        for k in ("coef_", "components_", "mean_small_", "explained_variance_"):
            assert np.allclose(getattr(a, k), getattr(other, k), rtol=1e-9, atol=1e-9 * np.abs(getattr(a, k)).max())
    # the torch (CUDA-style) accumulation path equals the BLAS path
    m1, m2 = PairedMoments(12, 20), PairedMoments(12, 20, use_blas=False)
    for s, e in zip(cuts, cuts[1:]):
        m1.update(X[s:e], Y[s:e])
        m2.update(X[s:e], Y[s:e])
    f1, f2 = m1.finish(), m2.finish()
    assert np.allclose(f1.cov, f2.cov, rtol=1e-12, atol=1e-12)
    assert np.allclose(f1.cov, np.cov(np.hstack([X, Y]).T), rtol=1e-10, atol=1e-10)
    R = Y - ((X - a.mean_small_) @ a.coef_ + a.mean_large_)
    assert a.r2_ == pytest.approx(np.mean(1 - R.var(0, ddof=1) / Y.var(0, ddof=1)), rel=1e-9)


def test_ridge_and_linear_match_closed_forms():
    X, Y = make_pair(n=1000, p=6, q=10, seed=8)
    Xc, Yc = X - X.mean(0), Y - Y.mean(0)
    rd = ReverseDistiller(regressor="ridge", alpha=50.0).fit(X, Y)
    W = np.linalg.solve(Xc.T @ Xc + 50.0 * np.eye(6), Xc.T @ Yc)  # sklearn Ridge(alpha=50) with intercept
    assert np.allclose(rd.coef_, W, rtol=1e-9, atol=1e-12)
    R = Yc - Xc @ W
    ev = np.linalg.eigvalsh(np.cov(R.T))[::-1]
    assert np.allclose(rd.explained_variance_, ev[:4], rtol=1e-9)
    lin = ReverseDistiller(regressor="linear").fit(X, Y)
    assert np.allclose(lin.coef_, np.linalg.lstsq(Xc, Yc, rcond=None)[0], rtol=1e-8, atol=1e-10)
    assert lin.sigma_sq_ is None and lin.n_significant_pcs_ == 6


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cpu_equals_cuda():
    X, Y = make_pair(n=3000, p=16, q=28, seed=9)
    a = ReverseDistiller().fit(X, Y)
    b = ReverseDistiller(device="cuda").fit(X, Y)
    assert a.n_significant_pcs_ == b.n_significant_pcs_
    assert np.allclose(a.transform(X, Y), b.transform(X, Y), rtol=1e-6, atol=1e-8)
    xt = torch.from_numpy(X).cuda()
    assert b.transform(xt, torch.from_numpy(Y).cuda()).device.type == "cuda"


# ---------------------------------------------------------------------------------------------
def test_bad_input_clear_errors():
    X, Y = make_pair(n=200, p=6, q=10, seed=10)
    with pytest.raises(ValueError, match="H_large has 150 rows but H_small has 200"):
        ReverseDistiller().fit(X, Y[:150])
    with pytest.raises(ValueError, match="must be smaller than k_large"):
        ReverseDistiller().fit(Y, X)
    with pytest.raises(ValueError, match="must be smaller than k_large"):
        ReverseDistiller().fit(X, X)
    Xn = X.copy()
    Xn[123, 2] = np.nan
    with pytest.raises(ValueError, match=r"x has NaN or Inf values \(row 123"):
        ReverseDistiller(chunk_rows=50).fit(Xn, Y)
    Yi = Y.copy()
    Yi[7, 0] = np.inf
    with pytest.raises(ValueError, match=r"y has NaN or Inf values \(row 7"):
        ReverseDistiller().fit(X, Yi)
    with pytest.raises(ValueError, match="fewer rows than dimensions"):
        ReverseDistiller().fit(X[:10], Y[:10])
    with pytest.raises(ValueError, match="fewer rows than dimensions"):
        ReverseDistiller().fit(iter([(X[:5], Y[:5]), (X[5:9], Y[5:9])]))
    with pytest.raises(ValueError, match="chunk 1: H_small has 4 rows but H_large has 3"):
        ReverseDistiller().fit(iter([(X[:5], Y[:5]), (X[5:9], Y[5:8])]))
    with pytest.raises(ValueError, match="2-D"):
        ReverseDistiller().fit(X[:, 0], Y)
    with pytest.raises(ValueError, match="regressor must be one of"):
        ReverseDistiller(regressor="lasso")
    with pytest.raises(ValueError, match="no data"):
        ReverseDistiller().fit(iter([]))
    rd = ReverseDistiller().fit(X, Y)
    with pytest.raises(ValueError, match="NaN or Inf"):
        rd.transform(Xn, Y)
    with pytest.raises(ValueError, match="do not match the fitted model"):
        rd.transform(X[:, :5], Y)
    with pytest.raises(ValueError, match="not fitted"):
        ReverseDistiller().transform(X, Y)


def test_save_load_roundtrip_and_tamper(tmp_path):
    X, Y = make_pair(n=800, p=6, q=10, seed=11)
    rd = ReverseDistiller(small_name="8M", large_name="35M").fit(X, Y)
    rd.save(tmp_path / "m")
    back = ReverseDistiller.load(tmp_path / "m")
    assert np.array_equal(back.transform(X, Y), rd.transform(X, Y))
    assert back.summary() == rd.summary()
    import json

    meta = json.loads((tmp_path / "m" / "distiller.json").read_text())
    assert meta["family"] == {"small": "8M", "large": "35M"} and meta["fitted"]["n_samples"] == 800
    raw = (tmp_path / "m" / "distiller.npz").read_bytes()
    (tmp_path / "m" / "distiller.npz").write_bytes(raw[:-10] + b"0" * 10)
    with pytest.raises(ValueError, match="checksum"):
        ReverseDistiller.load(tmp_path / "m")
    ch = ReverseDistillationChain(names=["a", "b"]).fit([X, Y])
    ch.save(tmp_path / "c")
    assert np.array_equal(ReverseDistillationChain.load(tmp_path / "c").transform([X, Y])[0], ch.transform([X, Y])[0])


def test_naive_baseline_is_pca_of_concatenation(tmp_path):
    X, Y = make_pair(n=1200, p=6, q=10, seed=12)
    nv = NaiveConcatPCA().fit(X, Y)
    Z = np.hstack([X, Y])
    Zc = Z - Z.mean(0)
    _, s, Vt = np.linalg.svd(Zc, full_matrices=False)
    out = nv.transform(X, Y)
    ref = Zc @ Vt[:10].T
    signs = np.sign(np.sum(out * ref, axis=0))
    assert rel_err(out, ref * signs) < 1e-9
    back = NaiveConcatPCA.load(nv.save(tmp_path / "nv"))
    assert np.array_equal(back.transform(X, Y), out)


def test_estimators_follow_the_sklearn_contract():
    from sklearn.base import clone

    X, Y = make_pair(n=400, p=5, q=9, seed=4)
    rd = ReverseDistiller(regressor="linear", sigma_sq=0.5, chunk_rows=77)
    before = rd.get_params(deep=True)
    rd.fit(X, Y)
    assert rd.get_params() == before  # fit changes no parameter
    c = clone(rd)
    assert c.get_params() == before and not hasattr(c, "coef_")
    assert np.array_equal(c.fit(X, Y).transform(X, Y), rd.transform(X, Y))
    rd.set_params(regressor="pcr")
    assert rd.regressor == "pcr"
    with pytest.raises(ValueError, match="invalid parameter"):
        rd.set_params(bogus=1)
    with pytest.raises(ValueError, match="regressor must be one of"):
        rd.set_params(regressor="lasso")
    # a refit with other names takes the new names (nothing stale kept from the first fit)
    named = ReverseDistiller(small_name="a", large_name="b").fit(X, Y)
    assert named.model_name() == "rd:a->b"
    named.set_params(small_name="c").fit(X, Y)
    assert named.model_name() == "rd:c->b"

    Z = np.concatenate([Y, np.random.default_rng(5).normal(size=(400, 4)) + Y[:, :4]], axis=1)
    ch = ReverseDistillationChain(regressor="linear", chunk_rows=100)
    params = ch.get_params()
    ch.fit([X, Y, Z])
    assert ch.get_params() == params and ch.names is None and ch.names_ == ["H0", "H1", "H2"]
    c2 = clone(ch).fit([X, Y, Z])
    assert all(np.array_equal(a, b) for a, b in zip(c2.transform([X, Y, Z]), ch.transform([X, Y, Z])))
