"""Per-residue embeddings of a FASTA file into an EmbeddingStore: fast, resumable, exact.

Why it is fast: proteins are sorted by length and packed into batches up to a token budget (little
padding), the forward pass stops at the requested layer, skips the LM head, uses fused
scaled-dot-product attention (plm/fast.py) with fair-esm's own weights and modules, runs under
``torch.inference_mode`` and bf16/fp16 autocast on CUDA (bf16 on CPU when asked for). Residue rows are
sliced out per protein with tensor ops (BOS/EOS/padding dropped), never per residue in Python.

Why it is safe: shards are committed atomically by the StoreWriter; a rerun skips committed proteins
and, because the order of proteins is a pure function of the FASTA file, appends the rest in the same
order, so the resumed store equals an uninterrupted one. The store's manifest records the model (and
its checksum), the layer, the sequence file checksum and the long-sequence policy; a rerun with other
settings is refused instead of mixed.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import torch

from rd_interp import __version__
from rd_interp.device import resolve_device
from rd_interp.io.store import EmbeddingStore, StoreWriter
from rd_interp.plm.config import EmbedConfig

log = logging.getLogger(__name__)


def _autocast_dtype(cfg: EmbedConfig, device: torch.device) -> torch.dtype | None:
    """CUDA: bf16 (fp16 where bf16 is missing) unless autocast = "none". CPU: fp32 unless "bf16" is asked for:
    bf16 matmuls are several times faster on CPUs with AMX or AVX-512 BF16 and slower on others, and the
    embeddings then deviate from fp32 (analyses/bench_embed.py --bf16 measures both; README)."""
    if cfg.autocast == "none":
        return None
    if device.type == "cpu":
        return torch.bfloat16 if cfg.autocast == "bf16" else None
    if device.type != "cuda":
        return None
    if cfg.autocast == "fp16":
        return torch.float16
    if cfg.autocast == "bf16" or torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float16


def forward_layer(model, tokens: torch.Tensor, layer: int) -> torch.Tensor:
    """fair-esm ESM2.forward up to `layer`, without the LM head: same math as
    ``model(tokens, repr_layers=[layer])["representations"][layer]`` (the final layer includes
    ``emb_layer_norm_after``, as in fair-esm)."""
    padding_mask = tokens.eq(model.padding_idx)
    x = model.embed_scale * model.embed_tokens(tokens)
    if model.token_dropout:
        x = x.masked_fill((tokens == model.mask_idx).unsqueeze(-1), 0.0)
        mask_ratio_train = 0.15 * 0.8
        src_lengths = (~padding_mask).sum(-1)
        mask_ratio_observed = (tokens == model.mask_idx).sum(-1).to(x.dtype) / src_lengths
        x = x * (1 - mask_ratio_train) / (1 - mask_ratio_observed)[:, None, None]
    x = x * (1 - padding_mask.unsqueeze(-1).type_as(x))
    if layer == 0:
        return x
    x = x.transpose(0, 1)
    pm = padding_mask if padding_mask.any() else None
    for layer_idx in range(layer):
        x, _ = model.layers[layer_idx](x, self_attn_padding_mask=pm, need_head_weights=False)
    if layer == model.num_layers:
        x = model.emb_layer_norm_after(x)
    return x.transpose(0, 1)


@dataclass
class _Item:
    protein: int  # index into the sorted protein list
    start: int  # residue offset of this piece in the protein
    tokens: np.ndarray  # residue token ids of this piece


def _windows(L: int, W: int, overlap: int) -> list[tuple[int, int, int, int]]:
    """Windows (start, end) of size W covering [0, L) with >= `overlap` shared residues, and for each
    the residue range it contributes (the half of each overlap nearer its own centre)."""
    step = W - overlap
    starts = list(range(0, max(L - W, 0) + 1, step))
    if starts[-1] + W < L:
        starts.append(L - W)
    out = []
    for i, s in enumerate(starts):
        e = min(s + W, L)
        keep_from = s if i == 0 else (starts[i - 1] + W + s) // 2  # midpoint of the overlap with the previous window
        keep_to = e if i == len(starts) - 1 else (e + starts[i + 1]) // 2
        out.append((s, e, keep_from, keep_to))
    return out


def _batches(items: list[_Item], max_tokens: int) -> Iterator[list[_Item]]:
    """Consecutive items (already sorted by length) while batch_size * padded_length <= max_tokens."""
    cur: list[_Item] = []
    for it in items:
        if cur and (len(cur) + 1) * (len(it.tokens) + 2) > max_tokens:
            yield cur
            cur = []
        cur.append(it)
    if cur:
        yield cur


def _units(batches: list[list[_Item]]) -> list[list[list[_Item]]]:
    """Consecutive batches joined where one protein's windows span them: the indivisible pieces of work."""
    units: list[list[list[_Item]]] = []
    for b in batches:
        if units and units[-1][-1][-1].protein == b[0].protein:
            units[-1].append(b)
        else:
            units.append([b])
    return units


