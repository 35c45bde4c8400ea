"""GO enrichment of SAE latents: goatools-exact statistics, coverage, specificity, null control."""

from rd_interp.enrich.activations import StudySetConfig, StudySetInfo, study_sets
from rd_interp.enrich.compare import compare_seeds, compare_specificity, rank_test, seed_stats
from rd_interp.enrich.config import EnrichConfig
from rd_interp.enrich.coverage import coverage_summary
from rd_interp.enrich.engine import GOEnricher, enrich_latents
from rd_interp.enrich.fisher import bh, fisher_pvalues
from rd_interp.enrich.null import NullControl, null_control
from rd_interp.enrich.result import EnrichmentResult, load_table
from rd_interp.enrich.termmatrix import TermMatrix

__all__ = [
    "EnrichConfig",
    "EnrichmentResult",
    "GOEnricher",
    "NullControl",
    "StudySetConfig",
    "StudySetInfo",
    "TermMatrix",
    "bh",
    "compare_seeds",
    "compare_specificity",
    "coverage_summary",
    "enrich_latents",
    "fisher_pvalues",
    "load_table",
    "null_control",
    "rank_test",
    "seed_stats",
    "study_sets",
]
