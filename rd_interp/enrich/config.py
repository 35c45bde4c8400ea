"""EnrichConfig: the statistical choices of a GO enrichment run, recorded with every result."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from rd_interp.enrich.fisher import ALTERNATIVES
from rd_interp.enrich.termmatrix import BACKGROUNDS, NAMESPACES


@dataclass
class EnrichConfig:
    alpha: float = 0.05                  # corrected-p threshold for "captured"
    min_study_count: int = 3             # a latent captures a term only with >= this many study proteins on it
    general_level: int = 2               # terms with level <= this count as "general"
    alternative: str = "greater"         # Fisher alternative; "greater" = over-representation (goatools option)
    global_bh: bool = False              # also BH across all latents x terms; "captured" then uses it (stricter)
    relationships: tuple[str, ...] = ("part_of",)   # propagated besides is_a, as goatools relationships=
    background: str = "namespace"        # population per namespace: "namespace" | "annotated" | "all"
    namespaces: tuple[str, ...] = NAMESPACES
    table: Literal["significant", "hits"] = "significant"  # rows kept: p_adj < alpha, or every study_count >= 1
    information_content: bool = True     # IC column via goatools TermCounts (~5 s once per enricher at full GO)
    base_share_hi: float = 0.8           # decoder share on the base prefix >= this: base-dominated latent
    base_share_lo: float = 0.2           # <= this: residual-dominated latent

    def validate(self) -> None:
        if not 0.0 < self.alpha < 1.0:
            raise ValueError(f"EnrichConfig.alpha must be in (0, 1), got {self.alpha}")
        if self.min_study_count < 1:
            raise ValueError(f"EnrichConfig.min_study_count must be >= 1, got {self.min_study_count}")
        if self.alternative not in ALTERNATIVES:
            raise ValueError(f"EnrichConfig.alternative must be one of {ALTERNATIVES}, got {self.alternative!r}")
        if self.background not in BACKGROUNDS:
            raise ValueError(f"EnrichConfig.background must be one of {BACKGROUNDS}, got {self.background!r}")
        if self.table not in ("significant", "hits"):
            raise ValueError(f"EnrichConfig.table must be 'significant' or 'hits', got {self.table!r}")
        bad = [ns for ns in self.namespaces if ns not in NAMESPACES]
        if bad or not self.namespaces:
            raise ValueError(f"EnrichConfig.namespaces must be a non-empty subset of {NAMESPACES}, got {self.namespaces}")
        if not 0.0 <= self.base_share_lo < self.base_share_hi <= 1.0:
            raise ValueError("EnrichConfig needs 0 <= base_share_lo < base_share_hi <= 1, "
                             f"got {self.base_share_lo}, {self.base_share_hi}")

    @property
    def correction(self) -> str:
        return "global" if self.global_bh else "latent_namespace"
