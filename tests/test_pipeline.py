"""End-to-end: the staged job on shipped proteins with tiny random ESM-2 checkpoints (fast), the cache, and
the same stages run alone from files through the CLI.

The finished run is built once (module fixture) and never mutated: tests that re-run or change options work
on their own copy of the run folder (which also checks that a moved run folder stays valid).
"""

import json
import shutil

import pytest

from rd_interp.config import RunConfig
from rd_interp.io.atomic import read_json
from rd_interp.io.manifest import load_manifest


@pytest.fixture(scope="module")
def tiny_family(tmp_path_factory):
    from rd_interp.plm.family import MemberSpec, alphabet, build_model, save_esm2_checkpoint

    d = tmp_path_factory.mktemp("models")
    paths = []
    for i, (layers, dim) in enumerate([(1, 16), (2, 32)]):
        model = build_model(MemberSpec(f"tiny{i}", layers, dim, 2, 1000), alphabet(), seed=i)
        p = d / f"tiny{dim}.pt"
        save_esm2_checkpoint(model, p, half=False)
        paths.append(str(p))
    return paths


def _config(out, family) -> RunConfig:
    cfg = RunConfig(out_dir=str(out), device="cpu")
    cfg.data.max_proteins = 90
    cfg.data.max_length = 250
    cfg.models.family = family
    cfg.distill.train_proteins = 40
    cfg.sae.n_latents = 64  # the same dictionary size for every space (size-matched)
    cfg.sae.k_ratio = 0.125  # k = 4 on the 32-dim spaces, 2 on the 16-dim blocks
    cfg.sae.seeds = [0, 1]
    cfg.sae.n_steps = 25
    cfg.sae.batch_size = 256
    cfg.enrich.top_n = 10
    cfg.enrich.min_proteins = 3
    cfg.enrich.n_permutations = 20
    cfg.report.top_latents = 3
    cfg.workers = 2  # the SAE units and the probe in two worker processes (test_worker_count_...: vs one)
    cfg.validate()
    return cfg


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, tiny_family):
    from rd_interp.pipeline.run import run_pipeline

    out = tmp_path_factory.mktemp("run")
    cfg = _config(out, tiny_family)
    pipe = run_pipeline(cfg)
    return cfg, pipe


def _copy(finished_run, tmp_path):
    """A private copy of the finished run, at another path."""
    cfg, pipe = finished_run
    dst = tmp_path / "moved_run"
    shutil.copytree(pipe.root, dst)
    cfg2 = RunConfig.from_dict(cfg.to_dict())
    cfg2.out_dir = str(dst)
    return cfg2, dst


def _dir(root, name):
    matches = [p for p in (root / "stages").iterdir() if p.name.rsplit("-", 1)[0] == name]
    assert len(matches) == 1, matches
    return matches[0]


def test_run_writes_report_with_every_section(finished_run):
    cfg, pipe = finished_run
    report = pipe.root / "report"
    for name in ("report.html", "report.md", "summary.json"):
        assert (report / name).is_file(), name
    summary = json.loads((report / "summary.json").read_text())
    from rd_interp.report.schema import validate

    validate(summary)
    n_spaces = len(cfg.sae.spaces)
    assert n_spaces == 7  # large, rd, its two blocks and three controls
    assert {r["kind"] for r in summary["headline"]} == {"space", "control"}
    assert len(summary["headline"]) == n_spaces and len(summary["coverage"]) == n_spaces * 4  # BP MF CC all
    for r in summary["coverage"]:
        if r["namespace"] == "all":
            assert r["null"]["n_permutations"] == 20 and 0 < r["null"]["p"] <= 1
    assert len(summary["sae_quality"]) == n_spaces * 2
    assert {r["n_latents"] for r in summary["sae_quality"]} == {64}
    trained = [r for r in summary["sae_quality"] if not r["untrained"]]
    assert len(trained) == (n_spaces - 1) * 2 and all(0 <= r["fvu"] < 1.0 for r in trained)
    # every comparative sentence carries its test
    assert summary["verdicts"] and all(("p = " in v["text"]) or ("too few" in v["text"]) or ("AUROC" in v["text"])
                                       for v in summary["verdicts"])
    leak = summary["leakage"][0]
    assert leak["n_rows"] > 0 and 0 <= leak["residual_predictable_share"] <= 1 and leak["evaluated_on"]
    assert any(k.startswith("leakage: ") for k in summary["definitions"])
    assert summary["probes"]["rows"] and summary["distillation"][0]["r2_variance_weighted"] is not None
    assert (report / "atlas.html").is_file()
    assert summary["distillation"][0]["k_small"] == 16 and summary["distillation"][0]["k_large"] == 32
    att = next(iter(summary["attribution"].values()))
    assert len(att["base_share"]) == 2 * 64 and all(0 <= s <= 1 for s in att["base_share"])
    html = (report / "report.html").read_text()
    assert "http://" not in html.replace("http://www.w3.org", "")
    # The rd store's prefix is exactly the small model's embedding (Matryoshka property end to end).
    from rd_interp.io.inputs import open_store

    small, _ = open_store(_dir(pipe.root, "embed-tiny16"))
    rd, _ = open_store(_dir(pipe.root, "distill"))
    assert rd.ids == small.ids and rd.manifest["blocks"] == {"base": [0, 16], "residual": [16, 32]}
    pid = small.ids[3]
    assert (rd.get(pid)[:, :16] == small.get(pid)).all()
    # run metadata lives under OUT/.rd_interp, every stage folder has a verified manifest
    assert (pipe.root / ".rd_interp" / "config.toml").is_file() and not (pipe.root / "config.toml").exists()
    index = read_json(pipe.root / ".rd_interp" / "run.json")["stages"]
    assert {n.split("-")[0] for n in index} == {"data", "fitset", "fitembed", "embed", "distill", "controls", "sae", "encode",
                                                "enrich", "probe", "report"}
    for rel in index.values():
        assert not load_manifest(pipe.root / rel).verify(full=True)


