"""EnrichConfig: the statistical choices of a GO enrichment run, recorded with every result.

It extends StudySetConfig (how a latent's study set is chosen) by inheritance, so `[enrich]` is one flat
table and each option is defined once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from rd_interp.enrich.activations import StudySetConfig
from rd_interp.enrich.fisher import ALTERNATIVES
from rd_interp.enrich.termmatrix import BACKGROUNDS, NAMESPACES
from rd_interp.io.options import opt
from rd_interp.io.serialize import ConfigError

CORRECTIONS = ("per_latent", "global")


@dataclass
class EnrichConfig(StudySetConfig):
    alpha: float = opt(0.05, "corrected-p threshold for 'captured'")
    min_study_count: int = opt(3, "a latent captures a term only with >= this many study proteins on it")
    general_level: int = opt(2, "terms with GO level <= this count as 'general'")
    alternative: Literal["greater", "two-sided", "less"] = opt(
        "greater", "Fisher alternative; 'greater' = over-representation (goatools' default is two-sided)")
    correction: Literal["per_latent", "global"] = opt(
        "global", "BH family for 'captured': global = per namespace across all latents x terms of the SAE (one "
                  "family per SAE, what a comparison between SAEs needs); per_latent = per latent per namespace, "
                  "as goatools' GOEnrichmentStudyNS (the p_adj column always holds this one)")
    relationships: tuple[str, ...] = opt(("part_of",), "relationships propagated besides is_a (goatools)")
    background: Literal["namespace", "annotated", "all"] = opt(
        "namespace", "population per namespace: proteins annotated in it | annotated at all | all proteins")
    namespaces: tuple[str, ...] = opt(NAMESPACES, "GO namespaces tested")
    table: Literal["significant", "hits"] = opt("significant", "rows kept: p_adj < alpha, or every study count >= 1")
    information_content: bool = opt(True, "IC column via goatools TermCounts (~5 s once per analysis set)")
    stratum_margin: float = opt(0.5, "attribution strata of rd-space latents: relative decoder share on the base "
                                     "block >= this is base-dominated, <= -this residual-dominated (0 = the share "
                                     "of an evenly spread direction)")
    n_permutations: int = opt(100, "label permutations of the null distribution (0: no null)")
    null_strata: Literal["length", "none"] = opt(
        "length", "permute protein -> annotation labels within protein-length bins (length) or freely (none)")
    null_length_bins: int = opt(10, "protein-length quantile bins of the length-stratified null")
    null_seed: int = opt(0, "seed of the permutations (the SAE's seed is added, so SAEs get different draws)")

    def validate(self) -> None:
        super().validate()
        if not 0.0 < self.alpha < 1.0:
            raise ConfigError(f"enrich.alpha must be in (0, 1), got {self.alpha}")
        if self.min_study_count < 1:
            raise ConfigError(f"enrich.min_study_count must be >= 1, got {self.min_study_count}")
        if self.general_level < 0:
            raise ConfigError(f"enrich.general_level must be >= 0, got {self.general_level}")
        if self.alternative not in ALTERNATIVES:
            raise ConfigError(f"enrich.alternative must be one of {ALTERNATIVES}, got {self.alternative!r}")
        if self.correction not in CORRECTIONS:
            raise ConfigError(f"enrich.correction must be one of {CORRECTIONS}, got {self.correction!r}")
        if self.background not in BACKGROUNDS:
            raise ConfigError(f"enrich.background must be one of {BACKGROUNDS}, got {self.background!r}")
        if self.table not in ("significant", "hits"):
            raise ConfigError(f"enrich.table must be 'significant' or 'hits', got {self.table!r}")
        bad = [ns for ns in self.namespaces if ns not in NAMESPACES]
        if bad or not self.namespaces:
            raise ConfigError(f"enrich.namespaces must be a non-empty subset of {NAMESPACES}, got {self.namespaces}")
        if not 0.0 < self.stratum_margin < 1.0:
            raise ConfigError(f"enrich.stratum_margin must be in (0, 1), got {self.stratum_margin}")
        if self.n_permutations < 0:
            raise ConfigError(f"enrich.n_permutations must be >= 0, got {self.n_permutations}")
        if self.null_length_bins < 1:
            raise ConfigError(f"enrich.null_length_bins must be >= 1, got {self.null_length_bins}")

    @property
    def global_bh(self) -> bool:
        return self.correction == "global"
