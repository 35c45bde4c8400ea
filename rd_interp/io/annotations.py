"""Protein -> GO term annotations from the shipped TSV, GAF 2.x or a UniProt TSV export.

Why the bookkeeping: enrichment results depend on which annotations survive. Every GO id read is mapped
to its main id in the ontology in use (alt ids -> main id, obsolete ids -> replaced_by when given) and
whatever cannot be mapped is counted and reported (`AnnotationReport`), never dropped silently.
Annotations are stored as given (not propagated to ancestors); the enrichment layer propagates.
"""

from __future__ import annotations

import collections
import gzip
import io
import os
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from rd_interp.io.atomic import atomic_path
from rd_interp.io.fasta import iter_lines
from rd_interp.io.go import normalize_namespace

if TYPE_CHECKING:  # pragma: no cover
    from rd_interp.io.go import Ontology

GO_ID = re.compile(r"^GO:\d{7}$")
FORMATS = ("auto", "tsv", "gaf", "uniprot")
_MAX_EXAMPLES = 10


class AnnotationError(ValueError):
    """A malformed annotation file; the message starts with ``<file>:<line>:``."""


@dataclass
class AnnotationReport:
    """How the GO ids of an annotation file mapped onto the ontology.

    Counts are over distinct (protein, GO id) pairs as written in the file (repeated evidence lines
    count once); ``n_records`` counts data lines (rows for UniProt exports).
    """

    n_records: int = 0
    n_ids: int = 0
    n_resolved_direct: int = 0
    n_alt_mapped: int = 0
    n_obsolete_replaced: int = 0
    n_unknown: int = 0
    n_obsolete_dropped: int = 0
    unknown_examples: list[str] = field(default_factory=list)
    obsolete_examples: list[str] = field(default_factory=list)
    n_proteins: int = 0  # proteins with >= 1 resolved id
    n_proteins_without_ids: int = 0  # proteins listed with no (resolvable) GO id
    n_negated_skipped: int = 0  # GAF lines with a NOT qualifier (negative annotations, not used)
    n_namespace_mismatch: int = 0  # TSV rows whose namespace column disagrees with the ontology
    path: str = ""
    format: str = ""
    ontology_release: str = ""

    @property
    def n_resolved(self) -> int:
        return self.n_resolved_direct + self.n_alt_mapped + self.n_obsolete_replaced

    @property
    def fraction_resolved(self) -> float:
        return self.n_resolved / self.n_ids if self.n_ids else 0.0

    def to_dict(self) -> dict:
        d = asdict(self)
        d["n_resolved"] = self.n_resolved
        d["fraction_resolved"] = self.fraction_resolved
        return d

    def lines(self) -> list[str]:
        """Human-readable summary (used by `rd-interp data check`)."""
        out = [
            f"annotations: {self.path} (format {self.format}, ontology {self.ontology_release})",
            (f"  {self.n_records:,} records, {self.n_ids:,} distinct protein-GO pairs, "
            f"{self.n_proteins:,} proteins with >= 1 resolved id"),
            (f"  resolved {self.n_resolved:,} ({100 * self.fraction_resolved:.2f}%): direct "
            f"{self.n_resolved_direct:,}, alt id -> main {self.n_alt_mapped:,}, obsolete -> replaced_by "
            f"{self.n_obsolete_replaced:,}"),
            f"  dropped: obsolete without replacement {self.n_obsolete_dropped:,}, unknown {self.n_unknown:,}",
        ]
        if self.unknown_examples:
            out.append(f"  unknown ids, e.g.: {', '.join(self.unknown_examples)}")
        if self.obsolete_examples:
            out.append(f"  obsolete ids, e.g.: {', '.join(self.obsolete_examples)}")
        if self.n_negated_skipped:
            out.append(f"  skipped {self.n_negated_skipped:,} GAF lines with a NOT qualifier")
        if self.n_namespace_mismatch:
            out.append(f"  {self.n_namespace_mismatch:,} rows whose namespace column disagrees with the ontology")
        if self.n_proteins_without_ids:
            out.append(f"  {self.n_proteins_without_ids:,} proteins without any resolved GO id (left out)")
        return out


