"""Embedding spread over the ranks torchrun started; one process when it did not start any.

    torchrun --standalone --nproc-per-node 4 -m rd_interp embed seqs.fasta --model 650M --out OUT

Every rank runs the same command line. Rank 0 executes it; each time it embeds a FASTA file it sends the
job to the other ranks, whose whole command is `rd_interp.dist.serve()`. So `rd-interp embed` and the embed stages of
`rd-interp run` are spread over the ranks and every other stage runs on rank 0 alone. Each rank embeds a
contiguous, cost-balanced share of the single-process batch plan (plm/embed.py: same batches, so the same
numbers) into its own resumable store beside the target (`.<store>.shares/rank-R-of-N`); rank 0 then
takes the shares' shard files into the target store by hard link, in rank order, which is the
single-process order. A killed run resumes: each share resumes, and the merge skips what it already took.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from rd_interp import dist
from rd_interp.device import resolve_device
from rd_interp.io.store import EmbeddingStore, StoreError, StoreWriter
from rd_interp.plm.config import EmbedConfig
from rd_interp.plm.embed import embed_fasta


def shares_dir(store_path: str | os.PathLike) -> Path:
    """Where the ranks' shares of a store live while a distributed embedding runs."""
    p = Path(store_path)
    return p.parent / f".{p.name}.shares"


def embed(fasta: str | os.PathLike, store_path: str | os.PathLike, cfg: EmbedConfig, *, model: str,
          device: str = "auto", progress: bool = True) -> tuple[EmbeddingStore, dict[str, Any]]:
    """embed_fasta spread over the ranks (on rank 0 of a torchrun group), or in this process alone.

    Returns the store and how it was made ({"world_size", "backend"}) for the stage's manifest."""
    if not dist.leading() or _complete(store_path):
        return embed_fasta(fasta, store_path, cfg, model=model, device=device, progress=progress), {"world_size": 1}
    job = {"fasta": str(fasta), "store": str(store_path), "cfg": cfg, "model": model, "device": str(device),
           "progress": progress}
    dist.submit(JOB, job)  # every rank has embedded its share when this returns
    _merge(Path(store_path), job["fasta"], cfg, dist.world().size)
    return EmbeddingStore(store_path), {"world_size": dist.world().size, "backend": dist.backend()}


def _complete(store_path: str | os.PathLike) -> bool:
    try:
        return EmbeddingStore(store_path) is not None
    except (StoreError, OSError, ValueError):
        return False


def _embed_share(job: dict[str, Any]) -> None:
    """Every rank: embed this rank's share of the job into its own resumable store, then wait for the others."""
    w = dist.world()
    device = dist.rank_device(resolve_device(job["device"]))
    embed_fasta(job["fasta"], shares_dir(job["store"]) / _share_name(w.rank, w.size), job["cfg"],
                model=job["model"], device=str(device), progress=job["progress"] and w.is_main, rank=w.rank,
                world_size=w.size)
    dist.barrier()


def _share_name(rank: int, world_size: int) -> str:
    return f"rank-{rank:05d}-of-{world_size:05d}"


def _merge(store_path: Path, fasta: str, cfg: EmbedConfig, world_size: int) -> None:
    """Rank 0: the shares' shards, in rank order, become the store (hard links), checked against the order."""
    from rd_interp.io.fasta import read_fasta

    shares = shares_dir(store_path)
    parts = [EmbeddingStore(shares / _share_name(r, world_size)) for r in range(world_size)]
    settings = {k: v for k, v in parts[0].settings.items() if k != "share"}
    writer = StoreWriter(store_path, dim=parts[0].dim, manifest=settings, dtype=cfg.dtype, shard_rows=cfg.shard_rows)
    for part in parts:
        writer.adopt(part)
    store = writer.close()
    records = list(read_fasta(fasta))
    lengths = np.array([len(r.sequence) for r in records], dtype=np.int64)
    expected = [records[i].id for i in np.argsort(lengths, kind="stable")]
    if store.ids != expected:
        raise StoreError(f"{store_path}: merged shares are not in the single-process order; delete it and rerun")
    shutil.rmtree(shares)


JOB = "embed"
dist.register(JOB, _embed_share)