def test_manifests_record_config_inputs_and_the_split(finished_run):
    cfg, pipe = finished_run
    distill = load_manifest(_dir(pipe.root, "distill"))
    assert distill.config["train_proteins"] == 40 and distill.result["dims"] == [16, 32]
    assert [m.params["model"] for m in distill.input("embed")] == ["tiny16", "tiny32"]
    sae = load_manifest(_dir(pipe.root, "sae-rd.residual-s1"))
    assert sae.params == {"seed": 1, "columns": {"start": 16, "stop": 32}, "label": "rd.tiny32[residual]",
                          "space": "rd.residual"}
    assert sae.input("store").stage == "distill" and "seeds" not in sae.config
    saved = read_json(sae.path("sae/cfg.json"))
    # every SAE of the run shares one protein split, recorded with it
    other = read_json(load_manifest(_dir(pipe.root, "sae-large-s0")).path("sae/cfg.json"))
    assert saved["split"]["heldout_sha256"] == other["split"]["heldout_sha256"]
    assert saved["split"]["n_heldout_proteins"] == 9


def test_sae_eval_on_a_pipeline_sae_uses_its_heldout_proteins(finished_run, capsys):
    """The held-out FVU `rd-interp sae eval` reports is the pipeline's held-out FVU (no overlap with training)."""
    from rd_interp.cli import main

    cfg, pipe = finished_run
    sae_dir = _dir(pipe.root, "sae-large-s0")
    assert main(["sae", "eval", str(sae_dir)]) == 0
    got = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert got["fvu"] == pytest.approx(read_json(sae_dir / "metrics.json")["fvu"], rel=1e-9)


def test_rerun_of_a_moved_run_is_cached_and_identical(finished_run, tmp_path, caplog):
    from rd_interp.pipeline.run import run_pipeline

    cfg, root = _copy(finished_run, tmp_path)
    before = (root / "report" / "summary.json").read_bytes()
    n_dirs = len(list((root / "stages").iterdir()))
    with caplog.at_level("INFO"):
        run_pipeline(cfg)
    assert "running in" not in caplog.text and "worker processes" not in caplog.text
    assert (root / "report" / "summary.json").read_bytes() == before
    assert len(list((root / "stages").iterdir())) == n_dirs


def _same(a, b, where=""):
    """Equal JSON, floats within 1e-9 relative (thread counts change float sums in the last digits)."""
    if isinstance(a, float) and isinstance(b, float):
        assert a == pytest.approx(b, rel=1e-9, abs=1e-300), where
    elif isinstance(a, dict) and isinstance(b, dict):
        assert a.keys() == b.keys(), where
        for k in a:
            _same(a[k], b[k], f"{where}/{k}")
    elif isinstance(a, list) and isinstance(b, list):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            _same(x, y, f"{where}[{i}]")
    else:
        assert a == b, where