class Annotations(Mapping):
    """protein id -> frozenset of main GO ids (not propagated). Proteins keep first-seen order."""

    def __init__(self, mapping: Mapping[str, Iterable[str]], report: AnnotationReport | None = None):
        self._map: dict[str, frozenset[str]] = {p: frozenset(g) for p, g in mapping.items()}
        self.report = report if report is not None else AnnotationReport(
            n_ids=sum(len(g) for g in self._map.values()), n_proteins=len(self._map))

    def __getitem__(self, protein_id: str) -> frozenset[str]:
        return self._map[protein_id]

    def __iter__(self) -> Iterator[str]:
        return iter(self._map)

    def __len__(self) -> int:
        return len(self._map)

    def __repr__(self) -> str:
        return f"Annotations({len(self)} proteins, {self.n_pairs} protein-GO pairs)"

    @property
    def proteins(self) -> list[str]:
        return list(self._map)

    @property
    def n_pairs(self) -> int:
        return sum(len(g) for g in self._map.values())

    def by_namespace(self, ontology: Ontology, ns: str) -> dict[str, set[str]]:
        """protein -> its ids in one namespace ("BP"/"MF"/"CC"); proteins with none are left out."""
        ns = normalize_namespace(ns)
        out: dict[str, set[str]] = {}
        cache: dict[str, str] = {}
        for p, ids in self._map.items():
            sel = set()
            for g in ids:
                gns = cache.get(g)
                if gns is None:
                    gns = cache[g] = ontology.namespace(g)
                if gns == ns:
                    sel.add(g)
            if sel:
                out[p] = sel
        return out

    def subset(self, protein_ids: Iterable[str]) -> Annotations:
        """Only the given proteins that are annotated, in the given order (report kept: it describes the source)."""
        return Annotations({p: self._map[p] for p in protein_ids if p in self._map}, self.report)

    def terms(self) -> set[str]:
        return set().union(*self._map.values()) if self._map else set()


# ---------------------------------------------------------------------------------------------- reading
def read_annotations(
    path: str | os.PathLike,
    *,
    fmt: str = "auto",
    ontology: Ontology | None = None,
) -> Annotations:
    """Read annotations and map their ids onto `ontology` (None: the shipped GO release).

    fmt: "tsv" (protein_id, go_id[, namespace]; header optional), "gaf" (GAF 2.x), "uniprot" (UniProt
    TSV export with columns Entry and Gene Ontology IDs), or "auto" (detected from the first lines).
    Malformed lines raise AnnotationError naming file and line; unknown/obsolete ids are counted in
    `.report` (with examples), not errors, since real files routinely lag the ontology.
    """
    if fmt not in FORMATS:
        raise ValueError(f"unknown annotation format {fmt!r} (expected one of {', '.join(FORMATS)})")
    if ontology is None:
        from rd_interp.io.go import Ontology

        ontology = Ontology.load()
    name = str(path)
    if fmt == "auto":
        fmt = _detect(path, name)
    rows = {"tsv": _rows_tsv, "gaf": _rows_gaf, "uniprot": _rows_uniprot}[fmt](iter_lines(path, AnnotationError), name)
    return _collect(rows, name, fmt, ontology)


def _detect(path, name: str) -> str:
    """Peek at the first non-empty lines to tell GAF, UniProt export and TSV apart."""
    first: list[str] = []
    lines = iter_lines(path, AnnotationError)
    try:
        for _, line in lines:
            if line.strip():
                first.append(line)
            if any(not x.startswith("!") for x in first) or len(first) >= 200:
                break
    finally:
        lines.close()
    if not first:
        raise AnnotationError(f"{name}:1: empty annotation file")
    if first[0].lower().startswith("!gaf-version"):
        return "gaf"
    data = [x for x in first if not x.startswith("!")]
    if not data:
        return "gaf"
    cols = [c.strip().lower() for c in data[0].split("\t")]
    if "entry" in cols and any("gene ontology" in c for c in cols):
        return "uniprot"
    if len(cols) >= 15 and GO_ID.match(cols[4].upper()):
        return "gaf"
    return "tsv"


def _data_lines(lines: Iterable[tuple[int, str]], comment: str = "#") -> Iterator[tuple[int, str]]:
    for lineno, line in lines:
        if not line.strip() or line.startswith(comment):
            continue
        yield lineno, line


def _check_id(go_id: str, name: str, lineno: int) -> str:
    g = go_id.strip()
    if not GO_ID.match(g):
        raise AnnotationError(f"{name}:{lineno}: malformed GO id {go_id!r} (expected GO: and 7 digits)")
    return g


