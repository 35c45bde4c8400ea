"""Reverse distillation: closed-form decomposition of a large model's embedding into a small one's plus an orthogonal residual."""

from rd_interp.distill.chain import ReverseDistillationChain
from rd_interp.distill.naive import NaiveConcatPCA
from rd_interp.distill.reference import ReferenceScaler, load_reference_npz
from rd_interp.distill.reverse import ReverseDistiller
from rd_interp.distill.stores import aligned_chunks, check_aligned, paired_chunks, transform_stores

__all__ = [
    "NaiveConcatPCA",
    "ReferenceScaler",
    "ReverseDistillationChain",
    "ReverseDistiller",
    "aligned_chunks",
    "check_aligned",
    "load_reference_npz",
    "paired_chunks",
    "transform_stores",
]