def test_worker_count_does_not_change_results(finished_run, tmp_path, caplog):
    """The fixture ran the SAE units and the probe in 2 worker processes; one process gives the same
    summary (GO counts exact, floats within 1e-9), and the workers' log lines reached this process."""
    from rd_interp.pipeline.run import Pipeline

    cfg, root = _copy(finished_run, tmp_path)
    before = json.loads((root / "report" / "summary.json").read_text())
    for d in (root / "stages").iterdir():
        if d.name.split("-")[0] in ("sae", "encode", "enrich", "probe"):
            shutil.rmtree(d)
    cfg.workers = 1
    seen = []

    class Metered(Pipeline):  # as analyses/scale_rehearsal.py meters stages: in one process every stage passes here
        def _run(self, stage, fn):
            seen.append(stage.name)
            return super()._run(stage, fn)

    with caplog.at_level("INFO"):
        Metered(cfg).run()
    assert "worker processes" not in caplog.text and "stage sae-rd-s1: running" in caplog.text
    assert {"probe", "sae-rd-s1", "encode-rd-s1", "enrich-rd-s1"} <= set(seen)
    after = json.loads((root / "report" / "summary.json").read_text())
    before.pop("run_id"), after.pop("run_id")  # a hash of the whole summary, floats included
    _same(before, after)


def test_small_members_are_embedded_in_the_workers_with_the_same_bytes(finished_run, tmp_path, monkeypatch):
    """Members with small checkpoints are embedded in the worker processes (one member and protein set each);
    over PARALLEL_EMBED_MAX_BYTES, here in this process. Either way the stores hold the fixture's bytes."""
    import rd_interp.pipeline.run as run_mod

    cfg, root = _copy(finished_run, tmp_path)
    info = read_json(root / "report" / "run_info.json")  # the fixture's run: every chain in its 2 workers
    assert {"embed", "fitembed", "probe", "sae", "encode", "enrich"} <= set(info["worker_stages"])
    stores = {d.name: {p.relative_to(d): p.read_bytes() for p in (d / "store").rglob("*.npy")}
              for d in (root / "stages").iterdir() if d.name.split("-")[0] in ("embed", "fitembed")}
    assert len(stores) == 4
    seen: list[str] = []

    class Metered(run_mod.Pipeline):  # stages run in this process pass here
        def _run(self, stage, fn):
            seen.append(stage.name)
            return super()._run(stage, fn)

    for limit, in_workers in ((run_mod.PARALLEL_EMBED_MAX_BYTES, True), (0, False)):
        monkeypatch.setattr(run_mod, "PARALLEL_EMBED_MAX_BYTES", limit)
        for name in stores:
            shutil.rmtree(root / "stages" / name)
        seen.clear()
        pipe = Metered(cfg)
        pipe.run(until="distill")
        assert pipe.workers == (2 if in_workers else 1)
        assert pipe.worker_stages == ({"embed", "fitembed"} if in_workers else set())
        assert any(n.startswith(("embed-", "fitembed-")) for n in seen) is not in_workers, seen
        for name, files in stores.items():
            assert {p: (root / "stages" / name / p).read_bytes() for p in files} == files, name


def test_atlas_built_in_the_run_workers_equals_one_built_here(finished_run, tmp_path):
    """The fixture's run built its atlas entries in its worker processes (Pipeline keeps them for the report);
    building them here, one after the other, gives the same bytes."""
    from rd_interp.report.atlas_run import ATLAS, write_run_atlas

    cfg, pipe = finished_run
    assert pipe.workers == 2
    enrich = [m for name, m in pipe.stages.items() if name.startswith("enrich-")]
    here = tmp_path / ATLAS
    write_run_atlas(enrich, here, title=f"{cfg.report.title}: latent atlas", top_k=cfg.report.atlas_top_proteins)
    assert here.read_bytes() == (pipe.root / "report" / ATLAS).read_bytes()


def test_changing_an_enrich_option_reruns_only_enrichment(finished_run, tmp_path):
    from rd_interp.pipeline.run import run_pipeline

    cfg, root = _copy(finished_run, tmp_path)
    old = {p.name for p in (root / "stages").iterdir()}
    cfg.enrich.top_n = 12
    run_pipeline(cfg)
    new = {p.name for p in (root / "stages").iterdir()} - old
    assert new and all(n.startswith("enrich-") for n in new)
    assert len(new) == len(cfg.sae.spaces) * 2


def test_corrupt_cached_file_is_detected_and_the_stage_recomputed(finished_run, tmp_path, caplog):
    from rd_interp.cli import main
    from rd_interp.io.manifest import ManifestError
    from rd_interp.pipeline.run import run_pipeline

    cfg, root = _copy(finished_run, tmp_path)
    table = _dir(root, "enrich-rd-s0") / "real" / "table.tsv"
    before = (root / "report" / "summary.json").read_bytes()
    table.write_text(table.read_text()[:-200])  # truncated
    assert main(["verify", str(root)]) == 1
    with pytest.raises(ManifestError, match="table.tsv"):
        run_pipeline(cfg, no_recompute=True)
    with caplog.at_level("WARNING"):
        run_pipeline(cfg)
    assert "enrich-rd-s0: cached outputs fail verification" in caplog.text
    assert (root / "report" / "summary.json").read_bytes() == before
    assert main(["verify", str(root)]) == 0