# Each row generator yields (lineno, protein, [go ids], namespace or None, negated)
def _rows_tsv(fh: Iterable[tuple[int, str]], name: str):
    header_seen = False
    ns_memo: dict[str, str] = {}
    for lineno, line in _data_lines(fh):
        cols = line.split("\t")
        if not header_seen:
            header_seen = True
            lower = [c.strip().lower() for c in cols]
            if lower[:2] == ["protein_id", "go_id"]:
                if len(cols) not in (2, 3) or (len(cols) == 3 and lower[2] != "namespace"):
                    raise AnnotationError(f"{name}:{lineno}: unexpected header {line!r} "
                                          "(expected protein_id<TAB>go_id[<TAB>namespace])")
                continue
            if "entry" in lower:
                raise AnnotationError(f"{name}:{lineno}: looks like a UniProt export but has no "
                                      "'Gene Ontology IDs' column (add it when exporting)")
        if len(cols) not in (2, 3):
            raise AnnotationError(f"{name}:{lineno}: expected 2 or 3 tab-separated columns "
                                  f"(protein_id, go_id[, namespace]), got {len(cols)}")
        prot = cols[0].strip()
        if not prot:
            raise AnnotationError(f"{name}:{lineno}: empty protein id")
        ns = None
        if len(cols) == 3:
            ns = ns_memo.get(cols[2])
            if ns is None:
                try:
                    ns = ns_memo[cols[2]] = normalize_namespace(cols[2])
                except ValueError as exc:
                    raise AnnotationError(f"{name}:{lineno}: {exc}") from None
        g = cols[1]
        if len(g) != 10 or not GO_ID.match(g):
            g = _check_id(g, name, lineno)
        yield lineno, prot, [g], ns, False
    if not header_seen:
        raise AnnotationError(f"{name}:1: no annotation lines")


def _rows_gaf(fh: Iterable[tuple[int, str]], name: str):
    n = 0
    for lineno, line in _data_lines(fh, comment="!"):
        cols = line.split("\t")
        if len(cols) < 15:
            raise AnnotationError(f"{name}:{lineno}: GAF line has {len(cols)} tab-separated columns, expected 15-17")
        prot = cols[1].strip()
        if not prot:
            raise AnnotationError(f"{name}:{lineno}: empty DB Object ID (column 2)")
        qualifiers = {q.strip().upper() for q in cols[3].split("|")}
        try:
            ns = normalize_namespace(cols[8]) if cols[8].strip() else None
        except ValueError:
            raise AnnotationError(f"{name}:{lineno}: unknown aspect {cols[8]!r} in column 9 (expected P, F or C)") from None
        n += 1
        yield lineno, prot, [_check_id(cols[4], name, lineno)], ns, "NOT" in qualifiers
    if n == 0:
        raise AnnotationError(f"{name}:1: GAF file has no annotation lines")


def _rows_uniprot(fh: Iterable[tuple[int, str]], name: str):
    it = _data_lines(fh)
    try:
        lineno, header = next(it)
    except StopIteration:
        raise AnnotationError(f"{name}:1: empty UniProt export") from None
    cols = [c.strip().lower() for c in header.split("\t")]
    if "entry" not in cols:
        raise AnnotationError(f"{name}:{lineno}: UniProt export header has no 'Entry' column")
    go_cols = [i for i, c in enumerate(cols) if c.startswith("gene ontology ids") or c == "gene ontology (go) ids"]
    if not go_cols:
        raise AnnotationError(f"{name}:{lineno}: UniProt export header has no 'Gene Ontology IDs' column "
                              f"(columns: {', '.join(header.split(chr(9)))})")
    i_entry, i_go = cols.index("entry"), go_cols[0]
    width = len(cols)
    for lineno, line in it:
        parts = line.split("\t")
        if len(parts) != width:
            raise AnnotationError(f"{name}:{lineno}: {len(parts)} columns, header has {width}")
        prot = parts[i_entry].strip()
        if not prot:
            raise AnnotationError(f"{name}:{lineno}: empty Entry")
        ids = [_check_id(g, name, lineno) for g in re.split(r"[;,]\s*", parts[i_go].strip()) if g.strip()]
        yield lineno, prot, ids, None, False


def _collect(rows, name: str, fmt: str, ontology: Ontology) -> Annotations:
    rep = AnnotationReport(path=name, format=fmt, ontology_release=str(getattr(ontology, "release", "")))
    result: dict[str, set[str]] = {}
    listed: dict[str, None] = {}
    seen_pairs: set[tuple[str, str]] = set()
    memo: dict[str, tuple[str | None, str, str | None]] = {}
    counters = collections.Counter()
    for lineno, prot, ids, ns, negated in rows:
        rep.n_records += 1
        listed.setdefault(prot, None)
        if negated:
            rep.n_negated_skipped += 1
            continue
        for g in ids:
            if (prot, g) in seen_pairs:
                continue
            seen_pairs.add((prot, g))
            hit = memo.get(g)
            if hit is None:
                main, how = ontology.resolve_detail(g)
                hit = memo[g] = (main, how, None if main is None else ontology.namespace(main))
            main, how, main_ns = hit
            counters[how] += 1
            if main is None:
                examples = rep.unknown_examples if how == "unknown" else rep.obsolete_examples
                if len(examples) < _MAX_EXAMPLES and g not in examples:
                    examples.append(g)
                continue
            if ns is not None and main_ns != ns:
                rep.n_namespace_mismatch += 1
            result.setdefault(prot, set()).add(main)
    rep.n_ids = len(seen_pairs)
    rep.n_resolved_direct = counters["direct"]
    rep.n_alt_mapped = counters["alt"]
    rep.n_obsolete_replaced = counters["replaced_by"]
    rep.n_obsolete_dropped = counters["obsolete"]
    rep.n_unknown = counters["unknown"]
    rep.n_proteins = len(result)
    rep.n_proteins_without_ids = sum(1 for p in listed if p not in result)
    ordered = {p: result[p] for p in listed if p in result}
    return Annotations(ordered, rep)


