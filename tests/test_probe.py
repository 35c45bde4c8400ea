"""The probe's definitions, pinned on small fixtures: AUROC, split, bootstrap, planted and shuffled labels."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.metrics import roc_auc_score

from rd_interp.probe import (
    LinearProbe, auroc, bootstrap_weights, composition_features, evaluate_probe, label_matrix, split_proteins,
    top_terms, weighted_auroc,
)


def _ids(n):
    return [f"P{i:05d}" for i in range(n)]


def test_auroc_matches_sklearn_with_ties():
    rng = np.random.default_rng(0)
    y = rng.random(300) < 0.3
    s = np.round(rng.normal(size=300) + y, 1)  # rounded: many ties
    assert auroc(y, s) == pytest.approx(roc_auc_score(y, s), abs=1e-12)
    assert auroc(y, -s) == pytest.approx(1 - roc_auc_score(y, s), abs=1e-12)
    assert np.isnan(auroc(np.zeros(5, bool), np.arange(5.0)))


def test_weighted_auroc_equals_auroc_of_the_resample():
    rng = np.random.default_rng(1)
    y = rng.random(80) < 0.4
    s = np.round(rng.normal(size=80), 1)
    W = bootstrap_weights(80, 5, seed=3)
    assert (W.sum(axis=1) == 80).all()
    got = weighted_auroc(y, s, W)
    for b in range(5):
        rows = np.repeat(np.arange(80), W[b].astype(int))
        assert got[b] == pytest.approx(roc_auc_score(y[rows], s[rows]), abs=1e-12)


def test_split_is_by_protein_seeded_and_order_free():
    ids = _ids(1000)
    t = split_proteins(ids, 0.2, seed=0)
    assert t.sum() == 200
    perm = np.random.default_rng(0).permutation(1000)
    t_perm = split_proteins([ids[i] for i in perm], 0.2, seed=0)
    assert {ids[i] for i in perm[t_perm]} == {p for p, m in zip(ids, t) if m}  # row order does not matter
    assert (split_proteins(ids, 0.2, seed=0) == t).all()
    assert (split_proteins(ids, 0.2, seed=1) != t).any()
    # a protein's side does not depend on which other proteins are present
    sub = ids[::2]
    ts = split_proteins(sub, 0.2, seed=0)
    inter = {p for p, m in zip(sub, ts) if m} & {p for p, m in zip(ids, t) if m}
    assert len(inter) > 0.6 * ts.sum()
    with pytest.raises(ValueError, match="unique"):
        split_proteins(["a", "a", "b"], 0.5)


def _planted(n=1500, d=12, n_terms=6, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    W = rng.normal(size=(d, n_terms))
    Y = X @ W > np.quantile(X @ W, 0.8, axis=0)  # ~20% positives per term, linearly separable
    return X, Y


def test_planted_separable_labels_give_auroc_near_one():
    X, Y = _planted()
    r = evaluate_probe(X, Y, _ids(len(X)), seed=0, n_boot=200)
    assert r.macro_auroc > 0.99 and (r.auroc > 0.98).all()
    assert r.n_test == 300 and r.n_train == 1200 and not r.skipped_terms
    assert r.ci_low <= r.macro_auroc <= r.ci_high


def test_shuffled_labels_give_auroc_near_half():
    X, Y = _planted(n=2000, n_terms=20)
    Ys = np.random.default_rng(5).permuted(Y, axis=0)  # labels independent of X
    r = evaluate_probe(X, Ys, _ids(len(X)), seed=0, n_boot=300)
    assert abs(r.macro_auroc - 0.5) < 0.04
    assert r.ci_low <= r.macro_auroc <= r.ci_high and r.ci_low < 0.5 + 0.04 and r.ci_high > 0.5 - 0.04


def test_bootstrap_interval_contains_estimate_and_shrinks_with_more_proteins():
    rng = np.random.default_rng(2)
    widths = []
    for n in (400, 6400):
        X = rng.normal(size=(n, 4))
        Y = (X[:, :3] + rng.normal(scale=2.0, size=(n, 3))) > 1.0  # weak signal
        r = evaluate_probe(X, Y, _ids(n), seed=0, n_boot=400)
        assert r.ci_low <= r.macro_auroc <= r.ci_high
        widths.append(r.ci_high - r.ci_low)
    assert widths[1] < 0.5 * widths[0]


def test_same_seed_same_result_and_paired_difference():
    X, Y = _planted(n=800, n_terms=4)
    noise = np.random.default_rng(9).normal(size=X.shape)
    ids = _ids(800)
    a = evaluate_probe(X, Y, ids, seed=4, n_boot=200)
    b = evaluate_probe(X, Y, ids, seed=4, n_boot=200)
    assert a.macro_auroc == b.macro_auroc and (a.boot_macro == b.boot_macro).all()
    worse = evaluate_probe(X + 3 * noise, Y, ids, seed=4, n_boot=200)
    diff, lo, hi = a.difference(worse)
    assert diff > 0 and lo > 0 and lo <= diff <= hi
    other = evaluate_probe(X, Y, ids, seed=5, n_boot=200)
    with pytest.raises(ValueError, match="same terms"):
        a.difference(other)


def test_rare_terms_are_skipped_and_named():
    X, Y = _planted(n=500, n_terms=3)
    Y[:, 1] = False
    Y[:2, 1] = True  # two positives in all: cannot be probed
    r = evaluate_probe(X, Y, _ids(500), ["GO:1", "GO:2", "GO:3"], n_boot=50)
    assert r.terms == ["GO:1", "GO:3"] and r.skipped_terms == ["GO:2"]
    assert set(r.to_dict()["per_term"]) == {"GO:1", "GO:3"}


def test_bad_inputs_fail_with_one_clear_message():
    X, Y = _planted(n=200, n_terms=2)
    X[3, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        evaluate_probe(X, Y, _ids(200))
    with pytest.raises(ValueError, match="shapes disagree"):
        evaluate_probe(np.nan_to_num(X), Y[:100], _ids(200))
    with pytest.raises(ValueError, match="not fitted"):
        LinearProbe().decision_function(np.zeros((2, 2)))
    with pytest.raises(ValueError, match="single class"):
        LinearProbe().fit(np.zeros((4, 2)), np.zeros((4, 1), bool))


def test_linear_probe_estimator_contract():
    p = LinearProbe(C=0.5)
    q = clone(p)
    assert q.get_params() == {"C": 0.5, "max_iter": 100, "tol": 1e-10} and q is not p
    X, Y = _planted(n=300, n_terms=2)
    p.fit(X, Y)
    assert p.coef_.shape == (2, X.shape[1]) and p.decision_function(X).shape == (300, 2)
    assert not hasattr(q, "coef_")


@pytest.mark.parametrize("C", [1.0, 0.05])
def test_newton_probe_reaches_the_optimum_of_sklearns_objective(C):
    """fit_logistic vs two oracles: the objective's gradient, written out here in plain numpy, vanishes at
    its solution; scikit-learn's lbfgs, run to a tight tolerance per term, finds the same coefficients."""
    from sklearn.linear_model import LogisticRegression

    X, Y = _planted(n=600, d=12, n_terms=5, seed=2)
    Y[:, 4] = X[:, 0] > 0.3  # a separable term: only the penalty keeps its weights finite
    p = LinearProbe(C=C).fit(X, Y)
    Z = (X - p.mean_) / p.scale_
    for j in range(Y.shape[1]):
        m = Z @ p.coef_[j] + p.intercept_[j]
        r = 1 / (1 + np.exp(-m)) - Y[:, j]
        grad = np.concatenate([C * Z.T @ r + p.coef_[j], [C * r.sum()]])
        assert np.abs(grad).max() < 1e-7 * max(1.0, C * len(Z)), (j, np.abs(grad).max())
        lr = LogisticRegression(C=C, tol=1e-12, max_iter=100000).fit(Z, Y[:, j])
        np.testing.assert_allclose(p.coef_[j], lr.coef_[0], rtol=1e-5, atol=1e-7)
        assert p.intercept_[j] == pytest.approx(lr.intercept_[0], rel=1e-5, abs=1e-7)
    assert (p.n_iter_ >= 1).all() and (p.n_iter_ < 100).all()


def test_composition_features():
    f = composition_features(["AAAC", "WXYZ"])
    assert f.shape == (2, 21)
    aa = "ACDEFGHIKLMNPQRSTVWY"
    assert f[0, aa.index("A")] == 0.75 and f[0, aa.index("C")] == 0.25
    assert f[1, aa.index("W")] == 0.25 and f[1, :20].sum() == 0.5  # X and Z count towards length only
    assert f[0, 20] == pytest.approx(np.log(4))
    with pytest.raises(ValueError, match="empty"):
        composition_features([""])


def test_labels_and_top_terms():
    ann = {"a": {"t1", "t2"}, "b": {"t2"}, "c": {"t3", "t2"}, "z": {"t9"}}
    ids = ["a", "b", "c", "d"]
    assert top_terms(ids, ann, 2) == ["t2", "t1"]  # t9 belongs to a protein not in ids; ties by id
    Y = label_matrix(ids, ann, ["t2", "t3"])
    assert Y.tolist() == [[True, False], [True, False], [True, True], [False, False]]
