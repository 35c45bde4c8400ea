"""Reverse distillation along a model family, and writing rd embeddings to stores.

chain mode:  rd_1 = RD(H_0 -> H_1), rd_2 = RD(rd_1 -> H_2), ...  each step's small input is the
             accumulated rd embedding, so rd_k's first columns are exactly rd_(k-1) (nested prefixes).
direct mode: RD(H_0 -> H_k) for every k, the "jump" ablation (8M -> 650M without the middle models).

Fitting over stores streams: for step k the earlier steps are applied to each block on the fly, so no
intermediate rd store is needed and memory stays O(k^2) whatever N is.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from rd_interp.distill.reverse import ReverseDistiller, _is_store, aligned_chunks, check_aligned
from rd_interp.distill.stats import as_2d
from rd_interp.io.atomic import read_json, sha256_json, write_json
from rd_interp.io.provenance import versions

log = logging.getLogger(__name__)

CHAIN_FORMAT = "rd_interp.reverse_distillation_chain/1"
MODES = ("chain", "direct")


def _store_identity(store: Any) -> dict:
    """What identifies an input store in a derived store's manifest (for resume refusal)."""
    m = store.manifest
    return {"path": str(store.path), "model": m.get("model"), "dim": int(store.dim), "n_rows": int(store.n_rows),
            "shards_sha256": sha256_json(m.get("shards", []))}


def transform_stores(fn: Callable[[list], Any], stores: Sequence[Any], out_path: str | os.PathLike, *, dim: int,
                     model: str, fingerprint: str, dtype: str | None = None, chunk_rows: int = 65536,
                     progress: bool = False, shard_rows: int = 1 << 20) -> Any:
    """Write fn(blocks) for aligned protein-complete blocks of `stores` into a new store.

    Resumable: proteins already committed to `out_path` are skipped; a store made by a different model
    or from different inputs is refused (StoreWriter compares manifests).
    """
    from rd_interp.io.store import StoreWriter

    check_aligned(stores)
    ref = stores[-1]
    dtype = dtype or str(ref.dtype)
    manifest = {
        "model": model,
        "kind": "reverse_distillation",
        "distiller_fingerprint": fingerprint,
        "inputs": [_store_identity(s) for s in stores],
    }
    for k in ("layer", "sequence_file", "sequence_sha256"):  # the keys plm.embed writes
        if k in ref.manifest:
            manifest[k] = ref.manifest[k]
    writer = StoreWriter(out_path, dim=dim, manifest=manifest, dtype=dtype, shard_rows=shard_rows)
    ids, offsets, lengths = ref.ids, np.asarray(ref.offsets), np.asarray(ref.lengths)
    i, n_prot = 0, len(ids)
    while i < n_prot and ids[i] in writer.done:
        i += 1
    if i:
        log.info("%s: %d/%d proteins already written, resuming", out_path, i, n_prot)
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=n_prot, initial=i, unit="protein", desc=f"rd -> {Path(out_path).name}")
    try:
        while i < n_prot:
            j, rows = i, 0
            while j < n_prot and (j == i or rows + lengths[j] <= chunk_rows):
                rows += int(lengths[j])
                j += 1
            a, b = int(offsets[i]), int(offsets[i] + rows)
            out = fn([s.rows(a, b) for s in stores])
            out = out.detach().cpu().numpy() if hasattr(out, "detach") else np.asarray(out)
            pos = 0
            for k in range(i, j):
                L = int(lengths[k])
                if ids[k] not in writer.done:
                    writer.append(ids[k], out[pos:pos + L])
                pos += L
            if bar is not None:
                bar.update(j - i)
            i = j
        return writer.close()
    finally:
        if bar is not None:
            bar.close()


