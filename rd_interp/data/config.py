"""DataConfig: which proteins, annotations and ontology an analysis runs on."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from rd_interp.io.options import opt
from rd_interp.io.serialize import ConfigError

SHIPPED = "shipped"  # sentinel for "use the file shipped in data/"


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
