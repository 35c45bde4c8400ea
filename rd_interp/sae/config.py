"""The SAE stage options: one SAE's training (SAETrainConfig), a run's SAEs (SAEStageConfig), encoding.

SAETrainConfig is the architecture (SAEConfig) plus the optimisation (TrainConfig) plus the held-out split,
composed by inheritance so every option is defined once and `[sae]` stays one flat table in a run config.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from rd_interp.io.options import opt, subset
from rd_interp.io.serialize import ConfigError
from rd_interp.sae.model import SAEConfig
from rd_interp.sae.train import TrainConfig

#: Spaces a run can train SAEs on: the large model, its rd space, the rd blocks, the small model, and the
#: controls that go through the same SAE -> GO path: an untrained SAE on the large space, a random subspace of
#: the large embedding as wide as the residual block, the naive PCA of the concatenated embeddings.
SPACES = ("large", "rd", "rd.base", "rd.residual", "small", "control.untrained", "control.random", "control.naive")


@dataclass
class SAETrainConfig(TrainConfig, SAEConfig):
    """Everything one SAE's training depends on (besides its data and seed)."""

    heldout_fraction: float = opt(0.1, "fraction of proteins held out for evaluation (split by protein)")
    split_seed: int = opt(1, "seed of the held-out split (one split shared by every SAE on the same proteins)")
    max_train_residues: int = opt(
        50_000_000, "at most this many training residues, drawn uniformly over the training proteins' residues with "
                    "split_seed (the same draw for every SAE of a store); 0 = all. A fixed number, not sized from "
                    "this machine's memory, so that a run gives the same SAEs everywhere; the data stay on disk")
    block_scaling: Literal["none", "per_block"] = opt(
        "per_block", "SAEs on a whole rd space: scale the base and the residual block to equal mean squared norm "
                     "before the SAE (per_block), so the residual block is not drowned, or one global scale (none)")

    def validate(self) -> None:
        SAEConfig.validate(self)
        TrainConfig.validate(self)
        if self.max_train_residues < 0:
            raise ConfigError(f"sae.max_train_residues must be >= 0 (0 = all), got {self.max_train_residues}")
        if not 0 < self.heldout_fraction < 0.5:
            raise ConfigError(f"sae.heldout_fraction must be in (0, 0.5), got {self.heldout_fraction}")
        if self.split_seed < 0:
            raise ConfigError(f"sae.split_seed must be >= 0, got {self.split_seed}")
        # TrainConfig leaves these unchecked; a negative or non-finite one fails (or silently misleads) mid-training.
        for name, lo, strict in (("warmup_steps", 0, False), ("dead_window", 1, False), ("threshold_batches", 1, False),
                                 ("adam_eps", 0, True), ("aux_coeff", 0, False), ("grad_clip", 0, False)):
            v = getattr(self, name)
            if v is not None and not (math.isfinite(v) and (v > lo if strict else v >= lo)):
                raise ConfigError(f"sae.{name} must be {'>' if strict else '>='} {lo}, got {v}")

    def sae_config(self) -> SAEConfig:
        """The architecture part (sizes still relative; train_sae resolves them against the data)."""
        return subset(SAEConfig, self)

    def train_config(self) -> TrainConfig:
        return subset(TrainConfig, self)


@dataclass
class SAEStageConfig(SAETrainConfig):
    """The SAEs of a run: one per (space, seed)."""

    seeds: list[int] = opt(factory=lambda: [0, 1, 2], fanout=True, help="SAE seeds (one SAE per space and seed)")
    spaces: list[str] = opt(factory=lambda: ["large", "rd", "rd.base", "rd.residual", "control.untrained",
                                             "control.random", "control.naive"],
                            fanout=True,
                            help=f"spaces to train SAEs on, of {list(SPACES)}")

    def validate(self) -> None:
        super().validate()
        if not self.spaces:
            raise ConfigError(f"sae.spaces must list at least one space of {list(SPACES)}")
        bad = [s for s in self.spaces if s not in SPACES]
        if bad:
            raise ConfigError(f"sae.spaces: unknown {bad}; allowed {list(SPACES)}")
        if len(set(self.spaces)) != len(self.spaces):
            raise ConfigError(f"sae.spaces lists a space twice: {self.spaces}")
        if not self.seeds:
            raise ConfigError("sae.seeds must list at least one seed")
        if min(self.seeds) < 0:
            raise ConfigError(f"sae.seeds must be >= 0, got {self.seeds}")
        # A repeated seed is the same SAE twice: it would count as two samples and fake significance.
        if len(set(self.seeds)) != len(self.seeds):
            raise ConfigError(f"sae.seeds lists a seed twice: {self.seeds} (each seed must be distinct)")
        if self.d_in != 0:
            raise ConfigError("sae.d_in: set per space from its width; leave it out of a run config")


@dataclass
class EncodeConfig:
    """How SAE activations are pooled per protein (the scores GO enrichment reads)."""

    pooling: Literal["max", "mean"] = opt("max", "per-protein pooling of residue activations")
    batch_rows: int = opt(32768, "residues encoded per block (whole proteins)")
    chunk_rows: int = opt(4096, "residues per encoder call inside a block")
    strip_proteins: int = opt(10, "top proteins per latent whose per-residue activations are kept for the atlas's "
                                  "strips (0: none; the atlas then encodes its top proteins again)")

    def validate(self) -> None:
        if self.pooling not in ("max", "mean"):
            raise ConfigError(f"encode.pooling must be 'max' or 'mean', got {self.pooling!r}")
        if self.batch_rows < 1 or self.chunk_rows < 1:
            raise ConfigError("encode.batch_rows and encode.chunk_rows must be >= 1")
        if self.strip_proteins < 0:
            raise ConfigError(f"encode.strip_proteins must be >= 0, got {self.strip_proteins}")
