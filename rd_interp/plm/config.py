"""Embedding options: EmbedConfig (one model's extraction) and ModelsConfig (the family a run embeds)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from rd_interp.io.options import opt
from rd_interp.io.serialize import ConfigError


@dataclass
class EmbedConfig:
    """How one model's per-residue embeddings are extracted and stored (the model itself is an argument)."""

    layer: int | None = opt(None, "layer to extract (default: the final layer, after ESM-2's final layer norm)")
    dtype: Literal["float16", "float32"] = opt("float16", "storage dtype of the embedding store")
    max_tokens: int | None = opt(16384, "padded tokens per batch (None: 16384 on CPU, 32768 on CUDA)")
    long_mode: Literal["truncate", "window"] = opt(
        "truncate", "sequences longer than max_residues: keep the first residues, or sliding windows")
    max_residues: int = opt(1022, "residues per forward pass (ESM-2 context minus BOS/EOS)")
    window_overlap: int = opt(256, "residues shared by consecutive windows (window mode)")
    weights_dir: str = opt("", "folder of ESM-2 .pt files, checked before the torch hub cache ('' = none)",
                           key=False)
    autocast: Literal["auto", "none", "bf16", "fp16"] = opt(
        "auto", "mixed precision: auto = bf16 on CUDA where supported, fp32 on CPU; bf16 = bf16 on CPU "
                "too (several times faster on CPUs with AMX / AVX-512 BF16, deviates from fp32: README); "
                "none = fp32")
    shard_rows: int = opt(1 << 20, "residues per store shard file")
    fast: bool = opt(True, "fused-attention forward (equal to fair-esm's within float rounding, faster)")

    def validate(self) -> None:
        if self.long_mode not in ("truncate", "window"):
            raise ConfigError(f"long_mode must be 'truncate' or 'window', got {self.long_mode!r}")
        if self.dtype not in ("float16", "float32"):
            raise ConfigError(f"dtype must be 'float16' or 'float32', got {self.dtype!r}")
        if self.max_residues < 2:
            raise ConfigError("max_residues must be >= 2")
        if self.long_mode == "window" and not 0 <= self.window_overlap < self.max_residues:
            raise ConfigError(f"window_overlap must be in [0, max_residues={self.max_residues})")
        if self.autocast not in ("auto", "none", "bf16", "fp16"):
            raise ConfigError(f"autocast must be auto|none|bf16|fp16, got {self.autocast!r}")
        if self.max_tokens is not None and self.max_tokens < self.max_residues + 2:
            raise ConfigError(f"max_tokens must be >= max_residues + 2 = {self.max_residues + 2}")
        if self.shard_rows < 1:
            raise ConfigError("shard_rows must be >= 1")
        if self.layer is not None and self.layer < 0:
            raise ConfigError(f"layer must be >= 0, got {self.layer}")


@dataclass
class ModelsConfig(EmbedConfig):
    """The model family of a run, smallest first: the chain runs along it and the last is the 'large' space."""

    family: list[str] = opt(factory=lambda: ["mini-S", "mini-L"], fanout=True, cli=False,
                            help="models, smallest first: ESM-2 sizes (8M ... 15B), fair-esm names, shipped "
                                 "members (mini-S, mini-M, mini-L) or .pt checkpoint paths")

    def validate(self) -> None:
        super().validate()
        if len(self.family) < 2:
            raise ConfigError("models.family needs at least two models (small -> large)")
        if len(set(self.family)) != len(self.family):
            raise ConfigError(f"models.family has repeated models: {self.family}")
