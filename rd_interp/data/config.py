"""DataConfig: which proteins, annotations and ontology an analysis runs on."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from rd_interp.io.options import opt
from rd_interp.io.serialize import ConfigError

SHIPPED = "shipped"  # sentinel for "use the file shipped in data/"
ANALYSIS = "analysis"  # sentinel for "fit on a seeded subset of the analysis set itself" (no fit set)


@dataclass
class DataConfig:
    fasta: str = opt(SHIPPED, "protein FASTA (.gz ok); 'shipped' = the shipped Swiss-Prot evaluation set")
    annotations: str = opt(SHIPPED, "GO annotations (TSV protein<TAB>GO[<TAB>NS], GAF or UniProt TSV); "
                                    "'shipped' = those of the shipped proteins")
    annotation_format: Literal["auto", "tsv", "gaf", "uniprot"] = opt("auto", "annotation file format")
    ontology: str = opt(SHIPPED, "GO OBO file; 'shipped' = GO release 2022-07-01")
    max_proteins: int = opt(0, "deterministic seeded subset of this many proteins (0 = all)")
    min_length: int = opt(1, "drop proteins shorter than this")
    max_length: int = opt(100_000, "drop proteins longer than this")

    def validate(self) -> None:
        if self.max_proteins < 0:
            raise ConfigError(f"data.max_proteins must be >= 0, got {self.max_proteins}")
        if not 1 <= self.min_length <= self.max_length:
            raise ConfigError(f"data.min_length/max_length invalid: {self.min_length}..{self.max_length}")


@dataclass
class FitSetConfig:
    """Which sequences the distillation is fitted on (the fitset stage selects them).

    Why here: the fitset stage (data.run.select) writes a FASTA the embed stage embeds unchanged, so it is
    a data-layer stage; DistillConfig inherits these options, so they are declared once, under [distill].
    """

    fasta: str = opt(SHIPPED, "sequences the distillation is fitted on: 'shipped' = the shipped train_pool "
                              "(disjoint from the evaluation proteins, like the paper's ~1,000 fit sequences); "
                              "'analysis' = a seeded subset of the analysis set itself (not disjoint); or a "
                              "FASTA path", cli=False)
    train_proteins: int = opt(1000, "proteins the chain is fitted on: a seeded subset of the fit set (the paper "
                                    "uses ~1,000; 0 = all); every analysis protein is transformed")
    fit_min_length: int = opt(50, "fit-set sequences shorter than this are dropped before the subset is drawn",
                              cli=False)
    fit_max_length: int = opt(1022, "fit-set sequences longer than this are dropped (1022 = ESM-2's context, so "
                                    "no fit sequence is truncated)", cli=False)

    def validate(self) -> None:
        if not str(self.fasta).strip():
            raise ConfigError("distill.fasta must be 'shipped', 'analysis' or a FASTA path")
        if self.train_proteins != 0 and self.train_proteins < 10:
            raise ConfigError(f"distill.train_proteins must be 0 (all) or >= 10, got {self.train_proteins}")
        if not 1 <= self.fit_min_length <= self.fit_max_length:
            raise ConfigError(f"distill.fit_min_length/fit_max_length invalid: "
                              f"{self.fit_min_length}..{self.fit_max_length}")
