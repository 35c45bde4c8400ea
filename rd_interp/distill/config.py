"""DistillConfig: how the reverse-distillation chain of a run is fitted, and on which sequences."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from rd_interp.data.config import FitSetConfig
from rd_interp.io.options import opt
from rd_interp.io.serialize import ConfigError


@dataclass
class DistillConfig(FitSetConfig):
    """Options of the distill and controls stages. Fields named like ReverseDistillationChain's parameters
    are passed to it; the fit-set options (fasta, train_proteins, fit lengths) come from FitSetConfig."""

    regressor: Literal["pcr", "linear", "ridge"] = opt(
        "pcr", "pcr: Johnstone-selected PCs of H_small (the reference's default; leaves part of H_res linearly "
               "predictable from H_small); linear: OLS on all of H_small (blocks exactly orthogonal on the fit "
               "rows, for interpretability runs); ridge")
    sigma_sq: float | None = opt(None, "noise variance for the Johnstone threshold (default: estimated as the "
                                       "reference does)")
    alpha: float = opt(1.0, "ridge penalty (regressor = ridge)")
    min_variance_explained: float = opt(0.95, "PCR fallback when no PC clears the threshold: keep PCs up to "
                                              "this explained variance")
    mode: Literal["chain", "direct"] = opt("chain", "chain: each step starts from the previous rd embedding; "
                                                    "direct: every step from the smallest model")
    chunk_rows: int = opt(65536, "rows per streamed block")
    max_fit_residues: int = opt(1_000_000, "at most this many fit-set residues (about 3,000 proteins; the paper "
                                           "fitted on ~1,000), drawn uniformly with the run seed (0 = all): the fit "
                                           "holds them in memory as float32 x the summed widths (3.2 GB for "
                                           "8M + 35M), so this bounds its memory")

    def validate(self) -> None:
        super().validate()
        if self.sigma_sq is not None and not 0 < self.sigma_sq < math.inf:
            raise ConfigError(f"distill.sigma_sq must be a finite number > 0 when given, got {self.sigma_sq}")
        if not 0 < self.alpha < math.inf:
            raise ConfigError(f"distill.alpha must be a finite number > 0, got {self.alpha}")
        if not 0 < self.min_variance_explained <= 1:
            raise ConfigError("distill.min_variance_explained must be in (0, 1]")
        if self.max_fit_residues < 0:
            raise ConfigError(f"distill.max_fit_residues must be >= 0 (0 = all), got {self.max_fit_residues}")
        if self.chunk_rows < 1:
            raise ConfigError("distill.chunk_rows must be >= 1")

    def chain(self, names: list[str], device: str = "cpu"):
        """The ReverseDistillationChain these options describe (parameters matched by name)."""
        from rd_interp.distill.chain import ReverseDistillationChain

        params = {k: getattr(self, k) for k in ReverseDistillationChain._get_param_names() if hasattr(self, k)}
        return ReverseDistillationChain(**{**params, "names": names, "device": device})
