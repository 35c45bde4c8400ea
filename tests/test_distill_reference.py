"""Published `reverse-distillation` npz scalers: import them and reproduce the reference's formula."""

from __future__ import annotations

import numpy as np
import pytest

from rd_interp.distill import ReverseDistiller, load_reference_npz


def _data(seed=0, n=1500, p=8, q=14):
    rng = np.random.default_rng(seed)
    F = rng.standard_normal((n, 6))
    X = F @ rng.standard_normal((6, p)) + 0.2 * rng.standard_normal((n, p)) + 2.0
    Y = F @ rng.standard_normal((6, q)) + rng.standard_normal((n, q)) - 1.0
    return X, Y


def _reference_pcr_state(X, Y, n_pcs=5):
    """What PCRegressionWrapper + fbpcaWrapper.get_state_dict() hold, computed here with numpy."""
    N, p = X.shape
    q = Y.shape[1]
    im, om = X.mean(0), Y.mean(0)
    _, S, Vt = np.linalg.svd(X - im, full_matrices=False)
    Z = (X - im) @ Vt.T[:, :n_pcs]
    A = np.hstack([Z, np.ones((N, 1))])
    sol = np.linalg.lstsq(A, Y - om, rcond=None)[0]
    coef, intercept = sol[:n_pcs].T, sol[n_pcs]
    R = Y - (Z @ coef.T + intercept + om)
    pm = R.mean(0)
    _, s, Wt = np.linalg.svd(R - pm, full_matrices=False)
    d = q - p
    return {
        "regressor__coef_": coef, "regressor__intercept_": intercept, "regressor__input_mean_": im,
        "regressor__output_mean_": om, "regressor__input_components_": Vt.T,
        "regressor__input_eigenvalues_": S**2 / (N - 1), "regressor__n_significant_pcs_": np.int64(n_pcs),
        "regressor__johnstone_threshold_": np.float64(0.1), "regressor__sigma_sq_": np.float64(0.05),
        "pca__mean_": pm, "pca__components_": Wt[:d], "pca__explained_variance_": s[:d] ** 2 / (N - 1),
        "pca__explained_variance_ratio_": s[:d] ** 2 / np.sum(s**2), "pca__n_components": np.int64(d),
    }


def _reference_formula(state, x, y):
    """rdScalerGPUOptimized.step, transcribed: predict_pcr / predict_regressor, then transform_pca."""
    if "regressor__input_components_" in state:
        n = int(state["regressor__n_significant_pcs_"])
        pcs = (x - state["regressor__input_mean_"]) @ state["regressor__input_components_"][:, :n]
        pred = pcs @ state["regressor__coef_"].T + state["regressor__intercept_"] + state["regressor__output_mean_"]
    else:
        pred = x @ state["regressor__coef_"].T + state["regressor__intercept_"]
    res = (y - pred - state["pca__mean_"]) @ state["pca__components_"].T
    return np.concatenate([x, res], axis=1)


def test_import_pcr_npz_reproduces_reference_formula(tmp_path):
    X, Y = _data()
    state = _reference_pcr_state(X, Y)
    np.savez(tmp_path / "rd-scaler-8M-35M-pcr-fbpca-1k.npz", **state)
    ref = load_reference_npz(tmp_path / "rd-scaler-8M-35M-pcr-fbpca-1k.npz")
    assert ref.regressor == "pcr" and ref.n_significant_pcs == 5 and (ref.k_small, ref.k_large) == (8, 14)
    rd = ReverseDistiller.from_reference(tmp_path / "rd-scaler-8M-35M-pcr-fbpca-1k.npz")
    X2, Y2 = _data(seed=1)  # new data, not the fitting data
    expected = _reference_formula(state, X2, Y2)
    got = rd.transform(X2, Y2)
    assert np.max(np.abs(got - expected)) < 1e-10 * np.abs(expected).max()
    assert np.array_equal(got[:, :8], X2)
    assert np.max(np.abs(ref.step(X2, Y2) - expected)) < 1e-12 * np.abs(expected).max()
    # float32 inputs, as the reference's GPU path runs them
    got32 = rd.transform(X2.astype(np.float32), Y2.astype(np.float32))
    assert np.max(np.abs(got32 - expected)) < 1e-4 * np.abs(expected).max()


def test_import_linear_npz_and_object_entries(tmp_path):
    X, Y = _data(seed=2)
    Xa = np.hstack([X, np.ones((len(X), 1))])
    sol = np.linalg.lstsq(Xa, Y, rcond=None)[0]
    coef, intercept = sol[:-1].T, sol[-1]
    R = Y - X @ coef.T - intercept
    _, _, Wt = np.linalg.svd(R - R.mean(0), full_matrices=False)
    state = {"regressor__coef_": coef, "regressor__intercept_": intercept, "regressor__n_features_in_": np.int64(8),
             "pca__mean_": R.mean(0), "pca__components_": Wt[:6],
             "pca__explained_variance_": np.array([None, 1], dtype=object)}  # needs pickle: must be skipped
    np.savez(tmp_path / "lin.npz", **state)
    rd = ReverseDistiller.from_reference(tmp_path / "lin.npz")
    expected = _reference_formula(state, X, Y)
    assert np.max(np.abs(rd.transform(X, Y) - expected)) < 1e-10 * np.abs(expected).max()
    # a fit of our own with the linear regressor reproduces that scaler (same algorithm)
    ours = ReverseDistiller(regressor="linear").fit(X, Y)
    signs = np.sign(np.sum(ours.transform(X, Y) * expected, axis=0))
    assert np.allclose(ours.transform(X, Y), expected * signs, atol=1e-8 * np.abs(expected).max())


def test_export_roundtrip_and_bad_files(tmp_path):
    X, Y = _data(seed=3)
    for reg in ("pcr", "ridge"):
        ours = ReverseDistiller(regressor=reg, alpha=10.0).fit(X, Y)
        ours.to_reference_npz(tmp_path / f"{reg}.npz")
        with np.load(tmp_path / f"{reg}.npz", allow_pickle=False) as z:
            state = dict(z)
        expected = _reference_formula(state, X, Y)
        assert np.allclose(ours.transform(X, Y), expected, rtol=0, atol=1e-10 * np.abs(expected).max())
        back = ReverseDistiller.from_reference(tmp_path / f"{reg}.npz")
        assert np.allclose(back.transform(X, Y), expected, rtol=0, atol=1e-10 * np.abs(expected).max())
    state = _reference_pcr_state(X, Y)
    del state["pca__components_"]
    np.savez(tmp_path / "broken.npz", **state)
    with pytest.raises(KeyError, match="pca__components_"):
        load_reference_npz(tmp_path / "broken.npz")
    with pytest.raises(FileNotFoundError):
        load_reference_npz(tmp_path / "missing.npz")
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="not a readable npz"):
        load_reference_npz(tmp_path / "junk.npz")
