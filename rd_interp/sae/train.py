"""Training loop for sparse autoencoders (TopK + AuxK by default).

Recipe (Gao et al. 2024; SAELens/sparsify defaults where they agree):
- inputs pre-processed inside the SAE: per-dimension mean removed, one global scale so E||x'||^2 = d;
- W_enc = W_dec^T / sqrt(3) at init (model.ENCODER_INIT_NORM), decoder rows unit norm and kept so (parallel gradient removed, renormalised
  after every step), b_dec = data mean (in pre-processed space), b_enc = 0;
- AuxK: the k_aux = d/2 largest pre-activations among latents that have not fired in the last
  `dead_window` vectors reconstruct the residual, weight 1/32;
- Adam(betas 0.9/0.999, eps 6.25e-10), lr = 2e-4 * sqrt(2^14 / n_latents) unless given, linear warmup,
  linear decay to 0 over the last 20% of steps, gradient-norm clip 1.0; bf16 autocast on CUDA only.

Determinism: the batch at step t is a pure function of (seed, t) (see data.BatchOrder), the model init
of the seed, and nothing else draws random numbers; so a run is reproducible bit for bit on CPU, and a
resumed run (model, Adam state, dead-latent counters, threshold statistics and step restored from the
checkpoint) ends identical to an uninterrupted one.

Distributed (torchrun, rd_interp.dist): every rank builds the same SAE from the seed and reads its own
contiguous slice of each global batch; the gradients are summed over the ranks in one flat buffer and
averaged (the SAE trains through `train_forward`, not `forward`, so DistributedDataParallel's hooks would
never fire; the all-reduce is the same one DDP does), the AuxK normaliser and the dead-latent counters
use the global batch, so every rank holds the same weights after every step and equals one process with
the same global batch to float rounding. Rank 0 writes the checkpoints; every rank resumes from them.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rd_interp import dist
from rd_interp.device import resolve_device
from rd_interp.io.atomic import atomic_path, sha256_json
from rd_interp.io.options import opt
from rd_interp.io.serialize import ConfigError, to_dict
from rd_interp.sae.data import BatchOrder, DataSource, as_source, columns_to_json
from rd_interp.sae.io import read_checkpoint
from rd_interp.sae.model import SAEConfig, SparseAutoencoder, bias_row_block
from rd_interp.sae.optim import Adam, clip_grad_norm

log = logging.getLogger(__name__)

__all__ = ["TrainConfig", "default_lr", "fit_preprocessing", "train_sae"]

CHECKPOINT = "checkpoint.pt"


def default_lr(n_latents: int) -> float:
    """Gao et al.'s scaling: lr ~ 1/sqrt(n_latents), 2e-4 at 2^14 latents."""
    return 2e-4 * math.sqrt(2**14 / n_latents)


@dataclass
class TrainConfig:
    """Optimisation settings. `n_steps` wins over `n_tokens`; both unset -> 5 epochs, capped at 50M vectors.

    The seed and the device are arguments of train_sae, not options: a run fans one config out over seeds.
    """

    batch_size: int = opt(4096, "vectors per optimiser step")
    n_steps: int | None = opt(None, "optimiser steps (None: from n_tokens, else 5 epochs capped at 50M vectors)")
    n_tokens: int | None = opt(None, "training vectors, instead of n_steps")
    lr: float | None = opt(None, "learning rate (None: 2e-4 * sqrt(2^14 / n_latents))")
    warmup_steps: int | None = opt(None, "linear warmup steps (None: min(1000, 5% of steps))")
    decay_fraction: float = opt(0.2, "linear decay to 0 over this final fraction of steps")
    grad_clip: float = opt(1.0, "gradient-norm clip (0: off)")
    adam_eps: float = opt(6.25e-10, "Adam epsilon")
    aux_k: int | None = opt(None, "AuxK latents (None: d_in / 2; 0 disables AuxK)")
    aux_coeff: float = opt(1 / 32, "AuxK loss weight")
    dead_window: int | None = opt(None, "vectors without firing before a latent counts as dead (None: auto)")
    norm_rows: int = opt(1 << 18, "rows sampled to estimate the input mean and scale")
    autocast: bool = opt(True, "bf16 encoder matmul on CUDA (ignored on CPU)")
    checkpoint_every: int = opt(500, "steps between checkpoints (with a checkpoint directory)")
    threshold_batches: int = opt(8, "BatchTopK: training batches used to calibrate the inference threshold")

    def validate(self) -> None:
        if self.batch_size < 1:
            raise ConfigError(f"batch_size: must be >= 1, got {self.batch_size}")
        if self.n_steps is not None and self.n_steps < 1:
            raise ConfigError(f"n_steps: must be >= 1, got {self.n_steps}")
        if self.n_tokens is not None and self.n_tokens < 1:
            raise ConfigError(f"n_tokens: must be >= 1, got {self.n_tokens}")
        if self.lr is not None and not (self.lr > 0 and math.isfinite(self.lr)):
            raise ConfigError(f"lr: must be > 0, got {self.lr}")
        if not 0 <= self.decay_fraction <= 1:
            raise ConfigError(f"decay_fraction: must be in [0, 1], got {self.decay_fraction}")
        if self.aux_k is not None and self.aux_k < 0:
            raise ConfigError(f"aux_k: must be >= 0, got {self.aux_k}")
        if self.norm_rows < 1:
            raise ConfigError(f"norm_rows: must be >= 1, got {self.norm_rows}")
        if self.checkpoint_every < 1:
            raise ConfigError(f"checkpoint_every: must be >= 1, got {self.checkpoint_every}")


