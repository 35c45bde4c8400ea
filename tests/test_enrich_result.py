"""Study sets, result tables, summary/strata, save/load, null control, seed comparison, CLI."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from rd_interp.enrich import (
    EnrichConfig,
    EnrichmentResult,
    GOEnricher,
    StudySetConfig,

    enrich_latents,

    study_sets,
)
from rd_interp.enrich.coverage import strata
from tests.enrich_fixtures import MINI_OBO, mini_inputs


def planted(n_latents=12, seed=0):
    """Mini inputs where even latents fire on the proteins of one GO term (real signal), odd ones at random."""
    dag, prots, ann, _ = mini_inputs(seed=seed)
    rng = np.random.default_rng(seed)
    by_term = {}
    for i, p in enumerate(prots):
        for g in ann.get(p, ()):
            if g in dag:
                by_term.setdefault(dag[g].item_id, []).append(i)
    terms = sorted(t for t, v in by_term.items() if len(v) >= 15)
    S = np.zeros((len(prots), n_latents))
    for j in range(n_latents):
        S[rng.choice(len(prots), 40, replace=False), j] = rng.random(40)
        if j % 2 == 0:
            S[by_term[terms[j % len(terms)]], j] = 2.0 + rng.random(len(by_term[terms[j % len(terms)]]))
    return dag, prots, ann, sp.csr_matrix(S)


# ---------------------------------------------------------------- study sets
def test_study_sets_top_n_ties_and_skips():
    S = np.zeros((10, 4))
    S[:, 0] = [5, 3, 3, 3, 1, 0, 0, 0, 0, 2]     # ties at 3 -> lower row index wins
    S[[1, 2], 1] = 1.0                            # active on 2 < min_proteins -> skipped
    S[:, 3] = np.arange(10)                       # row 0 has score 0 -> inactive
    ind, info = study_sets(sp.csr_matrix(S), StudySetConfig(top_n=3, min_proteins=3))
    assert sorted(ind[:, 0].nonzero()[0]) == [0, 1, 2]
    assert ind[:, 1].nnz == 0 and ind[:, 2].nnz == 0
    assert sorted(ind[:, 3].nonzero()[0]) == [7, 8, 9]
    assert info.skipped.tolist() == [1, 2] and info.n_dead == 1
    assert info.n_active.tolist() == [6, 2, 0, 9]
    ind2, _ = study_sets(sp.csr_matrix(S), StudySetConfig(mode="fraction_of_max", tau=0.5, min_proteins=3))
    assert sorted(ind2[:, 0].nonzero()[0]) == [0, 1, 2, 3]        # >= 2.5
    assert sorted(ind2[:, 3].nonzero()[0]) == [5, 6, 7, 8, 9]    # >= 4.5
    with pytest.raises(ValueError, match="negative"):
        study_sets(sp.csr_matrix(-S))
    with pytest.raises(ValueError, match="top_n"):
        study_sets(sp.csr_matrix(S), StudySetConfig(top_n=0))


# ---------------------------------------------------------------- tables
def test_significant_table_equals_hits_filtered_and_captured():
    dag, prots, ann, scores = planted()
    for cfg in (EnrichConfig(), EnrichConfig(correction="global"), EnrichConfig(alternative="two-sided")):
        enr = GOEnricher(prots, ann, dag, cfg)
        ind, info = study_sets(scores, StudySetConfig(top_n=20))
        sig = enr.run(ind, info).table
        hits = enr.run(ind, info, rows="all").table     # every tested term, no screening
        col = "p_adj_global" if cfg.global_bh else "p_adj"
        exp = hits[hits[col] < cfg.alpha].reset_index(drop=True)
        assert len(sig) > 5
        pd.testing.assert_frame_equal(sig, exp, check_exact=True)
        cap = sig[sig["captured"]]
        assert (cap["study_count"] >= cfg.min_study_count).all() and (cap[col] < cfg.alpha).all()
    assert set(cap["latent"]) <= set(range(0, 12, 2)) | set(range(1, 12, 2))
    assert {"latent", "go_id", "name", "namespace", "study_count", "study_n", "pop_count", "pop_n", "p",
            "p_adj", "fold", "level", "depth", "ic"} <= set(sig.columns)
    row = sig.iloc[0]
    assert row["fold"] == (row["study_count"] / row["study_n"]) / (row["pop_count"] / row["pop_n"])
    assert row["ic"] > 0 and row["name"] == dag[row["go_id"]].name


def test_save_load_roundtrip_and_best_terms(tmp_path):
    dag, prots, ann, scores = planted()
    res = enrich_latents(scores, prots, ann, dag, EnrichConfig(top_n=20))
    best = res.best_terms()
    assert len(best) == res.captured()["latent"].nunique() > 0
    one = best.iloc[0]
    cap = res.captured()
    sub = cap[cap["latent"] == one["latent"]]
    assert one["best_p_adj"] == sub["p_adj_global"].min() and one["specific_ic"] == sub["ic"].max()
    paths = res.save(tmp_path / "r", decoder_share=np.linspace(0, 1, 12), base_fraction=0.5)
    back = EnrichmentResult.load(tmp_path / "r")
    pd.testing.assert_frame_equal(back.table, res.table, check_exact=True)
    assert (back.table['p'].to_numpy() == res.table['p'].to_numpy()).all()
    assert back.summary() == json.loads(json.dumps(res.summary()))
    s = json.loads(paths["summary"].read_text())
    assert set(s["subspace"]) >= {"base", "mixed", "residual"}
    assert sum(s["subspace"][k]["n_latents"] for k in ("base", "mixed", "residual")) == 12
    assert (tmp_path / "r" / "best_terms.tsv").read_text().startswith("latent\t")
    with pytest.raises(FileNotFoundError):
        EnrichmentResult.load(tmp_path / "nope")


def test_summary_counts_and_strata():
    dag, prots, ann, scores = planted()
    res = enrich_latents(scores, prots, ann, dag, EnrichConfig(top_n=20))
    s = res.summary()
    cap = res.captured()
    assert s["n_terms_captured"]["total"] == cap["go_id"].nunique()
    assert s["n_latents_capturing"] == cap["latent"].nunique()
    assert s["n_terms_captured"]["total"] <= sum(s["n_terms_captured"][ns] for ns in ("BP", "MF", "CC"))
    assert 0 <= s["specificity_terms"]["fraction_general"] <= 1
    spec = cap[cap["most_specific"]]
    assert s["n_terms_nonredundant"]["total"] == spec["go_id"].nunique() <= s["n_terms_captured"]["total"]
    assert s["n_latent_term_pairs_nonredundant"] == len(spec)
    # relative strata, base block = 2/3 of the dimensions: r = (s - 2/3) / (1/3) above, (s - 2/3) / (2/3) below
    assert strata([1.0, 5 / 6, 2 / 3, 1 / 3, 0.0], 2 / 3).tolist() == ["base", "base", "mixed", "residual", "residual"]
    assert strata([0.8], 2 / 3).tolist() == ["mixed"]  # r = 0.4 < 0.5: no longer "base" as under the fixed 0.8 cut
    with pytest.raises(ValueError):
        strata([1.5], 0.5)


def test_cli_enrich(tmp_path, capsys):
    from rd_interp.cli import main

    dag, prots, ann, scores = planted()
    sp.save_npz(tmp_path / "scores.npz", scores)
    (tmp_path / "ids.txt").write_text("\n".join(prots) + "\n")
    with open(tmp_path / "ann.tsv", "w") as fh:
        fh.write("protein_id\tgo_id\tnamespace\n")
        ns = {"biological_process": "BP", "molecular_function": "MF", "cellular_component": "CC"}
        for p, gos in ann.items():
            for g in sorted(gos):
                if g in dag:
                    fh.write(f"{p}\t{g}\t{ns[dag[g].namespace]}\n")
    np.save(tmp_path / "share.npy", np.linspace(0, 1, 12))
    rc = main(["enrich", "--scores", str(tmp_path / "scores.npz"), "--proteins", str(tmp_path / "ids.txt"),
               "--annotations", str(tmp_path / "ann.tsv"), "--obo", str(MINI_OBO), "--out", str(tmp_path / "o"),
               "--top-n", "20", "--decoder-share", str(tmp_path / "share.npy"), "--base-fraction", "0.5",
               "--seed", "0", "--n-permutations", "20"])
    assert rc == 0
    line = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert line["n_latents"] == 12 and line["n_terms_captured"]["total"] > 0
    null = json.loads((tmp_path / "o" / "enrich.json").read_text())["null"]
    assert null["n_permutations"] == 20 and "permuted freely" in null["method"]  # no lengths in a plain ids file
    assert line["null"]["n_terms_nonredundant"]["real"] == line["n_terms_nonredundant"]["total"]
    back = EnrichmentResult.load(tmp_path / "o" / "real")
    assert back.summary()["n_terms_captured"] == line["n_terms_captured"]
    (tmp_path / "bad.txt").write_text("\n".join(prots[:-1]) + "\n")
    rc = main(["enrich", "--scores", str(tmp_path / "scores.npz"), "--proteins", str(tmp_path / "bad.txt"),
               "--annotations", str(tmp_path / "ann.tsv"), "--obo", str(MINI_OBO), "--out", str(tmp_path / "o2")])
    assert rc == 1 and "protein ids" in capsys.readouterr().err


def test_shared_enricher_follows_the_passed_config():
    dag, prots, ann, scores = planted()
    enr = GOEnricher(prots, ann, dag)
    res = enrich_latents(scores, prots, None, None, EnrichConfig(correction="global", top_n=20), enricher=enr)
    assert "p_adj_global" in res.table.columns and res.meta["correction"] == "global"
    with pytest.raises(ValueError, match="background"):
        enrich_latents(scores, prots, None, None, EnrichConfig(background="all"), enricher=enr)
    with pytest.raises(ValueError, match="protein id"):
        enrich_latents(scores, prots[::-1], None, None, enricher=enr)


def test_null_counts_equal_full_runs_on_permuted_labels():
    """The lean null path (permuted study rows, memoised p-values, screened rows) gives exactly the capture
    counts of a full enrichment run against permuted labels, for both corrections."""
    dag, prots, ann, scores = planted()
    ind, info = study_sets(scores, StudySetConfig(top_n=20))
    rng = np.random.default_rng(3)
    perms = [np.arange(len(prots))] + [rng.permutation(len(prots)) for _ in range(4)]
    for correction in ("per_latent", "global"):
        enr = GOEnricher(prots, ann, dag, EnrichConfig(correction=correction, min_study_count=2))
        lean = enr.null_counts(ind, perms)
        for perm, got in zip(perms, lean):
            t = enr.permuted(perm).run(ind, info).table
            cap = t[t["captured"]]
            want = {"n_terms": cap["go_id"].nunique(),
                    "n_terms_nonredundant": cap.loc[cap["most_specific"], "go_id"].nunique(),
                    "n_latents_capturing": cap["latent"].nunique(), "n_pairs": len(cap),
                    "n_pairs_nonredundant": int(cap["most_specific"].sum())}
            assert got == want, (correction, got, want)
        assert lean[0]["n_terms"] > 0  # the identity permutation is the real run



def test_seed_statistics_by_hand():
    """t interval, range with two seeds, Welch difference and the exact seed-label permutation p."""
    from rd_interp.enrich.compare import compare_groups, seed_interval, seed_permutation_p

    st = seed_interval([10.0, 12.0, 14.0])
    # mean 12, sd 2, t(0.975, 2) = 4.302653: half-width 4.302653 * 2 / sqrt(3) = 4.968275
    assert st["method"] == "t" and st["mean"] == 12.0 and st["sd"] == pytest.approx(2.0)
    assert (st["lo"], st["hi"]) == pytest.approx((12 - 4.968275, 12 + 4.968275), rel=1e-6)
    assert seed_interval([3.0, 5.0]) | {} == {"n": 2, "mean": 4.0, "sd": pytest.approx(2 ** 0.5), "lo": 3.0,
                                             "hi": 5.0, "method": "range"}
    assert seed_interval([7.0])["method"] == "none"
    # 3 vs 3, all of a above all of b: the observed split and its mirror are the 2 most extreme of 20
    p = seed_permutation_p([10, 11, 12], [1, 2, 3])
    assert p["n_relabellings"] == 20 and p["p"] == pytest.approx(0.1) and p["min_p"] == pytest.approx(0.1)
    c = compare_groups([10.0, 11.0, 12.0], [1.0, 2.0, 3.0])
    # diff 9, se sqrt(1/3 + 1/3) = 0.8165, df = 4, t(0.975, 4) = 2.776445
    assert c["diff"] == 9.0 and c["df"] == pytest.approx(4.0)
    assert (c["lo"], c["hi"]) == pytest.approx((9 - 2.776445 * 0.816497, 9 + 2.776445 * 0.816497), rel=1e-5)
    assert c["p"] < 0.001 and c["p_permutation"] == pytest.approx(0.1)


def test_null_distribution_is_stratified_and_reproducible():
    from rd_interp.enrich import null_distribution
    from rd_interp.enrich.null import empirical_p, label_permutations, length_bins

    bins = length_bins([10, 20, 30, 40, 50, 60, 70, 80], 4)
    assert bins.tolist() == [0, 0, 1, 1, 2, 2, 3, 3]
    for perm in label_permutations(8, 5, seed=1, strata=bins):
        assert (bins[perm] == bins).all() and sorted(perm) == list(range(8))
    assert empirical_p(5, np.array([1, 2, 5, 7])) == pytest.approx(3 / 5)  # (1 + 2) / (1 + 4)
    dag, prots, ann, scores = planted(n_latents=16)
    lengths = np.arange(len(prots)) % 97 + 50
    cfg = EnrichConfig(top_n=20, n_permutations=30)
    a = null_distribution(scores, prots, ann, dag, cfg, lengths=lengths, seed=3).summary()
    b = null_distribution(scores, prots, ann, dag, cfg, lengths=lengths, seed=3).summary()
    assert a == b and a["n_permutations"] == 30 and "length bins" in a["method"]
    m = a["metrics"]["n_terms_nonredundant"]
    assert m["real"] > m["null_hi"] and m["p_empirical"] == pytest.approx(1 / 31)


SIX_TERM_OBO = """format-version: 1.2

