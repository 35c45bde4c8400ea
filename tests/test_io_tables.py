"""Result tables: TSV always (exact floats), Parquet beside it with the schema in its metadata."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from rd_interp.enrich.result import BEST_TERMS, ENRICH_TABLE
from rd_interp.io.tables import (
    Column,
    TableSchema,
    parquet_available,
    read_table,
    write_table,
)

SMALL = TableSchema("test.small", 2, {"latent": Column("int64", "latent index"), "go_id": Column("str", "term"),
                                      "p_adj": Column("float64", "corrected p"), "captured": Column("bool", "hit")})


def frame():
    return pd.DataFrame({"latent": [3, 1, 2], "go_id": ["GO:1", "GO:2", None], "p_adj": [0.1 / 3, 1e-300, np.nan],
                         "captured": [True, False, True], "extra": ["a\tb", "c", "d"]})


def test_tsv_round_trip_exact_and_typed(tmp_path):
    paths = write_table(frame(), tmp_path / "t", schema=SMALL, parquet=False)
    assert set(paths) == {"tsv"} and paths["tsv"].name == "t.tsv"
    back = read_table(tmp_path / "t.tsv", schema=SMALL)
    assert list(back.columns) == ["latent", "go_id", "p_adj", "captured", "extra"]
    assert back["latent"].dtype == np.int64 and back["captured"].dtype == bool
    assert back["p_adj"].iloc[0] == 0.1 / 3 and back["p_adj"].iloc[1] == 1e-300 and np.isnan(back["p_adj"].iloc[2])
    assert back["go_id"].iloc[2] is None and back["extra"].iloc[0] == "a\tb"


def test_schema_is_enforced(tmp_path):
    with pytest.raises(ValueError, match=r"t\.tsv: table lacks columns \['captured'\] required by schema test\.small v2"):
        write_table(frame().drop(columns="captured"), tmp_path / "t", schema=SMALL)
    bad = frame().assign(latent=["x", "1", "2"])
    with pytest.raises(ValueError, match="column 'latent' cannot be read as int64"):
        write_table(bad, tmp_path / "t", schema=SMALL)
    with pytest.raises(ValueError, match="unknown dtypes"):
        TableSchema("x", 1, {"a": Column("int32")})
    assert set(ENRICH_TABLE.columns) >= {"latent", "go_id", "p_adj", "captured"} and "best_go_id" in BEST_TERMS.columns


@pytest.mark.skipif(not parquet_available(), reason="pyarrow is not installed (pip install rd_interp[parquet])")
def test_parquet_beside_tsv_with_schema_metadata(tmp_path):
    import pyarrow.parquet as pq

    paths = write_table(frame(), tmp_path / "t", schema=SMALL)
    assert set(paths) == {"tsv", "parquet"}
    t = pq.read_table(paths["parquet"])
    assert [str(f.type) for f in t.schema] == ["int64", "string", "double", "bool", "string"]
    meta = json.loads(t.schema.metadata[b"rd_interp.schema"])
    assert meta["name"] == "test.small" and meta["version"] == 2 and meta["columns"]["p_adj"]["doc"] == "corrected p"
    assert t.schema.field("latent").metadata[b"doc"] == b"latent index"
    df = t.to_pandas()
    assert df["p_adj"].iloc[0] == 0.1 / 3 and pd.isna(df["p_adj"].iloc[2]) and pd.isna(df["go_id"].iloc[2])
    assert t.column("go_id").null_count == 1 and t.column("p_adj").null_count == 1  # NaN -> null
    first = paths["parquet"].read_bytes()
    write_table(frame(), tmp_path / "t", schema=SMALL)
    assert paths["parquet"].read_bytes() == first  # deterministic


def test_parquet_required_without_pyarrow(tmp_path, monkeypatch):
    from rd_interp.io import tables

    monkeypatch.setattr(tables, "parquet_available", lambda: False)
    assert set(write_table(frame(), tmp_path / "t", schema=SMALL)) == {"tsv"}
    with pytest.raises(ImportError, match="needs pyarrow"):
        write_table(frame(), tmp_path / "t", schema=SMALL, parquet=True)
