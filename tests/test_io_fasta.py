import gzip
import re
import subprocess
import sys
import textwrap

import pytest

from rd_interp.io.fasta import (
    FastaError,
    FastaRecord,
    fasta_checksum,
    parse_header,
    read_fasta,
    summarize_fasta,
    write_fasta,
)


def _write(tmp_path, text, name="x.fasta"):
    p = tmp_path / name
    p.write_text(text)
    return p


def test_reads_records_with_lines_and_descriptions(tmp_path):
    p = _write(tmp_path, ">a first protein\nMKV\nlaa\n\n>b\nMMM\n")
    recs = list(read_fasta(p))
    assert recs == [FastaRecord("a", "first protein", "MKVLAA", 1), FastaRecord("b", "", "MMM", 5)]


def test_uniprot_header_gives_accession():
    assert parse_header("sp|P12345|NAME_HUMAN Some protein OS=Homo sapiens")[0] == "P12345"
    assert parse_header("tr|A0A0B4J2F0|A0A0B4_HUMAN x")[0] == "A0A0B4J2F0"
    assert parse_header("B0RED7|GO:0006200,GO:0006754") == ("B0RED7|GO:0006200,GO:0006754", "")
    assert parse_header(" no id") == ("", "no id")


def test_uniprot_fasta_roundtrip_ids(tmp_path):
    p = _write(tmp_path, ">sp|P12345|NAME_HUMAN Foo OS=Homo sapiens\nMKV\n>tr|Q9XYZ1|Q9XYZ1_MOUSE Bar\nMKL\n")
    assert [r.id for r in read_fasta(p)] == ["P12345", "Q9XYZ1"]


def test_nonstandard_letters_crlf_spaces_and_comments(tmp_path):
    p = tmp_path / "w.fasta"
    p.write_bytes(b">a\r\nmkv xbu\r\n;comment\r\nzo\r\n")
    (rec,) = read_fasta(p)
    assert rec.sequence == "MKVXBUZO"


def test_gzip_detected_by_content_not_suffix(tmp_path):
    p = tmp_path / "plain_name.fasta"
    p.write_bytes(gzip.compress(b">a\nMKV\n"))
    assert [r.sequence for r in read_fasta(p)] == ["MKV"]


def test_max_length(tmp_path):
    p = _write(tmp_path, ">a\nMKVL\n>b\nMKVLAAA\n")
    with pytest.raises(FastaError, match=r"x.fasta:3: record 'b' has 7 residues, more than max_length=5"):
        list(read_fasta(p, max_length=5))
    assert len(list(read_fasta(p, max_length=7))) == 2


def test_duplicate_check_can_be_disabled(tmp_path):
    p = _write(tmp_path, ">a\nMKV\n>a\nMKL\n")
    with pytest.raises(FastaError, match="duplicate id 'a'"):
        list(read_fasta(p))
    assert len(list(read_fasta(p, check_duplicates=False))) == 2


def test_missing_file_is_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.fasta"):
        list(read_fasta(tmp_path / "nope.fasta"))


def test_streams_records_before_reading_the_rest(tmp_path):
    """A record is yielded before later (broken) lines are read: the reader does not slurp the file."""
    p = _write(tmp_path, ">a\nMKV\n>b\nMK1\n")
    it = read_fasta(p)
    assert next(it).id == "a"
    with pytest.raises(FastaError, match=":4: invalid residue '1'"):
        next(it)


@pytest.mark.parametrize("suffix", [".fasta", ".fasta.gz"])
def test_write_read_roundtrip(tmp_path, suffix):
    recs = [FastaRecord("P1", "desc one", "M" + "ACDEFGHIKLMNPQRSTVWY" * 7, 1), ("P2", "mkvxbuzo")]
    p = tmp_path / f"r{suffix}"
    write_fasta(p, recs, line_width=13)
    back = list(read_fasta(p))
    assert [(r.id, r.description, r.sequence) for r in back] == [
        ("P1", "desc one", recs[0].sequence), ("P2", "", "MKVXBUZO")]
    if suffix == ".gz":
        assert p.read_bytes()[:2] == b"\x1f\x8b"
    first = fasta_checksum(p)
    write_fasta(p, recs, line_width=13)
    assert fasta_checksum(p) == first  # deterministic bytes (gzip mtime=0)
    text = gzip.decompress(p.read_bytes()).decode() if suffix.endswith(".gz") else p.read_text()
    assert text.startswith(">P1 desc one\nMACDEFGHIKLMN\n")
    assert max(len(line) for line in text.splitlines() if not line.startswith(">")) == 13


@pytest.mark.parametrize("bad, msg", [
    ([("a b", "MKV")], "invalid id"),
    ([("a", "MKV"), ("a", "MKL")], "duplicate id 'a'"),
    ([("a", "")], "empty sequence"),
    ([("a", "MK*")], "invalid residue '\\*'"),
])
def test_write_rejects_what_reader_would_reject(tmp_path, bad, msg):
    p = tmp_path / "o.fasta"
    with pytest.raises(ValueError, match=msg):
        write_fasta(p, bad)
    assert not p.exists()  # atomic: nothing half-written
    assert list(tmp_path.iterdir()) == []


def test_summarize(tmp_path):
    p = _write(tmp_path, ">a\n" + "M" * 1023 + "\n>b\nMKX\n>c\nMKVL\n")
    s = summarize_fasta(p, keep_ids=True)
    assert (s.n_records, s.n_residues, s.min_length, s.median_length, s.max_length) == (3, 1030, 3, 4.0, 1023)
    assert (s.n_over_1022, s.n_nonstandard, s.ids) == (1, 1, ["a", "b", "c"])
    assert s.sha256 == fasta_checksum(p)