def rank_of_units(costs: Sequence[int], world_size: int) -> np.ndarray:
    """Contiguous, cost-balanced split of the units (in length order) over ranks: unit u -> rank.

    Contiguous, so that concatenating the ranks' stores in rank order gives the single-process order;
    balanced by padded tokens (what a forward pass costs). Unit u goes to the rank whose share of the
    total holds u's midpoint.
    """
    c = np.asarray(costs, dtype=np.float64)
    if c.size == 0:
        return np.zeros(0, dtype=np.int64)
    mid = np.cumsum(c) - c / 2
    return np.minimum((mid * world_size / c.sum()).astype(np.int64), world_size - 1)


def embed_sequences(model, alphabet, seqs: Sequence[str], *, layer: int | None = None, device="cpu",
                    max_tokens: int = 8192, long_mode: str = "truncate", max_residues: int = 1022,
                    window_overlap: int = 256, autocast: torch.dtype | None = None,
                    progress: bool = False, skip: Sequence[bool] | None = None, fast: bool = True,
                    rank: int = 0, world_size: int = 1) -> Iterator[tuple[int, np.ndarray]]:
    """Yield (index into `seqs`, float32 [L', dim]) in ascending length order (ties: input order).

    L' = min(L, max_residues) in "truncate" mode, L in "window" mode. `skip[i]` True: not yielded.
    The batches are planned over every protein, skipped or not, and a batch is computed whole whenever
    one of its proteins is wanted: a protein's rows never depend on what was skipped (a resumed run equals
    an uninterrupted one exactly). rank / world_size: only this rank's contiguous share of the batches
    (rank_of_units), each computed exactly as in one process.
    """
    from rd_interp.plm.family import _byte_table
    from rd_interp.plm.fast import fast_forward, supports_fast_forward

    # Both paths equal fair-esm's forward to float rounding (tests); the fused one is several times faster.
    forward = fast_forward if fast and supports_fast_forward(model) else forward_layer
    device = torch.device(device)
    layer = model.num_layers if layer is None else int(layer)
    if not 0 <= layer <= model.num_layers:
        raise ValueError(f"layer {layer} out of range: the model has layers 0..{model.num_layers}")
    table = _byte_table(alphabet)
    lengths = np.fromiter((len(s) for s in seqs), dtype=np.int64, count=len(seqs))
    order = np.argsort(lengths, kind="stable")
    items: list[_Item] = []
    plans: dict[int, list[tuple[int, int, int, int]]] = {}
    for pos, i in enumerate(order):
        toks = table[np.frombuffer(seqs[i].encode("ascii"), dtype=np.uint8)]
        L = len(toks)
        if L <= max_residues or long_mode == "truncate":
            items.append(_Item(pos, 0, toks[:max_residues]))
        else:
            plans[pos] = _windows(L, max_residues, window_overlap)
            items.extend(_Item(pos, s, toks[s:e]) for s, e, _, _ in plans[pos])
    units = _units(list(_batches(items, max_tokens)))
    if world_size > 1:
        costs = [sum(len(b) * (max(len(it.tokens) for it in b) + 2) for b in u) for u in units]
        owner = rank_of_units(costs, world_size)
        units = [u for u, r in zip(units, owner) if r == rank]
    wanted = np.ones(len(seqs), dtype=bool) if skip is None else ~np.asarray(skip, dtype=bool)
    batches = [b for u in units for b in u if any(wanted[order[it.protein]] for it in b)]
    total = int(sum(len(it.tokens) for b in batches for it in b))
    pending: dict[int, list[tuple[_Item, np.ndarray]]] = {}
    bar = _progress(total, progress)
    ctx = (torch.autocast(device_type=device.type, dtype=autocast) if autocast is not None
           else contextlib.nullcontext())
    try:
        with torch.inference_mode(), ctx:
            for batch in batches:
                T = max(len(it.tokens) for it in batch) + 2
                arr = np.full((len(batch), T), alphabet.padding_idx, dtype=np.int64)
                for b, it in enumerate(batch):
                    n = len(it.tokens)
                    arr[b, 0] = alphabet.cls_idx
                    arr[b, 1:n + 1] = it.tokens
                    arr[b, n + 1] = alphabet.eos_idx
                rep = forward(model, torch.from_numpy(arr).to(device), layer).float().cpu().numpy()
                for b, it in enumerate(batch):
                    idx = int(order[it.protein])
                    if not wanted[idx]:
                        continue
                    x = rep[b, 1:len(it.tokens) + 1]
                    if it.protein not in plans:
                        yield idx, np.ascontiguousarray(x)
                    else:
                        got = pending.setdefault(it.protein, [])
                        got.append((it, x))
                        if len(got) == len(plans[it.protein]):
                            yield idx, _stitch(got, plans.pop(it.protein))
                            del pending[it.protein]
                if bar is not None:
                    bar.update(int(sum(len(it.tokens) for it in batch)))
    finally:
        if bar is not None:
            bar.close()


