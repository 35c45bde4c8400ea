"""`rd-interp data`: what offline data ship with the package, and a validator for users' own files.

Why a `check` command: a user about to embed 500k sequences should learn in seconds, with file and
line, that record 312,004 has a '*' or that 3% of their GO ids are obsolete, not hours later.
"""

from __future__ import annotations

import argparse
import json

ORDER = 10


def register(subparsers) -> None:
    p = subparsers.add_parser("data", help="shipped offline data; validate your own FASTA/annotations")
    sub = p.add_subparsers(dest="data_command", metavar="ACTION")
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])

    info = sub.add_parser("info", help="counts, sources and checksums of the shipped data")
    info.add_argument("--json", action="store_true", help="print data/manifest.json plus checksum status")
    info.set_defaults(func=cmd_info)

    chk = sub.add_parser("check", help="validate a FASTA file (and optionally its GO annotations)")
    chk.add_argument("fasta", help="FASTA file, plain or .gz")
    chk.add_argument("--annotations", help="annotation file: shipped TSV, GAF 2.x or UniProt TSV export")
    chk.add_argument("--format", default="auto", choices=["auto", "tsv", "gaf", "uniprot"],
                     help="annotation file format (default: detect)")
    chk.add_argument("--obo", help="GO OBO file (plain or .gz) to resolve ids against (default: shipped GO)")
    chk.add_argument("--max-length", type=int, default=None,
                     help="fail on sequences longer than this (default: only report those > 1022)")
    chk.add_argument("--json", action="store_true", help="print the report as one JSON object")
    chk.set_defaults(func=cmd_check)


def cmd_info(args: argparse.Namespace) -> int:
    from rd_interp.io import datasets

    m = datasets.manifest()
    ok = datasets.verify_shipped()
    if args.json:
        print(json.dumps({"data_dir": str(datasets.data_dir()), "checksums_ok": ok, "manifest": m},
                         indent=2, sort_keys=True))
        return 0 if all(ok.values()) else 1
    g, e, p = m["go"], m["eval"], m["train_pool"]
    r = m["annotation_resolution"]["all_source"]
    print(f"data directory: {datasets.data_dir()}")
    print(f"GO ontology:    release {g['release']}: {g['terms']:,} terms (BP {g['terms_per_namespace']['BP']:,}, "
          f"MF {g['terms_per_namespace']['MF']:,}, CC {g['terms_per_namespace']['CC']:,}), "
          f"{g['alt_ids']:,} alt ids, {g['obsolete_terms']:,} obsolete")
    print(f"eval proteins:  {e['proteins']:,} Swiss-Prot 2014-01, {e['residues']:,} residues, "
          f"length {e['length_min_median_max'][0]}-{e['length_min_median_max'][2]}")
    ann = ", ".join(f"{ns} {e['annotations_per_namespace'][ns]:,}" for ns in ("BP", "MF", "CC"))
    print(f"annotations:    {e['annotations']:,} ({ann}); source ids resolved {r['percent_resolved']:.2f}%")
    print(f"train pool:     {p['proteins']:,} sequences disjoint from eval, {p['residues']:,} residues")
    print(f"size:           {m['total_mb']:.2f} MB")
    for name, good in ok.items():
        print(f"  {'ok     ' if good else 'CHANGED'} {name}")
    if not all(ok.values()):
        print("some files differ from data/manifest.json; regenerate with `python data/rebuild.py`")
        return 1
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    from rd_interp.io.annotations import check_overlap, read_annotations
    from rd_interp.io.fasta import summarize_fasta

    s = summarize_fasta(args.fasta, keep_ids=bool(args.annotations))
    if args.max_length is not None:
        from rd_interp.io.fasta import read_fasta

        for _ in read_fasta(args.fasta, max_length=args.max_length):
            pass
    out: dict = {"fasta": s.to_dict()}
    lines = [
        f"fasta: {s.path}: OK",
        (f"  {s.n_records:,} records, {s.n_residues:,} residues, length min/median/max "
        f"{s.min_length}/{s.median_length:g}/{s.max_length}"),
        (f"  {s.n_over_1022:,} longer than 1022 (ESM-2's context: truncated or windowed when embedding); "
        f"{s.n_nonstandard:,} contain X/B/U/Z/O"),
    ]
    if args.annotations:
        from rd_interp.io.go import Ontology

        onto = Ontology.load(args.obo)
        ann = read_annotations(args.annotations, fmt=args.format, ontology=onto)
        ids = set(s.ids)
        annotated = sum(1 for p in ann.proteins if p in ids)
        out["annotations"] = ann.report.to_dict()
        out["overlap"] = {"fasta_with_annotations": annotated, "fasta_without_annotations": len(ids) - annotated,
                          "annotated_not_in_fasta": len(ann) - annotated}
        lines += ann.report.lines()
        lines.append(f"  overlap: {annotated:,} of {len(ids):,} FASTA proteins annotated; "
                     f"{len(ann) - annotated:,} annotated proteins not in the FASTA")
    if args.json:
        print(json.dumps(out, indent=2, sort_keys=True))
    else:
        print("\n".join(lines))
    if args.annotations:  # no overlap at all: the report above, then one error line and exit 1
        check_overlap(s.ids, ann, fasta=str(args.fasta), source=str(args.annotations), descriptions=s.descriptions)
    return 0
