"""Shared inputs for the enrich tests: the hand-made mini GO, seeded annotations and scores."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import scipy.sparse as sp

DATA = Path(__file__).parent / "data" / "enrich"
MINI_OBO = DATA / "mini_go.obo"
REPO = Path(__file__).resolve().parents[1]
SHIPPED_OBO = REPO / "data" / "go" / "go.obo.gz"
SHIPPED_TSV = REPO / "data" / "proteins" / "eval_go.tsv.gz"


def mini_dag():
    from goatools.obo_parser import GODag

    return GODag(str(MINI_OBO), optional_attrs={"relationship"}, prt=None)


def mini_inputs(n_proteins=300, n_latents=20, seed=0):
    """Proteins with 0-4 random annotations (incl. an alt id and an unknown id), tie-rich sparse scores."""
    dag = mini_dag()
    rng = np.random.default_rng(seed)
    terms = sorted({t.item_id for t in dag.values()})
    prots = [f"P{i:04d}" for i in range(n_proteins)]
    ann = {}
    for p in prots:
        k = int(rng.integers(0, 5))
        if k:
            ann[p] = frozenset(rng.choice(terms + ["GO:0000093", "GO:9999999"], size=k, replace=False).tolist())
    scores = sp.random(n_proteins, n_latents, density=0.2, random_state=seed + 1, format="csr")
    scores.data = np.round(scores.data * 4) / 4 + 0.25
    return dag, prots, ann, scores


def goatools_study(dag, pop, assoc, ns, alternative="greater"):
    """The oracle: GOEnrichmentStudyNS for one namespace (assoc deep-copied: goatools mutates it)."""
    from goatools.goea.go_enrichment_ns import GOEnrichmentStudyNS

    return GOEnrichmentStudyNS(pop, {ns: copy.deepcopy(assoc)}, dag, propagate_counts=True,
                               relationships={"part_of"}, methods=["fdr_bh"], alternative=alternative, log=None)


def goatools_records(dag, pop, assoc, study, ns, alternative="greater"):
    return goatools_study(dag, pop, assoc, ns, alternative).run_study(study, prt=None)


def assert_identical(table, recs, latent, ns):
    """Every goatools record has a row with ==-identical counts, p and p_adj; no extra rows."""
    ours = table[(table["latent"] == latent) & (table["namespace"] == ns)].set_index("go_id")
    assert len(ours) == len(recs), (latent, ns, len(ours), len(recs))
    for r in recs:
        o = ours.loc[r.GO]
        got = (o["study_count"], o["study_n"], o["pop_count"], o["pop_n"], o["p"], o["p_adj"])
        exp = (r.study_count, r.study_n, r.pop_count, r.pop_n, r.p_uncorrected, r.p_fdr_bh)
        assert got == exp, (latent, ns, r.GO, got, exp)
    return len(recs)


def shipped_inputs():
    """(ontology-or-GODag, protein -> frozenset of GO ids) from the shipped files.

    Uses rd_interp.io (Ontology, read_annotations) when the data layer has landed; otherwise reads the
    same files directly with goatools/pandas so the exactness test does not wait on it.
    """
    try:
        from rd_interp.io.annotations import read_annotations
        from rd_interp.io.go import Ontology
    except ImportError:
        return _shipped_inputs_direct()
    onto = Ontology.load()
    return onto, read_annotations(SHIPPED_TSV, ontology=onto)


def _shipped_inputs_direct():
    import gzip
    import hashlib
    import tempfile

    import pandas as pd
    from goatools.obo_parser import GODag

    raw = gzip.decompress(SHIPPED_OBO.read_bytes())
    cache = Path(tempfile.gettempdir()) / f"rd_interp_test_go_{hashlib.sha256(raw).hexdigest()[:16]}.obo"
    if not cache.exists():
        tmp = cache.with_suffix(".tmp")
        tmp.write_bytes(raw)
        tmp.replace(cache)
    dag = GODag(str(cache), optional_attrs={"relationship"}, prt=None)
    df = pd.read_csv(SHIPPED_TSV, sep="\t")
    ann = {p: frozenset(g) for p, g in df.groupby("protein_id")["go_id"]}
    return dag, ann
