"""Inputs for the atlas tests: a demo-sized synthetic atlas payload built on the shipped data.

Sizes follow the demo run (4 spaces x 3 seeds, up to 768 latents, 3,000 shipped eval proteins with their
real sequences, top 10 proteins per latent) and the strips follow what a real TopK SAE on mini-L embeddings
of shipped proteins produced (600 proteins, 768 latents, k=32, 300 steps): a top protein's strip has a
median of 6% (mean 14%, 90th percentile 41%) of its residues active, in runs of mean length 1.5, with
quantised values spread over the whole 1..255 range; latent firing frequencies have quantiles
0.3% / 9% / 100% (10th / 50th / 90th), 5% of latents never fire. Random positions and values make the
synthetic strips no more compressible than real ones.
"""

from __future__ import annotations

import functools
import gzip
import itertools
from pathlib import Path

import numpy as np

from rd_interp.enrich.coverage import strata

from rd_interp.io.fasta import FastaRecord, read_fasta
from rd_interp.report.atlas import (
    AtlasPayload,
    AtlasSAE,
    AtlasSpace,
    LatentEntry,
    SpaceBlock,
    TermHit,
    TopProtein,
    build_atlas,
)

REPO = Path(__file__).resolve().parents[1]
EVAL_FASTA = REPO / "data" / "proteins" / "eval.fasta.gz"
GO_OBO = REPO / "data" / "go" / "go.obo.gz"
NS = {"biological_process": "BP", "molecular_function": "MF", "cellular_component": "CC"}

# Hostile strings: each must show up as text, never as markup or script.
XSS_NAME = '</script><script>window.__xss=1</script><img src=x onerror="window.__xss=2">'
XSS_TERM = '<img src=x onerror="window.__xss=3"> & "quoted" \'term\''
XSS_ACC = 'X1<img/src=x/onerror=window.__xss=4>'
XSS_LABEL = '"><svg onload=window.__xss=5>'


def shipped_records(n: int) -> list[FastaRecord]:
    return list(itertools.islice(read_fasta(EVAL_FASTA), n))


def go_terms(n: int, seed: int = 0) -> list[tuple[str, str, str]]:
    """n random non-obsolete (id, name, namespace) from the shipped GO release (a fast plain-text scan)."""
    terms, cur = [], {}
    with gzip.open(GO_OBO, "rt", encoding="utf-8") as fh:
        for line in fh:
            if line.startswith("[Term]"):
                cur = {}
            elif line.startswith("id: "):
                cur["id"] = line[4:].strip()
            elif line.startswith("name: "):
                cur["name"] = line[6:].strip()
            elif line.startswith("namespace: "):
                cur["ns"] = NS.get(line[11:].strip(), "BP")
                if not cur.get("name", "").startswith("obsolete"):
                    terms.append((cur["id"], cur["name"], cur["ns"]))
    rng = np.random.default_rng(seed)
    pick = rng.choice(len(terms), size=min(n, len(terms)), replace=False)
    return [terms[i] for i in sorted(pick)]


def _strip(rng: np.random.Generator, L: int) -> np.ndarray:
    frac = float(np.exp(rng.uniform(np.log(0.005), np.log(0.6))))
    q = np.zeros(L, np.uint8)
    n_runs = max(1, round(frac * L / 1.5))
    starts = rng.integers(0, L, size=n_runs)
    lens = rng.geometric(1 / 1.5, size=n_runs)
    idx = np.repeat(starts, lens) + np.arange(int(lens.sum())) - np.repeat(np.cumsum(lens) - lens, lens)
    idx = idx[idx < L]
    q[idx] = rng.integers(1, 256, size=idx.size)
    q[int(rng.integers(0, L))] = 255
    return q


