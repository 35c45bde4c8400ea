"""The shipped offline data: present, unchanged, self-consistent, and as the READMEs describe them."""

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from io_fixtures import shipped_ontology  # noqa: F401

from rd_interp.io import datasets
from rd_interp.io.annotations import read_annotations
from rd_interp.io.fasta import read_fasta

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def manifest():
    return datasets.manifest()


@pytest.fixture(scope="module")
def eval_records():
    return list(read_fasta(datasets.shipped_proteins()))


@pytest.fixture(scope="module")
def pool_records():
    return list(read_fasta(datasets.shipped_train_pool()))


def test_paths_and_env_override(tmp_path, monkeypatch):
    assert datasets.data_dir() == ROOT / "data"
    assert datasets.shipped_obo() == ROOT / "data/go/go.obo.gz"
    assert datasets.shipped_proteins() == ROOT / "data/proteins/eval.fasta.gz"
    assert datasets.shipped_annotations() == ROOT / "data/proteins/eval_go.tsv.gz"
    assert datasets.shipped_train_pool() == ROOT / "data/proteins/train_pool.fasta.gz"
    monkeypatch.setenv("RD_INTERP_DATA", str(tmp_path))
    assert datasets.data_dir() == tmp_path
    with pytest.raises(FileNotFoundError, match="rebuild.py"):
        datasets.shipped_obo()
    monkeypatch.setenv("RD_INTERP_DATA", str(tmp_path / "absent"))
    with pytest.raises(FileNotFoundError, match="RD_INTERP_DATA"):
        datasets.data_dir()


def test_checksums_match_manifest(manifest):
    assert datasets.verify_shipped() == {name: True for name in manifest["files"]}
    total = sum(f["bytes"] for f in manifest["files"].values())
    assert total == sum((ROOT / "data" / n).stat().st_size for n in manifest["files"])
    assert total < 15e6  # the size budget


def test_readmes_state_manifest_numbers(manifest):
    """READMEs are generated from the manifest; check the numbers they print so they cannot drift."""
    top = (ROOT / "data/README.md").read_text()
    go = (ROOT / "data/go/README.md").read_text()
    prot = (ROOT / "data/proteins/README.md").read_text()
    for name, meta in manifest["files"].items():
        assert meta["sha256"] in top, name
    assert f"{manifest['go']['terms']:,} current terms" in go
    assert f"releases/{manifest['go']['release']}" in go
    r = manifest["annotation_resolution"]["all_source"]
    assert f"{r['percent_resolved']:.3f}% of {r['total']:,} resolved" in go
    e = manifest["eval"]
    for ns in ("BP", "MF", "CC"):
        row = f"| {ns} | {e['proteins_per_namespace'][ns]:,} | {e['annotations_per_namespace'][ns]:,} | " \
              f"{e['distinct_terms_per_namespace'][ns]:,} |"
        assert row in prot
    assert f"| all | {e['proteins']:,} | {e['annotations']:,} |" in prot
    assert "CC BY 4.0" in top and "python data/rebuild.py" in top


def test_eval_proteins(manifest, eval_records):
    e = manifest["eval"]
    lengths = [len(r.sequence) for r in eval_records]
    assert len(eval_records) == e["proteins"] == 20000
    assert sum(lengths) == e["residues"]
    assert [min(lengths), sorted(lengths)[len(lengths) // 2], max(lengths)] == e["length_min_median_max"]
    assert min(lengths) >= 50 and max(lengths) <= 1022
    ids = [r.id for r in eval_records]
    assert ids == sorted(ids)


def test_train_pool_is_disjoint(manifest, eval_records, pool_records):
    p = manifest["train_pool"]
    assert len(pool_records) == p["proteins"]
    assert sum(len(r.sequence) for r in pool_records) == p["residues"]
    assert all(50 <= len(r.sequence) <= 1022 for r in pool_records)
    assert not {r.id for r in eval_records} & {r.id for r in pool_records}
    eval_seqs = {r.sequence for r in eval_records}
    pool_seqs = [r.sequence for r in pool_records]
    assert not eval_seqs & set(pool_seqs)
    assert len(set(pool_seqs)) == len(pool_seqs)


def test_annotations_cover_eval_and_resolve(manifest, eval_records, shipped_ontology):  # noqa: F811
    ann = read_annotations(datasets.shipped_annotations(), ontology=shipped_ontology)
    e = manifest["eval"]
    r = ann.report
    assert r.format == "tsv"
    assert r.n_ids == e["annotations"] and r.fraction_resolved == 1.0
    assert r.n_namespace_mismatch == 0 and r.n_alt_mapped == 0  # shipped ids are main ids already
    assert set(ann.proteins) == {rec.id for rec in eval_records}  # every eval protein has >= 1 annotation
    for ns in ("BP", "MF", "CC"):
        by = ann.by_namespace(shipped_ontology, ns)
        assert len(by) == e["proteins_per_namespace"][ns]
        assert sum(len(v) for v in by.values()) == e["annotations_per_namespace"][ns]
        assert len(set().union(*by.values())) == e["distinct_terms_per_namespace"][ns]


def test_resolution_figures_are_consistent(manifest):
    res = manifest["annotation_resolution"]
    for key in ("all_source", "eval_proteins", *[f"per_namespace.{ns}" for ns in ("BP", "MF", "CC")]):
        r = res
        for part in key.split("."):
            r = r[part]
        parts = r["direct"] + r["alt"] + r["replaced_by"] + r["obsolete_dropped"] + r["unknown_dropped"]
        assert parts == r["total"], key
        assert r["percent_resolved"] == round(100 * (r["direct"] + r["alt"] + r["replaced_by"]) / r["total"], 3)


def test_cli_data_info(capsys):
    from rd_interp.cli import main

    assert main(["data", "info"]) == 0
    out = capsys.readouterr().out
    assert "release 2022-07-01" in out and "20,000" in out and "CHANGED" not in out


def test_cli_data_check_with_annotations(capsys, tmp_path):
    from rd_interp.cli import main

    fa = tmp_path / "mine.fasta"
    fa.write_text(">sp|Q0|X_HUMAN\nMKV\n>A0A314\nMKVL\n")
    rc = main(["data", "check", str(fa), "--annotations", str(datasets.shipped_annotations()), "--json"])
    assert rc == 0
    import json

    out = json.loads(capsys.readouterr().out)
    assert out["fasta"]["n_records"] == 2
    assert out["overlap"] == {"fasta_with_annotations": 1, "fasta_without_annotations": 1,
                              "annotated_not_in_fasta": 19999}
    assert out["annotations"]["fraction_resolved"] == 1.0


@pytest.mark.slow
@pytest.mark.skipif(not Path("/usr/share/metastudent-data/dataset_201401").is_dir() or not shutil.which("blastdbcmd"),
                    reason="Debian sources not installed (python data/rebuild.py installs them)")
def test_rebuild_is_byte_identical():
    proc = subprocess.run([sys.executable, str(ROOT / "data/rebuild.py"), "--check"], capture_output=True,
                          text=True, timeout=1200, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "all files identical" in proc.stdout
    assert not re.search(r"DIFFERS", proc.stdout)
