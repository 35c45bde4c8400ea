#!/usr/bin/env python3
"""Rebuild every shipped file under data/go and data/proteins, byte for byte, from Debian packages.

Why a script and not just the files: the data must be auditable. Anyone can regenerate them from the
public Debian packages and compare checksums (``python data/rebuild.py --check``).

Sources (installed with apt-get when missing, after ``apt-get update``):
  r-bioc-go.db      GO.sqlite, a tabular dump of go-basic.obo release 2022-07-01 (terms, definitions,
                    is_a/part_of/regulates edges, secondary ids, obsolete terms)
  metastudent-data  Swiss-Prot 2014-01 proteins with GO annotations (BLAST databases + goasp_annot.dat)
                    and its own 2014 GO graph (goGraph.txt, nameMapping.txt)
  ncbi-blast+       blastdbcmd, to read sequences out of the BLAST databases

Outputs (gzip with mtime=0 and no file name, so rebuilds are byte-identical):
  data/go/go.obo.gz                 GO 2022-07-01 as OBO 1.2 that goatools' GODag loads
  data/proteins/eval.fasta.gz       evaluation proteins (length 50-1022, >= 1 resolved GO annotation)
  data/proteins/eval_go.tsv.gz      their GO annotations: protein_id, go_id (main id), namespace
  data/proteins/train_pool.fasta.gz disjoint pool of sequences: the reverse-distillation fitting pool and the
                                    source of the PLM family's 400 held-out perplexity sequences
  data/manifest.json                counts, checksums, source versions (tests compare against it)
  data/README.md, data/go/README.md, data/proteins/README.md   generated from the same numbers

Regenerated, never committed (too large to ship; its checksums are in the manifest):
  data/plm_train/train.fasta.gz     the PLM family's training sequences: every remaining Swiss-Prot 2014-01
                                    sequence, disjoint from eval and train_pool by accession and exact sequence

This script deliberately imports nothing from rd_interp, so it runs before the package is installed.
"""

from __future__ import annotations

import argparse
import collections
import gzip
import hashlib
import io
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent

DEB_PACKAGES = ("metastudent-data", "ncbi-blast+", "r-bioc-go.db")
METASTUDENT = Path("/usr/share/metastudent-data/dataset_201401")
GO_SQLITE = Path("/usr/lib/R/site-library/GO.db/extdata/GO.sqlite")

N_EVAL = 20_000
N_POOL = 20_000
MIN_TRAIN_LEN = 50  # PLM training sequences: no upper bound (training uses random crops)
MIN_LEN, MAX_LEN = 50, 1022
EVAL_SALT = "rd_interp/eval/v1:"
POOL_SALT = "rd_interp/train_pool/v1:"
ESM_LETTERS = frozenset("ACDEFGHIKLMNPQRSTVWYXBUZO")

NS_LONG = {"BP": "biological_process", "MF": "molecular_function", "CC": "cellular_component"}
SOURCE_NS = {"BPO": "BP", "MFO": "MF", "CCO": "CC"}
REL_NAMES = {  # GO.sqlite relationship_type -> OBO relationship name
    "part of": "part_of",
    "regulates": "regulates",
    "negatively regulates": "negatively_regulates",
    "positively regulates": "positively_regulates",
}
SHIPPED = (
    "go/go.obo.gz",
    "proteins/eval.fasta.gz",
    "proteins/eval_go.tsv.gz",
    "proteins/train_pool.fasta.gz",
)
PLM_TRAIN = "plm_train/train.fasta.gz"  # regenerated, git-ignored


# ----------------------------------------------------------------------------------------------- sources
def ensure_sources() -> None:
    """Install the Debian packages when their files are missing (needs root, as apt-get does)."""
    have_blast = shutil.which("blastdbcmd") is not None
    if METASTUDENT.is_dir() and GO_SQLITE.is_file() and have_blast:
        return
    print(f"installing Debian packages {' '.join(DEB_PACKAGES)} ...", file=sys.stderr)
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    try:
        subprocess.run(["apt-get", "update"], check=True, env=env)
        subprocess.run(["apt-get", "install", "-y", "--no-install-recommends", *DEB_PACKAGES],
                       check=True, env=env)
    except (OSError, subprocess.CalledProcessError) as exc:
        sys.exit(f"rebuild: could not install {DEB_PACKAGES} with apt-get ({exc}); install them as root")
    if not (METASTUDENT.is_dir() and GO_SQLITE.is_file() and shutil.which("blastdbcmd")):
        sys.exit("rebuild: packages installed but expected files are missing: "
                 f"{METASTUDENT}, {GO_SQLITE}, blastdbcmd")


