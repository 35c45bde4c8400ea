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
    compare_seeds,
    compare_specificity,
    enrich_latents,
    null_control,
    rank_test,
    seed_stats,
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
    assert one["best_p_adj"] == sub["p_adj"].min() and one["specific_ic"] == sub["ic"].max()
    paths = res.save(tmp_path / "r", decoder_share=np.linspace(0, 1, 12))
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
    assert strata([0.9, 0.5, 0.1, 0.8, 0.2]).tolist() == ["base", "mixed", "residual", "base", "residual"]
    with pytest.raises(ValueError):
        strata([1.5])


def test_null_control_captures_far_less():
    dag, prots, ann, scores = planted(n_latents=16)
    real = enrich_latents(scores, prots, ann, dag, EnrichConfig(top_n=20))
    nc = null_control(scores, prots, ann, dag, EnrichConfig(top_n=20), seeds=[0, 1], real=real)
    s = nc.summary()
    assert s["real"]["n_latent_term_pairs"] >= 10
    assert s["null_mean_terms_captured"] <= 0.25 * s["real"]["n_terms_captured"]["total"]
    # permutation is seeded and moves whole annotation sets
    again = null_control(scores, prots, ann, dag, EnrichConfig(top_n=20), seeds=[0])
    pd.testing.assert_frame_equal(again.results[0].table, nc.results[0].table, check_exact=True)


def test_compare_seed_stats_and_rank_test():
    st = seed_stats([1.0, 2.0, 3.0, 4.0], n_boot=2000, seed=0)
    assert st["mean"] == 2.5 and st["ci"][0] < 2.5 < st["ci"][1]
    assert st == seed_stats([1.0, 2.0, 3.0, 4.0], n_boot=2000, seed=0)
    a = {"n_terms_captured": {"total": 10, "BP": 5, "MF": 3, "CC": 2}, "fraction_latents_capturing": 0.5,
         "n_latents_capturing": 5, "terms_per_latent": {"mean": 1.0},
         "specificity_terms": {"ic_mean": 5.0, "depth_mean": 4.0, "level_mean": 3.0, "fraction_general": 0.1}}
    b = json.loads(json.dumps(a))
    b["n_terms_captured"]["total"] = 20
    out = compare_seeds({"rd": [a, a, a], "large": [b, b]}, ["n_terms_total", "ic_mean"], n_boot=500)
    assert out["differences"]["rd - large"]["n_terms_total"]["mean_diff"] == -10.0
    r = rank_test(np.arange(20) + 10.0, np.arange(20))
    assert r["p"] < 0.01 and r["rank_biserial"] > 0.5
    dag, prots, ann, scores = planted()
    res = enrich_latents(scores, prots, ann, dag, EnrichConfig(top_n=20))
    cs = compare_specificity([res], [res])
    assert cs["ic"]["p"] == pytest.approx(1.0) and cs["ic"]["n_a"] == res.captured()["go_id"].nunique()


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
               "--top-n", "20", "--decoder-share", str(tmp_path / "share.npy"), "--seed", "0"])
    assert rc == 0
    line = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert line["n_latents"] == 12 and line["n_terms_captured"]["total"] > 0
    assert (tmp_path / "o" / "null_10000" / "result.json").exists() and "null_mean_terms_captured" in line
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
