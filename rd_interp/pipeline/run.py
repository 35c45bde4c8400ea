"""The staged job behind `rd-interp run` and `rd-interp demo`.

Stages (each cached under OUT/stages/<name>-<key>/, see cache.py):
  data -> embed-<model> (one per family member) -> distill -> sae-<space>-s<seed> -> enrich-<space>-s<seed>
  -> report (always re-rendered; cheap)
Spaces: "large" (the last model's own embedding), "rd" (its reverse-distilled embedding along the chain),
"rd.base" / "rd.residual" (the prefix that equals the previous rd space / the new residual block), "small".
"""

from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from rd_interp.config import SHIPPED, RunConfig
from rd_interp.device import resolve_device
from rd_interp.io import datasets
from rd_interp.io.annotations import read_annotations, write_annotations_tsv
from rd_interp.io.atomic import atomic_path, read_json, sha256_file, write_json, write_text
from rd_interp.io.fasta import read_fasta, write_fasta
from rd_interp.io.go import Ontology
from rd_interp.io.store import EmbeddingStore
from rd_interp.pipeline.cache import Stage, make_stage, run_stage

log = logging.getLogger(__name__)

STAGES = ("data", "embed", "distill", "sae", "enrich", "report")


def seeded_rank(ids: list[str], seed: int) -> np.ndarray:
    """A deterministic pseudo-random order of ids that does not depend on file order or Python's hash seed."""
    keys = [hashlib.sha256(f"{seed}:{i}".encode()).digest()[:8] for i in ids]
    return np.argsort(np.array([int.from_bytes(k, "big") for k in keys], dtype=np.uint64), kind="stable")


@dataclass
class SpaceSpec:
    """Where a space's vectors live: a store and an optional column block of it."""

    label: str  # human label, e.g. "rd.mini-M[residual]"
    store: Path
    columns: tuple[int, int] | None  # [start, stop) or None for all

    def column_slice(self) -> slice | None:
        return None if self.columns is None else slice(*self.columns)