@pytest.mark.slow
def test_500k_sequences_stream_in_bounded_memory(tmp_path):
    """The issue's bar: a 500k-sequence FASTA must not need more than a few hundred MB."""
    p = tmp_path / "big.fasta.gz"
    code = textwrap.dedent(f"""
        import gzip, random
        random.seed(0)
        aa = "ACDEFGHIKLMNPQRSTVWY"
        with gzip.open({str(p)!r}, "wt", compresslevel=1) as fh:
            for i in range(500_000):
                fh.write(f">sp|Q{{i:07d}}|X_HUMAN protein {{i}}\\n" + "".join(random.choices(aa, k=300)) + "\\n")
    """)
    subprocess.run([sys.executable, "-c", code], check=True)
    # VmHWM, not ru_maxrss: Linux carries ru_maxrss across fork+exec, so a child of a large pytest
    # process would report the parent's peak instead of its own.
    probe = textwrap.dedent(f"""
        from rd_interp.io.fasta import read_fasta
        n = res = 0
        for r in read_fasta({str(p)!r}):
            n += 1; res += len(r.sequence)
        hwm = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM:"))
        print(n, res, hwm // 1024)
    """)
    out = subprocess.run([sys.executable, "-c", probe], check=True, capture_output=True, text=True).stdout.split()
    n, res, peak_mb = map(int, out)
    assert (n, res) == (500_000, 150_000_000)
    print(f"500k sequences: peak RSS {peak_mb} MB")
    assert peak_mb < 300, f"peak RSS {peak_mb} MB"


def test_non_ascii_and_tab_residues_are_located(tmp_path):
    p = _write(tmp_path, ">a\nMKV\nmk\tvÄl\n")
    with pytest.raises(FastaError, match=r"x.fasta:3: invalid residue 'Ä' at column 5 in record 'a'"):
        list(read_fasta(p))
    p = _write(tmp_path, ">a desc\tmore\nMK\tV\n", name="t.fasta")
    (rec,) = read_fasta(p)
    assert (rec.id, rec.description, rec.sequence) == ("a", "desc\tmore", "MKV")


def _reference_records(text: str) -> list[tuple[str, str, str, int]]:
    """A plain line-by-line reading of valid FASTA text: the oracle for the block reader."""
    out, cur = [], None
    for lineno, line in enumerate(text.replace("\r\n", "\n").replace("\r", "\n").split("\n"), start=1):
        if line.startswith(">"):
            cur = [*parse_header(line[1:]), [], lineno]
            out.append(cur)
        elif cur is not None and not line.startswith(";"):
            cur[2].append("".join(line.split()).upper())
    return [(i, d, "".join(s), ln) for i, d, s, ln in out]


@pytest.mark.parametrize("seed", range(6))
def test_block_reader_equals_a_line_by_line_reading(tmp_path, monkeypatch, seed):
    """Records, descriptions and header line numbers equal a plain line loop, with blocks of a few
    records (so records meet block ends), CRLF, comments, blank lines, lowercase and UniProt headers."""
    import random

    from rd_interp.io import fasta

    monkeypatch.setattr(fasta, "_BLOCK", 97)
    rng = random.Random(seed)
    end = "\r\n" if seed % 3 == 0 else "\n"
    lines = [";leading comment", ""] if seed % 2 else []
    for i in range(60):
        head = rng.choice([f"p{i}", f"sp|P{i:05d}|N_HUMAN Name {i} OS=Homo", f"p{i} desc\twith  blanks ",
                           f"tr|Q{i}|X", f"sp|broken{i}"])
        lines.append(">" + head)
        seq = "".join(rng.choices("ACDEFGHIKLMNPQRSTVWYXBUZO" + ("acd" if seed % 2 else ""), k=rng.randint(1, 150)))
        for j in range(0, len(seq), rng.choice([10, 60, 200])):
            lines.append(seq[j:j + 60])
            if rng.random() < 0.1:
                lines.append(rng.choice(["", ";comment", "  "]))
    text = end.join(lines) + (end if seed % 4 else "")
    p = tmp_path / "r.fasta"
    p.write_bytes(text.encode())
    got = [(r.id, r.description, r.sequence, r.line) for r in read_fasta(p)]
    assert got == _reference_records(text)
    assert all(type(r) is FastaRecord for r in read_fasta(p))


def test_errors_late_in_a_block_are_reported_after_the_records_before_them(tmp_path, monkeypatch):
    from rd_interp.io import fasta

    monkeypatch.setattr(fasta, "_BLOCK", 1 << 16)
    body = "".join(f">p{i}\nMKV\n" for i in range(50))
    for bad, msg in [(">p3\nMKV\n", ":101: duplicate id 'p3' (first seen at line 7)"),
                     (">q\nMK-V\n", ":102: invalid residue '-' at column 3 in record 'q'"),
                     (">q\nMK>V\n", ":102: invalid residue '>' at column 3 in record 'q'"),
                     (">q\n\n", ":101: record 'q' has no sequence"),
                     ("> q\nMKV\n", ":101: header has no id")]:
        p = _write(tmp_path, body + bad + ">z\nMKV\n")
        it = read_fasta(p)
        assert [next(it).id for _ in range(50)] == [f"p{i}" for i in range(50)]
        with pytest.raises(FastaError, match=re.escape(msg)):
            next(it)
