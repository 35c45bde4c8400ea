"""The run configuration: the composition of each stage's own config dataclass (no option copied).

| table        | dataclass                              | stage              |
| ------------ | -------------------------------------- | ------------------ |
| [data]       | rd_interp.data.config.DataConfig       | data               |
| [models]     | rd_interp.plm.config.ModelsConfig      | embed (per model)  |
| [distill]    | rd_interp.distill.config.DistillConfig | distill            |
| [sae]        | rd_interp.sae.config.SAEStageConfig    | sae (space x seed) |
| [encode]     | rd_interp.sae.config.EncodeConfig      | encode             |
| [probe]      | rd_interp.probe.config.ProbeConfig     | probe              |
| [enrich]     | rd_interp.enrich.config.EnrichConfig   | enrich             |
| [report]     | rd_interp.report.config.ReportConfig   | report             |

It round-trips through TOML/JSON (rd_interp.io.serialize) and is validated before any work starts, so a
typo in the last section fails in a second, not after an hour of embedding. Config files written before
a key was renamed are migrated on load, with a warning naming the old and the new key.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from rd_interp.data.config import SHIPPED, DataConfig
from rd_interp.distill.config import DistillConfig
from rd_interp.enrich.config import EnrichConfig
from rd_interp.io import datasets
from rd_interp.io.options import opt
from rd_interp.io.serialize import ConfigError, dumps_dataclass_toml, from_dict, read_config_file, to_dict
from rd_interp.plm.config import ModelsConfig
from rd_interp.plm.esm import known_width
from rd_interp.probe.config import ProbeConfig
from rd_interp.report.config import ReportConfig
from rd_interp.sae.config import SPACES, EncodeConfig, SAEStageConfig

__all__ = ["SHIPPED", "SPACES", "RunConfig", "demo_config", "migrate"]

log = logging.getLogger(__name__)

#: Keys renamed since configs were first written: old dotted key -> new dotted key.
RENAMED = {
    "distill.ridge_alpha": "distill.alpha",
    "enrich.pooling": "encode.pooling",
    "enrich.study_mode": "enrich.mode",
}

#: Keys that no longer exist: old dotted key -> what replaced it (the value is dropped with a warning).
REMOVED = {
    "enrich.bootstrap": "seed intervals are t intervals now (no bootstrap over 3 values)",
    "report.bootstrap": "seed intervals are t intervals now (no bootstrap over 3 values)",
    "enrich.base_share_hi": "enrich.stratum_margin (strata relative to the base block's dimension share)",
    "enrich.base_share_lo": "enrich.stratum_margin (strata relative to the base block's dimension share)",
    "enrich.null_control": "enrich.n_permutations (false -> 0)",
}


@dataclass
class RunConfig:
    out_dir: str = opt("rd_interp_run", "output folder of the run (stages are cached under OUT/stages/)")
    seed: int = opt(0, "seed of the protein subset and of the distillation fit subset")
    device: Literal["auto", "cpu", "cuda"] = opt("auto", "torch device for embedding, distillation and SAEs")
    workers: int = opt(0, "processes for the independent work: the probe stage and each SAE -> encode -> enrich unit "
                          "(0: automatic, one per CPU thread up to 4; 1 on a GPU or under torchrun); results do not "
                          "depend on it", key=False)
    data: DataConfig = opt(factory=DataConfig)
    models: ModelsConfig = opt(factory=ModelsConfig)
    distill: DistillConfig = opt(factory=DistillConfig)
    # Size-matched by default: every space's SAE gets the same n_latents and the same sparsity ratio k / d_in.
    sae: SAEStageConfig = opt(factory=lambda: SAEStageConfig(k_ratio=1 / 15))
    encode: EncodeConfig = opt(factory=EncodeConfig)
    probe: ProbeConfig = opt(factory=ProbeConfig)
    enrich: EnrichConfig = opt(factory=EnrichConfig)
    report: ReportConfig = opt(factory=ReportConfig)

    def validate(self) -> None:
        for f in dataclasses.fields(self):
            sub = getattr(self, f.name)
            if hasattr(sub, "validate"):
                sub.validate()
        if self.seed < 0:
            raise ConfigError(f"seed must be >= 0, got {self.seed}")
        if self.workers < 0:
            raise ConfigError(f"workers must be >= 0 (0: automatic), got {self.workers}")
        self._check_sizes()

    def _check_sizes(self) -> None:
        """Limits across stages that are knowable before any work: protein count, SAE width vs k."""
        n = self.data.max_proteins or (datasets.manifest()["eval"]["proteins"] if self.data.fasta == SHIPPED else 0)
        if n and self.enrich.min_proteins > n:
            raise ConfigError(f"enrich.min_proteins = {self.enrich.min_proteins} but the run has at most {n} proteins "
                              f"({'data.max_proteins' if self.data.max_proteins else 'the shipped set'}): every latent "
                              "would be skipped")
        fam = self.models.family
        widths = {"large": known_width(fam[-1]), "small": known_width(fam[0]), "control.untrained": known_width(fam[-1]),
                  "rd.base": known_width(fam[0]) if len(fam) == 2 else None}  # other spaces' widths depend on data
        s = self.sae
        for space in s.spaces:
            d = widths.get(space)
            if d is None or s.architecture == "relu":
                continue
            n_lat = s.n_latents or s.expansion * d
            k = max(1, round(s.k_ratio * d)) if s.k_ratio > 0 else s.k
            if k > n_lat:
                raise ConfigError(f"sae.k = {k} active latents but the {space} space (width {d}) gets only "
                                  f"n_latents = {n_lat}; lower sae.k or raise sae.expansion / sae.n_latents")

    # -- round trips ---------------------------------------------------------------------------------
    def to_dict(self) -> dict:
        return to_dict(self)

    @classmethod
    def from_dict(cls, data: dict, where: str = "") -> RunConfig:
        migrated, notes = migrate(data)
        infos: list[str] = []  # facts about how the file is read (not problems): INFO, silent under -q
        sae = migrated.get("sae")
        if isinstance(sae, dict) and "k" in sae and "k_ratio" not in sae:
            # An explicit k wins over the run's default sparsity ratio (else `k = 64` would be silently ignored).
            sae["k_ratio"] = 0.0
            infos.append(f"sae.k = {sae['k']} given without sae.k_ratio: every space uses k = {sae['k']} "
                         "(sae.k_ratio = 0); set sae.k_ratio for the same k / d_in in every space")
        if isinstance(sae, dict) and "expansion" in sae and "n_latents" not in sae:
            sae["n_latents"] = 0  # likewise an explicit expansion wins over the run's fixed dictionary size
            infos.append(f"sae.expansion = {sae['expansion']} given without sae.n_latents: n_latents = expansion x "
                         "d_in in every space (sae.n_latents = 0), so SAEs are not size-matched across spaces")
        for note in notes:
            log.warning("%s%s", f"{where}: " if where else "", note)
        for note in infos:
            log.info("%s%s", f"{where}: " if where else "", note)
        return from_dict(cls, migrated)

    @classmethod
    def load(cls, path: str | Path) -> RunConfig:
        data = read_config_file(path)
        try:
            return cls.from_dict(data, where=str(path))
        except ConfigError as exc:
            raise ConfigError(f"{path}: {exc}") from None

    def to_toml(self) -> str:
        """TOML with every option's help text as a comment (what `rd-interp config` prints)."""
        return dumps_dataclass_toml(self)