def fit_preprocessing(source: DataSource, rows: np.ndarray | None, n_sample: int, seed: int,
                      blocks: list[tuple[int, int]] | None = None) -> tuple[np.ndarray, float, np.ndarray, np.ndarray]:
    """(mean [d] float32, scale, sample rows used, per-dimension block scale [d]) from up to n_sample training
    rows, accumulated in float64.

    Without blocks: one global scale so that E||x'||^2 = d (block scale all ones). With blocks (column ranges
    covering the input, e.g. the base prefix and the residual block of an rd space): each block is scaled to
    the same mean squared norm d / n_blocks, so a narrow, low-variance block is not drowned by a wide one;
    E||x'||^2 = d still holds and the global scale is 1.
    """
    pool_n = source.n_rows if rows is None else rows.size
    rng = np.random.default_rng([int(seed), 0x9E0])
    if pool_n <= n_sample:
        sample = np.arange(source.n_rows, dtype=np.int64) if rows is None else rows
    else:
        pick = np.sort(rng.choice(pool_n, size=n_sample, replace=False))
        sample = pick.astype(np.int64) if rows is None else rows[pick]
    d = source.dim
    # One pass, chunk moments merged exactly (Chan et al.): each chunk is centred on its own float64 mean,
    # so large-mean "massive" dimensions lose nothing to cancellation.
    mean = np.zeros(d, dtype=np.float64)
    ss = np.zeros(d, dtype=np.float64)
    count = 0
    for idx, block in source.iter_rows(sample, chunk_rows=32768):
        _check_finite(block, idx, source)
        b64 = block.astype(np.float64)
        nb = b64.shape[0]
        mb = b64.mean(0)
        b64 -= mb
        delta = mb - mean
        total = count + nb
        ss += np.einsum("ij,ij->j", b64, b64) + delta * delta * (count * nb / total)
        mean += delta * (nb / total)
        count = total
    msq = float(ss.sum()) / count
    if not msq > 0:
        raise ValueError(f"{source.name}: training vectors have zero variance; nothing to learn")
    dim_scale = np.ones(d, dtype=np.float32)
    if blocks:
        covered = np.zeros(d, bool)
        for a, b in blocks:
            covered[a:b] = True
            msq_b = float(ss[a:b].sum()) / count
            if not msq_b > 0:
                raise ValueError(f"{source.name}: block [{a}, {b}) has zero variance; cannot scale it")
            dim_scale[a:b] = np.float32(math.sqrt(d / len(blocks) / msq_b))
        if not covered.all():
            raise ValueError(f"blocks {blocks} do not cover the {d} input dimensions")
        return mean.astype(np.float32), 1.0, sample, dim_scale
    scale = math.sqrt(d / msq)
    return mean.astype(np.float32), float(np.float32(scale)), sample, dim_scale