def deb_version(pkg: str) -> str:
    try:
        out = subprocess.run(["dpkg-query", "-W", "-f=${Version}", pkg], check=True,
                             capture_output=True, text=True).stdout
        return out.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


# ----------------------------------------------------------------------------------------------- GO
class GoSource:
    """GO 2022-07-01 from GO.sqlite, completed with obsolete ids known only to the 2014 graph."""

    def __init__(self) -> None:
        con = sqlite3.connect(f"file:{GO_SQLITE}?mode=ro", uri=True)
        meta = dict(con.execute("select name, value from metadata"))
        self.release = meta.get("GOSOURCEDATE", "unknown")
        self.source_url = meta.get("GOSOURCEURL", "")
        self.terms: dict[str, dict] = {}
        idmap: dict[int, str] = {}
        for _id, go_id, name, ns, definition in con.execute(
            "select _id, go_id, term, ontology, definition from go_term where ontology != 'universal'"
        ):
            idmap[_id] = go_id
            self.terms[go_id] = {"name": name, "ns": ns, "defn": definition, "alt": [], "is_a": [], "rel": [],
                                     "obsolete": False, "source": "GO.sqlite"}
        for t in ("bp", "mf", "cc"):
            for child, parent, rtype in con.execute(f"select _id, _parent_id, relationship_type from go_{t}_parents"):
                if child not in idmap or parent not in idmap:  # edges to the artificial 'all' root
                    continue
                term = self.terms[idmap[child]]
                if rtype == "isa":
                    term["is_a"].append(idmap[parent])
                elif rtype in REL_NAMES:
                    term["rel"].append((REL_NAMES[rtype], idmap[parent]))
                else:
                    raise SystemExit(f"rebuild: unknown relationship type {rtype!r} in GO.sqlite")
        self.alt: dict[str, str] = {}
        for secondary, _id in con.execute("select secondary, _id from go_synonym where secondary is not null"):
            if _id in idmap and secondary not in self.terms:
                self.alt[secondary] = idmap[_id]
                self.terms[idmap[_id]]["alt"].append(secondary)
        self.n_obsolete_2022 = 0
        for go_id, name, ns, definition in con.execute("select go_id, term, ontology, definition from go_obsolete"):
            if go_id in self.terms or go_id in self.alt:
                continue
            self.terms[go_id] = {"name": name, "ns": ns, "defn": definition, "alt": [], "is_a": [], "rel": [],
                                     "obsolete": True, "source": "GO.sqlite"}
            self.n_obsolete_2022 += 1
        con.close()
        # The 2014 graph: it has no replaced_by/alt_id fields; what it can add are ids that were already
        # obsolete in 2014 and are absent from GO.sqlite, so user files holding them are reported as
        # obsolete rather than unknown.
        names14 = {}
        with open(METASTUDENT / "nameMapping.txt", encoding="utf-8") as fh:
            for line in fh:
                go_id, _, name = line.rstrip("\n").partition("\t")
                names14[go_id] = name
        self.n_obsolete_2014_added = 0
        self.n_graph14_terms = len(names14)
        with open(METASTUDENT / "goGraph.txt", encoding="utf-8") as fh:
            for line in fh:
                parent, child, _, _ = line.rstrip("\n").split("\t")
                if parent.startswith("obsolete_") and child not in self.terms and child not in self.alt:
                    ns = {"obsolete_biological_process": "BP", "obsolete_molecular_function": "MF",
                          "obsolete_cellular_component": "CC"}[parent]
                    self.terms[child] = {"name": names14.get(child, child), "ns": ns, "defn": None, "alt": [], "is_a": [],
                                             "rel": [], "obsolete": True, "source": "metastudent 2014 graph"}
                    self.n_obsolete_2014_added += 1
        for term in self.terms.values():
            term["alt"].sort()
            term["is_a"] = sorted(set(term["is_a"]))
            term["rel"] = sorted(set(term["rel"]))

    def resolve(self, go_id: str) -> tuple[str | None, str]:
        """(main id or None, how): direct / alt / obsolete / unknown. No replaced_by exists in the sources."""
        term = self.terms.get(go_id)
        if term is not None:
            return (None, "obsolete") if term["obsolete"] else (go_id, "direct")
        if go_id in self.alt:
            return self.alt[go_id], "alt"
        return None, "unknown"

    def obo_text(self) -> str:
        out = io.StringIO()
        w = out.write
        w("format-version: 1.2\n")
        w(f"data-version: releases/{self.release}\n")
        w("default-namespace: gene_ontology\n")
        w("ontology: go\n")
        w(f"remark: Generated by rd_interp data/rebuild.py from Bioconductor GO.db GO.sqlite "
          f"(source {self.source_url}, {self.release}) plus ids obsolete in the metastudent 2014 GO graph.\n")
        w("remark: Gene Ontology data (c) Gene Ontology Consortium, CC BY 4.0.\n")
        for go_id in sorted(self.terms):
            t = self.terms[go_id]
            w("\n[Term]\n")
            w(f"id: {go_id}\n")
            w(f"name: {_oneline(t['name'])}\n")
            w(f"namespace: {NS_LONG[t['ns']]}\n")
            for a in t["alt"]:
                w(f"alt_id: {a}\n")
            if t["defn"]:
                text = _oneline(t["defn"]).replace("\\", "\\\\").replace('"', '\\"')
                w(f'def: "{text}" []\n')
            for p in t["is_a"]:
                w(f"is_a: {p} ! {_oneline(self.terms[p]['name'])}\n")
            for rel, p in t["rel"]:
                w(f"relationship: {rel} {p} ! {_oneline(self.terms[p]['name'])}\n")
            if t["obsolete"]:
                w("is_obsolete: true\n")
        for rel in sorted(set(REL_NAMES.values())):
            w(f"\n[Typedef]\nid: {rel}\nname: {rel.replace('_', ' ')}\n")
        return out.getvalue()

    def counts(self) -> dict:
        live = [t for t in self.terms.values() if not t["obsolete"]]
        per_ns = collections.Counter(t["ns"] for t in live)
        rel = collections.Counter(r for t in live for r, _ in t["rel"])
        return {
            "release": self.release,
            "terms": len(live),
            "terms_per_namespace": {ns: per_ns[ns] for ns in ("BP", "MF", "CC")},
            "obsolete_terms": len(self.terms) - len(live),
            "obsolete_from_go_sqlite": self.n_obsolete_2022,
            "obsolete_from_2014_graph": self.n_obsolete_2014_added,
            "alt_ids": len(self.alt),
            "is_a_edges": sum(len(t["is_a"]) for t in live),
            "relationship_edges": dict(sorted(rel.items())),
            "terms_without_definition": sum(1 for t in live if not t["defn"]),
            "replaced_by": 0,
        }