def test_explain_a_new_sequence(finished_run):
    from rd_interp.pipeline.explain import explain

    cfg, pipe = finished_run
    rows = explain(pipe.root, "MKTAYIAKQRQISFVKSHFSRQLEERLGLIEVQAPILSRVGDGTQDNLSGAEKAVQVKVKALPDAQ", top=5)
    assert len(rows) == 1 and rows[0]["length"] == 66
    assert 1 <= len(rows[0]["latents"]) <= 5
    acts = [lat["activation"] for lat in rows[0]["latents"]]
    assert acts == sorted(acts, reverse=True) and acts[0] > 0
    with pytest.raises(ValueError, match="not analysed"):
        explain(pipe.root, "MKT", space="small")
    with pytest.raises(ValueError, match="invalid|not allowed|character"):
        explain(pipe.root, "MKT1J")


def test_stages_run_alone_from_files(finished_run, tmp_path, capsys):
    """rd-interp sae train -> sae encode -> enrich -> report, from folders and files only (no Python)."""
    from rd_interp.cli import main

    cfg, pipe = finished_run
    store = _dir(pipe.root, "distill")
    data = _dir(pipe.root, "data")
    cfg_file = pipe.root / ".rd_interp" / "config.toml"
    for seed in (0, 1):
        assert main(["sae", "train", "--store", str(store), "--columns", "16:32", "--out", str(tmp_path / f"sae{seed}"),
                     "--config", str(cfg_file), "--seed", str(seed), "--label", "rd.tiny32[residual]",
                     "--no-progress"]) == 0
        assert main(["sae", "encode", str(tmp_path / f"sae{seed}"), "--out", str(tmp_path / f"enc{seed}"),
                     "--config", str(cfg_file)]) == 0
        assert main(["enrich", str(tmp_path / f"enc{seed}"), "--data", str(data), "--out", str(tmp_path / f"en{seed}"),
                     "--config", str(cfg_file)]) == 0
    capsys.readouterr()
    assert main(["report", str(tmp_path / "en0"), str(tmp_path / "en1"), "--out", str(tmp_path / "rep"),
                 "--no-figures"]) == 0
    mine = json.loads((tmp_path / "rep" / "summary.json").read_text())
    theirs = json.loads((pipe.root / "report" / "summary.json").read_text())
    # the same config gives the same SAEs and the same enrichment as the pipeline's rd.residual space
    pick = [r for r in theirs["coverage"] if r["subspace"] == "residual"]
    assert [r for r in mine["coverage"]] == pick
    assert mine["sae_quality"] == [r for r in theirs["sae_quality"] if r["subspace"] == "residual"]
    assert mine["distillation"] == theirs["distillation"]


@pytest.mark.slow
def test_demo_config_on_shipped_family(tmp_path):
    """The README's main job, shrunk: shipped proteins, shipped mini family, every stage, null control."""
    from rd_interp.config import demo_config
    from rd_interp.pipeline.run import run_pipeline

    cfg = demo_config(str(tmp_path / "demo"))
    cfg.data.max_proteins = 300
    cfg.sae.seeds = [0]
    cfg.sae.n_steps = 60
    cfg.distill.train_proteins = 100
    pipe = run_pipeline(cfg)
    summary = json.loads((pipe.root / "report" / "summary.json").read_text())
    from rd_interp.report.schema import validate

    validate(summary)
    step = summary["distillation"][0]
    assert step["k_small"] < step["k_large"] and step["r2"] > 0.5
    heads = [h for h in summary["headline"] if h["null"] is not None]
    assert len(heads) == len(cfg.sae.spaces)
    # Label-permuted annotations must not capture more terms than the real ones.
    assert sum(h["null"]["mean"] for h in heads) <= sum(h["nonredundant"]["mean"] for h in heads)


