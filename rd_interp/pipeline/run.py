"""The staged job behind `rd-interp run` and `rd-interp demo`: plans each stage's key and calls its run().

Stages (each cached under OUT/stages/<name>-<key>/, see cache.py):
  data -> embed-<model> (one per family member) -> distill -> sae-<space>-s<seed> -> encode-<space>-s<seed>
  -> enrich-<space>-s<seed> -> report (OUT/report/, re-rendered every run; cheap)
Spaces: "large" (the last model's own embedding), "rd" (its reverse-distilled embedding along the chain),
"rd.base" / "rd.residual" (the prefix that equals the previous rd space / the new residual block), "small".
Run metadata (the normalised config, the stage index) goes to OUT/.rd_interp/, never over a user's file.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from rd_interp.config import RunConfig
from rd_interp.data import run as data_stage
from rd_interp.data.config import ANALYSIS
from rd_interp.device import resolve_device
from rd_interp.distill import controls as controls_stage
from rd_interp.distill import run as distill_stage
from rd_interp.enrich import run as enrich_stage
from rd_interp.io.atomic import read_json, write_json, write_text
from rd_interp.io.manifest import Manifest
from rd_interp.pipeline.cache import Stage, plan, run_stage
from rd_interp.pipeline.workers import WorkerPool, resolve_workers
from rd_interp.plm import run as embed_stage
from rd_interp.plm.cards import member_card
from rd_interp.probe import run as probe_stage
from rd_interp.report import run as report_stage
from rd_interp.sae import run as sae_stage
from rd_interp.sae import topk as sae_topk

log = logging.getLogger(__name__)

STAGES = ("data", "embed", "distill", "probe", "sae", "encode", "enrich", "report")
META_DIR = ".rd_interp"  # run metadata, under a name no user file has
#: control spaces that need a store of the controls stage -> the store's name there
CONTROL_STORES = {"control.random": "random_subspace", "control.naive": "naive_pca"}
#: members up to this checkpoint size are embedded in the worker processes (see Pipeline._parallel_embedding):
#: ESM-2 8M and 35M (~30 and ~130 MB) and the shipped family; from 150M (~600 MB) on, threads scale
PARALLEL_EMBED_MAX_BYTES = 256 << 20


@dataclass
class Space:
    """Where a space's vectors live: the stage holding the store, and an optional column block of it."""

    key: str  # large | small | rd | rd.base | rd.residual
    label: str  # e.g. "rd.mini-L[residual]"
    source: Manifest
    columns: dict | None  # {"start": a, "stop": b} (the SAE's recorded form) or None for all
    untrained: bool = False  # the untrained-SAE control
    store_name: str | None = None  # which store of a stage holding several (the controls)


