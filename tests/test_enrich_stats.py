"""Exactness of the vectorised enrichment against goatools run_study (==, not isclose)."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from scipy import stats

from rd_interp.enrich import EnrichConfig, GOEnricher, StudySetConfig, bh, fisher_pvalues, study_sets
from rd_interp.enrich.fisher import bh_with_ones
from rd_interp.enrich.termmatrix import godag_of
from tests.enrich_fixtures import (
    SHIPPED_OBO,
    SHIPPED_TSV,
    assert_identical,
    goatools_study,
    mini_inputs,
    shipped_inputs,
)


@pytest.mark.parametrize("alternative", ["greater", "two-sided", "less"])
def test_identical_to_goatools_mini(alternative):
    dag, prots, ann, scores = mini_inputs()
    enr = GOEnricher(prots, ann, dag, EnrichConfig(alternative=alternative))
    ind, info = study_sets(scores, StudySetConfig(top_n=30, min_proteins=5))
    res = enr.run(ind, info, rows="all")
    n = 0
    oracle = {ns: goatools_study(dag, *enr.terms.goatools_inputs(ns), ns, alternative) for ns in enr.terms.blocks}
    for lat in range(0, 20, 3):
        study = [prots[i] for i in ind[:, lat].nonzero()[0]]
        for ns, g in oracle.items():
            n += assert_identical(res.table, g.run_study(study, prt=None), lat, ns)
    assert n > 100
    # the sparse fast path ("hits": study count >= 1) gives the same numbers as the full listing
    hits = enr.run(ind, info, rows="hits").table
    full = res.table[res.table["study_count"] > 0].reset_index(drop=True)
    assert hits[["latent", "go_id", "namespace"]].equals(full[["latent", "go_id", "namespace"]])
    assert (hits["p"].to_numpy() == full["p"].to_numpy()).all()
    assert (hits["p_adj"].to_numpy() == full["p_adj"].to_numpy()).all()


def test_alt_ids_unknown_ids_and_propagation_mini():
    dag, prots, ann, _ = mini_inputs()
    ann = dict(ann)
    ann["P0000"] = frozenset({"GO:0000093", "GO:9999999", "GO:0000106"})  # alt of GO:0000003; unknown; MF part_of BP
    enr = GOEnricher(prots, ann, dag)
    assert enr.terms.n_unknown_ids >= 1
    mf = enr.terms.blocks["MF"]
    # GO:0000106 -> is_a GO:0000103 -part_of-> GO:0000006 (BP): goatools tests it inside the MF run
    assert "GO:0000006" in mf.terms and "GO:0000002" in mf.terms
    bp = enr.terms.blocks["BP"]
    row = enr.terms.matrix[0].toarray().ravel()
    have = {bp.terms[c - bp.col_start] for c in np.flatnonzero(row) if bp.col_start <= c < bp.col_start + bp.n_terms}
    assert {"GO:0000003", "GO:0000001", "GO:0008150"} <= have
    # 'regulates' is not followed: GO:0000008 regulates GO:0000004 but is_a only the root
    assert "GO:0000004" not in enr.terms.godag["GO:0000008"].get_all_parents()


def test_fisher_matches_scipy_scalar():
    rng = np.random.default_rng(3)
    N = 500
    K = rng.integers(1, N, 150)
    n = rng.integers(1, 80, 150)
    k = np.minimum(rng.integers(0, 20, 150), np.minimum(n, K))
    k = np.maximum(k, n - (N - K))
    for alt in ("greater", "less", "two-sided"):
        p = fisher_pvalues(k, n, K, N, alt)
        exp = [stats.fisher_exact([[a, b - a], [c - a, N - c - (b - a)]], alternative=alt)[1]
               for a, b, c in zip(k, n, K)]
        assert (p == np.asarray(exp)).all(), alt
        ps = fisher_pvalues(k, n, K, N, alt, screen=0.05)     # skipped tables come back as 1.0
        assert (ps[p < 0.05] == p[p < 0.05]).all() and ((ps == p) | (ps == 1.0)).all()
    assert fisher_pvalues([1], [1], [N], N)[0] == 1.0          # degenerate column: p = 1
    with pytest.raises(ValueError, match="inconsistent"):
        fisher_pvalues([5], [3], [10], N)
    with pytest.raises(ValueError, match="alternative"):
        fisher_pvalues([1], [3], [10], N, "bigger")


def test_bh_matches_statsmodels():
    multipletests = pytest.importorskip("statsmodels.stats.multitest").multipletests
    rng = np.random.default_rng(1)
    p = np.concatenate([rng.random(300) ** 4, np.ones(200), rng.choice([0.01, 0.02], 50)])
    assert (bh(p) == multipletests(p, 0.05, "fdr_bh")[1]).all()
    sub = p[p < 1]
    assert (bh_with_ones(sub, p.size) == multipletests(p, 0.05, "fdr_bh")[1][p < 1]).all()


def test_global_bh_mini():
    dag, prots, ann, scores = mini_inputs()
    enr = GOEnricher(prots, ann, dag, EnrichConfig(correction="global"))
    ind, info = study_sets(scores, StudySetConfig(top_n=30))
    t = enr.run(ind, info, rows="all").table
    # one BH family per namespace run over all latents x terms (the family a cross-space claim needs)
    for ns in t["namespace"].unique():
        sub = t[t["namespace"] == ns]
        assert (sub["p_adj_global"].to_numpy() == bh(sub["p"].to_numpy())).all()
    hits = enr.run(ind, info, rows="hits").table
    full = t[t.study_count > 0].reset_index(drop=True)
    assert (hits["p_adj_global"].to_numpy() == full["p_adj_global"].to_numpy()).all()


@pytest.mark.skipif(not (SHIPPED_OBO.exists() and SHIPPED_TSV.exists()), reason="shipped GO data not present")
def test_identical_to_goatools_shipped():
    """Shipped ontology + annotations, study sets of different sizes, incl. 0-hit terms (rows='all')."""
    onto, ann = shipped_inputs()
    prots = sorted(ann)[:2000]
    rng = np.random.default_rng(0)
    sizes = [5, 20, 50, 120]
    ind = sp.lil_matrix((len(prots), len(sizes)), dtype=bool)
    for j, s in enumerate(sizes):
        ind[rng.choice(len(prots), s, replace=False), j] = True
    enr = GOEnricher(prots, ann, onto, EnrichConfig(information_content=False))
    res = enr.run(ind.tocsc(), rows="all")
    n = 0
    oracle = {ns: goatools_study(godag_of(onto), *enr.terms.goatools_inputs(ns), ns) for ns in ("BP", "MF", "CC")}
    for lat in range(len(sizes)):
        study = [prots[i] for i in ind.tocsc()[:, lat].nonzero()[0]]
        for ns, g in oracle.items():
            n += assert_identical(res.table, g.run_study(study, prt=None), lat, ns)
    assert n > 1000 and res.table["ic"].isna().all()
    assert (res.table["study_count"] == 0).sum() > 100


def test_most_specific_on_a_hand_checked_chain():
    """A latent capturing a term and its ancestors keeps only the deepest; siblings both stay."""
    from rd_interp.enrich.termmatrix import TermMatrix

    dag, prots, ann, scores = mini_inputs()
    tm = TermMatrix(prots, ann, dag)
    # pick a term with an ancestor in the matrix
    child = next(g for g, i in tm.term_index.items() if tm.ancestors[i].nnz)
    parent = tm.go_ids[tm.ancestors[tm.term_index[child]].indices[0]]
    ci, pi = tm.term_index[child], tm.term_index[parent]
    got = tm.most_specific(np.array([0, 0, 1]), np.array([ci, pi, pi]))
    assert got.tolist() == [True, False, True]  # latent 1 has only the parent: it is its most specific


def test_duplicate_stored_entries_are_canonicalised_at_the_boundary():
    """scipy sums duplicate (protein, latent) entries; study sets must see that one protein once."""
    import scipy.sparse as sps

    from rd_interp.enrich.activations import StudySetConfig, study_sets

    # latent 0: protein 2 stored three times (0.4 each -> 1.2 summed), proteins 0 and 1 once
    rows = np.array([2, 2, 2, 0, 1, 3])
    cols = np.array([0, 0, 0, 0, 0, 1])
    vals = np.array([0.4, 0.4, 0.4, 1.0, 0.9, 2.0])
    dup = sps.csc_matrix((vals, (rows, cols)), shape=(5, 2))
    dup.has_canonical_format = False
    coo = sps.coo_matrix((vals, (rows, cols)), shape=(5, 2))  # keeps the duplicates stored
    clean = sps.csc_matrix(np.array([[1.0, 0], [0.9, 0], [1.2, 0], [0, 2.0], [0, 0]]))
    for given in (dup, coo, coo.tocsr()):
        ind, info = study_sets(given, StudySetConfig(top_n=1, min_proteins=3))
        ref, ref_info = study_sets(clean, StudySetConfig(top_n=1, min_proteins=3))
        assert (ind != ref).nnz == 0
        assert info.n_active.tolist() == ref_info.n_active.tolist() == [3, 1]
        assert ind[:, 0].nonzero()[0].tolist() == [2]  # the summed score wins, counted once
        # a protein stored 3x does not pass min_proteins = 3 on its own
        solo = sps.coo_matrix((np.ones(3), (np.array([4, 4, 4]), np.zeros(3, int))), shape=(5, 1))
        assert study_sets(solo, StudySetConfig(min_proteins=3))[1].skipped.tolist() == [0]


@pytest.mark.parametrize("fmt", ["csr", "csc"])
def test_study_counts_equal_scipys_product_array_for_array(fmt):
    """rd_interp.enrich.counts.sparse_product: scipy's A @ B, the same entries in the same order within each
    row and the same dtypes, from a start size that forces the output to grow; other dtypes go to scipy."""
    from rd_interp.enrich.counts import sparse_product

    rng = np.random.default_rng(5)
    A = sp.random(300, 200, density=0.05, format="csr", random_state=1, data_rvs=lambda n: rng.integers(1, 3, n))
    A = A.astype(np.int32)
    B = sp.random(200, 90, density=0.08, format=fmt, random_state=2, data_rvs=lambda n: rng.integers(1, 4, n))
    B = B.astype(np.int32)
    A.data[::7] = 0  # stored zeros contribute nothing, as in scipy
    ref, ours = (A @ B).tocsr(), sparse_product(A, B)
    for key in ("indptr", "indices", "data"):
        a, b = getattr(ref, key), getattr(ours, key)
        assert a.dtype == b.dtype and np.array_equal(a, b), key
    f = sparse_product(A.astype(np.float64), B)
    assert f.dtype == np.float64 and (f != ref).nnz == 0


def test_table_memo_returns_each_tables_value_and_computes_each_once():
    """TableMemo (the null distribution's memo of p-values by packed table): across calls that repeat keys and
    grow the hash table many times, every value is the function's, and each distinct key is computed once."""
    from rd_interp.enrich.fisher import TableMemo

    rng = np.random.default_rng(11)
    memo, seen = TableMemo(), []

    def compute(keys):
        assert np.all(np.diff(keys) > 0)  # distinct, ascending
        seen.append(keys.copy())
        return np.sqrt(keys.astype(np.float64)) + 0.5

    for size in (1, 50, 3000, 20000, 5, 70000):
        keys = rng.integers(0, 10 ** 12, size) if size > 5 else np.array([0, 7, 7, 0, 10 ** 15][:size])
        keys = np.concatenate([keys, keys[: size // 3]])  # repeats within a call
        np.testing.assert_array_equal(memo.get(keys, compute), np.sqrt(keys.astype(np.float64)) + 0.5)
    every = np.concatenate(seen)
    assert every.size == np.unique(every).size == memo.size  # nothing computed twice
    assert memo.get(np.empty(0, np.int64), compute).size == 0


def test_over_represented_equals_the_filtered_scipy_product():
    """counts.over_represented: of C = A @ S's rows lo..hi-1, the entries with k >= min_count and k N > K n
    (row-major, columns ascending) and each column's count of non-zero entries, as scipy's product and numpy
    filters give them."""
    from rd_interp.enrich.counts import over_represented

    rng = np.random.default_rng(12)
    A = sp.random(400, 300, density=0.05, format="lil", random_state=3, data_rvs=lambda n: np.ones(n))
    A[5] = 0  # an empty row
    A = A.tocsr().astype(np.int32)
    S = sp.random(300, 70, density=0.15, format="csr", random_state=4, data_rvs=lambda n: np.ones(n)).astype(np.int32)
    N, lo, hi = 300, 3, 377
    K = rng.integers(1, 120, hi - lo)
    n = np.asarray(S.sum(axis=0)).ravel().astype(np.int64)
    C = (A @ S).toarray()[lo:hi].astype(np.int64)
    term, lat = np.nonzero((C >= 3) & (C * N > K[:, None] * n[None, :]))
    got = over_represented(A, S, lo, hi, 3, N, K, n)
    assert 0 < term.size < np.count_nonzero(C)
    for g, want in zip(got, (term, lat, C[term, lat], np.count_nonzero(C, axis=0))):
        assert g.dtype == np.int64
        np.testing.assert_array_equal(g, want)
