"""Propagated protein x GO-term incidence, per namespace, exactly as goatools builds it.

goatools' GOEnrichmentStudy(propagate_counts=True, relationships={"part_of"}) adds to each protein's
annotation set every ancestor reachable over is_a + part_of (``update_association``) and then tests
every term that at least one population protein carries. Doing that once as a sparse matrix lets one
sparse product give the study counts of all latents at once (see fisher.py).

Per namespace NS, the annotation dict is the protein's NS annotations only (``{NS: assoc}`` in
GOEnrichmentStudyNS); propagation can leave NS (GO has MF part_of BP links): goatools then tests
those terms in the NS run and so do we (column ``term_namespace`` in the tables says so).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp

NAMESPACES = ("BP", "MF", "CC")
NS_CODE = {"biological_process": "BP", "molecular_function": "MF", "cellular_component": "CC"}
BACKGROUNDS = ("namespace", "annotated", "all")


def godag_of(ontology):
    """The goatools GODag behind an rd_interp Ontology (``.dag``) or a GODag itself."""
    return getattr(ontology, "dag", ontology)


def _lookup(annotations: Mapping[str, Iterable[str]], protein_id: str) -> Iterable[str]:
    return annotations.get(protein_id) or ()


@dataclass
class NamespaceBlock:
    """Tested terms of one namespace run (one BH family per latent)."""

    ns: str
    terms: list[str]                # term ids, column order (sorted)
    col_start: int                  # first column of this block in TermMatrix.matrix
    pop_mask: np.ndarray            # bool [n_proteins]: population (background) of this run
    pop_count: np.ndarray           # int64 [n_terms]: population proteins carrying each term
    direct: dict[str, set[str]] = field(repr=False, default_factory=dict)  # protein -> main ids (NS)

    @property
    def pop_n(self) -> int:
        return int(self.pop_mask.sum())

    @property
    def n_terms(self) -> int:
        return len(self.terms)


class TermMatrix:
    """Sparse propagated incidence [n_proteins, sum of tested terms over namespaces].

    protein_ids fixes the row order (the score matrix's row order). ``background`` picks each
    namespace's population: "namespace" (default) = proteins with >= 1 annotation in that namespace,
    "annotated" = proteins with >= 1 annotation in any namespace, "all" = every protein in protein_ids.
    Study proteins outside the population are dropped from that namespace's study set, as goatools does.
    """

    def __init__(
        self,
        protein_ids: Sequence[str],
        annotations: Mapping[str, Iterable[str]],
        ontology,
        *,
        namespaces: Sequence[str] = NAMESPACES,
        relationships: Sequence[str] = ("part_of",),
        background: str = "namespace",
    ) -> None:
        if background not in BACKGROUNDS:
            raise ValueError(f"background must be one of {BACKGROUNDS}, got {background!r}")
        bad = [ns for ns in namespaces if ns not in NAMESPACES]
        if bad:
            raise ValueError(f"unknown namespace(s) {bad}; expected a subset of {NAMESPACES}")
        self.protein_ids = [str(p) for p in protein_ids]
        if len(set(self.protein_ids)) != len(self.protein_ids):
            dup = _first_duplicate(self.protein_ids)
            raise ValueError(f"protein ids are not unique (e.g. {dup!r} appears twice)")
        self.godag = godag_of(ontology)
        self.relationships = tuple(sorted(relationships))
        self.background = background
        self.namespaces = tuple(namespaces)
        self.n_unknown_ids = 0
        self.unknown_examples: list[str] = []

        dag = self.godag
        n = len(self.protein_ids)
        # Direct (not propagated) main ids per protein per namespace.
        direct: dict[str, dict[str, set[str]]] = {ns: {} for ns in self.namespaces}
        for pid in self.protein_ids:
            for go in _lookup(annotations, pid):
                term = dag.get(go)
                if term is None:
                    self.n_unknown_ids += 1
                    if len(self.unknown_examples) < 5:
                        self.unknown_examples.append(str(go))
                    continue
                ns = NS_CODE.get(term.namespace, term.namespace)
                if ns in direct:
                    direct[ns].setdefault(pid, set()).add(term.item_id)

        # Closure over is_a + relationships of every annotated term, by goatools' own routine.
        from goatools.godag.go_tasks import get_go2ancestors

        used = {go for d in direct.values() for gos in d.values() for go in gos}
        go2up = get_go2ancestors({dag[g] for g in used}, set(self.relationships) or None)
        self.term_index: dict[str, int] = {}
        for go in sorted(used | {a for g in used for a in go2up.get(g, ())}):
            self.term_index[go] = len(self.term_index)
        used_sorted = sorted(used)
        # closure matrix C [annotated terms, all terms]: term itself + its ancestors
        rows, cols = [], []
        for i, go in enumerate(used_sorted):
            for a in (go, *go2up.get(go, ())):
                rows.append(i)
                cols.append(self.term_index[a])
        closure = sp.csr_matrix(
            (np.ones(len(rows), np.int32), (rows, cols)), shape=(len(used_sorted), len(self.term_index))
        )
        used_pos = {go: i for i, go in enumerate(used_sorted)}
        prot_pos = {p: i for i, p in enumerate(self.protein_ids)}
        annotated_any = np.zeros(n, bool)
        for d in direct.values():
            for pid in d:
                annotated_any[prot_pos[pid]] = True

        self.blocks: dict[str, NamespaceBlock] = {}
        mats = []
        col = 0
        all_terms = np.array(sorted(self.term_index), dtype=object)
        for ns in self.namespaces:
            r, c = [], []
            for pid, gos in direct[ns].items():
                for go in gos:
                    r.append(prot_pos[pid])
                    c.append(used_pos[go])
            A = sp.csr_matrix((np.ones(len(r), np.int32), (r, c)), shape=(n, len(used_sorted)))
            P = (A @ closure).tocsc()
            P.data[:] = 1
            keep = np.flatnonzero(np.diff(P.indptr) > 0)
            P = P[:, keep].tocsr().astype(np.int32)
            has = np.zeros(n, bool)
            has[[prot_pos[p] for p in direct[ns]]] = True
            if background == "namespace":
                pop_mask = has
            elif background == "annotated":
                pop_mask = annotated_any.copy()
            else:
                pop_mask = np.ones(n, bool)
            # Non-population rows carry no NS annotation under every background choice, so P needs no mask.
            pop_count = np.asarray(P.sum(axis=0)).ravel().astype(np.int64)
            self.blocks[ns] = NamespaceBlock(
                ns=ns,
                terms=[str(t) for t in all_terms[keep]],
                col_start=col,
                pop_mask=pop_mask,
                pop_count=pop_count,
                direct=direct[ns],
            )
            mats.append(P)
            col += P.shape[1]
        self.matrix = sp.hstack(mats, format="csr", dtype=np.int32) if mats else sp.csr_matrix((n, 0), dtype=np.int32)
        # Term identity of every matrix column (a term may be tested in two namespace runs), and the strict
        # ancestor relation (is_a + relationships, as propagated) between all terms: what "a captured term
        # has a captured descendant in the same latent" is computed from.
        self.go_ids = list(self.term_index)
        self.col_term = np.array([self.term_index[t] for b in self.blocks.values() for t in b.terms], dtype=np.int64)
        go2up_all = get_go2ancestors({dag[g] for g in self.term_index}, set(self.relationships) or None)
        ar, ac = [], []
        for go, i in self.term_index.items():
            for a in go2up_all.get(go, ()):
                if a in self.term_index and a != go:
                    ar.append(i)
                    ac.append(self.term_index[a])
        g = len(self.term_index)
        self.ancestors = sp.csr_matrix((np.ones(len(ar), np.int8), (ar, ac)), shape=(g, g))
        self.pop_masks = np.stack([self.blocks[ns].pop_mask for ns in self.namespaces], axis=1) if self.namespaces \
            else np.zeros((n, 0), bool)

    @property
    def n_proteins(self) -> int:
        return len(self.protein_ids)

    def permuted(self, perm: np.ndarray) -> TermMatrix:
        """Copy in which protein i carries the annotations (and population membership) of protein perm[i]."""
        perm = np.asarray(perm)
        if sorted(perm.tolist()) != list(range(self.n_proteins)):
            raise ValueError("perm must be a permutation of range(n_proteins)")
        new = object.__new__(TermMatrix)
        new.__dict__.update(self.__dict__)
        new.matrix = self.matrix[perm]
        new.pop_masks = self.pop_masks[perm]
        new.blocks = {}
        for j, (ns, b) in enumerate(self.blocks.items()):
            new.blocks[ns] = NamespaceBlock(
                ns=ns,
                terms=b.terms,
                col_start=b.col_start,
                pop_mask=b.pop_mask[perm],
                pop_count=b.pop_count,
                direct={self.protein_ids[i]: b.direct[self.protein_ids[p]]
                        for i, p in enumerate(perm) if self.protein_ids[p] in b.direct},
            )
        return new

    def most_specific(self, latents: np.ndarray, terms: np.ndarray) -> np.ndarray:
        """For (latent, term index) pairs: True where no other pair of the same latent is a descendant.

        `terms` index ``go_ids`` (use ``col_term[column]``). A term with a descendant in the same set is
        implied by it through propagation, so counting only the most specific terms keeps one latent
        from being credited with a whole ancestor chain.
        """
        latents, terms = np.asarray(latents, np.int64), np.asarray(terms, np.int64)
        if latents.size == 0:
            return np.zeros(0, dtype=bool)
        ul, li = np.unique(latents, return_inverse=True)
        g = self.ancestors.shape[0]
        cap = sp.csr_matrix((np.ones(li.size, np.int32), (li, terms)), shape=(ul.size, g))
        hit = (cap @ self.ancestors).tocoo()  # (l, t): some term of latent l has t as a strict ancestor
        return ~np.isin(li * g + terms, hit.row.astype(np.int64) * g + hit.col)

    def goatools_inputs(self, ns: str) -> tuple[list[str], dict[str, set[str]]]:
        """(population, assoc) to hand GOEnrichmentStudyNS for namespace ns (the oracle in tests)."""
        b = self.blocks[ns]
        pop = [p for p, m in zip(self.protein_ids, b.pop_mask) if m]
        assoc = {p: set(g) for p, g in b.direct.items()}
        return pop, assoc


def _first_duplicate(items: Sequence[str]) -> str:
    seen = set()
    for x in items:
        if x in seen:
            return x
        seen.add(x)
    return ""
