"""ProbeConfig: the linear-probe lens on the embedding spaces (and the rd space's Matryoshka prefixes)."""

from __future__ import annotations

from dataclasses import dataclass

from rd_interp.io.options import opt
from rd_interp.io.serialize import ConfigError


@dataclass
class ProbeConfig:
    enabled: bool = opt(True, "run the linear probes (large, small, rd, its blocks, controls, rd prefixes, baseline)")
    n_terms: int = opt(100, "most frequent GO terms probed per namespace (direct annotations)")
    test_fraction: float = opt(0.2, "proteins held out for the probe AUROC (seeded, by protein id)")
    n_boot: int = opt(1000, "bootstrap resamples of the held-out proteins for the macro-AUROC interval")
    C: float = opt(1.0, "inverse L2 penalty of the logistic regressions (standardised features)")
    min_positives: int = opt(3, "skip terms with fewer positives (or negatives) on either side of the split")
    n_truncations: int = opt(4, "evenly spaced rd prefix widths probed besides each chain step's width")
    max_proteins: int = opt(0, "seeded subset of proteins probed (0 = all analysed proteins)")

    def validate(self) -> None:
        if self.n_terms < 1:
            raise ConfigError(f"probe.n_terms must be >= 1, got {self.n_terms}")
        if not 0 < self.test_fraction < 1:
            raise ConfigError(f"probe.test_fraction must be in (0, 1), got {self.test_fraction}")
        if self.n_boot < 0 or self.min_positives < 1 or self.n_truncations < 0 or self.max_proteins < 0:
            raise ConfigError("probe.n_boot, n_truncations, max_proteins must be >= 0 and min_positives >= 1")
        if not self.C > 0:
            raise ConfigError(f"probe.C must be > 0, got {self.C}")
