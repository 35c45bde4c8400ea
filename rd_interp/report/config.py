"""ReportConfig: what the rendered report shows."""

from __future__ import annotations

from dataclasses import dataclass

from rd_interp.io.options import opt
from rd_interp.io.serialize import ConfigError


@dataclass
class ReportConfig:
    title: str = opt("rd_interp interpretability report", "report title")
    top_latents: int = opt(12, "latents shown per space in the report's latent tables")
    figures: bool = opt(True, "draw the matplotlib figures (False: tables only)")
    confidence: float = opt(0.95, "level of the seed intervals and of the difference intervals")

    def validate(self) -> None:
        if self.top_latents < 0:
            raise ConfigError(f"report.top_latents must be >= 0, got {self.top_latents}")
        if not 0.5 <= self.confidence < 1:
            raise ConfigError(f"report.confidence must be in [0.5, 1), got {self.confidence}")
