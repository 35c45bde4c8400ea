"""The run configuration: one dataclass tree shared by `rd-interp run` and every stage subcommand.

It round-trips through TOML/JSON (rd_interp.io.serialize) and is validated before any work starts, so a
typo in the last section fails in a second, not after an hour of embedding.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from rd_interp.io.serialize import ConfigError, dumps_toml, from_dict, load_config, to_dict

SHIPPED = "shipped"  # sentinel for "use the file shipped in data/"


@dataclass
class DataConfig:
    """Which proteins, annotations and ontology the analysis runs on."""

    fasta: str = SHIPPED
    annotations: str = SHIPPED
    annotation_format: Literal["auto", "tsv", "gaf", "uniprot"] = "auto"
    ontology: str = SHIPPED
    # Deterministic subset (seeded hash of the id) so small runs stay representative; 0 = all.
    max_proteins: int = 0
    min_length: int = 1
    max_length: int = 100_000

    def validate(self) -> None:
        if self.max_proteins < 0:
            raise ConfigError(f"data.max_proteins must be >= 0, got {self.max_proteins}")
        if not 1 <= self.min_length <= self.max_length:
            raise ConfigError(f"data.min_length/max_length invalid: {self.min_length}..{self.max_length}")


@dataclass
class ModelsConfig:
    """The model family, smallest first; the chain runs along it and the last one is the 'large' space."""

    family: list[str] = field(default_factory=lambda: ["mini-S", "mini-L"])
    weights_dir: str = ""
    layer: int | None = None  # None = final layer
    dtype: Literal["float16", "float32"] = "float16"
    max_tokens: int = 16384
    long_mode: Literal["truncate", "window"] = "truncate"

    def validate(self) -> None:
        if len(self.family) < 2:
            raise ConfigError("models.family needs at least two models (small -> large)")
        if len(set(self.family)) != len(self.family):
            raise ConfigError(f"models.family has repeated models: {self.family}")
        if self.max_tokens < 1024:
            raise ConfigError("models.max_tokens must be >= 1024")


@dataclass
class DistillConfig:
    regressor: Literal["pcr", "linear", "ridge"] = "pcr"
    sigma_sq: float | None = None
    ridge_alpha: float = 1.0
    # The paper fits on ~1,000 sequences; the rest of the analysis set is transformed only.
    train_proteins: int = 1000

    def validate(self) -> None:
        if self.train_proteins < 10:
            raise ConfigError("distill.train_proteins must be >= 10")
        if self.sigma_sq is not None and not self.sigma_sq > 0:
            raise ConfigError("distill.sigma_sq must be > 0 when given")


SPACES = ("large", "rd", "rd.base", "rd.residual", "small")


@dataclass
class SAEStageConfig:
    architecture: Literal["topk", "batchtopk", "relu"] = "topk"
    expansion: int = 8  # n_latents = expansion * d_in of the space
    k: int = 32
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    batch_size: int = 2048
    n_steps: int = 2000
    lr: float | None = None
    heldout_fraction: float = 0.1
    # Spaces to train on: the large model, its rd space, and the rd blocks (base prefix / residual block).
    spaces: list[str] = field(default_factory=lambda: ["large", "rd", "rd.base", "rd.residual"])

    def validate(self) -> None:
        bad = [s for s in self.spaces if s not in SPACES]
        if bad:
            raise ConfigError(f"sae.spaces: unknown {bad}; allowed {list(SPACES)}")
        if not self.seeds:
            raise ConfigError("sae.seeds must list at least one seed")
        if self.expansion < 1 or self.k < 1 or self.n_steps < 1 or self.batch_size < 1:
            raise ConfigError("sae.expansion, k, n_steps and batch_size must be >= 1")
        if not 0 < self.heldout_fraction < 0.5:
            raise ConfigError("sae.heldout_fraction must be in (0, 0.5)")


@dataclass
class EnrichStageConfig:
    pooling: Literal["max", "mean"] = "max"
    study_mode: Literal["top_n", "fraction_of_max"] = "top_n"
    top_n: int = 50
    tau: float = 0.5
    min_proteins: int = 5
    alpha: float = 0.05
    min_study_count: int = 3
    general_level: int = 2
    alternative: Literal["greater", "two-sided"] = "greater"
    correction: Literal["per_latent", "global"] = "per_latent"
    null_control: bool = True
    bootstrap: int = 1000
    # Attribution strata of rd-space latents by decoder share on the base prefix.
    base_share_hi: float = 0.8
    base_share_lo: float = 0.2

    def validate(self) -> None:
        if not 0 < self.alpha < 1:
            raise ConfigError("enrich.alpha must be in (0, 1)")
        if self.top_n < 2 or self.min_proteins < 1 or self.min_study_count < 1:
            raise ConfigError("enrich.top_n >= 2, min_proteins >= 1, min_study_count >= 1 required")
        if not 0 < self.tau <= 1:
            raise ConfigError("enrich.tau must be in (0, 1]")
        if not 0 <= self.base_share_lo < self.base_share_hi <= 1:
            raise ConfigError("enrich needs 0 <= base_share_lo < base_share_hi <= 1")


@dataclass
class ReportConfig:
    title: str = "rd_interp interpretability report"
    top_latents: int = 12
    figures: bool = True


@dataclass
class RunConfig:
    out_dir: str = "rd_interp_run"
    seed: int = 0
    device: Literal["auto", "cpu", "cuda"] = "auto"
    data: DataConfig = field(default_factory=DataConfig)
    models: ModelsConfig = field(default_factory=ModelsConfig)
    distill: DistillConfig = field(default_factory=DistillConfig)
    sae: SAEStageConfig = field(default_factory=SAEStageConfig)
    enrich: EnrichStageConfig = field(default_factory=EnrichStageConfig)
    report: ReportConfig = field(default_factory=ReportConfig)

    def validate(self) -> None:
        for f in dataclasses.fields(self):
            sub = getattr(self, f.name)
            if hasattr(sub, "validate"):
                sub.validate()

    # -- round trips ---------------------------------------------------------------------------------
    def to_dict(self) -> dict:
        return to_dict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "RunConfig":
        return from_dict(cls, data)

    @classmethod
    def load(cls, path: str | Path) -> "RunConfig":
        return load_config(cls, path)

    def to_toml(self) -> str:
        return dumps_toml(self.to_dict())


def demo_config(out_dir: str = "rd_interp_demo") -> RunConfig:
    """The shipped offline default: mini-S -> mini-L (64 -> 96 dims, like 8M -> 35M: 320 -> 480) on a subset of the shipped Swiss-Prot proteins.

    Sized to finish in well under 15 minutes on 2 CPU cores (see README for measured times).
    """
    cfg = RunConfig(out_dir=out_dir)
    cfg.data.max_proteins = 3000
    cfg.sae.n_steps = 300
    cfg.validate()
    return cfg
