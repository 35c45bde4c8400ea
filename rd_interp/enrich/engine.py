"""GOEnricher: goatools' GOEnrichmentStudyNS.run_study for every latent at once.

Per namespace run, goatools tests every term some population protein carries (propagated), with
study_n = |study & population| and pop_n = |population|, then applies BH over that term set. Here:
one sparse product (propagated incidence^T x study indicator) gives all latents' study counts, each
distinct (k, n, K, N) table is evaluated once, and BH runs per (latent, namespace) family.

Under alternative="greater" a term with study count 0 has p == 1.0 exactly (scipy's cdf returns 1.0
at/above the support's upper end), so only the terms a study set touches need sorting; the engine
checks that identity on the actual (n, K) pairs before relying on it and otherwise runs the dense path.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping, Sequence

import numpy as np
import pandas as pd
import scipy.sparse as sp

from rd_interp.enrich.activations import StudySetConfig, StudySetInfo, study_sets
from rd_interp.enrich.config import EnrichConfig
from rd_interp.enrich.counts import over_represented, sparse_product
from rd_interp.enrich.fisher import (
    TableMemo,
    bh,
    bh_with_ones,
    fisher_pvalues,
    greater_lower_bounds,
    maybe_below,
)
from rd_interp.enrich.result import EnrichmentResult
from rd_interp.enrich.termmatrix import NS_CODE, TermMatrix
from rd_interp.io.options import subset
from rd_interp.io.serialize import to_dict

log = logging.getLogger(__name__)

TABLE_COLUMNS = [
    "latent", "go_id", "name", "namespace", "study_count", "study_n", "pop_count", "pop_n",
    "p", "p_adj", "fold", "level", "depth", "ic",
]


class GOEnricher:
    """Holds the propagated annotation matrix of one analysis set; tests any number of study sets."""

    def __init__(
        self,
        protein_ids: Sequence[str],
        annotations: Mapping[str, Iterable[str]],
        ontology,
        cfg: EnrichConfig | None = None,
        *,
        term_matrix: TermMatrix | None = None,
    ) -> None:
        self.cfg = cfg or EnrichConfig()
        self.cfg.validate()
        self.ontology = ontology
        self.annotations = annotations
        self.terms = term_matrix or TermMatrix(
            protein_ids, annotations, ontology, namespaces=self.cfg.namespaces,
            relationships=self.cfg.relationships, background=self.cfg.background,
        )
        self.godag = self.terms.godag
        self._matrix_t = self.terms.matrix.T.tocsr()
        self._pop_t = sp.csr_matrix(self.terms.pop_masks.T.astype(np.int32))
        self._memos: dict[tuple, TableMemo] = {}
        self._ic: dict[str, float] | None = None
        self._termcounts = None

    @property
    def protein_ids(self) -> list[str]:
        return self.terms.protein_ids

    def with_config(self, cfg: EnrichConfig) -> GOEnricher:
        """This enricher (same propagated matrix and IC cache) under another statistical config.

        Only options that do not change the term matrix may differ (alpha, alternative, global BH, ...).
        """
        cfg.validate()
        if cfg == self.cfg:
            return self
        for name in ("namespaces", "relationships", "background"):
            a, b = getattr(cfg, name), getattr(self.cfg, name)
            if (tuple(a) if not isinstance(a, str) else a) != (tuple(b) if not isinstance(b, str) else b):
                raise ValueError(f"EnrichConfig.{name} differs from the one this GOEnricher was built with "
                                 f"({a!r} vs {b!r}); build a new GOEnricher")
        new = GOEnricher.__new__(GOEnricher)
        new.__dict__.update(self.__dict__)
        new.cfg = cfg
        return new

    def permuted(self, perm: np.ndarray) -> GOEnricher:
        """Same enricher with protein i carrying the annotation set of protein perm[i] (null control)."""
        new = GOEnricher.__new__(GOEnricher)
        new.__dict__.update(self.__dict__)
        new.terms = self.terms.permuted(perm)
        new._matrix_t = new.terms.matrix.T.tocsr()
        new._pop_t = sp.csr_matrix(new.terms.pop_masks.T.astype(np.int32))
        # Term frequencies are invariant under permuting whole annotation sets, so IC is shared.
        return new

    # ---------------------------------------------------------------- information content
    def information_content(self, go_ids: Iterable[str]) -> dict[str, float]:
        """goatools get_info_content over the analysis-set annotations (TermCounts, same relationships)."""
        if self._termcounts is None:
            from goatools.semantic import TermCounts

            annots = {}
            for pid in self.terms.protein_ids:
                gos = {g for b in self.terms.blocks.values() for g in b.direct.get(pid, ())}
                if gos:
                    annots[pid] = gos
            self._termcounts = TermCounts(self.godag, annots, relationships=set(self.cfg.relationships) or None)
            self._ic = {}
        from goatools.semantic import get_info_content

        out = {}
        for go in go_ids:
            if go not in self._ic:
                self._ic[go] = float(get_info_content(go, self._termcounts))
            out[go] = self._ic[go]
        return out

    # ---------------------------------------------------------------- the test
    def _memo(self, j: int, kind: str) -> TableMemo:
        """Per-namespace memo of p-values / lower bounds, shared by permuted copies (the null reuses it)."""
        key = (j, kind, self.cfg.alternative)
        if key not in self._memos:
            self._memos[key] = TableMemo()
        return self._memos[key]

    def _test(self, S: sp.spmatrix, rows: str):
        """The statistics: (cols, study_n [n_ns, n_latents], tested latents per ns, tests per ns).

        cols: lat, term (column within its namespace block), k, n, p, p_adj (BH per latent per namespace)
        and ns (block index), plus p_adj_global (BH per namespace over all latents x terms) with the
        global correction. Rows as `rows` selects; every value reported is exact. rows="captured" (the
        null distribution's mode) keeps only rows that can be captured and computes only the correction
        in use: rows with study count < min_study_count or fold <= 1 are dropped first, and the screen is
        alpha x (hits / tests) of the family, below which no row of the family can be significant.
        """
        cfg = self.cfg
        n_lat = S.shape[1]
        study_n = np.asarray((self._pop_t @ S).todense()).astype(np.int64)  # [n_ns, n_latents]
        if rows == "captured":
            return self._test_captured(S.tocsr(), study_n)
        C = sparse_product(self._matrix_t, S)                             # [n_cols, n_latents] study counts
        counts = C.tocoo()
        parts = []
        fam_rows = []      # per (ns) arrays for global BH
        m_by_ns: dict[int, int] = {}
        tested = {}
        for j, (ns, blk) in enumerate(self.terms.blocks.items()):
            lo, hi = blk.col_start, blk.col_start + blk.n_terms
            sel = (counts.row >= lo) & (counts.row < hi)
            term = (counts.row[sel] - lo).astype(np.int64)
            lat = counts.col[sel].astype(np.int64)
            k = counts.data[sel].astype(np.int64)
            n_ns = study_n[j]
            lat_tested = np.flatnonzero(n_ns > 0)
            tested[ns] = lat_tested
            N = blk.pop_n
            m = blk.n_terms
            m_by_ns[j] = int(lat_tested.size * m)
            if lat_tested.size == 0 or m == 0:
                continue
            K = blk.pop_count
            n_u = np.unique(n_ns[lat_tested])
            K_u, K_inv = np.unique(K, return_inverse=True)
            # p of a study-count-0 table for every (n, K) pair that can occur (n <= N - K)
            nn, KK = np.broadcast_arrays(n_u[:, None], K_u[None, :])
            can = nn <= N - KK
            # Dense families (not "greater") reporting only significant rows need exact p only below alpha:
            # p >= alpha can neither be significant nor pull another p_adj below alpha (raw ratio >= p).
            screen = cfg.alpha if (rows == "significant" and not cfg.global_bh
                                   and cfg.alternative != "greater") else None
            p0 = np.ones(nn.shape, dtype=np.float64)
            p0[can] = fisher_pvalues(0, nn[can], KK[can], N, cfg.alternative, screen=screen)
            fast = cfg.alternative == "greater" and bool((p0 == 1.0).all()) and rows != "all"
            if fast and rows == "significant" and k.size:
                # Skip exact evaluation of tables whose p certainly cannot matter (lower bound, 1e-4 margin).
                # Per family of m terms with r hits, a p >= alpha*r/m has every BH ratio p*m/j >= alpha
                # (j <= r), so it can neither be significant nor lower another term's p_adj below alpha;
                # those rows are not reported. With the global family of this namespace (M tests, R hits),
                # p >= max(r/m, R/M) gives p_adj == 1 in both corrections, so every value computed stays exact.
                r_fam = np.bincount(lat, minlength=n_lat)
                if cfg.global_bh:
                    t_fam = np.maximum(r_fam[lat] / float(m), lat.size / float(max(m_by_ns[j], 1)))
                else:
                    t_fam = cfg.alpha * r_fam[lat] / float(m)
                need = maybe_below(k, n_ns[lat], K[term], N, t_fam * (1.0 + 1e-4), memo=self._memo(j, "lb"))
                lat, term, k = lat[need], term[need], k[need]
            p = fisher_pvalues(k, n_ns[lat], K[term], N, cfg.alternative, screen=None if fast else screen,
                               memo=self._memo(j, "p") if fast else None)
            if fast:
                p_adj = _bh_by_family(lat, p, m)
                part = {"lat": lat, "term": term, "k": k, "n": n_ns[lat], "p": p, "p_adj": p_adj}
                fam_rows.append((j, part, None))
            else:
                part = self._dense_family(blk, lat_tested, n_ns, lat, term, k, p, n_u, p0, K_inv, rows)
                fam_rows.append((j, part, (n_u, p0, K_inv, lat_tested, n_ns)))
            part["ns"] = np.full(part["lat"].size, j, dtype=np.int64)
            parts.append(part)

        cols = {key: np.concatenate([pt[key] for pt in parts]) if parts else np.zeros(0)
                for key in ("lat", "term", "k", "n", "p", "p_adj", "ns")}
        if cfg.global_bh:
            cols["p_adj_global"] = self._global_bh(fam_rows, m_by_ns)
        return cols, study_n, tested, m_by_ns

    def _test_captured(self, S: sp.csr_matrix, study_n: np.ndarray):
        """The null distribution's lean test: only rows that can be captured, only the correction in use.

        Rows with study count < min_study_count or fold <= 1 are dropped first (counts.over_represented, which
        never forms the counts matrix); p-values are computed (from the memo when seen before) only where they
        can lie below alpha x hits / tests of their family (per latent and namespace, or the SAE's namespace),
        under which no row of the family can be significant, so the captured decisions are exact. Needs
        "greater": p(study count 0) == 1, so such rows never count.
        """
        cfg = self.cfg
        if cfg.alternative != "greater":
            raise ValueError("the null distribution's fast path needs alternative='greater'")
        parts, fam_rows, m_by_ns, tested = [], [], {}, {}
        for j, (ns, blk) in enumerate(self.terms.blocks.items()):
            lo, hi = blk.col_start, blk.col_start + blk.n_terms
            n_ns = study_n[j]
            lat_tested = np.flatnonzero(n_ns > 0)
            tested[ns] = lat_tested
            m = blk.n_terms
            m_by_ns[j] = int(lat_tested.size * m)
            if lat_tested.size == 0 or m == 0:
                continue
            N, K = blk.pop_n, blk.pop_count
            # the hits the study count allows that are over-represented, and each latent's hits (counts >= 1)
            term, lat, k, r_fam = over_represented(self._matrix_t, S, lo, hi, cfg.min_study_count, N, K, n_ns)
            r_all = int(r_fam.sum())
            if r_all == 0:
                continue
            lb = greater_lower_bounds(k, n_ns[lat], K[term], N, memo=self._memo(j, "lb"))
            if cfg.global_bh:
                # BH rejects r rows, all with p <= alpha r / M, and r <= #{lb <= alpha r / M}; starting from the
                # hit count, x -> #{lb <= alpha x / M} stays >= r, so its fixed point screens exactly
                M = float(max(m_by_ns[j], 1))
                r = r_all
                while True:
                    r_new = int(np.count_nonzero(lb < cfg.alpha * r / M * (1.0 + 1e-4)))
                    if r_new >= r:
                        break
                    r = r_new
                need = lb < cfg.alpha * r / M * (1.0 + 1e-4)
            else:  # hits per latent in this namespace (r_fam: all study counts >= 1)
                need = lb < cfg.alpha * r_fam[lat] / float(m) * (1.0 + 1e-4)
            lat, term, k = lat[need], term[need], k[need]
            p = fisher_pvalues(k, n_ns[lat], K[term], N, cfg.alternative, memo=self._memo(j, "p"))
            part = {"lat": lat, "term": term, "k": k, "n": n_ns[lat], "p": p,
                    "p_adj": p if cfg.global_bh else _bh_by_family(lat, p, m),
                    "ns": np.full(lat.size, j, dtype=np.int64)}
            fam_rows.append((j, part, None))
            parts.append(part)
        cols = {key: np.concatenate([pt[key] for pt in parts]) if parts else np.zeros(0)
                for key in ("lat", "term", "k", "n", "p", "p_adj", "ns")}
        if cfg.global_bh:
            cols["p_adj_global"] = self._global_bh(fam_rows, m_by_ns)
        return cols, study_n, tested, m_by_ns

    def _indicator(self, indicator) -> sp.csc_matrix:
        S = sp.csc_matrix(indicator).astype(np.int32)
        if S.shape[0] != self.terms.n_proteins:
            raise ValueError(
                f"study indicator has {S.shape[0]} rows but the analysis set has {self.terms.n_proteins} proteins"
            )
        return S

    def captured(self, cols: dict) -> np.ndarray:
        """'Captured' rows: corrected p < alpha, study count >= min_study_count, over-represented (fold > 1)."""
        cfg = self.cfg
        if cols["k"].size == 0:
            return np.zeros(0, dtype=bool)
        blocks = list(self.terms.blocks.values())
        ns = cols["ns"].astype(np.int64)
        K = np.zeros(ns.size, np.int64)
        N = np.zeros(ns.size, np.int64)
        for j, blk in enumerate(blocks):
            sel = ns == j
            K[sel] = blk.pop_count[cols["term"][sel].astype(np.int64)]
            N[sel] = blk.pop_n
        k, n = cols["k"].astype(np.int64), cols["n"].astype(np.int64)
        p_cap = cols["p_adj_global"] if cfg.global_bh else cols["p_adj"]
        return (p_cap < cfg.alpha) & (k >= cfg.min_study_count) & (k * N > K * n)

    def _go_index(self, cols: dict) -> np.ndarray:
        blocks = list(self.terms.blocks.values())
        starts = np.array([b.col_start for b in blocks], dtype=np.int64)
        return self.terms.col_term[starts[cols["ns"].astype(np.int64)] + cols["term"].astype(np.int64)]

    def capture_counts(self, cols: dict) -> dict[str, int]:
        """The coverage numbers of one test: distinct terms (all, most specific), latents, pairs."""
        cap = self.captured(cols)
        lat = cols["lat"][cap].astype(np.int64)
        g = self._go_index(cols)[cap]
        spec = self.terms.most_specific(lat, g)
        return {"n_terms": int(np.unique(g).size), "n_terms_nonredundant": int(np.unique(g[spec]).size),
                "n_latents_capturing": int(np.unique(lat).size), "n_pairs": int(cap.sum()),
                "n_pairs_nonredundant": int(spec.sum())}

    def null_counts(self, indicator, perms) -> list[dict[str, int]]:
        """capture_counts under each permutation of protein -> annotation labels (perm[i]: whose labels
        protein i carries). Permuting the study-set rows by the inverse is the same test with no copy of
        the propagated matrix; p-values of recurring tables come from the memo."""
        S = self._indicator(indicator).tocsr()
        out = []
        for perm in perms:
            inv = np.argsort(np.asarray(perm))
            cols, *_ = self._test(S[inv], "captured")  # rows permuted in CSR, as sparse_product reads it
            out.append(self.capture_counts(cols))
        return out

    def run(self, indicator, info: StudySetInfo | None = None, *, latent_ids=None, rows: str | None = None):
        """Enrichment of every latent's study set. indicator: [n_proteins, n_latents] sparse/bool.

        rows overrides cfg.table: "significant", "hits" (study_count >= 1) or "all" (every tested term,
        as goatools' run_study lists them; memory grows with latents x terms, so for a few latents).
        """
        t0 = time.perf_counter()
        cfg = self.cfg
        rows = rows or cfg.table
        if rows not in ("significant", "hits", "all"):
            raise ValueError(f"rows must be 'significant', 'hits' or 'all', got {rows!r}")
        S = self._indicator(indicator)
        n_lat = S.shape[1]
        latent_ids = np.arange(n_lat) if latent_ids is None else np.asarray(latent_ids)
        if latent_ids.size != n_lat:
            raise ValueError(f"{latent_ids.size} latent ids for {n_lat} study-set columns")
        cols, study_n, tested, m_by_ns = self._test(S, rows)
        table = self._table(cols, latent_ids, rows)
        elapsed = time.perf_counter() - t0
        meta = {
            "alternative": cfg.alternative,
            "correction": cfg.correction,
            "correction_note": (
                "p_adj: Benjamini-Hochberg per latent per namespace over every term the namespace's "
                "population carries (goatools GOEnrichmentStudyNS fdr_bh)"
                + ("; p_adj_global: BH per namespace across all latents x terms of this SAE (used for "
                   "'captured')" if cfg.global_bh else "")
            ),
            "table_rows": rows,
            "n_tests_global": int(sum(m_by_ns.values())),
            "population": {
                ns: {"pop_n": b.pop_n, "n_terms_tested": b.n_terms, "n_latents_tested": int(tested.get(ns, []).size),
                     "n_tests": m_by_ns.get(j, 0)}
                for j, (ns, b) in enumerate(self.terms.blocks.items())
            },
            "relationships": list(cfg.relationships),
            "background": cfg.background,
            "n_unknown_annotation_ids": self.terms.n_unknown_ids,
            "seconds": elapsed,
        }
        latents = pd.DataFrame({"latent": latent_ids.astype(np.int64)})
        for j, ns in enumerate(self.terms.blocks):
            latents[f"study_n_{ns}"] = study_n[j]
        if info is not None:
            latents["n_active"] = info.n_active
            latents["study_size"] = info.study_size
            latents["skipped"] = np.isin(np.arange(n_lat), info.skipped)
        else:
            latents["study_size"] = np.diff(S.indptr)
        return EnrichmentResult(table=table, latents=latents, config=_cfg_dict(cfg), meta=meta)

    def _dense_family(self, blk, lat_tested, n_ns, lat, term, k, p, n_u, p0, K_inv, rows):
        """BH with every term's p materialised (needed when study count 0 does not give p == 1)."""
        cfg = self.cfg
        n_pos = np.searchsorted(n_u, n_ns)
        order = np.argsort(lat, kind="stable")
        lat_s, term_s, k_s, p_s = lat[order], term[order], k[order], p[order]
        starts = np.searchsorted(lat_s, lat_tested, side="left")
        ends = np.searchsorted(lat_s, lat_tested, side="right")
        out = {key: [] for key in ("lat", "term", "k", "n", "p", "p_adj")}
        m = blk.n_terms
        for li, a, b in zip(lat_tested, starts, ends):
            row = p0[n_pos[li]][K_inv].copy()
            krow = np.zeros(m, dtype=np.int64)
            row[term_s[a:b]] = p_s[a:b]
            krow[term_s[a:b]] = k_s[a:b]
            adj = bh(row)
            if rows == "all":
                keep = np.ones(m, bool)
            elif rows == "hits":
                keep = krow > 0
            else:
                keep = (adj < cfg.alpha) | (krow > 0)
            idx = np.flatnonzero(keep)
            out["lat"].append(np.full(idx.size, li, dtype=np.int64))
            out["term"].append(idx)
            out["k"].append(krow[idx])
            out["n"].append(np.full(idx.size, n_ns[li], dtype=np.int64))
            out["p"].append(row[idx])
            out["p_adj"].append(adj[idx])
        return {key: (np.concatenate(v) if v else np.zeros(0, dtype=np.int64)) for key, v in out.items()}

    def _global_bh(self, fam_rows, m_by_ns: dict[int, int]) -> np.ndarray:
        """BH per namespace over all latents x terms; rows not materialised have p == 1 (sparse path)."""
        out = []
        for j, part, dense in fam_rows:
            extra = []
            if dense is not None:  # the study-count-0 p-values of a dense family that are not in `part`
                n_u, p0, K_inv, lat_tested, n_ns = dense
                n_pos = np.searchsorted(n_u, n_ns)
                m = K_inv.size
                for li in lat_tested:
                    have = np.zeros(m, bool)
                    have[part["term"][part["lat"] == li]] = True
                    extra.append(p0[n_pos[li]][K_inv][~have])
            allp = np.concatenate([part["p"], *extra])
            if allp.size > m_by_ns[j]:
                raise AssertionError("more p-values than tests")  # pragma: no cover
            out.append(bh_with_ones(allp, m_by_ns[j])[:part["p"].size])
        return np.concatenate(out) if out else np.zeros(0)

    def _table(self, cols: dict, latent_ids: np.ndarray, rows: str) -> pd.DataFrame:
        cfg = self.cfg
        blocks = list(self.terms.blocks.values())
        ns_j = cols["ns"].astype(np.int64)
        k = cols["k"].astype(np.int64)
        p_adj_cap = cols["p_adj_global"] if cfg.global_bh else cols["p_adj"]
        if rows == "significant":
            keep = p_adj_cap < cfg.alpha
        elif rows == "hits":
            keep = k > 0
        else:
            keep = np.ones(k.shape, bool)
        idx = np.flatnonzero(keep)
        ns_j, k = ns_j[idx], k[idx]
        term = cols["term"][idx].astype(np.int64)
        go = np.empty(idx.size, dtype=object)
        K = np.zeros(idx.size, dtype=np.int64)
        N = np.zeros(idx.size, dtype=np.int64)
        ns_name = np.empty(idx.size, dtype=object)
        for j, blk in enumerate(blocks):
            sel = ns_j == j
            if not sel.any():
                continue
            go[sel] = np.asarray(blk.terms, dtype=object)[term[sel]]
            K[sel] = blk.pop_count[term[sel]]
            N[sel] = blk.pop_n
            ns_name[sel] = blk.ns
        n = cols["n"][idx].astype(np.int64)
        codes, uniq = pd.factorize(pd.Series(go, dtype=object), sort=True)
        uniq = [str(g) for g in uniq]
        ic_map = self.information_content(uniq) if uniq and cfg.information_content else dict.fromkeys(uniq, np.nan)
        dag = self.godag
        u_name = np.array([dag[g].name for g in uniq], dtype=object)
        u_level = np.array([dag[g].level for g in uniq], dtype=np.int64)
        u_depth = np.array([dag[g].depth for g in uniq], dtype=np.int64)
        u_ic = np.array([ic_map[g] for g in uniq], dtype=np.float64)
        u_tns = np.array([NS_CODE.get(dag[g].namespace, dag[g].namespace) for g in uniq], dtype=object)
        with np.errstate(divide="ignore", invalid="ignore"):
            fold = (1.0 * k / n) / (1.0 * K / N)
        df = pd.DataFrame({
            "latent": latent_ids[cols["lat"][idx].astype(np.int64)].astype(np.int64),
            "go_id": go,
            "name": u_name[codes],
            "namespace": ns_name,
            "study_count": k,
            "study_n": n,
            "pop_count": K,
            "pop_n": N.astype(np.int64),
            "p": cols["p"][idx].astype(np.float64),
            "p_adj": cols["p_adj"][idx].astype(np.float64),
            "fold": fold.astype(np.float64),
            "level": u_level[codes],
            "depth": u_depth[codes],
            "ic": u_ic[codes],
        })
        if cfg.global_bh:
            df["p_adj_global"] = cols["p_adj_global"][idx].astype(np.float64)
        df["term_namespace"] = u_tns[codes]
        enriched = df["fold"].to_numpy() > 1.0
        df["captured"] = (p_adj_cap[idx] < cfg.alpha) & (k >= cfg.min_study_count) & enriched
        # most specific: captured, and no captured descendant (is_a + relationships) in the same latent
        cap = df["captured"].to_numpy()
        g = self._go_index({"ns": cols["ns"][idx], "term": term})
        spec = np.zeros(len(df), dtype=bool)
        spec[cap] = self.terms.most_specific(df["latent"].to_numpy()[cap], g[cap])
        df["most_specific"] = spec
        # rows: latent, namespace run (BP, MF, CC order), p, go_id
        order = np.lexsort((codes, df["p"].to_numpy(), ns_j, df["latent"].to_numpy()))
        df = df.iloc[order].reset_index(drop=True)
        return df


def _cfg_dict(cfg: EnrichConfig) -> dict:
    return to_dict(cfg)


def enricher_for(scores, protein_ids: Sequence[str], annotations, ontology, cfg: EnrichConfig,
                 enricher: GOEnricher | None = None) -> GOEnricher:
    """Check scores against the protein ids and build a GOEnricher, or reuse `enricher` (built once per
    protein set: the propagated matrix and IC are the expensive part) with `cfg`."""
    if scores.shape[0] != len(protein_ids):
        raise ValueError(f"scores have {scores.shape[0]} rows but {len(protein_ids)} protein ids were given")
    if enricher is None:
        return GOEnricher(protein_ids, annotations, ontology, cfg)
    if list(enricher.protein_ids) != [str(p) for p in protein_ids]:
        raise ValueError("enricher was built for a different protein id list/order than the scores")
    return enricher.with_config(cfg)


def enrich_latents(
    scores,
    protein_ids: Sequence[str],
    annotations: Mapping[str, Iterable[str]],
    ontology,
    cfg: EnrichConfig | None = None,
    *,
    enricher: GOEnricher | None = None,
) -> EnrichmentResult:
    """scores (csr [n_proteins, n_latents], rows in protein_ids order) -> EnrichmentResult.

    Pass ``enricher`` (a GOEnricher built once for these proteins) to reuse the propagated annotation
    matrix across several SAEs / seeds / the null control.
    """
    cfg = cfg or EnrichConfig()
    enricher = enricher_for(scores, protein_ids, annotations, ontology, cfg, enricher)
    indicator, info = study_sets(scores, cfg)
    result = enricher.run(indicator, info)
    result.meta["study_sets"] = {"config": to_dict(subset(StudySetConfig, cfg)), **info.to_dict()}
    return result


def _bh_by_family(lat: np.ndarray, p: np.ndarray, m: int) -> np.ndarray:
    """bh_with_ones(p of one latent, m) for every latent at once: the same arithmetic, bit for bit
    (ratio p_(j) / (j / m), reverse cumulative minimum within the latent's rows, clipped at 1)."""
    p_adj = np.empty_like(p)
    if p.size == 0:
        return p_adj
    order = np.lexsort((p, lat))
    ls, ps = lat[order], p[order]
    start = np.r_[0, np.flatnonzero(np.diff(ls)) + 1]
    sizes = np.diff(np.r_[start, ps.size])
    rank = np.arange(ps.size) - np.repeat(start, sizes) + 1
    ratio = ps / (rank / float(m))
    seg = np.repeat(np.arange(start.size), sizes)
    corr = pd.Series(ratio[::-1]).groupby(seg[::-1], sort=False).cummin().to_numpy()[::-1]
    corr = corr.copy()
    corr[corr > 1] = 1
    p_adj[order] = corr
    return p_adj
