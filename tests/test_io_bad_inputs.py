"""The corpus of broken inputs in tests/data/io/bad/: each must fail with its own specific message
naming the file and the line, never with a traceback from deep inside a parser."""

import re

import pytest
from io_fixtures import BAD, mini_ontology  # noqa: F401

from rd_interp.io.annotations import AnnotationError, read_annotations
from rd_interp.io.fasta import FastaError, read_fasta
from rd_interp.io.go import OboError, Ontology

CASES = [
    # file, line, what the message must say
    ("fasta_empty_record.fasta", 3, "record 'b' has no sequence (empty record)"),
    ("fasta_duplicate_id.fasta", 5, "duplicate id 'a' (first seen at line 1)"),
    ("fasta_bad_residue.fasta", 3, "invalid residue 'J' at column 4 in record 'a'"),
    ("fasta_no_id.fasta", 3, "header has no id"),
    ("fasta_seq_before_header.fasta", 1, "sequence data before the first '>' header"),
    ("fasta_alignment_gap.fasta", 2, "invalid residue '-' at column 3 in record 'a' (alignment gap"),
    ("fasta_stop_codon.fasta", 4, "invalid residue '*' at column 5 in record 'b' (stop codon"),
    ("fasta_empty_file.fasta", 1, "no FASTA records"),
    ("fasta_genbank_digits.fasta.gz", 4, "invalid residue '1' at column 9 in record 'y'"),
    ("fasta_binary.fasta", 3, "not UTF-8 text (byte 0xff at column 1)"),
    ("fasta_truncated.fasta.gz", 2, "cannot read file: Compressed file ended"),
    ("ann_bad_go_id.tsv", 3, "malformed GO id 'GO:123'"),
    ("ann_extra_column.tsv", 2, "expected 2 or 3 tab-separated columns"),
    ("ann_bad_namespace.tsv", 2, "unknown GO namespace 'XX'"),
    ("ann_empty_protein.tsv", 2, "empty protein id"),
    ("ann_empty.tsv", 1, "empty annotation file"),
    ("ann_gaf_short.gaf", 4, "GAF line has 10 tab-separated columns, expected 15-17"),
    ("ann_gaf_bad_aspect.gaf", 3, "unknown aspect 'Q' in column 9"),
    ("ann_uniprot_no_go_column.tsv", 1, "no 'Gene Ontology IDs' column"),
    ("ann_uniprot_bad_id.tsv", 3, "malformed GO id 'GO:12'"),
    ("ann_uniprot_ragged.tsv", 3, "2 columns, header has 3"),
    ("obo_term_without_id.obo", 9, "[Term] stanza has 0 'id:' lines"),
    ("obo_dangling_is_a.obo", 13, "is_a target GO:0009999 is an id not defined in this file"),
    ("obo_bad_namespace.obo", 12, "unknown namespace 'biological_proces'"),
    ("obo_not_obo.obo", 1, "expected 'tag: value'"),
    ("obo_duplicate_id.obo", 19, "id GO:0000001 defined twice (first at line 10)"),
    ("obo_is_a_obsolete.obo", 19, "is_a target GO:0000001 is an obsolete term"),
    ("obo_bad_relationship.obo", 14, "expected 'relationship: TYPE ID'"),
    ("obo_no_terms.obo", 1, "no (non-obsolete) [Term] stanzas"),
    ("obo_corrupt.obo.gz", 1, "corrupt gzip file"),
]


def test_corpus_is_complete():
    on_disk = sorted(p.name for p in BAD.iterdir())
    assert on_disk == sorted(c[0] for c in CASES)
    assert len(on_disk) >= 10


@pytest.mark.parametrize("name, line, what", CASES, ids=[c[0] for c in CASES])
def test_bad_input_gives_specific_error(name, line, what, mini_ontology, tmp_path, monkeypatch):  # noqa: F811
    monkeypatch.setenv("RD_INTERP_CACHE", str(tmp_path))
    path = BAD / name
    if name.startswith("fasta"):
        exc, call = FastaError, lambda: list(read_fasta(path))
    elif name.startswith("ann"):
        exc, call = AnnotationError, lambda: read_annotations(path, ontology=mini_ontology)
    else:
        exc, call = OboError, lambda: Ontology.load(path)
    with pytest.raises(exc) as info:
        call()
    msg = str(info.value)
    assert msg.startswith(f"{path}:{line}: "), msg
    assert what in msg, msg
    assert isinstance(info.value, ValueError)  # the CLI turns these into one-line errors


def test_cli_reports_bad_fasta_as_one_line(capsys):
    from rd_interp.cli import main

    rc = main(["data", "check", str(BAD / "fasta_stop_codon.fasta")])
    err = capsys.readouterr().err.strip()
    assert rc == 1
    assert re.fullmatch(r"rd-interp: error: .*fasta_stop_codon\.fasta:4: invalid residue '\*'.*", err)
