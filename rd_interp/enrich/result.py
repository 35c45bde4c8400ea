"""EnrichmentResult: the tidy table, per-latent bookkeeping, summary, and a loadable directory form."""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from rd_interp.enrich.coverage import coverage_summary
from rd_interp.io.atomic import atomic_path, read_json, write_json, write_text
from rd_interp.io.provenance import versions

FORMAT_VERSION = 1
_TABLE_DTYPES = {
    "latent": "int64", "go_id": "str", "name": "str", "namespace": "str", "study_count": "int64",
    "study_n": "int64", "pop_count": "int64", "pop_n": "int64", "p": "float64", "p_adj": "float64",
    "fold": "float64", "level": "int64", "depth": "int64", "ic": "float64", "p_adj_global": "float64",
    "term_namespace": "str", "captured": "bool", "most_specific": "bool",
}


@dataclass
class EnrichmentResult:
    """GO enrichment of a set of latents.

    table: one row per (latent, namespace run, term) kept (see meta["table_rows"]); ``captured`` marks
    p_adj (or p_adj_global when the run used global BH) < alpha with study_count >= min_study_count.
    latents: one row per latent (study sizes per namespace, skipped flag).
    """

    table: pd.DataFrame
    latents: pd.DataFrame
    config: dict
    meta: dict = field(default_factory=dict)

    # ------------------------------------------------------------------ views
    def captured(self) -> pd.DataFrame:
        return self.table[self.table["captured"]].reset_index(drop=True)

    def best_terms(self) -> pd.DataFrame:
        """Per latent capturing >= 1 term: its most significant and its most specific (highest IC) term."""
        cap = self.captured()
        cols = ["latent", "n_terms", "best_go_id", "best_name", "best_namespace", "best_p_adj",
                "specific_go_id", "specific_name", "specific_namespace", "specific_ic", "specific_depth",
                "specific_p_adj"]
        if cap.empty:
            return pd.DataFrame({c: pd.Series(dtype=object) for c in cols})
        padj = "p_adj_global" if self.meta.get("correction") == "global" else "p_adj"
        sig = cap.sort_values(["latent", padj, "p", "go_id"], kind="stable").groupby("latent", sort=True).head(1)
        spec = cap.assign(_neg_ic=-cap["ic"], _neg_depth=-cap["depth"]).sort_values(
            ["latent", "_neg_ic", "_neg_depth", padj, "go_id"], kind="stable").groupby("latent", sort=True).head(1)
        n_terms = cap.groupby("latent")["go_id"].nunique()
        sig = sig.set_index("latent")
        spec = spec.set_index("latent")
        out = pd.DataFrame({
            "latent": sig.index.to_numpy(),
            "n_terms": n_terms.loc[sig.index].to_numpy(),
            "best_go_id": sig["go_id"].to_numpy(), "best_name": sig["name"].to_numpy(),
            "best_namespace": sig["namespace"].to_numpy(), "best_p_adj": sig[padj].to_numpy(),
            "specific_go_id": spec.loc[sig.index, "go_id"].to_numpy(),
            "specific_name": spec.loc[sig.index, "name"].to_numpy(),
            "specific_namespace": spec.loc[sig.index, "namespace"].to_numpy(),
            "specific_ic": spec.loc[sig.index, "ic"].to_numpy(),
            "specific_depth": spec.loc[sig.index, "depth"].to_numpy(),
            "specific_p_adj": spec.loc[sig.index, padj].to_numpy(),
        })
        return out.reset_index(drop=True)

    def summary(self, decoder_share=None, base_fraction: float | None = None) -> dict:
        """Coverage and specificity (JSON-able). decoder_share: per-latent share of decoder norm on the base
        block, base_fraction: that block's share of the input dimensions (for the attribution strata)."""
        return coverage_summary(self, decoder_share=decoder_share, base_fraction=base_fraction)

    def for_latent(self, latent: int) -> pd.DataFrame:
        return self.table[self.table["latent"] == latent].reset_index(drop=True)

    # ------------------------------------------------------------------ persistence
    def save(self, out_dir: str | Path, *, decoder_share=None, base_fraction: float | None = None) -> dict[str, Path]:
        """Write table.tsv (+ table.parquet when pyarrow is importable), latents.tsv, best_terms.tsv,
        summary.json and result.json (config + meta), each atomically. Returns the written paths."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        paths = {
            "table": out / "table.tsv",
            "latents": out / "latents.tsv",
            "best_terms": out / "best_terms.tsv",
            "summary": out / "summary.json",
            "result": out / "result.json",
        }
        write_text(paths["table"], _to_tsv(self.table))
        write_text(paths["latents"], _to_tsv(self.latents))
        write_text(paths["best_terms"], _to_tsv(self.best_terms()))
        write_json(paths["summary"], self.summary(decoder_share=decoder_share, base_fraction=base_fraction))
        try:
            import pyarrow  # noqa: F401
        except ImportError:
            pass
        else:  # pragma: no cover - optional
            paths["parquet"] = out / "table.parquet"
            with atomic_path(paths["parquet"]) as tmp:
                self.table.to_parquet(tmp, index=False)
        write_json(paths["result"], {
            "format": "rd_interp.enrich.EnrichmentResult", "format_version": FORMAT_VERSION,
            "config": self.config, "meta": self.meta, "versions": versions(),
            "files": {k: v.name for k, v in paths.items() if k != "result"},
        })
        return paths

    @classmethod
    def load(cls, out_dir: str | Path) -> EnrichmentResult:
        out = Path(out_dir)
        meta_path = out / "result.json"
        if not meta_path.is_file():
            raise FileNotFoundError(f"{meta_path}: not an enrichment result directory (result.json missing)")
        info = read_json(meta_path)
        if info.get("format") != "rd_interp.enrich.EnrichmentResult":
            raise ValueError(f"{meta_path}: not an EnrichmentResult (format={info.get('format')!r})")
        table = load_table(out / "table.tsv")
        latents = pd.read_csv(out / "latents.tsv", sep="\t")
        return cls(table=table, latents=latents, config=info["config"], meta=info["meta"])


def load_table(path: str | Path) -> pd.DataFrame:
    """Read a table.tsv (or best_terms.tsv) back with exact floats and the intended dtypes."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: file not found")
    kw = {} if int(pd.__version__.split(".")[0]) >= 3 else {"float_precision": "round_trip"}
    df = pd.read_csv(path, sep="\t", keep_default_na=False, na_values=[""], **kw)
    for col, dt in _TABLE_DTYPES.items():
        if col in df.columns:
            if dt == "str":
                continue
            elif dt == "bool":
                df[col] = df[col].astype(str).str.lower().map({"true": True, "false": False}).astype(bool)
            else:
                df[col] = df[col].astype(dt)
    return df


def _to_tsv(df: pd.DataFrame) -> str:
    buf = io.StringIO()
    # float repr round-trips exactly (pandas writes repr() of float64 when float_format is None)
    df.to_csv(buf, sep="\t", index=False, lineterminator="\n")
    return buf.getvalue()