class Pipeline:
    """Plans stage keys from a RunConfig and runs the stages that are not cached yet."""

    def __init__(self, cfg: RunConfig, *, force: tuple[str, ...] = (), no_recompute: bool = False,
                 progress: bool = True):
        cfg.validate()
        self.cfg = cfg
        self.root = Path(cfg.out_dir).expanduser()
        self.device = str(resolve_device(cfg.device))
        self.force = set(force)
        bad = sorted(self.force - set(STAGES))
        if bad:
            raise ValueError(f"--force: unknown stage(s) {bad}; one of {list(STAGES)}")
        self.no_recompute = no_recompute
        self.progress = progress
        self.timings: dict[str, float] = {}
        self.workers = 1  # the most worker processes a batch of independent chains used (see _jobs)
        self.worker_stages: set[str] = set()  # kinds of the stages that ran in worker processes
        self.stages: dict[str, Manifest] = {}
        self._enrichers: dict = {}
        self._pool: WorkerPool | None = None  # worker processes of this run (see _jobs), kept for the report

    def _worker_count(self) -> int:
        cfg = self.cfg
        return resolve_workers(cfg.workers, self.device, len(cfg.sae.spaces) * len(cfg.sae.seeds) + int(cfg.probe.enabled))

    def _run(self, stage: Stage, fn) -> Manifest:
        m = run_stage(stage, fn, force=stage.kind in self.force, no_recompute=self.no_recompute)
        self.timings[stage.name] = float(m.seconds or 0.0)
        self.stages[stage.name] = m
        return m

    # -- the run ------------------------------------------------------------------------------------------------
    def run(self, until: str = "report") -> dict[str, Manifest]:
        if until not in STAGES:
            raise ValueError(f"unknown stage {until!r}; one of {STAGES}")
        try:
            return self._run_all(until)
        finally:  # on a failure or Ctrl-C, the workers stop at once (their stages resume on the next run)
            if self._pool is not None:
                self._pool.close(terminate=sys.exc_info()[0] is not None)
                self._pool = None

    def _run_all(self, until: str) -> dict[str, Manifest]:
        cfg = self.cfg
        t_start = time.perf_counter()
        self.root.mkdir(parents=True, exist_ok=True)
        meta = self.root / META_DIR
        write_json(meta / "config.json", cfg.to_dict())
        write_text(meta / "config.toml", cfg.to_toml())

        inputs = data_stage.inputs_of(cfg.data)
        data_plan = plan(self.root, "data", "data", cfg.data, inputs, {"seed": cfg.seed})
        n = self._worker_count()
        if not data_plan.done and until not in ("data", "embed", "distill") and n > 1:
            # A new run: its worker processes start now, in the background of this process's first stages.
            self._pool = WorkerPool(n, warm=_warm_up)
        data = self._run(data_plan, lambda d: data_stage.run(inputs, cfg.data, d, seed=cfg.seed))
        if until == "data":
            return self._finish(meta)

        # (model, its stage params) once: the params hold the checkpoint's sha256, a full read of the weights
        members = [(model, embed_stage.model_params(model, cfg.models)) for model in cfg.models.family]
        embed_jobs = self._embed_jobs(data, "embed", members)
        fit_jobs: list = []
        fitset = None
        if until != "embed" and cfg.distill.fasta != ANALYSIS:  # the chain is fitted on proteins disjoint from these
            fit_in = data_stage.fitset_inputs(cfg.distill)
            fitset = self._run(plan(self.root, "fitset", "fitset", data_stage.fitset_config(cfg.distill), fit_in,
                                    {"seed": cfg.seed}),
                               lambda d: data_stage.select(fit_in, cfg.distill, d, seed=cfg.seed))
            fit_jobs = self._embed_jobs(fitset, "fitembed", members)
        done = [m for _, m in self._jobs(embed_jobs + fit_jobs, parallel=self._parallel_embedding())]
        embeds = done[:len(embed_jobs)]
        if until == "embed":
            return self._finish(meta)
        ins = {"embed": embeds}
        if fitset is not None:
            ins["fit"] = done[len(embed_jobs):]
        distill = self._run(plan(self.root, "distill", "distill", cfg.distill, ins, {"seed": cfg.seed}),
                            lambda d: distill_stage.run(ins, cfg.distill, d, seed=cfg.seed, device=self.device))
        which = [c for key, c in CONTROL_STORES.items() if key in cfg.sae.spaces]
        controls = None
        if which:
            params = controls_stage.controls_params(cfg.seed, which)
            controls = self._run(plan(self.root, "controls", "controls", cfg.distill, ins, params),
                                 lambda d: controls_stage.run(ins, cfg.distill, d, seed=cfg.seed, which=which,
                                                              device=self.device))
        if until == "distill":
            return self._finish(meta)

        spaces = self.spaces(embeds, distill, controls)
        jobs = [(probe_chain, self._probe_args(data, spaces, distill))] if cfg.probe.enabled else []
        if until != "probe":
            common = (data, until, tuple(sorted(self.force)), self.no_recompute, self.device)
            jobs += [(unit_chain, (self.root, cfg, spaces[key], seed, *common))
                     for key in cfg.sae.spaces for seed in cfg.sae.seeds]
        done = self._jobs(jobs)
        probes = self.stages.get("probe")
        if until in ("probe", "sae", "encode", "enrich"):
            return self._finish(meta)
        enriched = [m for name, m in done if name.startswith("enrich-")]

        t0 = time.perf_counter()
        run_info = {"timings": dict(self.timings), "device": self.device, "out_dir": str(self.root),
                    "workers": self.workers, "worker_stages": sorted(self.worker_stages),
                    "wall_seconds": round(time.perf_counter() - t_start, 1)}
        # The summary holds what determines the results, not where or how many processes made them: out_dir and
        # workers go to run_info.
        config = {k: v for k, v in cfg.to_dict().items() if k not in ("out_dir", "workers")}
        extra = {"probes": read_json(probes.path("probes.json"))} if probes is not None else {}
        cards = [c for c in (member_card(n) for n in cfg.models.family) if c is not None]
        if cards:  # shipped members: their perplexity and probe AUROC, before any SAE result
            extra["family"] = cards
        report = report_stage.run({"enrich": enriched}, cfg.report, self.root / "report", seed=cfg.seed,
                                  config=config, device=self.device, run_info=run_info, extra=extra,
                                  command="rd-interp run (config in provenance)",
                                  map_jobs=self._pool.map if self._pool is not None else None)
        self.timings["report"] = round(time.perf_counter() - t0, 3)
        self.stages["report"] = report
        # whole-run wall time including the report (run_info.json is written before the report is done)
        write_json(meta / "timings.json", {"timings": dict(self.timings), "device": self.device,
                                          "workers": self.workers, "worker_stages": sorted(self.worker_stages),
                                          "wall_seconds": round(time.perf_counter() - t_start, 1)})
        log.info("report: %s", report.dir / "report.html")
        return self._finish(meta)

    def _embed_jobs(self, data: Manifest, prefix: str, members: list[tuple[str, dict]]) -> list[tuple[Callable, tuple]]:
        """One embed chain per family member (model, stage params), of the proteins of `data` (stage names
        `<prefix>-<model>`)."""
        cfg = self.cfg
        jobs = []
        for model, params in members:
            st = plan(self.root, f"{prefix}-{params['model']}", "embed", cfg.models, {"data": data}, params)
            jobs.append((embed_chain, (st, {"data": data}, cfg.models, model, self.device,
                                       tuple(sorted(self.force)), self.no_recompute)))
        return jobs

    def _parallel_embedding(self) -> bool:
        """Embed in the worker processes (one model and protein set each) or here on all threads?

        Processes where the models are small: their GEMMs are too small for threads to share well (mini-L on
        this project's 2 cores: 2 one-thread processes 14.1k residues/s together, one two-thread process
        11.1k). Not for checkpoints over PARALLEL_EMBED_MAX_BYTES: there threads scale, and every process
        would hold its own copy of the weights."""
        sizes = [embed_stage.checkpoint_bytes(m, self.cfg.models) for m in self.cfg.models.family]
        return max(sizes) <= PARALLEL_EMBED_MAX_BYTES

    def _jobs(self, jobs: list[tuple[Callable, tuple]], *, parallel: bool = True) -> list[tuple[str, Manifest]]:
        """Independent stage chains (the probe; each (space, seed) unit's SAE -> encode -> enrich; each
        member's embedding), run in this process or spread over worker processes (rd_interp.pipeline.workers)
        when the config and the machine allow several (and `parallel`). Finished chains are read here, so a
        cached run starts no worker."""
        chains: list = [None] * len(jobs)
        for i, (fn, args) in enumerate(jobs):
            try:
                chains[i] = fn(*args, enrichers=self._enrichers, cached_only=True, runner=self._run)
            except NotCached:
                pass
        # Longest first (the probe, then units that train an SAE, then the untrained-SAE control, which only
        # encodes and enriches), so that the last job to start is a short one and no worker idles long at
        # the end; results still come back in job order.
        pending = sorted((i for i, c in enumerate(chains) if c is None), key=lambda i: _expected_cost(jobs[i]))
        n = resolve_workers(self.cfg.workers, self.device, len(pending)) if parallel else 1
        if n > 1 and self._pool is None:
            self._pool = WorkerPool(n)
        pool = self._pool if pending and parallel else None  # a run's warm pool serves even a single pending chain
        self.workers = max(self.workers, pool.workers if pool is not None else n)
        if pool is not None:
            for i, c in zip(pending, pool.map(_in_worker, [(jobs[i][0], *jobs[i][1]) for i in pending])):
                chains[i] = c
                self.worker_stages.update(name.split("-")[0] for name, _ in c)
        else:
            for i in pending:
                fn, args = jobs[i]
                chains[i] = fn(*args, progress=self.progress, enrichers=self._enrichers, runner=self._run)
        done = []
        for chain in chains:
            for name, m in chain:
                self.timings[name] = float(m.seconds or 0.0)
                self.stages[name] = m
                done.append((name, m))
        return done

    def _probe_args(self, data: Manifest, spaces: dict[str, Space], distill: Manifest) -> tuple:
        """probe_chain's arguments: linear probes of every space with a store (untrained-SAE control aside) and
        of the rd prefixes."""
        stores: list[Manifest] = []
        names: list[str | None] = []
        index: dict[tuple, int] = {}
        rows, keys = [], []
        for key in [*spaces]:
            sp = spaces[key]
            if sp.untrained or (key.startswith("control.") and key not in self.cfg.sae.spaces):
                continue
            ident = (sp.source.dir, sp.store_name)
            if ident not in index:
                index[ident] = len(stores)
                stores.append(sp.source)
                names.append(sp.store_name)
            cols = None if sp.columns is None else [sp.columns["start"], sp.columns["stop"]]
            rows.append({"label": sp.label, "kind": "control" if key.startswith("control.") else "space",
                         "store": index[ident], "columns": cols})
            keys.append(key)
        prefixes = {"label": spaces["rd"].label, "store": index[(distill.dir, None)],
                    "widths": [int(w) for w in distill.result["dims"]], "large": keys.index("large")}
        ins = {"data": data, "stores": stores}
        params = {"seed": self.cfg.seed, "spaces": rows, "prefixes": prefixes, "store_names": names}
        st = plan(self.root, "probe", "probe", self.cfg.probe, ins, params)
        return st, ins, self.cfg.probe, params, tuple(sorted(self.force)), self.no_recompute

    def _finish(self, meta: Path) -> dict[str, Manifest]:
        """Record which stage folders this config maps to (what `rd-interp explain` opens)."""
        index = {name: str(m.dir.relative_to(self.root)) for name, m in self.stages.items()}
        old = read_json(meta / "run.json")["stages"] if (meta / "run.json").is_file() else {}
        write_json(meta / "run.json", {"stages": {**old, **index}})
        return self.stages

    def spaces(self, embeds: list[Manifest], distill: Manifest, controls: Manifest | None = None) -> dict[str, Space]:
        large, small = embeds[-1].params["model"], embeds[0].params["model"]
        blocks = distill.result["blocks"]
        extra = {}
        if controls is not None:
            widths = controls.result["widths"]
            for key, name in CONTROL_STORES.items():
                if name in controls.result["stores"]:
                    label = (f"random{widths[name]} of {large}" if name == "random_subspace"
                             else f"naive PCA of [{'+'.join(controls.result[name]['members'])}]")
                    extra[key] = Space(key, label, controls, None, store_name=name)
        return {**extra, **{
            "large": Space("large", large, embeds[-1], None),
            "small": Space("small", small, embeds[0], None),
            "rd": Space("rd", f"rd.{large}", distill, None),
            "rd.base": Space("rd.base", f"rd.{large}[base]", distill, _cols(blocks["base"])),
            "rd.residual": Space("rd.residual", f"rd.{large}[residual]", distill, _cols(blocks["residual"])),
            "control.untrained": Space("control.untrained", f"{large}[untrained SAE]", embeds[-1], None,
                                       untrained=True),
        }}


