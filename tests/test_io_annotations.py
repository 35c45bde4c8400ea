import pytest
from io_fixtures import IO_DATA, mini_ontology  # noqa: F401

from rd_interp.io.annotations import (
    AnnotationReport,
    Annotations,
    read_annotations,
    write_annotations_tsv,
)


def test_gaf(mini_ontology):  # noqa: F811
    a = read_annotations(IO_DATA / "sample.gaf", ontology=mini_ontology)
    assert a.report.format == "gaf"
    assert dict(a) == {"P1": {"GO:0000010", "GO:0000002"}, "P2": {"GO:0000002"}, "P3": {"GO:0000021"}}
    r = a.report
    # 8 lines; P1's GO:0000010 twice counts once; P2's NOT line is skipped (negative annotation)
    assert (r.n_records, r.n_ids, r.n_negated_skipped) == (8, 6, 1)
    assert (r.n_resolved_direct, r.n_alt_mapped, r.n_obsolete_replaced) == (2, 1, 1)
    assert (r.n_obsolete_dropped, r.n_unknown) == (1, 1)
    assert r.unknown_examples == ["GO:0009999"] and r.obsolete_examples == ["GO:0000006"]
    assert r.fraction_resolved == pytest.approx(4 / 6)
    d = r.to_dict()
    assert d["n_resolved"] == 4 and d["fraction_resolved"] == pytest.approx(4 / 6)


def test_uniprot_export(mini_ontology):  # noqa: F811
    a = read_annotations(IO_DATA / "sample_uniprot.tsv", ontology=mini_ontology)
    assert a.report.format == "uniprot"
    assert a.proteins == ["P1", "P3"]
    assert a["P3"] == {"GO:0000021", "GO:0000002"}  # GO:0000007 -> obsolete GO:0000005 -> GO:0000002
    assert a.report.n_proteins_without_ids == 1  # P2 has an empty GO column
    assert a.report.n_obsolete_dropped == 1


def test_tsv_header_optional_and_namespace_mismatch_counted(tmp_path, mini_ontology):  # noqa: F811
    p = tmp_path / "a.tsv"
    p.write_text("# comment\nP1\tGO:0000002\nP1\tGO:0000020\tBP\nP2\tGO:0000010\tmolecular_function\n")
    a = read_annotations(p, ontology=mini_ontology)
    assert a.report.format == "tsv"
    assert dict(a) == {"P1": {"GO:0000002", "GO:0000020"}, "P2": {"GO:0000010"}}
    assert a.report.n_namespace_mismatch == 1


def test_explicit_format_and_unknown_format(tmp_path, mini_ontology):  # noqa: F811
    with pytest.raises(ValueError, match="unknown annotation format 'xml'"):
        read_annotations(IO_DATA / "sample.gaf", fmt="xml", ontology=mini_ontology)
    a = read_annotations(IO_DATA / "sample.gaf", fmt="gaf", ontology=mini_ontology)
    assert len(a) == 3


def test_by_namespace_and_subset(mini_ontology):  # noqa: F811
    a = read_annotations(IO_DATA / "sample.gaf", ontology=mini_ontology)
    assert a.by_namespace(mini_ontology, "BP") == {"P1": {"GO:0000002"}, "P2": {"GO:0000002"}}
    assert a.by_namespace(mini_ontology, "cellular_component") == {"P3": {"GO:0000021"}}
    s = a.subset(["P3", "P9", "P1"])
    assert s.proteins == ["P3", "P1"] and s.report is a.report
    assert a.terms() == {"GO:0000010", "GO:0000002", "GO:0000021"}


@pytest.mark.parametrize("suffix", [".tsv", ".tsv.gz"])
def test_write_read_roundtrip(tmp_path, mini_ontology, suffix):  # noqa: F811
    a = read_annotations(IO_DATA / "sample.gaf", ontology=mini_ontology)
    p = tmp_path / f"out{suffix}"
    write_annotations_tsv(p, a, mini_ontology)
    b = read_annotations(p, ontology=mini_ontology)
    assert dict(b) == dict(a) and b.proteins == a.proteins
    assert b.report.fraction_resolved == 1.0 and b.report.n_namespace_mismatch == 0
    first = p.read_bytes()
    write_annotations_tsv(p, b, mini_ontology)
    assert p.read_bytes() == first
    if suffix == ".tsv":
        assert first.decode().splitlines()[:3] == [
            "protein_id\tgo_id\tnamespace", "P1\tGO:0000002\tBP", "P1\tGO:0000010\tMF"]


def test_write_rejects_unknown_ids(tmp_path, mini_ontology):  # noqa: F811
    with pytest.raises(KeyError, match="GO:0009999"):
        write_annotations_tsv(tmp_path / "x.tsv", Annotations({"P1": {"GO:0009999"}}), mini_ontology)
    assert not (tmp_path / "x.tsv").exists()


def test_report_lines_mention_drops():
    r = AnnotationReport(n_records=3, n_ids=4, n_resolved_direct=2, n_unknown=1, n_obsolete_dropped=1,
                         unknown_examples=["GO:9999999"])
    text = "\n".join(r.lines())
    assert "unknown 1" in text and "GO:9999999" in text and "50.00%" in text


def test_cli_check_gaf_against_own_obo(tmp_path, capsys):
    from io_fixtures import MINI_OBO

    from rd_interp.cli import main

    fa = tmp_path / "p.fasta"
    fa.write_text(">sp|P1|A_HUMAN\nMKV\n>P2\nMKL\n>P7\nMMM\n")
    rc = main(["data", "check", str(fa), "--annotations", str(IO_DATA / "sample.gaf"), "--format", "gaf",
               "--obo", str(MINI_OBO)])
    out = capsys.readouterr().out
    assert rc == 0
    assert "3 records" in out and "format gaf, ontology releases/mini-1" in out
    assert "unknown 1" in out and "GO:0009999" in out
    assert "overlap: 2 of 3 FASTA proteins annotated; 1 annotated proteins not in the FASTA" in out
