"""GO enrichment of SAE latents: goatools-exact statistics, coverage, specificity, null distribution."""

from rd_interp.enrich.activations import StudySetConfig, StudySetInfo, study_sets
from rd_interp.enrich.compare import compare_groups, seed_interval, seed_permutation_p, welch
from rd_interp.enrich.config import EnrichConfig
from rd_interp.enrich.coverage import coverage_summary
from rd_interp.enrich.engine import GOEnricher, enrich_latents
from rd_interp.enrich.fisher import bh, fisher_pvalues
from rd_interp.enrich.null import NullDistribution, label_permutations, null_distribution
from rd_interp.enrich.result import EnrichmentResult, load_table
from rd_interp.enrich.termmatrix import TermMatrix

__all__ = [
    "EnrichConfig",
    "EnrichmentResult",
    "GOEnricher",
    "NullDistribution",
    "StudySetConfig",
    "StudySetInfo",
    "TermMatrix",
    "bh",
    "compare_groups",
    "coverage_summary",
    "enrich_latents",
    "fisher_pvalues",
    "label_permutations",
    "load_table",
    "null_distribution",
    "seed_interval",
    "seed_permutation_p",
    "study_sets",
    "welch",
]