def test_explain_says_where_latents_fire(finished_run, tmp_path, capsys):
    from rd_interp.cli import main
    from rd_interp.pipeline.explain import explain, position_ranges

    cfg, pipe = finished_run
    seq = "MKTAYIAKQRQISFVKSHFSRQLEERLGLIEVQAPILSRVGDGTQDNLSGAEKAVQVKVKALPDAQ"
    rows = explain(pipe.root, seq, top=4)
    for lat in rows[0]["latents"]:
        pos, vals = lat["positions"], lat["values"]
        assert len(pos) == len(vals) == lat["residues_active"] >= 1
        assert pos == sorted(pos) and 1 <= pos[0] and pos[-1] <= len(seq) and min(vals) > 0
        assert max(vals) == lat["activation"]  # max-pooled activation is the strongest residue
        assert vals[pos.index(lat["max_position"])] == lat["activation"]
    assert position_ranges([3, 4, 5, 9, 11, 12]) == "3-5, 9, 11-12" and position_ranges([]) == ""
    page = tmp_path / "explain.html"
    assert main(["explain", str(pipe.root), seq, "--top", "3", "--html", str(page)]) == 0
    out = capsys.readouterr().out
    assert "fires at" in out and str(rows[0]["latents"][0]["max_position"]) in out
    html = page.read_text()
    assert "Content-Security-Policy" in html and "latent " + str(rows[0]["latents"][0]["latent"]) in html
    assert "http://" not in html.replace("http://www.w3.org", "")


def test_readme_demo_section_is_generated_from_the_run(finished_run, tmp_path):
    """analyses/readme_demo.py writes the README's demo section from summary.json, between its markers."""
    import importlib.util
    from pathlib import Path

    cfg, pipe = finished_run
    path = Path(__file__).resolve().parents[1] / "analyses" / "readme_demo.py"
    spec = importlib.util.spec_from_file_location("readme_demo", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    readme = tmp_path / "README.md"
    start, end = "<!-- demo:start -->", "<!-- demo:end -->"
    readme.write_text(f"intro\n{start}\nold text\n{end}\nrest\n")
    assert mod.main(["--out", str(pipe.root), "--readme", str(readme)]) == 0
    text = readme.read_text()
    summary = json.loads((pipe.root / "report" / "summary.json").read_text())
    assert "old text" not in text and text.startswith("intro\n") and text.endswith(f"{end}\nrest\n")
    assert summary["run_id"] in text
    for h in summary["headline"]:
        assert f"| {h['label']} |" in text and f"{h['nonredundant']['mean']:,.1f}" in text


def test_residue_budgets_for_sae_training_and_the_distillation_fit(finished_run, tmp_path):
    """sae.max_train_residues and distill.max_fit_residues: a seeded uniform draw of residues, held-out
    proteins untouched, recorded in the result, and part of the stage config (so a change reruns it)."""
    import numpy as np

    from rd_interp.distill import run as distill_stage
    from rd_interp.io.inputs import open_store
    from rd_interp.io.options import key_dict
    from rd_interp.io.split import row_budget
    from rd_interp.sae import run as sae_stage

    rows = np.arange(10, 1010)
    a, b = row_budget(rows, 100, 7), row_budget(rows, 100, 7)
    assert np.array_equal(a, b) and a.size == 100 and np.all(np.diff(a) > 0) and np.isin(a, rows).all()
    assert not np.array_equal(a, row_budget(rows, 100, 8))
    assert np.array_equal(row_budget(rows, 0, 7), rows) and np.array_equal(row_budget(rows, 5000, 7), rows)

    cfg, pipe = finished_run
    distill = load_manifest(_dir(pipe.root, "distill"))
    store, _ = open_store(distill)
    tcfg = RunConfig.from_dict(cfg.to_dict()).sae
    tcfg.max_train_residues = 500
    m = sae_stage.train({"store": distill}, tcfg, tmp_path / "sae", seed=0, progress=False)
    assert m.result["train_residues"] == 500 < m.result["train_residues_available"]
    full = load_manifest(_dir(pipe.root, "sae-rd-s0"))
    assert m.result["metrics"]["n_vectors"] == full.result["metrics"]["n_vectors"]  # same held-out proteins
    assert key_dict(tcfg) != full.config  # the budget is part of the stage key

    dcfg = RunConfig.from_dict(cfg.to_dict()).distill
    dcfg.max_fit_residues = 300
    embeds = [load_manifest(_dir(pipe.root, "embed-tiny16")), load_manifest(_dir(pipe.root, "embed-tiny32"))]
    fits = [load_manifest(_dir(pipe.root, "fitembed-tiny16")), load_manifest(_dir(pipe.root, "fitembed-tiny32"))]
    d = distill_stage.run({"embed": embeds, "fit": fits}, dcfg, tmp_path / "distill", seed=cfg.seed)
    assert d.result["train_rows"] == 300 and d.result["fit_set"]["rows_available"] > 300
    assert d.result["steps"][0]["n_samples"] == 300
