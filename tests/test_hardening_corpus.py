"""The malformed-input corpus (tests/data/bad/ and tests/data/io/bad/) through the CLI, as a user meets it.

Every file must give: a non-zero exit, exactly one line on stderr that names the file and the key / line /
record at fault, no traceback, and (for run configs) no work started. The expectations live here, next to
the corpus listing, so a file added to the corpus without an expectation fails `test_corpus_is_listed`.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from rd_interp.cli import main

DATA = Path(__file__).parent / "data"
BAD = DATA / "bad"
IO_BAD = DATA / "io" / "bad"
MINI_OBO = DATA / "io" / "mini.obo"
ACCESSIONS = DATA / "hardening" / "accessions.fasta"

# config file -> what the error line must also say (besides the file name)
CONFIG = {
    "sae_seeds_duplicate.toml": "sae.seeds lists a seed twice",
    "sae_seeds_negative.toml": "sae.seeds must be >= 0",
    "sae_spaces_empty.toml": "sae.spaces must list at least one space",
    "sae_spaces_duplicate.toml": "sae.spaces lists a space twice",
    "sae_spaces_unknown.toml": "sae.spaces: unknown ['huge']",
    "sae_dead_window_zero.toml": "sae.dead_window must be >= 1, got 0",
    "sae_k_above_n_latents.toml": "sae.k: 32 active latents requested but the SAE has only n_latents=16",
    "sae_k_above_width.toml": "sae.k = 500 active latents but the large space (width",
    "sae_split_seed_negative.toml": "sae.split_seed must be >= 0",
    "sae_warmup_negative.toml": "sae.warmup_steps must be >= 0",
    "sae_heldout_out_of_range.toml": "sae.heldout_fraction must be in (0, 0.5)",
    "report_top_latents_negative.toml": "report.top_latents must be >= 0",
    "enrich_general_level_negative.toml": "enrich.general_level must be >= 0",
    "enrich_min_proteins_above_max.toml": "enrich.min_proteins = 50 but the run has at most 20 proteins",
    "enrich_min_proteins_above_shipped.toml": "enrich.min_proteins = 1000000 but the run has at most",
    "enrich_alpha_nan.toml": "enrich.alpha must be in (0, 1), got nan",
    "distill_alpha_inf.toml": "distill.alpha must be a finite number > 0, got inf",
    "seed_negative.toml": "seed must be >= 0, got -3",
    "data_max_proteins_negative.toml": "data.max_proteins must be >= 0",
    "models_family_single.toml": "models.family needs at least two models",
    "encode_pooling_unknown.toml": "encode.pooling: 'median' is not one of",
    "unknown_key.toml": "unknown key(s) ['seedz']",
    "wrong_type.toml": "sae.seeds: expected a list",
    "table_is_scalar.toml": "sae: expected a table",
    "renamed_and_new_key.toml": "distill.ridge_alpha was renamed distill.alpha; the file sets both",
    "syntax_error.toml": "cannot parse",
    "syntax_error.json": "cannot parse",
    "not_utf8.toml": "not UTF-8 text",
}

# FASTA file -> (line, what the error must say); checked with `rd-interp data check FILE`
FASTA = {
    "bom_stop_codon.fasta": (4, "invalid residue '*' at column 4 in record 'b'"),
    "utf16.fasta": (1, "not UTF-8 text"),
    "escape_in_sequence.fasta": (2, "invalid residue '\\x1b' at column 4"),
    "nul_byte.fasta": (2, "invalid residue '\\x00' at column 3"),
    "header_only.fasta": (1, "record 'lonely' has no sequence"),
    "lowercase_bad_residue.fasta": (4, "invalid residue 'J' at column 4 in record 'b'"),
}

# annotation file -> (line or None, what the error must say); `data check accessions.fasta --annotations FILE`
ANNOTATIONS = {
    "entry_names.tsv": (None, ("the FASTA ids are UniProt accessions ('P69905', 'P14618') but the annotations use "
                               "entry names ('HBA_HUMAN', 'KPYM_HUMAN')")),
    "no_overlap.gaf": (None, "none of its 1 annotated proteins is among the 2 proteins"),
    "bom_bad_go_id.tsv": (3, "malformed GO id 'GO:12'"),
    "utf16.tsv": (1, "not UTF-8 text"),
    "versioned_ids.tsv": (None, "ids must match exactly"),
}


def _one_error_line(capsys, rc: int, *must: str) -> str:
    out, err = capsys.readouterr()
    assert rc != 0, (out, err)
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err and "Traceback" not in out
    line = lines[0]
    assert line.startswith("rd-interp: error: "), line
    for text in must:
        assert text in line, (text, line)
    assert "\x1b" not in line and "\x00" not in line  # control characters never reach the terminal raw
    return line


def test_corpus_is_listed():
    assert sorted(p.name for p in (BAD / "config").iterdir()) == sorted(CONFIG)
    assert sorted(p.name for p in (BAD / "fasta").iterdir()) == sorted(FASTA)
    assert sorted(p.name for p in (BAD / "annotations").iterdir()) == sorted(ANNOTATIONS)


@pytest.mark.parametrize("name", sorted(CONFIG))
def test_bad_config_check(name, capsys):
    path = BAD / "config" / name
    _one_error_line(capsys, main(["config", "--check", str(path)]), str(path), CONFIG[name])


@pytest.mark.parametrize("name", sorted(CONFIG))
def test_bad_config_run_fails_before_any_work(name, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = BAD / "config" / name
    _one_error_line(capsys, main(["-q", "run", str(path)]), str(path), CONFIG[name])
    assert list(tmp_path.iterdir()) == []  # no output folder, nothing written


@pytest.mark.parametrize("name", sorted(FASTA))
def test_bad_fasta(name, capsys):
    path = BAD / "fasta" / name
    line, what = FASTA[name]
    _one_error_line(capsys, main(["data", "check", str(path)]), f"{path}:{line}: ", what)


@pytest.mark.parametrize("name", sorted(p.name for p in IO_BAD.glob("fasta_*")))
def test_io_corpus_fasta(name, capsys):
    path = IO_BAD / name
    _one_error_line(capsys, main(["data", "check", str(path)]), f"{path}:")


@pytest.mark.parametrize("name", sorted(ANNOTATIONS))
def test_bad_annotations(name, capsys):
    path = BAD / "annotations" / name
    line, what = ANNOTATIONS[name]
    rc = main(["data", "check", str(ACCESSIONS), "--annotations", str(path), "--obo", str(MINI_OBO)])
    where = f"{path}:{line}: " if line else f"{path}: "
    _one_error_line(capsys, rc, where, what)


@pytest.mark.parametrize("name", sorted(p.name for p in IO_BAD.glob("ann_*")))
def test_io_corpus_annotations(name, capsys):
    path = IO_BAD / name
    rc = main(["data", "check", str(ACCESSIONS), "--annotations", str(path), "--obo", str(MINI_OBO)])
    _one_error_line(capsys, rc, f"{path}:")


@pytest.mark.parametrize("name", sorted(p.name for p in IO_BAD.glob("obo_*")))
def test_io_corpus_obo(name, capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("RD_INTERP_CACHE", str(tmp_path))
    path = IO_BAD / name
    rc = main(["data", "check", str(ACCESSIONS), "--annotations", str(BAD / "annotations" / "entry_names.tsv"),
               "--obo", str(path)])
    _one_error_line(capsys, rc, f"{path}:")


def test_no_overlap_fails_the_data_stage(tmp_path):
    """`run` fails in its first stage, with the counts and the hint, instead of finishing with 0 GO terms."""
    from rd_interp.data import run as data_stage
    from rd_interp.data.config import DataConfig
    from rd_interp.io.annotations import AnnotationError

    cfg = DataConfig(fasta=str(ACCESSIONS), annotations=str(BAD / "annotations" / "entry_names.tsv"),
                     ontology=str(MINI_OBO))
    with pytest.raises(AnnotationError, match="overlap 0.*UniProt accessions.*entry names") as info:
        data_stage.run(data_stage.inputs_of(cfg), cfg, tmp_path / "data")
    assert "2 proteins" in str(info.value) and "2 annotated proteins" in str(info.value)
    assert "FASTA headers contain an annotated id" in str(info.value)  # sp|P69905|HBA_HUMAN carries the name
    assert not (tmp_path / "data" / "manifest.json").exists()


def test_data_check_with_overlap_still_passes(capsys, tmp_path):
    ann = tmp_path / "ok.tsv"
    ann.write_text("P69905\tGO:0000002\n", encoding="utf-8")
    rc = main(["data", "check", str(ACCESSIONS), "--annotations", str(ann), "--obo", str(MINI_OBO)])
    out = capsys.readouterr().out
    assert rc == 0
    assert "overlap: 1 of 2 FASTA proteins annotated" in out


def test_tilde_is_expanded_in_arguments(capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / "c.toml").write_text('out_dir = "x"\n', encoding="utf-8")
    assert main(["config", "--check", "~/c.toml"]) == 0
    assert f"{os.sep}c.toml: OK" in capsys.readouterr().out