class ReverseDistillationChain:
    """Fit/apply reverse distillation along a family H_0 (smallest) ... H_K (largest).

    `names` labels the members (e.g. ["8M", "35M", "150M"]); other keyword arguments are passed to each
    step's ReverseDistiller (regressor, sigma_sq, alpha, device, chunk_rows, ...).
    """

    def __init__(self, names: Sequence[str] | None = None, mode: str = "chain", **distiller_kwargs: Any):
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        self.names = list(names) if names is not None else None
        self.mode = mode
        self.distiller_kwargs = dict(distiller_kwargs)
        self.chunk_rows = int(self.distiller_kwargs.get("chunk_rows", 65536))

    # -- helpers --------------------------------------------------------------------------------
    def _prepare(self, embeddings: Sequence[Any]) -> list:
        if len(embeddings) < 2:
            raise ValueError(f"a chain needs at least 2 embeddings (small -> large), got {len(embeddings)}")
        srcs = [e if _is_store(e) else as_2d(e, f"embedding {i}") for i, e in enumerate(embeddings)]
        dims = [s.dim if _is_store(s) else s.shape[1] for s in srcs]
        if any(b <= a for a, b in zip(dims, dims[1:])) and self.mode == "chain":
            raise ValueError(f"chain widths must increase strictly (small -> large), got {dims}")
        if self.mode == "direct" and any(d <= dims[0] for d in dims[1:]):
            raise ValueError(f"direct jumps need every target wider than the source, got {dims}")
        if self.names is not None and len(self.names) != len(srcs):
            raise ValueError(f"{len(self.names)} names for {len(srcs)} embeddings")
        if self.names is None:
            self.names = [str(s.manifest.get("model")) if _is_store(s) else f"H{i}" for i, s in enumerate(srcs)]
        check_aligned(srcs)
        return srcs

    def _small_block(self, blocks: list, k: int) -> Any:
        """The small input of step k (0-based) for one row block: rd_k in chain mode, H_0 in direct mode."""
        if self.mode == "direct":
            return blocks[0]
        rd = blocks[0]
        for s in range(k):
            rd = self.steps_[s].transform(rd, blocks[s + 1])
        return rd

    # -- fit / transform ------------------------------------------------------------------------
    def fit(self, embeddings: Sequence[Any]) -> ReverseDistillationChain:
        """embeddings: arrays and/or aligned stores, smallest model first."""
        srcs = self._prepare(embeddings)
        self.steps_: list[ReverseDistiller] = []
        for k in range(1, len(srcs)):
            small_name = self.names[0] if self.mode == "direct" else (
                self.names[0] if k == 1 else "+".join(self.names[:k]))
            step = ReverseDistiller(**self.distiller_kwargs, small_name=small_name, large_name=self.names[k])
            used = [0] + (list(range(1, k)) if self.mode == "chain" else []) + [k]
            sub = [srcs[i] for i in used]

            def pairs(sub=sub, k=k):
                for blocks in aligned_chunks(sub, self.chunk_rows):
                    full = blocks if self.mode == "chain" else [blocks[0]] + [None] * (k - 1) + [blocks[-1]]
                    yield self._small_block(full, k - 1), blocks[-1]

            step.fit(pairs())
            self.steps_.append(step)
            log.info("chain step %d/%d (%s -> %s) fitted", k, len(srcs) - 1, small_name, self.names[k])
        return self

    fit_stores = fit

    def transform(self, embeddings: Sequence[Any]) -> list:
        """One output per step: rd_1 .. rd_K (chain) or the direct jumps H_0 -> H_k."""
        self._check_fitted()
        srcs = self._prepare_transform(embeddings)
        n = check_aligned(srcs)
        outs: list = [None] * len(self.steps_)
        start = 0
        for blocks in aligned_chunks(srcs, self.chunk_rows):
            rows = blocks[0].shape[0]
            for k, r in enumerate(self._transform_blocks(blocks)):
                r = r.detach().cpu().numpy() if hasattr(r, "detach") else r
                if outs[k] is None:
                    outs[k] = np.empty((n, r.shape[1]), dtype=r.dtype)
                outs[k][start:start + rows] = r
            start += rows
        if isinstance(embeddings[0], (np.ndarray,)) or _is_store(embeddings[0]):
            return outs
        import torch

        return [torch.from_numpy(o) for o in outs]

    def _prepare_transform(self, embeddings: Sequence[Any]) -> list:
        if len(embeddings) != len(self.steps_) + 1:
            raise ValueError(f"expected {len(self.steps_) + 1} embeddings for a {len(self.steps_)}-step chain, "
                             f"got {len(embeddings)}")
        return [e if _is_store(e) else as_2d(e, f"embedding {i}") for i, e in enumerate(embeddings)]

    def _transform_blocks(self, blocks: list, upto: int | None = None) -> list:
        outs, rd = [], blocks[0]
        for k, step in enumerate(self.steps_[: None if upto is None else upto + 1]):
            small = rd if self.mode == "chain" else blocks[0]
            rd = step.transform(small, blocks[k + 1])
            outs.append(rd)
        return outs

    def transform_last(self, blocks: list) -> Any:
        return self._transform_blocks(blocks)[-1]

    def transform_stores(self, stores: Sequence[Any], out_path: str | os.PathLike, *, step: int | None = None,
                         dtype: str | None = None, progress: bool = False) -> Any:
        """Write the output of `step` (default: the last) for aligned stores H_0..H_K into a new store."""
        self._check_fitted()
        k = len(self.steps_) - 1 if step is None else int(step)
        if not 0 <= k < len(self.steps_):
            raise ValueError(f"step must be in [0, {len(self.steps_) - 1}], got {step}")
        used = list(range(k + 2)) if self.mode == "chain" else [0, k + 1]
        if len(stores) != len(self.steps_) + 1:
            raise ValueError(f"expected {len(self.steps_) + 1} stores, got {len(stores)}")
        sub = [stores[i] for i in used]
        st = self.steps_[k]
        if self.mode == "chain":
            fn = lambda blocks: self._transform_blocks(blocks, upto=k)[k]
        else:
            fn = lambda blocks: st.transform(blocks[0], blocks[1])
        fp = sha256_json([s.fingerprint() for s in self.steps_[: k + 1]])
        return transform_stores(fn, sub, out_path, dim=st.k_small_ + st.n_components_, model=st.model_name(),
                                fingerprint=fp, dtype=dtype, chunk_rows=self.chunk_rows, progress=progress)

    def transform_store(self, store_small_rd: Any, store_large: Any, out_path: str | os.PathLike, *,
                        step: int | None = None, dtype: str | None = None, progress: bool = False) -> Any:
        """Apply ONE step to stores of its own inputs (the previous rd store and the large store).

        The step defaults to the one whose widths match the two stores. Use this to build rd stores
        step by step; transform_stores() goes from the base stores in one pass instead.
        """
        self._check_fitted()
        if step is None:
            hits = [k for k, s in enumerate(self.steps_)
                    if (s.k_small_, s.k_large_) == (int(store_small_rd.dim), int(store_large.dim))]
            if not hits:
                raise ValueError(f"no step of this chain maps width {store_small_rd.dim} -> {store_large.dim}; "
                                 f"steps: {[(s.k_small_, s.k_large_) for s in self.steps_]}")
            step = hits[-1]
        return self.steps_[step].transform_store(store_small_rd, store_large, out_path, dtype=dtype,
                                                 progress=progress)

    # -- reporting / persistence ----------------------------------------------------------------
    def _check_fitted(self) -> None:
        if not hasattr(self, "steps_"):
            raise ValueError("this ReverseDistillationChain is not fitted yet; call fit() or load()")

    def summary(self) -> dict:
        self._check_fitted()
        return {"mode": self.mode, "members": list(self.names), "steps": [s.summary() for s in self.steps_]}

    def save(self, path: str | os.PathLike, *, extra: dict | None = None) -> Path:
        """Directory: chain.json + step_01/, step_02/, ... (each a ReverseDistiller.save directory)."""
        self._check_fitted()
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        steps = []
        for k, st in enumerate(self.steps_, start=1):
            st.save(path / f"step_{k:02d}")
            steps.append({"dir": f"step_{k:02d}", "fingerprint": st.fingerprint()})
        kwargs = {k: v for k, v in self.distiller_kwargs.items() if k != "device"}
        write_json(path / "chain.json", {"format": CHAIN_FORMAT, "mode": self.mode, "names": self.names,
                                         "distiller_kwargs": kwargs, "steps": steps, "summary": self.summary(),
                                         "versions": versions(), **({"extra": extra} if extra else {})})
        return path

    @classmethod
    def load(cls, path: str | os.PathLike, *, device: str | None = None) -> ReverseDistillationChain:
        path = Path(path)
        mpath = path / "chain.json"
        if not mpath.is_file():
            raise FileNotFoundError(f"{mpath}: missing (not a saved reverse distillation model directory?)")
        meta = read_json(mpath)
        if meta.get("format") != CHAIN_FORMAT:
            raise ValueError(f"{mpath}: format {meta.get('format')!r}, expected {CHAIN_FORMAT!r}")
        kwargs = dict(meta["distiller_kwargs"])
        if device is not None:
            kwargs["device"] = device
        obj = cls(names=meta["names"], mode=meta["mode"], **kwargs)
        obj.steps_ = []
        for s in meta["steps"]:
            st = ReverseDistiller.load(path / s["dir"], device=device)
            if st.fingerprint() != s["fingerprint"]:
                raise ValueError(f"{path / s['dir']}: does not match the fingerprint recorded in {mpath}")
            obj.steps_.append(st)
        return obj