def migrate(data: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """Move renamed keys to their new place; returns the new dict and one note per move."""
    out = {k: (dict(v) if isinstance(v, dict) else v) for k, v in data.items()}
    notes = []
    for old, new in RENAMED.items():
        (t_old, k_old), (t_new, k_new) = old.split("."), new.split(".")
        table = out.get(t_old)
        if not isinstance(table, dict) or k_old not in table:
            continue
        target = out.setdefault(t_new, {})
        if not isinstance(target, dict):
            raise ConfigError(f"{t_new}: expected a table")
        if k_new in target:
            raise ConfigError(f"{old} was renamed {new}; the file sets both, remove {old}")
        target[k_new] = table.pop(k_old)
        notes.append(f"config key {old} was renamed {new} (migrated; `rd-interp config --upgrade FILE` "
                     "rewrites the file)")
    for old, why in REMOVED.items():
        t_old, k_old = old.split(".")
        table = out.get(t_old)
        if not isinstance(table, dict) or k_old not in table:
            continue
        value = table.pop(k_old)
        if old == "enrich.null_control" and value is False:
            table.setdefault("n_permutations", 0)
        notes.append(f"config key {old} was removed (replaced by {why}); ignored")
    return out, notes


def demo_config(out_dir: str = "rd_interp_demo") -> RunConfig:
    """The shipped offline default: mini-S -> mini-L (4x96 -> 8x160: depth and width both grow, as from ESM-2
    8M to 35M) on a subset of the shipped Swiss-Prot proteins. Sized to finish in minutes on 2 CPU cores
    (README: measured times)."""
    cfg = RunConfig(out_dir=out_dir)
    cfg.data.max_proteins = 1000  # with the settings below: under 6 min on 2 idle cores (README)
    cfg.distill.train_proteins = 600  # the fit set: disjoint shipped proteins (the paper used ~1,000)
    cfg.sae.n_latents = 512  # the same for every space: 3.2x the large width, 8x the residual block's
    cfg.sae.k_ratio = 0.125  # k = 20 / 12 / 8 on the 160 / 96 / 64-dim spaces and blocks
    cfg.sae.n_steps = 160  # 327,680 vectors: about one pass over the ~330k analysed residues
    cfg.sae.batch_size = 2048
    cfg.probe.n_terms = 40  # per namespace
    cfg.probe.n_truncations = 2
    cfg.report.atlas_top_proteins = 3
    cfg.encode.strip_proteins = 3  # the atlas's strips come from the encode pass (no second encoding)
    cfg.validate()
    return cfg
