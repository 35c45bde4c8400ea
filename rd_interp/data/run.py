"""The data stage: read and validate the inputs once, write the analysis set every later stage reads.

Outputs: proteins.fasta (the selected proteins), annotations.tsv (their annotations, ids resolved to the
ontology in use), ontology.obo.gz (a copy of that ontology, ~2.5 MB for full GO, so the run folder is
self-contained: later stages and `rd-interp explain` need nothing outside it), data.json (counts and the
annotation-resolution report).

The fitset stage (`select`, stage kind "fitset") picks the sequences the distillation is fitted on, from a
FASTA disjoint from the analysis set (default: the shipped train_pool). It writes proteins.fasta too, so
the embed stage embeds it unchanged, and fitset.json (counts, source).
"""

from __future__ import annotations

import gzip
import shutil
import time
from pathlib import Path

from rd_interp.data.config import ANALYSIS, SHIPPED, DataConfig, FitSetConfig
from rd_interp.io import datasets
from rd_interp.io.annotations import check_overlap, read_annotations, write_annotations_tsv
from rd_interp.io.atomic import atomic_path, write_json
from rd_interp.io.fasta import read_fasta, write_fasta
from rd_interp.io.go import Ontology
from rd_interp.io.manifest import Manifest, claim_dir, file_input, write_manifest
from rd_interp.io.options import key_dict, subset
from rd_interp.io.split import seeded_subset

STAGE = "data"
ONTOLOGY = "ontology.obo.gz"
OUTPUTS = ("proteins.fasta", "annotations.tsv", ONTOLOGY, "data.json")
FITSET_STAGE = "fitset"
FITSET_OUTPUTS = ("proteins.fasta", "fitset.json")


def input_paths(cfg: DataConfig) -> dict[str, Path]:
    """The three input files, shipped defaults resolved; a missing file names its config key."""
    paths = {
        "fasta": datasets.shipped_proteins() if cfg.fasta == SHIPPED else Path(cfg.fasta).expanduser(),
        "annotations": (datasets.shipped_annotations() if cfg.annotations == SHIPPED
                        else Path(cfg.annotations).expanduser()),
        "ontology": datasets.shipped_obo() if cfg.ontology == SHIPPED else Path(cfg.ontology).expanduser(),
    }
    for what, p in paths.items():
        if not p.is_file():
            raise FileNotFoundError(f"data.{what}: {p} does not exist")
    return paths


def inputs_of(cfg: DataConfig) -> dict[str, dict]:
    """Content records (name + sha256) of the input files: the data stage is keyed by content."""
    return {what: file_input(p) for what, p in input_paths(cfg).items()}


def run(inputs: dict, cfg: DataConfig, out_dir: str | Path, *, seed: int = 0) -> Manifest:
    """Select and validate the analysis set. `inputs`: the records of inputs_of(cfg)."""
    t0 = time.perf_counter()
    d = claim_dir(out_dir, STAGE, OUTPUTS)
    paths = input_paths(cfg)
    ontology = Ontology.load(paths["ontology"])
    annotations = read_annotations(paths["annotations"], fmt=cfg.annotation_format, ontology=ontology)
    records = [r for r in read_fasta(paths["fasta"]) if cfg.min_length <= len(r.sequence) <= cfg.max_length]
    if not records:
        raise ValueError(f"{paths['fasta']}: no sequences with length in {cfg.min_length}..{cfg.max_length}")
    check_overlap([r.id for r in records], annotations, fasta=str(paths["fasta"]), source=str(paths["annotations"]),
                  descriptions=[r.description for r in records])  # no overlap: fail now, not with "0 GO terms"
    annotated = set(annotations.proteins)
    n_unannotated = sum(r.id not in annotated for r in records)
    if cfg.max_proteins and len(records) > cfg.max_proteins:
        keep = set(seeded_subset([r.id for r in records], cfg.max_proteins, seed).tolist())
        records = [r for i, r in enumerate(records) if i in keep]
    ids = [r.id for r in records]
    write_fasta(d / "proteins.fasta", records)
    write_annotations_tsv(d / "annotations.tsv", annotations.subset(ids), ontology)
    result = {"n_proteins": len(ids), "n_residues": int(sum(len(r.sequence) for r in records)),
              "n_without_annotation": int(sum(i not in annotated for i in ids)),
              "n_input_without_annotation": int(n_unannotated),
              "annotation_report": annotations.report.to_dict(), "ontology_release": ontology.release}
    copy_gzipped(paths["ontology"], d / ONTOLOGY)
    write_json(d / "data.json", result)
    return write_manifest(d, stage=STAGE, config=key_dict(cfg), inputs=inputs, outputs=OUTPUTS,
                          params={"seed": seed}, result=result, seconds=time.perf_counter() - t0)