class Pipeline:
    """Plans stage keys from a RunConfig (so a finished run can be re-opened by config alone) and runs them."""

    def __init__(self, cfg: RunConfig, *, force: tuple[str, ...] = ()):
        cfg.validate()
        self.cfg = cfg
        self.root = Path(cfg.out_dir)
        self.device = str(resolve_device(cfg.device))
        self.force = set(force)
        self.timings: dict[str, float] = {}
        self._stages: dict[str, dict] = {}
        self._enricher = None

    # -- input files -------------------------------------------------------------------------------------
    def input_paths(self) -> dict[str, Path]:
        d = self.cfg.data
        paths = {
            "fasta": datasets.shipped_proteins() if d.fasta == SHIPPED else Path(d.fasta),
            "annotations": datasets.shipped_annotations() if d.annotations == SHIPPED else Path(d.annotations),
            "ontology": datasets.shipped_obo() if d.ontology == SHIPPED else Path(d.ontology),
        }
        for what, p in paths.items():
            if not p.is_file():
                raise FileNotFoundError(f"data.{what}: {p} does not exist")
        return paths

    def check_inputs(self) -> dict[str, str]:
        """Checksums of every input file; computed before any work so the run is keyed by content."""
        return {what: sha256_file(p) for what, p in self.input_paths().items()}

    # -- stage planning ------------------------------------------------------------------------------------
    def _run(self, stage: Stage, fn) -> dict:
        info = run_stage(stage, fn, force=stage.name.split("-")[0] in self.force)
        self.timings[stage.name] = info["seconds"]
        self._stages[stage.name] = info
        return info

    def data_stage(self, checksums: dict[str, str]) -> Stage:
        from rd_interp.io.serialize import to_dict

        return make_stage(self.root, "data", {"inputs": checksums, "data": to_dict(self.cfg.data),
                                              "seed": self.cfg.seed})

    def embed_stage(self, data: Stage, model: str) -> Stage:
        m = self.cfg.models
        return make_stage(self.root, f"embed-{model_label(model)}", {
            "data": data.key, "model": model, "model_sha256": _model_checksum(model, m.weights_dir),
            "layer": m.layer, "dtype": m.dtype, "long_mode": m.long_mode})

    def distill_stage(self, embeds: list[Stage]) -> Stage:
        from rd_interp.io.serialize import to_dict

        return make_stage(self.root, "distill", {"embeds": [e.key for e in embeds],
                                                 "distill": to_dict(self.cfg.distill), "seed": self.cfg.seed})

    def sae_stage(self, space: str, source: list[Stage], seed: int) -> Stage:
        s = self.cfg.sae
        return make_stage(self.root, f"sae-{space}-s{seed}", {
            "sources": [x.key for x in source], "space": space, "seed": seed, "run_seed": self.cfg.seed,
            "architecture": s.architecture, "expansion": s.expansion, "k": s.k, "batch_size": s.batch_size,
            "n_steps": s.n_steps, "lr": s.lr, "heldout_fraction": s.heldout_fraction})

    def enrich_stage(self, sae: Stage, data: Stage, space: str, seed: int) -> Stage:
        from rd_interp.io.serialize import to_dict

        return make_stage(self.root, f"enrich-{space}-s{seed}", {
            "sae": sae.key, "data": data.key, "enrich": to_dict(self.cfg.enrich), "run_seed": self.cfg.seed})

    # -- the run ------------------------------------------------------------------------------------------------
    def run(self, until: str = "report") -> dict:
        if until not in STAGES:
            raise ValueError(f"unknown stage {until!r}; one of {STAGES}")
        t_start = time.perf_counter()
        self.root.mkdir(parents=True, exist_ok=True)
        write_json(self.root / "config.json", self.cfg.to_dict())
        (self.root / "config.toml").write_text(self.cfg.to_toml(), encoding="utf-8")
        checksums = self.check_inputs()

        data = self.data_stage(checksums)
        self._run(data, lambda d: self._do_data(d))
        if until == "data":
            return self._stages
        embeds = [self.embed_stage(data, m) for m in self.cfg.models.family]
        for model, st in zip(self.cfg.models.family, embeds):
            self._run(st, lambda d, model=model: self._do_embed(d, data.dir, model))
        if until == "embed":
            return self._stages
        distill = self.distill_stage(embeds)
        self._run(distill, lambda d: self._do_distill(d, data.dir, embeds))
        if until == "distill":
            return self._stages

        spaces = self.spaces(embeds, distill)
        sae_stages: dict[tuple[str, int], Stage] = {}
        for space in self.cfg.sae.spaces:
            spec, sources = spaces[space]
            for seed in self.cfg.sae.seeds:
                st = self.sae_stage(space, sources, seed)
                sae_stages[space, seed] = st
                self._run(st, lambda d, spec=spec, seed=seed: self._do_sae(d, spec, seed))
        if until == "sae":
            return self._stages

        enrich_stages: dict[tuple[str, int], Stage] = {}
        for (space, seed), st in sae_stages.items():
            est = self.enrich_stage(st, data, space, seed)
            enrich_stages[space, seed] = est
            self._run(est, lambda d, st=st, spec=spaces[space][0], seed=seed, space=space:
                      self._do_enrich(d, st.dir, data.dir, spec, space, seed))
        if until == "enrich":
            return self._stages

        from rd_interp.pipeline.summary import build_summary
        from rd_interp.report import render

        t0 = time.perf_counter()
        summary = build_summary(self, data, distill, spaces, sae_stages, enrich_stages, checksums)
        run_info = {"timings": dict(self.timings), "device": self.device,
                    "wall_seconds": round(time.perf_counter() - t_start, 1)}
        paths = render(summary, self.root / "report", figures=self.cfg.report.figures, run_info=run_info)
        self.timings["report"] = round(time.perf_counter() - t0, 3)
        log.info("report: %s", paths.get("report.html"))
        self._stages["report"] = {"paths": {k: str(v) for k, v in paths.items()}}
        return self._stages

    def spaces(self, embeds: list[Stage], distill: Stage) -> dict[str, tuple[SpaceSpec, list[Stage]]]:
        fam = self.cfg.models.family
        large, small = model_label(fam[-1]), model_label(fam[0])
        rd_store = distill.dir / "rd_store"
        info = read_json(distill.dir / "distill.json") if (distill.dir / "distill.json").exists() else None
        dims = info["dims"] if info else None  # accumulated rd dims per step: [k0, k1, ..., k_last]
        k_prev = dims[-2] if dims else None
        k_last = dims[-1] if dims else None
        return {
            "large": (SpaceSpec(large, embeds[-1].dir / "store", None), [embeds[-1]]),
            "small": (SpaceSpec(small, embeds[0].dir / "store", None), [embeds[0]]),
            "rd": (SpaceSpec(f"rd.{large}", rd_store, None), [distill]),
            "rd.base": (SpaceSpec(f"rd.{large}[base]", rd_store, (0, k_prev) if k_prev else None), [distill]),
            "rd.residual": (SpaceSpec(f"rd.{large}[residual]", rd_store,
                                      (k_prev, k_last) if k_prev else None), [distill]),
        }

    # -- stage bodies --------------------------------------------------------------------------------------------
    def _do_data(self, d: Path) -> dict:
        paths = self.input_paths()
        dc = self.cfg.data
        ontology = Ontology.load(paths["ontology"])
        annotations = read_annotations(paths["annotations"], fmt=dc.annotation_format, ontology=ontology)
        records = [r for r in read_fasta(paths["fasta"]) if dc.min_length <= len(r.sequence) <= dc.max_length]
        if not records:
            raise ValueError(f"{paths['fasta']}: no sequences with length in {dc.min_length}..{dc.max_length}")
        annotated = set(annotations.proteins)
        n_unannotated = sum(r.id not in annotated for r in records)
        if dc.max_proteins and len(records) > dc.max_proteins:
            keep = set(seeded_rank([r.id for r in records], self.cfg.seed)[: dc.max_proteins].tolist())
            records = [r for i, r in enumerate(records) if i in keep]
        ids = [r.id for r in records]
        write_fasta(d / "proteins.fasta", records)
        write_annotations_tsv(d / "annotations.tsv", annotations.subset(ids), ontology)
        result = {"n_proteins": len(ids), "n_residues": int(sum(len(r.sequence) for r in records)),
                  "n_without_annotation": int(sum(i not in annotated for i in ids)),
                  "n_input_without_annotation": int(n_unannotated),
                  "annotation_report": annotations.report.to_dict(), "ontology_release": ontology.release}
        write_json(d / "data.json", result)
        return result

    def _do_embed(self, d: Path, data_dir: Path, model: str) -> dict:
        from rd_interp.plm.embed import EmbedConfig, embed_fasta

        m = self.cfg.models
        cfg = EmbedConfig(model=model, layer=m.layer, dtype=m.dtype, device=self.device,
                          max_tokens=m.max_tokens, long_mode=m.long_mode, weights_dir=m.weights_dir or None)
        store = embed_fasta(data_dir / "proteins.fasta", d / "store", cfg)
        return {"dim": store.dim, "n_rows": store.n_rows, "n_proteins": store.n_proteins,
                "manifest": store.manifest}

    def _do_distill(self, d: Path, data_dir: Path, embeds: list[Stage]) -> dict:
        """Fit the chain on a seeded subset of proteins (the paper uses ~1,000), transform every protein."""
        from rd_interp.distill.chain import ReverseDistillationChain
        from rd_interp.distill.reverse import check_aligned

        dc = self.cfg.distill
        stores = [EmbeddingStore(e.dir / "store") for e in embeds]
        order = seeded_rank(stores[0].ids, self.cfg.seed)
        train_idx = np.sort(order[: min(dc.train_proteins, stores[0].n_proteins)])
        rows = stores[0].protein_rows(train_idx)
        chain = ReverseDistillationChain(names=[model_label(m) for m in self.cfg.models.family],
                                         regressor=dc.regressor,
                                         sigma_sq=dc.sigma_sq, alpha=dc.ridge_alpha, device=self.device)
        check_aligned(stores)  # same proteins, same lengths, same order in every model's store
        chain.fit([s.take(rows) for s in stores])
        chain.save(d / "chain")
        chain.transform_stores(stores, d / "rd_store", dtype=self.cfg.models.dtype)
        result = {"dims": [s.dim for s in stores], "train_proteins": int(len(train_idx)),
                  "train_rows": int(len(rows)), "steps": chain.summary()["steps"]}
        write_json(d / "distill.json", result)
        return result

    def heldout_rows(self, store: EmbeddingStore) -> tuple[np.ndarray, np.ndarray]:
        """Protein-level split shared by every SAE of the run: (train rows, held-out rows)."""
        order = seeded_rank(store.ids, self.cfg.seed + 1)
        n_held = max(1, int(round(self.cfg.sae.heldout_fraction * store.n_proteins)))
        held = np.sort(order[:n_held])
        train = np.sort(order[n_held:])
        return store.protein_rows(train), store.protein_rows(held)

    def _do_sae(self, d: Path, spec: SpaceSpec, seed: int) -> dict:
        from rd_interp.sae.io import save_sae
        from rd_interp.sae.metrics import evaluate
        from rd_interp.sae.model import SAEConfig
        from rd_interp.sae.train import TrainConfig, train_sae

        s = self.cfg.sae
        store = EmbeddingStore(spec.store)
        cols = spec.column_slice()
        d_in = store.dim if cols is None else cols.stop - cols.start
        train_rows, held_rows = self.heldout_rows(store)
        sae_cfg = SAEConfig(architecture=s.architecture, d_in=d_in, n_latents=s.expansion * d_in,
                            k=min(s.k, s.expansion * d_in))
        train_cfg = TrainConfig(batch_size=s.batch_size, n_steps=s.n_steps, lr=s.lr, seed=seed,
                                device=self.device)
        sae = train_sae(store, sae_cfg, train_cfg, columns=cols, rows=train_rows,
                        checkpoint_dir=d / "checkpoints", progress=True)
        metrics = evaluate(sae, store, columns=cols, rows=held_rows)
        save_sae(sae, d / "sae", extra_cfg={"source_store": str(spec.store), "columns": spec.columns,
                                            "space": spec.label, "seed": seed, "metrics": _jsonable(metrics)})
        write_json(d / "metrics.json", _jsonable(metrics))
        return {"space": spec.label, "seed": seed, "d_in": d_in, "n_latents": sae_cfg.n_latents,
                "metrics": _jsonable(metrics)}

    def enrich_config(self):
        from rd_interp.enrich.activations import StudySetConfig
        from rd_interp.enrich.config import EnrichConfig

        e = self.cfg.enrich
        return (EnrichConfig(alpha=e.alpha, min_study_count=e.min_study_count, general_level=e.general_level,
                             alternative=e.alternative, global_bh=e.correction == "global",
                             base_share_hi=e.base_share_hi, base_share_lo=e.base_share_lo),
                StudySetConfig(mode=e.study_mode, top_n=e.top_n, tau=e.tau, min_proteins=e.min_proteins))

    def enricher(self, data_dir: Path, ids: list[str]):
        """One propagated protein x term matrix (and IC table) per run, shared by every space and seed."""
        from rd_interp.enrich.engine import GOEnricher

        if self._enricher is None or list(self._enricher.protein_ids) != list(ids):
            ontology = Ontology.load(self.input_paths()["ontology"])
            annotations = read_annotations(data_dir / "annotations.tsv", fmt="tsv", ontology=ontology)
            self._enricher = GOEnricher(ids, annotations, ontology, self.enrich_config()[0])
        return self._enricher

    def _do_enrich(self, d: Path, sae_dir: Path, data_dir: Path, spec: SpaceSpec, space: str, seed: int) -> dict:
        from rd_interp.enrich.coverage import enrich_latents
        from rd_interp.enrich.null import null_control
        from rd_interp.sae.encode import decoder_share, encode_proteins
        from rd_interp.sae.io import load_sae

        e = self.cfg.enrich
        store = EmbeddingStore(spec.store)
        sae = load_sae(sae_dir / "sae")
        scores = encode_proteins(sae, store, columns=spec.column_slice(), pooling=e.pooling)
        save_scores(d, scores, store.ids)
        enricher = self.enricher(data_dir, store.ids)
        ecfg, study = self.enrich_config()
        result = enrich_latents(scores, store.ids, None, None, ecfg, study_cfg=study, enricher=enricher)
        share = None
        if space == "rd":  # attribution of each latent to the base prefix vs the residual block
            k_base = read_json(Path(spec.store).parent / "distill.json")["dims"][-2]
            share = decoder_share(sae, slice(0, k_base))
            np.save(d / "decoder_share.npy", share, allow_pickle=False)
        result.save(d / "real", decoder_share=share)
        out = {"real": result.summary(decoder_share=share)}
        if e.null_control:
            null = null_control(scores, store.ids, None, None, ecfg, study_cfg=study, enricher=enricher,
                                seeds=[10_000 + seed], real=result)
            for r, s in zip(null.results, null.seeds):
                r.save(d / f"null_{s}")
            out["null"] = [r.summary() for r in null.results]
            out["null_control"] = null.summary()
        write_json(d / "enrich.json", out)
        return {"space": spec.label, "seed": seed,
                "n_terms_captured": out["real"]["n_terms_captured"]["total"]}


