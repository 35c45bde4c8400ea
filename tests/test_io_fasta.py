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
                     (">q\nMK>V\nMKV\n", ":102: invalid residue '>' at column 3 in record 'q'"),
                     (">q\n\n", ":101: record 'q' has no sequence"),
                     ("> q\nMKV\n", ":101: header has no id")]:
        p = _write(tmp_path, body + bad + ">z\nMKV\n")
        it = read_fasta(p)
        assert [next(it).id for _ in range(50)] == [f"p{i}" for i in range(50)]
        with pytest.raises(FastaError, match=re.escape(msg)):
            next(it)


def _read_all(path, **kw):
    """Records read until the first error, and that error's text (None when the file is valid)."""
    out = []
    try:
        for r in read_fasta(path, **kw):
            out.append((r.id, r.description, r.sequence, r.line, type(r) is FastaRecord))
    except FastaError as exc:
        return out, str(exc)
    return out, None


def _random_fasta(rng) -> bytes:
    """A small FASTA text, clean or with a few of the defects and oddities the reader must handle."""
    heads = ["p{i}", "p{i} some protein", "sp|P{i:05d}|N{i}_HUMAN Name {i} OS=Homo sapiens OX=9606",
             "tr|Q{i}|Q{i}_MOUSE", "sp|P{i}|", "sp|broken{i}", "sp||X{i} empty accession",
             "p{i}\tdesc\twith tabs  ", "sp|P{i}|N desc \x0c", "p{i} a->b", " p{i} leading blank", "",
             "p{i} caf\u00e9 \u2003x", "p{i}|a|b"]
    defects = ["", "", "", "", "lower", "star", "digit", "gap", "J", "gt", "gt_in_line", "empty", "dup",
               "blank", "comment", "space", "tab", "nonascii", "badutf8", "crlf", "cr"]
    n = rng.randint(1, 12)
    lines = [rng.choice(["", ";c"])] if rng.random() < 0.1 else []
    defect = rng.choice(defects)
    for i in range(n):
        head = rng.choice(heads).format(i=i)
        if defect == "dup" and i == n - 1:
            head = rng.choice(["p0", "p0 again", "sp|P00000|X"])
        lines.append(">" + head)
        seq = "".join(rng.choices("ACDEFGHIKLMNPQRSTVWYXBUZO", k=rng.randint(1, 40)))
        chunk = rng.choice([5, 13, 60])
        body = [seq[j:j + chunk] for j in range(0, len(seq), chunk)]
        if defect == "empty" and rng.random() < 0.3:
            body = rng.choice([[], [""], ["  "]])
        if defect == "gt_in_line" and len(body) > 1 and rng.random() < 0.5:  # '>' not at a line start
            col = rng.randint(1, len(body[0]))
            body[0] = body[0][:col] + ">" + body[0][col:]
        lines.extend(body)
    text = "\n".join(lines) + ("\n" if rng.random() < 0.8 else "")
    pos = rng.randrange(len(text))
    inserts = {"lower": lambda t: t.lower() if rng.random() < 0.5 else t[:pos] + "acdk" + t[pos:],
               "star": "*", "digit": "1", "gap": "-", "J": "J", "gt": ">", "blank": "\n\n",
               "comment": "\n;x\n", "space": " ", "tab": "\t", "nonascii": "\u00c4"}
    ins = inserts.get(defect)
    if callable(ins):
        text = ins(text)
    elif ins:
        text = text[:pos] + ins + text[pos:]
    data = text.encode()
    if defect == "badutf8":
        data = data[:pos] + b"\xff" + data[pos:]
    if defect == "crlf":
        data = data.replace(b"\n", b"\r\n")
    if defect == "cr":
        data = data.replace(b"\n", b"\r")
    return data


def test_fast_path_equals_careful_path_on_random_files(tmp_path, monkeypatch):
    """The block fast path may only ever speed things up: on clean files, defective ones and everything
    between, its records, their order and the first error's text equal the record-by-record path's,
    with blocks and pieces small enough that records meet their ends."""
    import random

    from rd_interp.io import fasta

    rng = random.Random(1234)
    p = tmp_path / "r.fasta"
    real = fasta._fast_fields
    fast_blocks = []
    monkeypatch.setattr(fasta, "_fast_fields", lambda *a: fast_blocks.append(r := real(*a)) or r)
    for case in range(400):
        data = _random_fasta(rng)
        p.write_bytes(gzip.compress(data) if case % 10 == 0 else data)
        kw = rng.choice([{}, {}, {"max_length": 20}, {"check_duplicates": False}])
        monkeypatch.setattr(fasta, "_BLOCK", rng.choice([16, 64, 97, 300, 1 << 20]))
        monkeypatch.setattr(fasta, "_PIECE", rng.choice([8, 40, 100, 1 << 17]))
        fast = _read_all(p, **kw)
        with monkeypatch.context() as m:
            m.setattr(fasta, "_fast_fields", lambda *a: None)
            careful = _read_all(p, **kw)
        assert fast == careful, (case, data, kw)
    # both paths had work: many blocks were clean, many were not
    assert sum(r is not None for r in fast_blocks) > 300 and sum(r is None for r in fast_blocks) > 300


def test_fast_path_is_taken_for_clean_blocks(tmp_path, monkeypatch):
    """Clean blocks, lowercase and blank lines included, go through the fast path (else it is dead code)."""
    from rd_interp.io import fasta

    p = _write(tmp_path, ">sp|P1|A_HUMAN a\nMKV\nmkv\n\n>p2 b\nMKV\n>p3\nMK\n")
    calls = []
    real = fasta._fast_fields
    monkeypatch.setattr(fasta, "_fast_fields", lambda *a: calls.append(r := real(*a)) or r)
    assert [(r.id, r.sequence, r.line) for r in read_fasta(p)] == [("P1", "MKVMKV", 1), ("p2", "MKV", 5),
                                                                   ("p3", "MK", 7)]
    assert calls and all(c is not None for c in calls)


@pytest.mark.parametrize("header", [
    "sp|P12345|NAME_HUMAN Some protein OS=Homo sapiens", "tr|A0A0B4J2F0|A0A0B4_HUMAN x", "sp|P1|",
    "sp|P1|N ", "sp|P1|N\u2003desc\u00a0", "sp||N", "sp|broken", "sp|P 1|N", "sp|P\u20031|N", "tr|Q|\t",
    "xsp|P1|N", "sp|P1", "B0RED7|GO:0006200,GO:0006754", " no id", "", "a", "a b ", "a\tb\x0c", "\u2003a b",
])
def test_fast_headers_equal_parse_headers(header):
    from rd_interp.io import fasta

    for headers in ([header], [header, "sp|P9|X y"], ["sp|P9|X y", header, "p z"]):
        assert fasta._fast_headers("\n".join(headers)) == fasta._parse_headers(headers)