def copy_gzipped(src: Path, dst: Path) -> None:
    """Copy a file as gzip (as is when it already is gzip), atomically; mtime 0 keeps the bytes reproducible."""
    with open(src, "rb") as fh:
        is_gz = fh.read(2) == b"\x1f\x8b"
    with atomic_path(dst) as tmp:
        if is_gz:
            shutil.copyfile(src, tmp)
        else:
            with open(src, "rb") as fin, open(tmp, "wb") as raw, \
                    gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as fout:
                shutil.copyfileobj(fin, fout, 1 << 20)


def load_analysis_set(data: Manifest):
    """(protein ids, annotations, ontology) of a finished data stage, read from its own folder only."""
    ontology = Ontology.load(data.path(ONTOLOGY))
    annotations = read_annotations(data.path("annotations.tsv"), fmt="tsv", ontology=ontology)
    ids = [r.id for r in read_fasta(data.path("proteins.fasta"))]
    return ids, annotations, ontology


# -- the fit set of the distillation --------------------------------------------------------------------------
def fitset_config(cfg) -> FitSetConfig:
    """The fit-set options of `cfg` (a DistillConfig or anything with the FitSetConfig fields): what keys
    the fitset stage, so changing e.g. the regressor never re-selects or re-embeds the fit set."""
    return subset(FitSetConfig, cfg)


def fit_fasta(cfg) -> Path:
    """The FASTA the fit set is drawn from ('shipped' resolved); a missing file names distill.fasta."""
    if cfg.fasta == ANALYSIS:
        raise ValueError("distill.fasta = 'analysis': the chain is fitted on a subset of the analysis set "
                         "itself, so there is no fit set to select")
    path = datasets.shipped_train_pool() if cfg.fasta == SHIPPED else Path(cfg.fasta).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"distill.fasta: {path} does not exist")
    return path


def fitset_inputs(cfg) -> dict[str, dict]:
    """Content record of the fit-set FASTA: the fitset stage is keyed by content, not by path."""
    return {"fasta": file_input(fit_fasta(cfg))}


def select(inputs: dict, cfg, out_dir: str | Path, *, seed: int = 0) -> Manifest:
    """Write the fit set: a seeded subset of `train_proteins` sequences of the fit FASTA (length-filtered).

    `cfg`: a FitSetConfig or any config holding its fields (DistillConfig); `inputs`: fitset_inputs(cfg).
    The subset is the package's one seeded subset (rd_interp.io.split.seeded_subset, keyed by id), so the
    same FASTA and seed give the same fit set in every process.
    """
    t0 = time.perf_counter()
    fc = fitset_config(cfg)
    fc.validate()
    d = claim_dir(out_dir, FITSET_STAGE, FITSET_OUTPUTS)
    path = fit_fasta(fc)
    records = list(read_fasta(path))
    n_input = len(records)
    records = [r for r in records if fc.fit_min_length <= len(r.sequence) <= fc.fit_max_length]
    if not records:
        raise ValueError(f"{path}: no sequences with length in {fc.fit_min_length}..{fc.fit_max_length} "
                         "(distill.fit_min_length/fit_max_length)")
    n_length_ok = len(records)
    if fc.train_proteins and len(records) > fc.train_proteins:
        keep = set(seeded_subset([r.id for r in records], fc.train_proteins, seed).tolist())
        records = [r for i, r in enumerate(records) if i in keep]
    write_fasta(d / "proteins.fasta", records)
    result = {"source": fc.fasta, "fasta": path.name, "n_input": n_input, "n_length_ok": n_length_ok,
              "n_proteins": len(records), "n_residues": int(sum(len(r.sequence) for r in records)),
              "length_range": [fc.fit_min_length, fc.fit_max_length]}
    write_json(d / "fitset.json", result)
    return write_manifest(d, stage=FITSET_STAGE, config=key_dict(fc), inputs=inputs, outputs=FITSET_OUTPUTS,
                          params={"seed": seed}, result=result, seconds=time.perf_counter() - t0)