def _model_checksum(model: str, weights_dir: str) -> str:
    """Key embeddings by the weights' bytes, not the name, so retrained weights invalidate the cache."""
    from rd_interp.plm.esm import resolve_checkpoint

    _, path = resolve_checkpoint(model, weights_dir=weights_dir or None)
    return sha256_file(path)


def model_label(name: str) -> str:
    """Short, path-safe label of a model: a checkpoint path's stem, else the name itself."""
    if name.endswith(".pt"):
        name = Path(name).stem
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


def _jsonable(obj):
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, np.generic):
        return obj.item()
    return obj


def save_scores(d: Path, scores: sp.csr_matrix, ids: list[str]) -> None:
    """scores.npz (scipy save_npz) + proteins.txt: the inputs `rd-interp enrich` takes on its own."""
    with atomic_path(d / "scores.npz", suffix=".npz") as tmp:
        sp.save_npz(tmp, scores.tocsr(), compressed=True)
    write_text(d / "proteins.txt", "".join(f"{i}\n" for i in ids))


def load_scores(d: Path) -> tuple[sp.csr_matrix, list[str]]:
    ids = (d / "proteins.txt").read_text(encoding="utf-8").splitlines()
    return sp.load_npz(d / "scores.npz").tocsr(), ids


def run_pipeline(cfg: RunConfig, *, until: str = "report", force: tuple[str, ...] = ()) -> Pipeline:
    p = Pipeline(cfg, force=force)
    p.run(until=until)
    return p