def synthetic_payload(*, n_spaces: int = 4, n_seeds: int = 3, n_latents: int = 768, n_proteins: int = 3000,
                      top_k: int = 10, n_go: int = 6000, seed: int = 0, hostile: bool = True) -> AtlasPayload:
    rng = np.random.default_rng(seed)
    records = shipped_records(n_proteins)
    if hostile:  # one protein with a hostile accession and one with a hostile name
        records[0] = FastaRecord(XSS_ACC, records[0].description, records[0].sequence, records[0].line)
        records[1] = FastaRecord(records[1].id, "RecName: Full=" + XSS_NAME + ";", records[1].sequence, records[1].line)
    for i in range(2, len(records), 7):  # some proteins carry UniProt-style names
        records[i] = FastaRecord(records[i].id, f"sp|{records[i].id}|X_HUMAN Synthetic protein {i} OS=Homo sapiens",
                                 records[i].sequence, records[i].line)
    ids = [r.id for r in records]
    lengths = np.array([len(r.sequence) for r in records])
    terms = go_terms(n_go, seed)
    if hostile:
        terms[0] = (terms[0][0], XSS_TERM, terms[0][2])
    keys = ["large", "rd", "rd.base", "rd.residual"][:n_spaces] + [f"sp{i}" for i in range(4, n_spaces)]
    spaces = []
    for si, key in enumerate(keys):
        blocks = [SpaceBlock("base", 0, 64), SpaceBlock("residual", 64, 96)] if key == "rd" else []
        saes = []
        for sd in range(n_seeds):
            latents = []
            for j in range(n_latents):
                dead = rng.random() < 0.05
                freq = 0.0 if dead else float(min(1.0, np.exp(rng.uniform(np.log(1 / n_proteins), np.log(1.6)))))
                n_fire = round(freq * n_proteins)
                mx = float(rng.gamma(2.0, 0.5)) if n_fire else 0.0
                hist = np.bincount(rng.integers(0, 16, size=n_fire), minlength=16).tolist() if n_fire else [0] * 16
                hits = []
                n_terms = 0
                if n_fire >= 3 and rng.random() < 0.45:
                    n_terms = int(rng.geometric(1 / 6))
                    picks = rng.choice(len(terms), size=min(n_terms, 6), replace=False).tolist()
                    pvals = np.sort(10 ** -rng.uniform(1.3, 30, size=len(picks)))  # most significant first
                    for r, ti in enumerate(picks):
                        g, name, ns = terms[ti]
                        hits.append(TermHit(g, name, ns, p_adj=float(pvals[r]),
                                            fold=float(rng.uniform(1.5, 50)),
                                            depth=int(rng.integers(10, 14) if r == 1 else rng.integers(1, 10)),
                                            study_count=int(rng.integers(3, 50)),
                                            ic=float(rng.uniform(11, 12) if r == 1 else rng.uniform(1, 11)),
                                            role=1 if r == 0 else 2 if r == 1 else 0))
                share = float(rng.beta(0.7, 0.7)) if blocks else None
                stratum = None if share is None else str(strata([share], 2 / 3, 0.5)[0])
                top = []
                for rank, p in enumerate(rng.choice(n_proteins, size=min(top_k, n_fire), replace=False).tolist()):
                    act = mx * (1 - 0.04 * rank)
                    top.append(TopProtein(ids[p], act, _strip(rng, int(lengths[p])), act))
                latents.append(LatentEntry(j, freq, n_fire, mx, hist, share, stratum, max(n_terms, len(hits)), hits, top))
            lat8 = np.argpartition(rng.random((n_proteins, n_latents)), 8, axis=1)[:, :8]
            rel8 = -np.sort(-rng.uniform(0.05, 1.0, size=(n_proteins, 8)), axis=1)
            pl = {ids[p]: list(zip(lat8[p].tolist(), rel8[p].tolist())) for p in range(n_proteins)}
            saes.append(AtlasSAE(seed=sd, architecture="topk", n_latents=n_latents, k=32, n_proteins=n_proteins,
                                 latents=latents, protein_latents=pl))
        label = (XSS_LABEL + key) if (hostile and si == n_spaces - 1) else f"{key}.mini-L"
        spaces.append(AtlasSpace(key, label, saes, blocks=blocks, description=f"synthetic space {key}"))
    return build_atlas(spaces, records, title="Synthetic demo-size atlas <b>not bold</b>",
                       notes=["Synthetic data shaped like the demo run (tests/atlas_fixtures.py)."])


@functools.lru_cache(maxsize=1)
def demo_payload() -> AtlasPayload:
    """The demo-sized payload, built once per test process (about 10 s)."""
    return synthetic_payload()