def _oneline(s: str) -> str:
    return " ".join(str(s).split())


# ----------------------------------------------------------------------------------------------- proteins
def read_sequences() -> tuple[dict[str, str], int]:
    """Union of the three BLAST databases: accession -> sequence (checks they agree)."""
    seqs: dict[str, str] = {}
    conflicts = 0
    for src in ("BPO", "CCO", "MFO"):
        db = METASTUDENT / src / "goasp.fasta"
        proc = subprocess.Popen(["blastdbcmd", "-db", str(db), "-entry", "all", "-outfmt", "%t\t%s"],
                                stdout=subprocess.PIPE, text=True, bufsize=1 << 20)
        assert proc.stdout is not None
        for line in proc.stdout:
            title, _, seq = line.rstrip("\n").partition("\t")
            acc = title.split("|", 1)[0].strip()
            seq = seq.strip().upper()
            old = seqs.get(acc)
            if old is None:
                seqs[acc] = seq
            elif old != seq:
                conflicts += 1
        if proc.wait() != 0:
            raise SystemExit(f"rebuild: blastdbcmd failed on {db}")
    return seqs, conflicts


def read_annotations() -> dict[str, dict[str, set[str]]]:
    """accession -> source namespace -> set of GO ids as written in goasp_annot.dat (duplicates = evidence)."""
    ann: dict[str, dict[str, set[str]]] = collections.defaultdict(lambda: collections.defaultdict(set))
    for src, ns in SOURCE_NS.items():
        with open(METASTUDENT / src / "goasp_annot.dat", encoding="ascii") as fh:
            for line in fh:
                parts = line.split()
                if parts:
                    ann[parts[0]][ns].update(parts[1:])
    return ann


def _rank(salt: str, acc: str) -> bytes:
    return hashlib.sha256((salt + acc).encode()).digest()


def _gzip_bytes(text: str) -> bytes:
    buf = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=buf, mtime=0, compresslevel=9) as gz:
        gz.write(text.encode("ascii"))
    return buf.getvalue()


def _fasta_text(items: list[tuple[str, str]], width: int = 60) -> str:
    out = io.StringIO()
    for acc, seq in items:
        out.write(f">{acc}\n")
        for i in range(0, len(seq), width):
            out.write(seq[i:i + width] + "\n")
    return out.getvalue()