# ---------------------------------------------------------------------------------------------- overlap
_ACCESSION = re.compile(r"^(?:[OPQ][0-9][A-Z0-9]{3}[0-9]|[A-NR-Z][0-9](?:[A-Z][A-Z0-9]{2}[0-9]){1,2})(?:-\d+)?$")
_ENTRY_NAME = re.compile(r"^[A-Z0-9]{1,10}_[A-Z0-9]{1,5}$")


def _kind(ids: Sequence[str]) -> str:
    """'accession', 'entry name' or '' (mixed/other), from up to 200 ids."""
    sample = list(ids[:200])
    for kind, pattern in (("accession", _ACCESSION), ("entry name", _ENTRY_NAME)):
        if sample and sum(bool(pattern.match(i)) for i in sample) >= 0.9 * len(sample):
            return kind
    return ""


def check_overlap(fasta_ids: Sequence[str], annotations: Annotations, *, fasta: str, source: str,
                  descriptions: Sequence[str] = ()) -> int:
    """How many FASTA proteins have annotations; AnnotationError naming both files when none has.

    Why fail: with no overlap every background is empty, and a run "succeeds" with 0 GO terms after hours
    of embedding. The usual cause is an id format mismatch (UniProt accession P69905 vs entry name
    HBA_HUMAN), which the hint names with examples from both files.
    """
    ann = annotations.proteins
    found = sum(1 for p in fasta_ids if p in annotations)
    if found or not fasta_ids:
        return found
    fk, ak = _kind(list(fasta_ids)), _kind(ann)
    eg_f, eg_a = ", ".join(repr(i) for i in list(fasta_ids)[:2]), ", ".join(repr(i) for i in ann[:2])
    hint = f"ids must match exactly (FASTA e.g. {eg_f}; annotations e.g. {eg_a or 'none'})"
    if fk and ak and fk != ak:
        hint = (f"the FASTA ids are UniProt {fk}s ({eg_f}) but the annotations use {ak}s ({eg_a}); "
                f"use {fk}s in both (UniProt 'sp|ACC|NAME' headers are read as the accession ACC)")
    named = set(ann)
    in_headers = sum(1 for d in descriptions if named.intersection(d.replace("|", " ").split()))
    if in_headers:
        hint += f"; {in_headers:,} FASTA headers contain an annotated id in their description, not as their id"
    raise AnnotationError(f"{source}: none of its {len(ann):,} annotated proteins is among the {len(fasta_ids):,} "
                          f"proteins of {fasta} (overlap 0); {hint}")


# ---------------------------------------------------------------------------------------------- writing
def write_annotations_tsv(path: str | os.PathLike, annotations: Mapping[str, Iterable[str]], ontology: Ontology) -> None:
    """Write the shipped TSV format (header; protein_id, go_id, namespace), atomically; .gz by suffix.

    Rows follow the proteins' order, then namespace (BP, MF, CC) and id, so output is deterministic.
    Ids must be current terms of `ontology` (a KeyError names any that is not).
    """
    path = Path(path)
    order = {"BP": 0, "MF": 1, "CC": 2}
    buf = io.StringIO()
    buf.write("protein_id\tgo_id\tnamespace\n")
    for prot in annotations:
        if not prot or any(c.isspace() for c in prot):
            raise ValueError(f"{path}: invalid protein id {prot!r}")
        pairs = sorted(((ontology.namespace(g), g) for g in annotations[prot]), key=lambda x: (order[x[0]], x[1]))
        for ns, g in pairs:
            buf.write(f"{prot}\t{g}\t{ns}\n")
    data = buf.getvalue().encode("utf-8")
    if path.suffix == ".gz":
        out = io.BytesIO()
        with gzip.GzipFile(filename="", mode="wb", fileobj=out, mtime=0) as gz:
            gz.write(data)
        data = out.getvalue()
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
