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
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from rd_interp.distill.reverse import ReverseDistiller
from rd_interp.distill.stats import as_2d
from rd_interp.distill.stores import aligned_chunks, check_aligned, is_store, transform_stores
from rd_interp.io.atomic import read_json, sha256_json, write_json
from rd_interp.io.provenance import versions

log = logging.getLogger(__name__)

CHAIN_FORMAT = "rd_interp.reverse_distillation_chain/1"
MODES = ("chain", "direct")


class ReverseDistillationChain:
    """Fit/apply reverse distillation along a family H_0 (smallest) ... H_K (largest).

    `names` labels the members (e.g. ["8M", "35M", "150M"]; None: the stores' model names, fitted as
    ``names_``); the other parameters are those of each step's ReverseDistiller. A scikit-learn estimator:
    fit never changes a parameter, and ``sklearn.base.clone`` round-trips.
    """

    def __init__(self, names: Sequence[str] | None = None, mode: str = "chain", *, regressor: str = "pcr",
                 sigma_sq: float | None = None, alpha: float = 1.0, min_variance_explained: float = 0.95,
                 device: str = "cpu", chunk_rows: int = 65536):
        self.names = names
        self.mode = mode
        self.regressor = regressor
        self.sigma_sq = sigma_sq
        self.alpha = alpha
        self.min_variance_explained = min_variance_explained
        self.device = device
        self.chunk_rows = chunk_rows
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")

    @classmethod
    def _get_param_names(cls) -> list[str]:
        import inspect

        return [p for p in inspect.signature(cls.__init__).parameters if p != "self"]

    def get_params(self, deep: bool = True) -> dict:
        return {k: getattr(self, k) for k in self._get_param_names()}

    def set_params(self, **params: Any) -> ReverseDistillationChain:
        bad = sorted(set(params) - set(self._get_param_names()))
        if bad:
            raise ValueError(f"invalid parameter(s) {bad}; valid: {self._get_param_names()}")
        for k, v in params.items():
            setattr(self, k, v)
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {self.mode!r}")
        return self

    def _step_params(self) -> dict[str, Any]:
        """The ReverseDistiller parameters shared by every step (introspected, not listed by hand)."""
        own = set(ReverseDistiller._get_param_names())
        return {k: v for k, v in self.get_params().items() if k in own}

    # -- helpers --------------------------------------------------------------------------------
    def _prepare(self, embeddings: Sequence[Any]) -> list:
        if len(embeddings) < 2:
            raise ValueError(f"a chain needs at least 2 embeddings (small -> large), got {len(embeddings)}")
        srcs = [e if is_store(e) else as_2d(e, f"embedding {i}") for i, e in enumerate(embeddings)]
        dims = [s.dim if is_store(s) else s.shape[1] for s in srcs]
        if any(b <= a for a, b in zip(dims, dims[1:])) and self.mode == "chain":
            raise ValueError(f"chain widths must increase strictly (small -> large), got {dims}")
        if self.mode == "direct" and any(d <= dims[0] for d in dims[1:]):
            raise ValueError(f"direct jumps need every target wider than the source, got {dims}")
        if self.names is not None and len(self.names) != len(srcs):
            raise ValueError(f"{len(self.names)} names for {len(srcs)} embeddings")
        check_aligned(srcs)
        return srcs

    def _names_for(self, srcs: list) -> list[str]:
        if self.names is not None:
            return [str(n) for n in self.names]
        return [str(s.manifest.get("model")) if is_store(s) else f"H{i}" for i, s in enumerate(srcs)]

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
        self.names_ = self._names_for(srcs)
        self.steps_: list[ReverseDistiller] = []
        chunk = int(self.chunk_rows)
        for k in range(1, len(srcs)):
            small_name = self.names_[0] if self.mode == "direct" else (
                self.names_[0] if k == 1 else "+".join(self.names_[:k]))
            step = ReverseDistiller(**{**self._step_params(), "small_name": small_name,
                                       "large_name": self.names_[k]})
            used = [0] + (list(range(1, k)) if self.mode == "chain" else []) + [k]
            sub = [srcs[i] for i in used]

            def pairs(sub=sub, k=k):
                for blocks in aligned_chunks(sub, chunk):
                    full = blocks if self.mode == "chain" else [blocks[0]] + [None] * (k - 1) + [blocks[-1]]
                    yield self._small_block(full, k - 1), blocks[-1]

            step.fit(pairs())
            self.steps_.append(step)
            log.info("chain step %d/%d (%s -> %s) fitted", k, len(srcs) - 1, small_name, self.names_[k])
        return self

    fit_stores = fit

    def transform(self, embeddings: Sequence[Any]) -> list:
        """One output per step: rd_1 .. rd_K (chain) or the direct jumps H_0 -> H_k."""
        self._check_fitted()
        srcs = self._prepare_transform(embeddings)
        n = check_aligned(srcs)
        outs: list = [None] * len(self.steps_)
        start = 0
        for blocks in aligned_chunks(srcs, int(self.chunk_rows)):
            rows = blocks[0].shape[0]
            for k, r in enumerate(self._transform_blocks(blocks)):
                r = r.detach().cpu().numpy() if hasattr(r, "detach") else r
                if outs[k] is None:
                    outs[k] = np.empty((n, r.shape[1]), dtype=r.dtype)
                outs[k][start:start + rows] = r
            start += rows
        if isinstance(embeddings[0], (np.ndarray,)) or is_store(embeddings[0]):
            return outs
        import torch

        return [torch.from_numpy(o) for o in outs]

    def _prepare_transform(self, embeddings: Sequence[Any]) -> list:
        if len(embeddings) != len(self.steps_) + 1:
            raise ValueError(f"expected {len(self.steps_) + 1} embeddings for a {len(self.steps_)}-step chain, "
                             f"got {len(embeddings)}")
        return [e if is_store(e) else as_2d(e, f"embedding {i}") for i, e in enumerate(embeddings)]

    def _transform_blocks(self, blocks: list, upto: int | None = None) -> list:
        outs, rd = [], blocks[0]
        for k, step in enumerate(self.steps_[: None if upto is None else upto + 1]):
            small = rd if self.mode == "chain" else blocks[0]
            rd = step.transform(small, blocks[k + 1])
            outs.append(rd)
        return outs

    def transform_blocks(self, blocks: list) -> list:
        """Every step's output for one aligned row block [H_0, ..., H_K]: rd_1 .. rd_K (chain mode) or the
        direct jumps [H_0, H_res(0 -> k)]; step k's first k_small columns are its small input."""
        self._check_fitted()
        return self._transform_blocks(blocks)

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
                                fingerprint=fp, dtype=dtype, chunk_rows=int(self.chunk_rows), progress=progress,
                                blocks=st.blocks())

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
        return {"mode": self.mode, "members": list(self.names_), "steps": [s.summary() for s in self.steps_]}

    def save(self, path: str | os.PathLike, *, extra: dict | None = None) -> Path:
        """Directory: chain.json + step_01/, step_02/, ... (each a ReverseDistiller.save directory)."""
        self._check_fitted()
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        steps = []
        for k, st in enumerate(self.steps_, start=1):
            st.save(path / f"step_{k:02d}")
            steps.append({"dir": f"step_{k:02d}", "fingerprint": st.fingerprint()})
        params = {k: v for k, v in self.get_params().items() if k != "device"}
        write_json(path / "chain.json", {"format": CHAIN_FORMAT, "params": params, "names": self.names_,
                                         "steps": steps, "summary": self.summary(),
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
        if "params" in meta:
            params = dict(meta["params"])
        else:  # written before the estimator contract: step kwargs + names + mode
            params = {**meta["distiller_kwargs"], "names": meta["names"], "mode": meta["mode"]}
        if device is not None:
            params["device"] = device
        obj = cls(**params)
        obj.names_ = list(meta["names"])
        obj.steps_ = []
        for s in meta["steps"]:
            st = ReverseDistiller.load(path / s["dir"], device=device)
            if st.fingerprint() != s["fingerprint"]:
                raise ValueError(f"{path / s['dir']}: does not match the fingerprint recorded in {mpath}")
            obj.steps_.append(st)
        return obj