def build(out_dir: Path) -> dict:
    ensure_sources()
    go = GoSource()
    files: dict[str, bytes] = {}
    files["go/go.obo.gz"] = _gzip_bytes(go.obo_text())

    seqs, conflicts = read_sequences()
    ann = read_annotations()

    # Resolution of every source annotation (distinct protein, id pairs), per source namespace.
    how_counts = {ns: collections.Counter() for ns in ("BP", "MF", "CC")}
    dropped_ids = collections.Counter()
    resolved: dict[str, set[tuple[str, str]]] = {}
    for acc, by_ns in ann.items():
        res = set()
        for ns, ids in by_ns.items():
            for g in ids:
                main, how = go.resolve(g)
                how_counts[ns][how] += 1
                if main is None:
                    dropped_ids[g] += 1
                else:
                    res.add((main, go.terms[main]["ns"]))
        resolved[acc] = res

    invalid = {a for a, s in seqs.items() if not s or set(s) - ESM_LETTERS}
    in_range = {a for a, s in seqs.items() if MIN_LEN <= len(s) <= MAX_LEN and a not in invalid}
    eval_candidates = sorted((a for a in in_range if resolved.get(a)), key=lambda a: _rank(EVAL_SALT, a))
    eval_ids = sorted(eval_candidates[:N_EVAL])
    eval_set = set(eval_ids)
    eval_seqs = {seqs[a] for a in eval_ids}
    pool_ids, pool_seen = [], set(eval_seqs)
    n_pool_dup_eval = n_pool_dup_pool = 0
    for a in sorted((a for a in in_range if a not in eval_set), key=lambda a: _rank(POOL_SALT, a)):
        s = seqs[a]
        if s in pool_seen:
            if s in eval_seqs:
                n_pool_dup_eval += 1
            else:
                n_pool_dup_pool += 1
            continue
        pool_seen.add(s)
        pool_ids.append(a)
        if len(pool_ids) == N_POOL:
            break
    pool_ids.sort()
    plm_train = select_plm_train(seqs, invalid, eval_ids, pool_ids)

    files["proteins/eval.fasta.gz"] = _gzip_bytes(_fasta_text([(a, seqs[a]) for a in eval_ids]))
    files["proteins/train_pool.fasta.gz"] = _gzip_bytes(_fasta_text([(a, seqs[a]) for a in pool_ids]))
    files[PLM_TRAIN] = _gzip_bytes(_fasta_text([(a, seqs[a]) for a in plm_train["ids"]]))
    rows = ["protein_id\tgo_id\tnamespace\n"]
    ann_ns = collections.Counter()
    terms_used = {ns: set() for ns in ("BP", "MF", "CC")}
    prot_ns = collections.Counter()
    for a in eval_ids:
        pairs = sorted(resolved[a], key=lambda p: (("BP", "MF", "CC").index(p[1]), p[0]))
        for g, ns in pairs:
            rows.append(f"{a}\t{g}\t{ns}\n")
            ann_ns[ns] += 1
            terms_used[ns].add(g)
        for ns in {ns for _, ns in pairs}:
            prot_ns[ns] += 1
    files["proteins/eval_go.tsv.gz"] = _gzip_bytes("".join(rows))

    # Resolution restricted to the shipped evaluation proteins' source annotations.
    eval_how = collections.Counter()
    for a in eval_ids:
        for ids in ann[a].values():
            for g in ids:
                eval_how[go.resolve(g)[1]] += 1

    def frac(c: collections.Counter) -> dict:
        total = sum(c.values())
        ok = c["direct"] + c["alt"]
        return {"total": total, "direct": c["direct"], "alt": c["alt"], "replaced_by": 0,
                "obsolete_dropped": c["obsolete"], "unknown_dropped": c["unknown"],
                "percent_resolved": round(100.0 * ok / total, 3) if total else 0.0}

    all_how = sum(how_counts.values(), collections.Counter())
    lens_eval = sorted(len(seqs[a]) for a in eval_ids)
    lens_pool = sorted(len(seqs[a]) for a in pool_ids)
    manifest = {
        "schema": 1,
        "sources": {
            "debian_packages": {p: deb_version(p) for p in DEB_PACKAGES},
            "go_release": go.release,
            "go_source_url": go.source_url,
            "swissprot_release": "2014-01 (metastudent-data dataset_201401)",
        },
        "selection": {
            "eval": f"length {MIN_LEN}-{MAX_LEN}, only ESM alphabet letters, >= 1 resolved GO id; "
                    f"first {N_EVAL} by sha256('{EVAL_SALT}' + accession)",
            "train_pool": f"length {MIN_LEN}-{MAX_LEN}, accession not in eval, sequence not identical to an "
                          f"eval sequence or an earlier pool sequence; first {N_POOL} by "
                          f"sha256('{POOL_SALT}' + accession)",
        },
        "go": go.counts(),
        "source_proteins": {
            "accessions": len(seqs),
            "sequence_conflicts_between_databases": conflicts,
            "with_non_esm_letters": len(invalid),
            "length_50_1022": len(in_range),
            "annotated_accessions": len(ann),
        },
        "annotation_resolution": {
            "unit": "distinct (protein, GO id) pairs in goasp_annot.dat",
            "all_source": frac(all_how),
            "per_namespace": {ns: frac(how_counts[ns]) for ns in ("BP", "MF", "CC")},
            "eval_proteins": frac(eval_how),
            "top_dropped_ids": [[g, go.terms[g]["name"] if g in go.terms else "", n]
                                for g, n in sorted(dropped_ids.items(), key=lambda kv: (-kv[1], kv[0]))[:10]],
        },
        "eval": {
            "proteins": len(eval_ids),
            "proteins_per_namespace": {ns: prot_ns[ns] for ns in ("BP", "MF", "CC")},
            "annotations": sum(ann_ns.values()),
            "annotations_per_namespace": {ns: ann_ns[ns] for ns in ("BP", "MF", "CC")},
            "distinct_terms_per_namespace": {ns: len(terms_used[ns]) for ns in ("BP", "MF", "CC")},
            "residues": sum(lens_eval),
            "length_min_median_max": [lens_eval[0], lens_eval[len(lens_eval) // 2], lens_eval[-1]],
        },
        "train_pool": {
            "proteins": len(pool_ids),
            "residues": sum(lens_pool),
            "length_min_median_max": [lens_pool[0], lens_pool[len(lens_pool) // 2], lens_pool[-1]],
            "skipped_identical_to_eval": n_pool_dup_eval,
            "skipped_identical_within_pool": n_pool_dup_pool,
        },
        "plm_train": {
            **{k: v for k, v in plm_train.items() if k != "ids"},
            "file": PLM_TRAIN,
            "bytes": len(files[PLM_TRAIN]),
            "sha256": hashlib.sha256(files[PLM_TRAIN]).hexdigest(),
        },
        "files": {name: {"bytes": len(files[name]), "sha256": hashlib.sha256(files[name]).hexdigest()}
                  for name in SHIPPED},
    }
    manifest["selection"]["plm_train"] = (
        f"length >= {MIN_TRAIN_LEN}, only ESM alphabet letters, accession not in eval or train_pool, sequence not "
        "identical to an eval or train_pool sequence, first accession (sorted) of each distinct sequence; "
        "all such sequences, sorted by accession")
    manifest["total_mb"] = round(sum(len(files[n]) for n in SHIPPED) / 1e6, 2)
    files["manifest.json"] = (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode()
    files["README.md"] = render_readme(manifest).encode()
    files["go/README.md"] = render_go_readme(manifest).encode()
    files["proteins/README.md"] = render_proteins_readme(manifest).encode()
    for name, blob in files.items():
        _write_atomic(out_dir / name, blob)
    return manifest


def select_plm_train(seqs: dict[str, str], invalid: set[str], eval_ids: list[str], pool_ids: list[str]) -> dict:
    """The PLM family's training set: disjoint from eval and train_pool by accession AND exact sequence.

    Why both: the same sequence under another accession would leak evaluation proteins (or the
    held-out perplexity sequences, which come from train_pool) into training.
    """
    taken_ids = set(eval_ids) | set(pool_ids)
    taken_seqs = {seqs[a] for a in taken_ids}
    ids, seen = [], set()
    n_dup_taken = n_dup_within = n_short = 0
    for a in sorted(seqs):
        s = seqs[a]
        if a in taken_ids or a in invalid:
            continue
        if len(s) < MIN_TRAIN_LEN:
            n_short += 1
            continue
        if s in taken_seqs:
            n_dup_taken += 1
            continue
        if s in seen:
            n_dup_within += 1
            continue
        seen.add(s)
        ids.append(a)
    if set(ids) & taken_ids or {seqs[a] for a in ids} & taken_seqs:
        raise SystemExit("rebuild: PLM training set overlaps eval/train_pool (bug)")
    lens = sorted(len(seqs[a]) for a in ids)
    return {
        "ids": ids,
        "proteins": len(ids),
        "residues": sum(lens),
        "length_min_median_max": [lens[0], lens[len(lens) // 2], lens[-1]],
        "skipped_shorter_than_min": n_short,
        "skipped_identical_to_eval_or_pool": n_dup_taken,
        "skipped_identical_within": n_dup_within,
        "ids_sha256": hashlib.sha256("\n".join(ids).encode()).hexdigest(),
    }


def _write_atomic(path: Path, blob: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    with os.fdopen(fd, "wb") as fh:
        fh.write(blob)
    os.chmod(tmp, 0o644)  # mkstemp makes 0600; shipped files must be readable by everyone
    os.replace(tmp, path)


# ----------------------------------------------------------------------------------------------- READMEs
def _res_line(r: dict) -> str:
    return (f"{r['percent_resolved']:.3f}% of {r['total']:,} resolved (direct {r['direct']:,}, via alt_id "
            f"{r['alt']:,}, via replaced_by 0; dropped as obsolete {r['obsolete_dropped']:,}, "
            f"unknown {r['unknown_dropped']:,})")


def render_readme(m: dict) -> str:
    f = m["files"]
    lines = [
        "# Shipped offline data",
        "",
        "Real data, small enough to ship (about {:.1f} MB in all, models excluded), regenerated byte for byte by".format(m["total_mb"]),
        "",
        "```",
        "python data/rebuild.py            # rebuild in place (installs the Debian packages if missing)",
        "python data/rebuild.py --check    # rebuild into a temp dir and compare sha256 with the shipped files",
        "```",
        "",
        "| file | what | bytes | sha256 |",
        "| --- | --- | ---: | --- |",
        (f"| go/go.obo.gz | GO release {m['go']['release']}, {m['go']['terms']:,} terms | "
        f"{f['go/go.obo.gz']['bytes']:,} | `{f['go/go.obo.gz']['sha256']}` |"),
        (f"| proteins/eval.fasta.gz | {m['eval']['proteins']:,} annotated Swiss-Prot 2014-01 proteins | "
        f"{f['proteins/eval.fasta.gz']['bytes']:,} | `{f['proteins/eval.fasta.gz']['sha256']}` |"),
        (f"| proteins/eval_go.tsv.gz | {m['eval']['annotations']:,} GO annotations of those proteins | "
        f"{f['proteins/eval_go.tsv.gz']['bytes']:,} | `{f['proteins/eval_go.tsv.gz']['sha256']}` |"),
        (f"| proteins/train_pool.fasta.gz | {m['train_pool']['proteins']:,} disjoint sequences (distillation fit, PLM held-out) | "
        f"{f['proteins/train_pool.fasta.gz']['bytes']:,} | `{f['proteins/train_pool.fasta.gz']['sha256']}` |"),
        "",
        (f"Not shipped, regenerated by the same command: `{m['plm_train']['file']}`, the "
        f"{m['plm_train']['proteins']:,} training"),
        (f"sequences of the model family ({m['plm_train']['bytes']:,} bytes, sha256 `{m['plm_train']['sha256']}`;"
        f" sha256 of its"),
        f"newline-joined accession list `{m['plm_train']['ids_sha256']}`).",
        "",
        "All counts, checksums and source versions are in `manifest.json` (the tests check the files against it).",
        "Details: [go/README.md](go/README.md), [proteins/README.md](proteins/README.md). `models/` holds the",
        "shipped protein language model family and has its own README.",
        "",
        "## Sources and licenses",
        "",
        "- Gene Ontology, release {}, via the Debian package `r-bioc-go.db` {} (Bioconductor GO.db, a dump of".format(m["go"]["release"], m["sources"]["debian_packages"]["r-bioc-go.db"]),
        "  go-basic.obo). GO is (c) the Gene Ontology Consortium, licensed CC BY 4.0.",
        "- Swiss-Prot proteins and GO annotations, release 2014-01, via the Debian package `metastudent-data`",
        "  {} (the data of the Metastudent predictor, Rost lab). UniProt data are licensed CC BY 4.0.".format(m["sources"]["debian_packages"]["metastudent-data"]),
        "- `ncbi-blast+` {} (`blastdbcmd`) reads the sequences from metastudent's BLAST databases.".format(m["sources"]["debian_packages"]["ncbi-blast+"]),
        "",
        "The Debian packages that carry the data are themselves licensed GPL-2+ (metastudent-data, as compiled",
        "by the Rost lab) and Artistic-2.0 (GO.db); the shipped files contain only the UniProt and GO content",
        "(sequences, accessions, GO ids, names and definitions) in plain formats.",
        "",
        "Cite: The Gene Ontology Consortium (2023) Genetics 224:iyad031; The UniProt Consortium (2023) NAR",
        "51:D523; Hamp et al. (2013) BMC Bioinformatics 14(Suppl 3):S7 (Metastudent).",
        "",
    ]
    return "\n".join(lines)


def render_go_readme(m: dict) -> str:
    g = m["go"]
    r = m["annotation_resolution"]
    rel = ", ".join(f"{k} {v:,}" for k, v in g["relationship_edges"].items())
    lines = [
        "# Gene Ontology (data/go)",
        "",
        f"`go.obo.gz`: GO release {g['release']} as OBO 1.2 (`data-version: releases/{g['release']}`), written by",
        ("`data/rebuild.py` from GO.sqlite in the Debian package `r-bioc-go.db` "
        f"{m['sources']['debian_packages']['r-bioc-go.db']}"),
        f"(Bioconductor GO.db, itself built from {m['sources']['go_source_url']}).",
        "License: CC BY 4.0, (c) Gene Ontology Consortium.",
        "",
        "goatools loads it with `GODag(path, optional_attrs={\"relationship\"})`; `rd_interp.io.go.Ontology.load()`",
        "decompresses it into a checksum-verified cache first (goatools reads plain files).",
        "",
        "## Contents",
        "",
        (f"- {g['terms']:,} current terms: BP {g['terms_per_namespace']['BP']:,}, MF {g['terms_per_namespace']['MF']:,},"
        f" CC {g['terms_per_namespace']['CC']:,}"),
        (f"- fields: id, name, namespace, def ({g['terms_without_definition']:,} terms have no definition in"
        " GO.sqlite), alt_id, is_a, relationship, is_obsolete"),
        f"- {g['is_a_edges']:,} is_a edges; relationships: {rel} (those of go-basic)",
        f"- {g['alt_ids']:,} alt_ids (secondary ids, from GO.sqlite's go_synonym.secondary)",
        (f"- {g['obsolete_terms']:,} obsolete terms: {g['obsolete_from_go_sqlite']:,} from GO.sqlite, "
        f"{g['obsolete_from_2014_graph']:,} more that were already obsolete in metastudent's 2014 GO graph"),
        "  (so that old files holding them are reported as obsolete, not unknown)",
        "- no replaced_by/consider: neither GO.sqlite nor the 2014 graph (goGraph.txt, nameMapping.txt) records",
        "  them. Obsolete ids therefore cannot be remapped and are dropped (and counted) when annotations load.",
        "",
        "## Agreement with the shipped annotations",
        "",
        "The Swiss-Prot 2014-01 annotations were made against GO of 2014; against this 2022 release:",
        "",
        f"- all source annotations: {_res_line(r['all_source'])}",
    ]
    for ns in ("BP", "MF", "CC"):
        lines.append(f"- {ns}: {_res_line(r['per_namespace'][ns])}")
    lines += [
        f"- the {m['eval']['proteins']:,} shipped evaluation proteins: {_res_line(r['eval_proteins'])}",
        "",
        "Most dropped pairs are a few terms GO has since made obsolete without a replacement:",
        "",
        "| GO id | name | dropped pairs |",
        "| --- | --- | ---: |",
    ]
    for gid, name, n in r["top_dropped_ids"]:
        lines.append(f"| {gid} | {name} | {n:,} |")
    lines += [
        "",
        "The issue's target (>= 99% resolved) is met for MF and CC but not for BP: GO has since obsoleted a",
        "few heavily used 2014 terms (table above) without a replaced_by, and no source here records one.",
        "Remapping them by hand (e.g. to a 'consider' term) would invent annotations, so they are dropped and",
        "counted instead. Why 2022 and not the 2014 graph: that graph has no definitions, alt ids or obsolete",
        "metadata, and users bring current annotations, which the 2014 graph would not resolve.",
        "",
        f"sha256 of go.obo.gz: `{m['files']['go/go.obo.gz']['sha256']}`. Rebuild: `python data/rebuild.py`.",
        "",
    ]
    return "\n".join(lines)


def render_proteins_readme(m: dict) -> str:
    e, p, s, t = m["eval"], m["train_pool"], m["source_proteins"], m["plm_train"]
    f = m["files"]
    lines = [
        "# Proteins and GO annotations (data/proteins)",
        "",
        "Swiss-Prot release 2014-01 proteins with GO annotations, from the Debian package `metastudent-data`",
        (f"{m['sources']['debian_packages']['metastudent-data']} (`dataset_201401/{{BPO,CCO,MFO}}`: BLAST databases"
        " read with"),
        "`blastdbcmd -entry all`, annotations in `goasp_annot.dat`). License: UniProt, CC BY 4.0.",
        "",
        (f"Source: {s['accessions']:,} accessions ({s['length_50_1022']:,} of length 50-1022, "
        f"{s['with_non_esm_letters']:,} with letters outside the ESM alphabet, "
        f"{s['sequence_conflicts_between_databases']} sequence conflicts between the three databases)."),
        "",
        "## Files",
        "",
        "| file | content | sha256 |",
        "| --- | --- | --- |",
        (f"| eval.fasta.gz | {e['proteins']:,} evaluation proteins, {e['residues']:,} residues, length min/median/max "
        f"{'/'.join(map(str, e['length_min_median_max']))} | `{f['proteins/eval.fasta.gz']['sha256']}` |"),
        (f"| eval_go.tsv.gz | `protein_id<TAB>go_id<TAB>namespace` with a header line; {e['annotations']:,} rows | "
        f"`{f['proteins/eval_go.tsv.gz']['sha256']}` |"),
        (f"| train_pool.fasta.gz | {p['proteins']:,} sequences (distillation fit, PLM held-out), {p['residues']:,} residues, length "
        f"min/median/max {'/'.join(map(str, p['length_min_median_max']))} | "
        f"`{f['proteins/train_pool.fasta.gz']['sha256']}` |"),
        "",
        "## Selection (deterministic; not file order)",
        "",
        f"- eval: {m['selection']['eval']}.",
        f"- train_pool: {m['selection']['train_pool']}. Skipped {p['skipped_identical_to_eval']:,} sequences",
        (f"  identical to an eval protein and {p['skipped_identical_within_pool']:,} identical to an earlier pool"
        " sequence."),
        "  Used to fit reverse distillation; the model family's 400 held-out perplexity sequences come from it.",
        f"- {m['plm_train']['file']} (regenerated, not shipped): {m['selection']['plm_train']}.",
        (f"  {t['proteins']:,} sequences, {t['residues']:,} residues, length min/median/max "
        f"{'/'.join(map(str, t['length_min_median_max']))}; skipped {t['skipped_identical_to_eval_or_pool']:,} identical"),
        (f"  to an eval or train_pool sequence, {t['skipped_identical_within']:,} repeats, "
        f"{t['skipped_shorter_than_min']:,} shorter than {MIN_TRAIN_LEN}."),
        f"  sha256 of the newline-joined accession list: `{t['ids_sha256']}`.",
        "",
        "## Annotations",
        "",
        "GO ids are main ids of the shipped GO release (alt ids mapped to their main id; ids obsolete in that",
        "release dropped and counted, see go/README.md). They are NOT propagated to ancestors.",
        "",
        "| namespace | proteins | annotations | distinct terms |",
        "| --- | ---: | ---: | ---: |",
    ]
    for ns in ("BP", "MF", "CC"):
        lines.append(f"| {ns} | {e['proteins_per_namespace'][ns]:,} | {e['annotations_per_namespace'][ns]:,} | "
                     f"{e['distinct_terms_per_namespace'][ns]:,} |")
    lines += [
        (f"| all | {e['proteins']:,} | {e['annotations']:,} | "
        f"{sum(e['distinct_terms_per_namespace'].values()):,} |"),
        "",
        f"Source annotation ids of these proteins: {_res_line(m['annotation_resolution']['eval_proteins'])}.",
        "",
        "Rebuild: `python data/rebuild.py` (check: `python data/rebuild.py --check`).",
        "",
    ]
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------- main
GENERATED = SHIPPED + ("manifest.json", "README.md", "go/README.md", "proteins/README.md")


def check(data_dir: Path) -> int:
    with tempfile.TemporaryDirectory(prefix="rd_interp_rebuild_") as tmp:
        build(Path(tmp))
        bad = 0
        for name in GENERATED + (PLM_TRAIN,):
            new = _sha(Path(tmp) / name)
            if name == PLM_TRAIN and not (data_dir / name).exists():
                print(f"{'skip':8s} {name}  not built here (regenerated, not shipped); rebuilt={new[:16]}")
                continue
            old = _sha(data_dir / name) if (data_dir / name).exists() else "missing"
            status = "ok" if new == old else "DIFFERS"
            bad += status != "ok"
            print(f"{status:8s} {name}  shipped={old[:16]}  rebuilt={new[:16]}")
    print("all files identical" if not bad else f"{bad} file(s) differ")
    return 1 if bad else 0


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--check", action="store_true", help="rebuild into a temp dir and compare sha256")
    ap.add_argument("--out", type=Path, default=HERE, help="output data directory (default: this data/)")
    args = ap.parse_args(argv)
    if args.check:
        return check(args.out)
    m = build(args.out)
    print(json.dumps({"eval_proteins": m["eval"]["proteins"], "annotations": m["eval"]["annotations"],
                      "terms": m["go"]["terms"], "train_pool": m["train_pool"]["proteins"],
                      "percent_resolved": m["annotation_resolution"]["all_source"]["percent_resolved"],
                      "total_mb": m["total_mb"]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