def _stitch(pieces: list[tuple[_Item, np.ndarray]], plan: list[tuple[int, int, int, int]]) -> np.ndarray:
    pieces = sorted(pieces, key=lambda p: p[0].start)
    parts = [x[kf - s:kt - s] for (it, x), (s, e, kf, kt) in zip(pieces, plan)]
    return np.ascontiguousarray(np.concatenate(parts, axis=0))


def _progress(total: int, enabled: bool):
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, unit="res", unit_scale=True, desc="embedding", smoothing=0.05)


def store_manifest(info, layer: int, cfg: EmbedConfig, fasta_path, fasta_sha: str, autocast,
                   n_long: int = 0) -> dict[str, Any]:
    """Everything that determines the store's content; a resume must match it exactly."""
    return {
        "n_truncated": n_long if cfg.long_mode == "truncate" else 0,
        "model": info.name, "model_sha256": info.sha256, "model_n_layers": info.n_layers, "layer": layer,
        "sequence_file": Path(fasta_path).name, "sequence_sha256": fasta_sha,
        "long_mode": cfg.long_mode, "max_residues": cfg.max_residues,
        "window_overlap": cfg.window_overlap if cfg.long_mode == "window" else None,
        "autocast": str(autocast).replace("torch.", "") if autocast is not None else None,
        "package_version": __version__,
    }


def embed_fasta(fasta_path: str | os.PathLike, store_path: str | os.PathLike, cfg: EmbedConfig | None = None, *,
                model: str = "mini-L", device: str = "auto", progress: bool = True, rank: int = 0,
                world_size: int = 1) -> EmbeddingStore:
    """Embed every protein of a FASTA file with `model` into a (resumable) EmbeddingStore at `store_path`.

    Rows are stored in ascending length order (ties: file order) — the same order for every model,
    so stores of one FASTA file from different models pair row by row. rank / world_size: only that
    rank's contiguous share (plm/sharded.py concatenates the shares); its store records which share it is.
    """
    from rd_interp.io.fasta import fasta_checksum, read_fasta
    from rd_interp.plm.esm import load_model

    cfg = cfg or EmbedConfig()
    cfg.validate()
    device = resolve_device(device)
    records = [(r.id, r.sequence) for r in read_fasta(fasta_path)]
    net, alphabet, info = load_model(model, weights_dir=cfg.weights_dir or None, device=str(device))
    layer = info.n_layers if cfg.layer is None else int(cfg.layer)
    if not 0 <= layer <= info.n_layers:
        raise ValueError(f"layer {layer} out of range: {info.name} has layers 0..{info.n_layers}")
    dim = info.embed_dim
    autocast = _autocast_dtype(cfg, device)
    ids = [pid for pid, _ in records]
    seqs = [s for _, s in records]
    n_long = sum(len(s) > cfg.max_residues for s in seqs)
    if n_long:
        if cfg.long_mode == "truncate":
            log.warning("%d of %d sequences are longer than %d residues and are truncated to their first %d "
                        "(long_mode='window' embeds them whole)", n_long, len(seqs), cfg.max_residues,
                        cfg.max_residues)
        else:
            log.info("%d of %d sequences are longer than %d residues: sliding windows with overlap %d",
                     n_long, len(seqs), cfg.max_residues, cfg.window_overlap)
    manifest = store_manifest(info, layer, cfg, fasta_path, fasta_checksum(fasta_path), autocast, n_long)
    if world_size > 1:
        manifest["share"] = {"rank": rank, "world_size": world_size}
    writer = StoreWriter(store_path, dim=dim, manifest=manifest, dtype=cfg.dtype, shard_rows=cfg.shard_rows)
    skip = [pid in writer.done for pid in ids]
    if any(skip):
        log.info("%s: %d of %d proteins already embedded, resuming", store_path, sum(skip), len(ids))
    max_tokens = cfg.max_tokens or (32768 if device.type == "cuda" else 16384)
    t0 = time.time()
    n_res = 0
    # If this loop is interrupted, committed shards stay on disk and a rerun resumes after them.
    for i, x in embed_sequences(net, alphabet, seqs, layer=layer, device=device, max_tokens=max_tokens,
                                long_mode=cfg.long_mode, max_residues=cfg.max_residues,
                                window_overlap=cfg.window_overlap, autocast=autocast,
                                progress=progress, skip=skip, fast=cfg.fast, rank=rank,
                                world_size=world_size):
        writer.append(ids[i], x)
        n_res += len(x)
    store = writer.close()
    dt = time.time() - t0
    log.info("embedded %d residues in %.1f s (%.0f residues/s) with %s layer %d -> %s", n_res, dt,
             n_res / max(dt, 1e-9), info.name, layer, store_path)
    return store