def _expected_cost(job: tuple[Callable, tuple]) -> float:
    """Rank of a chain's expected duration, longest first (see Pipeline._jobs)."""
    fn, args = job
    if fn is probe_chain:
        return 0
    if fn is embed_chain:  # the larger model first
        return -float(embed_stage.checkpoint_bytes(args[3], args[2]))
    space: Space = args[2]  # unit_chain(root, cfg, space, seed, ...)
    return 2 if space.untrained else 1


class NotCached(Exception):
    """A chain has a stage still to compute (see unit_chain's cached_only)."""


def _step(out: list, stage: Stage, fn, force: tuple[str, ...], no_recompute: bool, cached_only: bool,
          runner: Callable | None) -> Manifest:
    if cached_only and (not stage.done or stage.kind in force):
        raise NotCached(stage.name)
    m = runner(stage, fn) if runner is not None else run_stage(stage, fn, force=stage.kind in force,
                                                                no_recompute=no_recompute)
    out.append((stage.name, m))
    return m


def probe_chain(stage: Stage, ins: dict, cfg: Any, params: dict, force: tuple[str, ...], no_recompute: bool, *,
                progress: bool = False, enrichers: dict | None = None, cached_only: bool = False,
                runner: Callable | None = None) -> list[tuple[str, Manifest]]:
    """The probe stage as a chain of one (see Pipeline._jobs); `progress` and `enrichers` are unused."""
    out: list[tuple[str, Manifest]] = []
    _step(out, stage, lambda d: probe_stage.run(ins, cfg, d, spaces=params["spaces"], prefixes=params["prefixes"],
                                                store_names=params["store_names"], seed=params["seed"]),
          force, no_recompute, cached_only, runner)
    return out


