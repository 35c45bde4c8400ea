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


def store_names(manifest: Manifest) -> list[str]:
    """Names of the stores a stage holds: ``result["stores"]`` (name -> folder) of a multi-store stage."""
    return sorted(manifest.result.get("stores") or {})


def open_store(source: Any, name: str | None = None) -> tuple[EmbeddingStore, Any]:
    """(store, input record) from a stage Manifest, a stage folder or a bare store folder.

    A stage holding one store names it in ``result["store"]`` (embed: store/, distill: rd_store/); a stage
    holding several (controls: random_subspace/, naive_pca/) maps names to folders in ``result["stores"]``
    and `name` picks one (optional when there is only one). A bare store is recorded by path and content
    digest (`name` does not apply).
    """
    if isinstance(source, Manifest):
        stores = source.result.get("stores") or {}
        if name is not None or ("store" not in source.result and stores):
            if name is None and len(stores) == 1:
                name = next(iter(stores))
            if name not in stores:
                have = ", ".join(sorted(stores)) or "none"
                raise ValueError(f"{source.dir}: the {source.stage!r} stage holds no store named {name!r} "
                                 f"(named stores: {have})")
            return EmbeddingStore(source.path(stores[name])), source
        if "store" not in source.result:
            raise ValueError(f"{source.dir}: a {source.stage!r} stage holds no embedding store")
        return EmbeddingStore(source.path(source.result["store"])), source
    p = Path(source).expanduser()
    if is_stage_dir(p):
        return open_store(open_stage(p), name)  # verified: a stage folder given by path is not trusted unchecked
    if name is not None:
        raise ValueError(f"{p}: a bare embedding store has no named stores (asked for {name!r})")
    store = EmbeddingStore(p)
    return store, {"file": p.name, "path": str(p.resolve()), "sha256": store_digest(store)}


def input_store(stage: Manifest, name: str = "store", store: str | None = None) -> EmbeddingStore:
    """The store a finished stage read (recorded as an upstream stage or as a bare store path); `store`
    names it within a multi-store upstream stage (see open_store)."""
    ref = stage.inputs[name]
    if "dir" in ref:
        return open_store(stage.input(name), store)[0]
    return EmbeddingStore(ref["path"])
