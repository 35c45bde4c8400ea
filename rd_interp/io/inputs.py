"""Stage inputs given as stage folders or plain files: one way to open them, one way to record them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rd_interp.io.atomic import sha256_json
from rd_interp.io.manifest import Manifest, is_stage_dir, open_stage
from rd_interp.io.store import EmbeddingStore


def store_digest(store: EmbeddingStore) -> str:
    """Content identity of a bare store: its shard checksums and index (no re-hash of the data)."""
    return sha256_json({"shards": store.manifest.get("shards"), "ids": sha256_json(store.ids),
                        "dim": store.dim, "dtype": str(store.dtype)})


def open_store(source: Any) -> tuple[EmbeddingStore, Any]:
    """(store, input record) from a stage Manifest, a stage folder or a bare store folder.

    A stage names its store in ``result["store"]`` (embed: store/, distill: rd_store/); a bare store is
    recorded by path and content digest.
    """
    if isinstance(source, Manifest):
        if "store" not in source.result:
            raise ValueError(f"{source.dir}: a {source.stage!r} stage holds no embedding store")
        return EmbeddingStore(source.path(source.result["store"])), source
    p = Path(source).expanduser()
    if is_stage_dir(p):
        return open_store(open_stage(p))  # verified: a stage folder given by path is not trusted unchecked
    store = EmbeddingStore(p)
    return store, {"file": p.name, "path": str(p.resolve()), "sha256": store_digest(store)}


def input_store(stage: Manifest, name: str = "store") -> EmbeddingStore:
    """The store a finished stage read (recorded as an upstream stage or as a bare store path)."""
    ref = stage.inputs[name]
    if "dir" in ref:
        return open_store(stage.input(name))[0]
    return EmbeddingStore(ref["path"])
