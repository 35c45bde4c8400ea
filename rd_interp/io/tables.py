"""Result tables on disk: TSV always, Parquet beside it when pyarrow is importable.

Why both: TSV is the source of truth (diffable, greppable, floats written with repr() so they read back
bit-exact); Parquet is what dataframe tools (polars, DuckDB, Spark, pandas) read fastest and with types.
pyarrow is an optional dependency (``pip install rd_interp[parquet]``); without it only the TSV is written.

Schema: a `TableSchema` names a table, gives its version and lists its columns with a dtype and a one-line
meaning. `write_table` checks the frame against it (missing columns are an error, extra columns are kept
after the declared ones), casts every declared column to its dtype, and stores the schema name/version
and column descriptions in the Parquet file's key-value metadata (key ``rd_interp.schema``), so a reader
can tell what a column means without this package. Dtype mapping:

    =========  =============  ==================================
    dtype      TSV            Parquet (Arrow type)
    =========  =============  ==================================
    int64      decimal        int64
    float64    repr() float   double (NaN written as null)
    str        text           string (UTF-8)
    bool       True / False   bool
    =========  =============  ==================================

Both files are written atomically and deterministically (same frame -> same bytes).
"""

from __future__ import annotations

import io
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from rd_interp.io.atomic import atomic_path, write_text

__all__ = ["BEST_TERMS", "ENRICH_TABLE", "Column", "TableSchema", "parquet_available", "read_table", "write_table"]

DTYPES = ("int64", "float64", "str", "bool")
_META_KEY = b"rd_interp.schema"


@dataclass(frozen=True)
class Column:
    dtype: str
    doc: str = ""


@dataclass(frozen=True)
class TableSchema:
    name: str
    version: int
    columns: Mapping[str, Column] = field(default_factory=dict)

    def __post_init__(self) -> None:
        bad = {c: col.dtype for c, col in self.columns.items() if col.dtype not in DTYPES}
        if bad:
            raise ValueError(f"schema {self.name}: unknown dtypes {bad}; allowed {DTYPES}")

    def to_json(self) -> dict:
        return {"name": self.name, "version": self.version,
                "columns": {c: {"dtype": col.dtype, "doc": col.doc} for c, col in self.columns.items()}}


def column(dtype: str, doc: str) -> Column:
    return Column(dtype, doc)

def parquet_available() -> bool:
    try:
        import pyarrow
        import pyarrow.parquet  # noqa: F401
    except ImportError:
        return False
    return True


def _conform(df: pd.DataFrame, schema: TableSchema | None, where: str) -> pd.DataFrame:
    if schema is None:
        return df
    missing = [c for c in schema.columns if c not in df.columns]
    if missing:
        raise ValueError(f"{where}: table lacks columns {missing} required by schema {schema.name} v{schema.version}")
    out = pd.DataFrame(index=df.index)
    for c, col in schema.columns.items():
        s = df[c]
        try:
            if col.dtype == "str":
                out[c] = pd.Series([None if pd.isna(v) else str(v) for v in s.tolist()], index=df.index, dtype=object)
            elif col.dtype == "bool":
                if s.dtype != bool and not s.isin([True, False]).all():
                    raise ValueError("values are not all True/False")
                out[c] = s.astype(bool)
            elif col.dtype == "int64":
                out[c] = s.astype(np.int64)
            else:
                out[c] = s.astype(np.float64)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{where}: column {c!r} cannot be read as {col.dtype} ({exc})") from None
    for c in df.columns:
        if c not in schema.columns:
            out[c] = df[c]
    return out.reset_index(drop=True)


def _tsv(df: pd.DataFrame) -> str:
    buf = io.StringIO()
    df.to_csv(buf, sep="\t", index=False, lineterminator="\n")  # float repr round-trips exactly
    return buf.getvalue()


def write_table(df: pd.DataFrame, path_stem: str | Path, *, schema: TableSchema | None = None,
                parquet: bool | None = None) -> dict[str, Path]:
    """Write `df` to ``<path_stem>.tsv`` and, when pyarrow is importable, ``<path_stem>.parquet``.

    `parquet`: None = when available, False = never, True = required (error without pyarrow).
    Returns {"tsv": path[, "parquet": path]}. A `schema` is checked and applied to both files.
    """
    stem = Path(path_stem)
    if stem.suffix in (".tsv", ".parquet"):
        stem = stem.with_suffix("")
    tsv, pq_path = stem.with_name(stem.name + ".tsv"), stem.with_name(stem.name + ".parquet")
    data = _conform(df, schema, str(tsv))
    write_text(tsv, _tsv(data))
    out = {"tsv": tsv}
    want = parquet_available() if parquet is None else parquet
    if want:
        if not parquet_available():
            raise ImportError(f"{pq_path}: writing Parquet needs pyarrow (pip install pyarrow)")
        _write_parquet(data, pq_path, schema)
        out["parquet"] = pq_path
    return out


def _arrow_schema(data: pd.DataFrame, schema: TableSchema | None):
    import pyarrow as pa

    types = {"int64": pa.int64(), "float64": pa.float64(), "str": pa.string(), "bool": pa.bool_()}
    fields = []
    for c in data.columns:
        if schema is not None and c in schema.columns:
            col = schema.columns[c]
            fields.append(pa.field(c, types[col.dtype], nullable=True, metadata={"doc": col.doc}))
        else:
            t = pa.Array.from_pandas(data[c]).type
            fields.append(pa.field(c, pa.string() if pa.types.is_large_string(t) else t))
    meta = {_META_KEY: json.dumps(schema.to_json() if schema else None, sort_keys=True).encode()}
    return pa.schema(fields, metadata=meta)


def _write_parquet(data: pd.DataFrame, path: Path, schema: TableSchema | None) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    aschema = _arrow_schema(data, schema)
    arrays = []
    for f in aschema:
        s = data[f.name]
        if pa.types.is_floating(f.type):  # NaN -> null, the Parquet way of saying "no value"
            arrays.append(pa.array(s.to_numpy(dtype=np.float64), type=f.type, from_pandas=True))
        else:
            arrays.append(pa.array(s.tolist() if f.type == pa.string() else s.to_numpy(), type=f.type,
                                   from_pandas=True))
    table = pa.Table.from_arrays(arrays, schema=aschema)
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, compression="zstd", write_statistics=True)


def read_table(path_stem: str | Path, *, schema: TableSchema | None = None) -> pd.DataFrame:
    """Read ``<path_stem>.tsv`` (the source of truth) with exact floats and the schema's dtypes."""
    stem = Path(path_stem)
    if stem.suffix in (".tsv", ".parquet"):
        stem = stem.with_suffix("")
    path = stem.with_name(stem.name + ".tsv")
    if not path.is_file():
        raise FileNotFoundError(f"{path}: file not found")
    kw = {} if int(pd.__version__.split(".")[0]) >= 3 else {"float_precision": "round_trip"}
    str_cols = {c: str for c, col in (schema.columns.items() if schema else ()) if col.dtype == "str"}
    df = pd.read_csv(path, sep="\t", keep_default_na=False, na_values=[""], dtype=str_cols or None, **kw)
    if schema is not None:
        for c, col in schema.columns.items():
            if c in df.columns and col.dtype == "bool" and df[c].dtype != bool:
                df[c] = df[c].astype(str).str.lower().map({"true": True, "false": False})
                if df[c].isna().any():
                    raise ValueError(f"{path}: column {c!r} has values other than True/False")
        df = _conform(df, schema, str(path))
    return df