def _check_finite(block: np.ndarray, idx: np.ndarray, source: DataSource) -> None:
    ok = np.isfinite(block).all(axis=1)
    if not ok.all():
        bad = int(np.flatnonzero(~ok)[0])
        kind = "NaN" if np.isnan(block[bad]).any() else "Inf"
        raise ValueError(f"{source.name}: row {int(idx[bad])} contains {kind} values; clean the embeddings first")


def _lr_at(step: int, n_steps: int, base: float, warmup: int, decay_fraction: float) -> float:
    f = 1.0
    if warmup > 0 and step < warmup:
        f = (step + 1) / warmup
    decay_steps = int(round(decay_fraction * n_steps))
    if decay_steps > 0 and step >= n_steps - decay_steps:
        f = min(f, (n_steps - step) / decay_steps)
    return base * f


def _resolve(sae_cfg: SAEConfig, cfg: TrainConfig, n_train: int) -> dict[str, Any]:
    if cfg.n_steps is not None:
        n_steps = cfg.n_steps
    elif cfg.n_tokens is not None:
        n_steps = max(1, math.ceil(cfg.n_tokens / cfg.batch_size))
    else:
        n_steps = max(1, math.ceil(min(5 * n_train, 50_000_000) / cfg.batch_size))
    total = n_steps * cfg.batch_size
    warmup = cfg.warmup_steps if cfg.warmup_steps is not None else min(1000, n_steps // 20)
    aux_k = cfg.aux_k if cfg.aux_k is not None else sae_cfg.d_in // 2
    if sae_cfg.architecture == "relu":
        aux_k = 0
    # Dead = silent for 10M vectors (Gao et al.), but scaled down for small data / short runs so the
    # counter can ever trigger: at most one pass over the training rows and a fifth of the run.
    dead_window = cfg.dead_window if cfg.dead_window is not None else int(
        max(cfg.batch_size, min(10_000_000, n_train, total // 5)))
    return {"n_steps": int(n_steps), "warmup_steps": int(warmup), "aux_k": int(aux_k),
            "dead_window": int(dead_window), "lr": float(cfg.lr if cfg.lr is not None else default_lr(sae_cfg.n_latents))}


def train_sae(
    data: Any,
    sae_cfg: SAEConfig,
    train_cfg: TrainConfig | None = None,
    *,
    columns: Any = None,
    rows: np.ndarray | None = None,
    checkpoint_dir: str | Path | None = None,
    progress: bool = True,
    stop_after: int | None = None,
    seed: int = 0,
    device: str = "auto",
    blocks: list[tuple[int, int]] | None = None,
    untrained: bool = False,
) -> SparseAutoencoder:
    """Train an SAE on `data` (array [N, D] or EmbeddingStore), optionally on `columns` and `rows` only.

    `checkpoint_dir`: a checkpoint is written there every `checkpoint_every` steps and at the end; if
    one exists (from the same data/config) training resumes from it. `stop_after`: run at most that many
    steps in this call (checkpoint, then return the partly trained SAE) - for time-sliced jobs.
    `blocks`: column ranges scaled to equal mean squared norm before the SAE (see fit_preprocessing).
    `untrained`: fit the pre-processing only and return the randomly initialised SAE (a control).
    `seed` fixes the initialisation and the batch order; the returned SAE's ``provenance`` holds the
    resolved settings, final running statistics (``train``) and the data it saw (``source``).
    """
    cfg = train_cfg or TrainConfig()
    cfg.validate()
    sae_cfg.validate()
    source = as_source(data, columns)
    if dist.leading() and not untrained and source.store is not None:
        payload = {"store": str(source.store.path), "sae_cfg": sae_cfg, "train_cfg": cfg, "columns": columns,
                   "rows": rows, "checkpoint_dir": None if checkpoint_dir is None else str(checkpoint_dir),
                   "progress": progress, "stop_after": stop_after, "seed": seed, "device": device, "blocks": blocks}
        return dist.submit(JOB, payload)
    return _train(source, sae_cfg, cfg, columns=columns, rows=rows, checkpoint_dir=checkpoint_dir, progress=progress,
                  stop_after=stop_after, seed=seed, device=device, blocks=blocks, untrained=untrained,
                  world=dist.World())


def _train_job(payload: dict[str, Any]) -> SparseAutoencoder:
    """Every rank of a torchrun group: its part of one SAE's training (see the module docstring)."""
    from rd_interp.io.store import EmbeddingStore

    p = dict(payload)
    source = as_source(EmbeddingStore(p.pop("store")), p["columns"])
    progress = p.pop("progress") and dist.world().is_main
    return _train(source, p.pop("sae_cfg"), p.pop("train_cfg"), progress=progress, untrained=False,
                  world=dist.world(), **p)


def _train(source: DataSource, sae_cfg: SAEConfig, cfg: TrainConfig, *, columns: Any, rows: np.ndarray | None,
           checkpoint_dir: str | Path | None, progress: bool, stop_after: int | None, seed: int, device: str,
           blocks: list[tuple[int, int]] | None, untrained: bool, world: dist.World) -> SparseAutoencoder:
    rows = source.check_rows(rows)
    n_train = source.n_rows if rows is None else int(rows.size)
    if n_train < 1:
        raise ValueError(f"{source.name}: no training vectors")
    if sae_cfg.d_in not in (0, source.dim):
        raise ValueError(f"SAEConfig.d_in={sae_cfg.d_in} but the selected data columns have dimension {source.dim}")
    sae_cfg = sae_cfg.resolve(source.dim)
    res = _resolve(sae_cfg, cfg, n_train)
    n_steps = res["n_steps"]
    dev = dist.rank_device(resolve_device(device))
    if world.distributed and sae_cfg.architecture == "batchtopk":
        raise ValueError("sae.architecture=batchtopk is not trained across ranks (its top-k spans the whole "
                         "global batch); use topk, or one process")
    if world.distributed and cfg.batch_size % world.size:
        raise ValueError(f"sae.batch_size={cfg.batch_size} must be a multiple of the number of ranks ({world.size})")
    seed = int(seed)

    sae = SparseAutoencoder(sae_cfg, seed=seed)
    mean, scale, _, dim_scale = fit_preprocessing(source, rows, cfg.norm_rows, seed, blocks)
    with torch.no_grad():
        sae.pre_mean.copy_(torch.from_numpy(mean))
        sae.pre_dim_scale.copy_(torch.from_numpy(dim_scale))
        sae.pre_scale.fill_(scale)
        # b_dec starts at the data mean in pre-processed space, which is 0 by construction (SAE init).
    sae.to(dev)
    # torch.optim.Adam(fused=True)'s update (one pass per parameter), without torch.optim (see sae/optim.py)
    adam = Adam(sae.parameters(), betas=(0.9, 0.999), eps=cfg.adam_eps)
    since_fired = torch.zeros(sae_cfg.n_latents, dtype=torch.long, device=dev)
    start = 0
    source_info = {"name": source.name, "store": str(source.store.path) if source.store is not None else None,
                   "columns": columns_to_json(source.columns, source.full_dim), "full_dim": source.full_dim,
                   "n_train_rows": n_train}
    fingerprint = sha256_json({"sae": to_dict(sae_cfg), "train": to_dict(cfg), "seed": seed,
                               "source": _portable(source_info), "rows": _rows_digest(rows), "blocks": blocks})

    ckpt_path = Path(checkpoint_dir) / CHECKPOINT if checkpoint_dir is not None else None
    state = read_checkpoint(ckpt_path, dev) if ckpt_path is not None and ckpt_path.is_file() else None
    if state is not None:
        if state.get("fingerprint") != fingerprint:
            raise ValueError(f"{ckpt_path}: checkpoint belongs to a different data/config; use another "
                             "checkpoint directory or delete it")
        sae.load_state_dict(state["model"])
        adam.load_state_dict(state["optimizer"])
        since_fired = state["since_fired"].to(dev)
        start = int(state["step"])
        log.info("resuming %s from step %d/%d", ckpt_path, start, n_steps)

    order = BatchOrder(rows, source.n_rows, cfg.batch_size, seed)
    end = n_steps if stop_after is None else min(n_steps, start + int(stop_after))
    if untrained:
        end = start = 0
    bar = None
    if progress and end > start:
        from tqdm.auto import tqdm

        bar = tqdm(total=n_steps, initial=start, unit="step", desc=f"SAE {sae_cfg.architecture}", dynamic_ncols=True)
    run_fvu = run_l0 = last_fvu = last_l0 = None
    t0 = time.perf_counter()
    step_starts: list[float] = []  # wall clock at each step's start: the steady-state step time for benchmarks
    done_vectors = 0
    sae.train()
    share = cfg.batch_size // world.size
    group_sum = dist.all_reduce_sum if world.distributed else None
    # TopK/BatchTopK: the step's dense pre-activations, one block reused by every step (see model._dense_pre)
    pre_buf = torch.empty(share, sae_cfg.n_latents, device=dev) if sae_cfg.architecture != "relu" else None
    # W_enc and b_enc in one block while training: the forward's product reads both in place (model._dense_pre)
    with bias_row_block(sae):
        for step, n_global, block in _prefetched_batches(source, order, start, end, world, share):
            step_starts.append(time.perf_counter())
            x = torch.from_numpy(block).to(dev, non_blocking=True)
            xp = sae.preprocess(x)
            dead = since_fired >= res["dead_window"] if res["aux_k"] > 0 else None
            out = sae.train_forward(xp, dead_mask=dead, k_aux=res["aux_k"], autocast=cfg.autocast,
                                    group_sum=group_sum, pre_out=pre_buf)
            loss = out["loss"] + cfg.aux_coeff * out["aux"]  # ReLU: out["loss"] already holds the L1 term
            adam.zero_grad()
            loss.backward()
            if world.distributed:
                _average_gradients(sae, world.size)
            constrained = sae_cfg.architecture != "relu"
            if constrained:
                sae.remove_parallel_decoder_grad()
            if cfg.grad_clip and cfg.grad_clip > 0:
                clip_grad_norm(sae.parameters(), cfg.grad_clip)
            adam.step(_lr_at(step, n_steps, res["lr"], res["warmup_steps"], cfg.decay_fraction))
            if constrained:
                sae.normalize_decoder()
            with torch.no_grad():
                fired = out["fired"]
                if world.distributed:  # a latent fired if it fired on any rank
                    fired = dist.all_reduce_sum(fired.to(torch.int32)) > 0
                since_fired += n_global
                since_fired[fired] = 0
            done_vectors += n_global
            if bar is not None or step == end - 1:
                with torch.no_grad():  # float64 sums: a float32 sum's last bit depends on how threads split it
                    x64 = xp.double()
                    sst = (x64 - x64.mean(0)).pow(2).sum()
                    last_fvu = float((x64 - out["x_hat"].double()).pow(2).sum() / sst.clamp_min(1e-30))
                last_l0 = float(out["l0"])
                if bar is not None:  # the bar's running means see every step; the record only the last batch
                    run_fvu = last_fvu if run_fvu is None else 0.9 * run_fvu + 0.1 * last_fvu
                    run_l0 = last_l0 if run_l0 is None else 0.9 * run_l0 + 0.1 * last_l0
                    bar.update(1)
                    if (step - start) % 5 == 0 or step == end - 1:
                        el = time.perf_counter() - t0
                        bar.set_postfix(vec_s=f"{done_vectors / max(el, 1e-9):.0f}", fvu=f"{run_fvu:.4f}",
                                        l0=f"{run_l0:.1f}",
                                        dead=f"{float((since_fired >= res['dead_window']).float().mean()):.3f}")
            due = (step + 1) % cfg.checkpoint_every == 0 or step + 1 == end
            if ckpt_path is not None and world.is_main and due:
                _save_checkpoint(ckpt_path, sae, adam, since_fired, step + 1, fingerprint)
    if bar is not None:
        bar.close()
    elapsed = time.perf_counter() - t0
    # intervals between step starts (the last one ends with the loop), the first step left out: it loads the
    # compiled kernels once per process
    steps_s = np.diff([*step_starts, t0 + elapsed])[1:]
    if sae_cfg.architecture == "batchtopk" and end >= n_steps:
        sae.threshold.fill_(calibrate_threshold(sae, source, order, n_steps, cfg.threshold_batches))
    sae.eval()
    sae.provenance.source = source_info
    sae.provenance.train = {
        **res, "batch_size": cfg.batch_size, "seed": seed, "steps_done": end, "finished": end >= n_steps,
        "vectors_per_s_this_call": done_vectors / elapsed if elapsed > 0 and done_vectors else None,
        "step_ms_median_this_call": float(np.median(steps_s)) * 1e3 if steps_s.size else None,
        "last_batch_fvu": last_fvu, "last_batch_l0": last_l0, "device": str(dev),
        "dead_fraction_train": float((since_fired >= res["dead_window"]).float().mean()),
        "untrained": bool(untrained), "blocks": blocks, "world_size": world.size, "backend": dist.backend(),
        "train_config": to_dict(cfg),
    }
    return sae


def _prefetched_batches(source: DataSource, order: BatchOrder, start: int, end: int, world: dist.World,
                        share: int) -> Iterator[tuple[int, int, np.ndarray]]:
    """(step, global batch size, this rank's checked rows) for steps start..end-1, the next batch read in a
    background thread while the current one trains: gathering rows from a memory-mapped store and checking
    them for NaN/Inf (~5% of a CPU step at 480 x 4096) overlaps the step's compute. The batch of a step is
    still a pure function of (seed, step), so results do not change."""
    def load(step: int) -> tuple[int, np.ndarray]:
        idx = order.rows_at(step)
        n_global = idx.size
        if world.distributed:
            idx = idx[world.rank * share:(world.rank + 1) * share]  # this rank's slice of the global batch
        block = source.take(idx)
        _check_finite(block, idx, source)
        return n_global, block

    if start >= end:
        return
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="sae-batches") as pool:
        pending = pool.submit(load, start)
        for step in range(start, end):
            n_global, block = pending.result()
            if step + 1 < end:
                pending = pool.submit(load, step + 1)
            yield step, n_global, block


def _average_gradients(sae: SparseAutoencoder, world_size: int) -> None:
    """Mean of the ranks' gradients, in one flat all-reduce (what DDP's buckets do, without its hooks)."""
    grads = [p.grad for p in sae.parameters() if p.grad is not None]
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce_sum(flat).div_(world_size)
    offset = 0
    for g in grads:
        g.copy_(flat[offset:offset + g.numel()].view_as(g))
        offset += g.numel()


JOB = "sae"
dist.register(JOB, _train_job)


def _portable(source_info: dict) -> dict:
    """Source identity without its location, so a checkpoint still resumes after the folder moved."""
    return {k: v for k, v in source_info.items() if k not in ("name", "store")}


def _rows_digest(rows: np.ndarray | None) -> str | None:
    if rows is None:
        return None
    import hashlib

    return hashlib.sha256(np.ascontiguousarray(rows, dtype=np.int64).tobytes()).hexdigest()


def calibrate_threshold(sae: SparseAutoencoder, source: DataSource, order: BatchOrder, start: int,
                        n_batches: int) -> float:
    """BatchTopK inference threshold: mean over training batches of the smallest activation BatchTopK keeps.

    Computed with the FINAL weights (a running average over training lags behind a moving threshold and
    under-shoots L0); with it, per-vector thresholding keeps k latents per vector on average.
    """
    k = sae.cfg.k
    vals = []
    with torch.no_grad():
        for t in range(start, start + max(1, n_batches)):
            x = torch.from_numpy(source.take(order.rows_at(t))).to(sae.W_enc.device)
            pre = torch.relu(sae._pre(sae.preprocess(x))).reshape(-1)
            kept = pre.topk(min(k * x.shape[0], pre.numel()), sorted=False).values
            kept = kept[kept > 0]
            if kept.numel():
                vals.append(float(kept.min()))
    if not vals:
        raise ValueError("BatchTopK calibration: no latent is ever active; the SAE did not train")
    return float(np.mean(vals))


def _save_checkpoint(path: Path, sae, adam: Adam, since_fired, step, fingerprint) -> None:
    # cloned: during training W_enc and b_enc are views of one block (model.bias_row_block); the checkpoint keeps
    # each tensor on a storage of its own
    state = {"model": {k: v.clone() for k, v in sae.state_dict().items()}, "optimizer": adam.state_dict(),
             "since_fired": since_fired.cpu(), "step": int(step), "fingerprint": fingerprint,
             "torch_rng": torch.get_rng_state()}
    with atomic_path(path) as tmp:
        torch.save(state, tmp)
