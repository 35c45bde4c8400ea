"""Linear probes: how much protein function do pooled embeddings encode?

One implementation, shared by `analyses/probe_family.py` and the pipeline's probe stage: per GO term,
a logistic-regression probe on standardised pooled embeddings, trained on a seeded protein-level split
and scored by AUROC on the held-out proteins; macro AUROC over terms with a bootstrap interval over
the held-out proteins. Beside it, a baseline any embedding must beat: amino-acid composition plus log
length. Layer: imports rd_interp.io only.
"""

from rd_interp.probe.auroc import auroc, bootstrap_macro_auroc, bootstrap_weights, weighted_auroc
from rd_interp.probe.features import composition_features, label_matrix, top_terms
from rd_interp.probe.linear import LinearProbe, ProbeResult, evaluate_probe, split_proteins

__all__ = [
    "LinearProbe", "ProbeResult", "auroc", "bootstrap_macro_auroc", "bootstrap_weights", "composition_features",
    "evaluate_probe", "label_matrix", "split_proteins", "top_terms", "weighted_auroc",
]