[Term]
id: GO:0000001
name: root process
namespace: biological_process

[Term]
id: GO:0000002
name: a
namespace: biological_process
is_a: GO:0000001

[Term]
id: GO:0000003
name: b
namespace: biological_process
is_a: GO:0000002

[Term]
id: GO:0000004
name: c
namespace: biological_process
is_a: GO:0000001
relationship: part_of GO:0000002

[Term]
id: GO:0000005
name: d
namespace: biological_process
is_a: GO:0000001

[Term]
id: GO:0000006
name: e
namespace: biological_process
is_a: GO:0000005
"""


def test_non_redundant_terms_by_hand_on_a_six_term_ontology(tmp_path):
    """root <- a <- b (is_a), a <- c (part_of), root <- d <- e: the most specific terms of each latent.

    latent 0 captures {root, a, b, c}: b and c remain (a is implied by b via is_a and by c via part_of);
    latent 1 captures {a, d}: both remain; latent 2 captures {root, e}: e remains.
    Raw coverage = 6 distinct terms, non-redundant = {a, b, c, d, e} = 5, non-redundant pairs = 5.
    """
    from goatools.obo_parser import GODag

    from rd_interp.enrich.termmatrix import TermMatrix

    obo = tmp_path / "six.obo"
    obo.write_text(SIX_TERM_OBO)
    dag = GODag(str(obo), optional_attrs={"relationship"}, prt=None)
    tm = TermMatrix(["p1", "p2", "p3"], {"p1": ["GO:0000003"], "p2": ["GO:0000004"], "p3": ["GO:0000006"]}, dag)
    idx = {g: i for i, g in enumerate(tm.go_ids)}
    assert set(idx) == {f"GO:000000{i}" for i in range(1, 7)}
    pairs = [(0, 1), (0, 2), (0, 3), (0, 4), (1, 2), (1, 5), (2, 1), (2, 6)]
    lat = np.array([p[0] for p in pairs])
    terms = np.array([idx[f"GO:000000{p[1]}"] for p in pairs])
    spec = tm.most_specific(lat, terms)
    kept = {(int(la), tm.go_ids[t]) for la, t, s in zip(lat, terms, spec) if s}
    assert kept == {(0, "GO:0000003"), (0, "GO:0000004"), (1, "GO:0000002"), (1, "GO:0000005"), (2, "GO:0000006")}
    assert len({t for _, t in kept}) == 5 and len({p[1] for p in pairs}) == 6
    # {a, c}: c is below a only through part_of, so a is dropped; with is_a only, both stay
    assert tm.most_specific(np.array([3, 3]), np.array([idx["GO:0000002"], idx["GO:0000004"]])).tolist() == [False, True]
    tm_isa = TermMatrix(["p1", "p2", "p3"], {"p1": ["GO:0000003"], "p2": ["GO:0000004"], "p3": ["GO:0000006"]}, dag,
                        relationships=())
    idx2 = {g: i for i, g in enumerate(tm_isa.go_ids)}
    only_c = tm_isa.most_specific(np.array([0, 0]), np.array([idx2["GO:0000002"], idx2["GO:0000004"]]))
    assert only_c.tolist() == [True, True]