def embed_chain(stage: Stage, ins: dict, cfg: Any, model: str, device: str, force: tuple[str, ...],
                no_recompute: bool, *, progress: bool = False, enrichers: dict | None = None,
                cached_only: bool = False, runner: Callable | None = None) -> list[tuple[str, Manifest]]:
    """One member's embed stage as a chain of one (see Pipeline._jobs); `enrichers` is unused."""
    out: list[tuple[str, Manifest]] = []
    _step(out, stage, lambda d: embed_stage.run(ins, cfg, d, model=model, device=device, progress=progress),
          force, no_recompute, cached_only, runner)
    return out


def unit_chain(root: Path, cfg: RunConfig, space: Space, seed: int, data: Manifest, until: str, force: tuple[str, ...],
               no_recompute: bool, device: str, *, progress: bool = False, enrichers: dict | None = None,
               cached_only: bool = False, runner: Callable | None = None) -> list[tuple[str, Manifest]]:
    """One unit: the SAE of `space` with `seed`, its pooled encoding and its GO enrichment (each a cached
    stage; `until` stops the chain early). Returns (stage name, manifest) in order.

    `enrichers`: GO term matrices kept across units of one process (see rd_interp.enrich.run.run).
    `cached_only`: raise NotCached at the first stage that would have to run. `runner(stage, fn)`: how a stage
    is run in the calling process (Pipeline._run, which subclasses may meter); default run_stage."""
    out: list[tuple[str, Manifest]] = []

    def step(stage: Stage, fn) -> Manifest:
        return _step(out, stage, fn, force, no_recompute, cached_only, runner)

    params = {"seed": seed, "columns": space.columns, "label": space.label, "space": space.key,
              **({"untrained": True} if space.untrained else {}),
              **({"store_name": space.store_name} if space.store_name else {})}
    sae = step(plan(root, f"sae-{space.key}-s{seed}", "sae", cfg.sae, {"store": space.source}, params),
               lambda d: sae_stage.train({"store": space.source}, cfg.sae, d, seed=seed, columns=space.columns,
                                         label=space.label, space=space.key, untrained=space.untrained,
                                         store_name=space.store_name, device=device, progress=progress))
    if until == "sae":
        return out
    enc = step(plan(root, f"encode-{space.key}-s{seed}", "encode", cfg.encode, {"sae": sae}, {}),
               lambda d: sae_stage.encode({"sae": sae}, cfg.encode, d))
    if until == "encode":
        return out
    ins = {"scores": enc, "data": data}
    step(plan(root, f"enrich-{space.key}-s{seed}", "enrich", cfg.enrich, ins, {"seed": seed}),
         lambda d: enrich_stage.run(ins, cfg.enrich, d, seed=seed, enrichers=enrichers))
    return out


#: a worker process's GO term matrices, kept across the units it runs (built once per analysis set)
_WORKER_ENRICHERS: dict = {}


def _warm_up() -> None:
    """A new worker's first job (WorkerPool warm): finding this function imports every stage module; this loads
    the compiled top-k kernel too."""
    sae_topk.topk_ascending(torch.zeros(1, 4), 1)  # 2k < n: the kernel, not the torch.topk path


def _in_worker(fn: Callable, *args) -> list[tuple[str, Manifest]]:
    """A chain run in a worker process: no progress bars (several processes share the terminal)."""
    return fn(*args, progress=False, enrichers=_WORKER_ENRICHERS)


def _cols(block: list[int]) -> dict[str, int]:
    return {"start": int(block[0]), "stop": int(block[1])}


def run_pipeline(cfg: RunConfig, *, until: str = "report", force: tuple[str, ...] = (),
                 no_recompute: bool = False) -> Pipeline:
    p = Pipeline(cfg, force=force, no_recompute=no_recompute)
    p.run(until=until)
    return p
