"""End-to-end: the staged job on shipped proteins with tiny random ESM-2 checkpoints (fast), and the cache."""

import json

import pytest

from rd_interp.config import RunConfig
from rd_interp.io.atomic import read_json


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
    cfg.sae.expansion = 2
    cfg.sae.k = 4
    cfg.sae.seeds = [0, 1]
    cfg.sae.n_steps = 25
    cfg.sae.batch_size = 256
    cfg.enrich.top_n = 10
    cfg.enrich.min_proteins = 3
    cfg.enrich.bootstrap = 200
    cfg.report.top_latents = 3
    cfg.validate()
    return cfg


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, tiny_family):
    from rd_interp.pipeline.run import run_pipeline

    out = tmp_path_factory.mktemp("run")
    cfg = _config(out, tiny_family)
    pipe = run_pipeline(cfg)
    return cfg, pipe


def test_run_writes_report_with_every_section(finished_run):
    cfg, pipe = finished_run
    report = pipe.root / "report"
    for name in ("report.html", "report.md", "summary.json"):
        assert (report / name).is_file(), name
    summary = json.loads((report / "summary.json").read_text())
    labels = {(r["space"], r["subspace"]) for r in summary["coverage"]}
    assert {sub for _, sub in labels} == {"full", "base", "residual"}
    assert {r["control"] for r in summary["coverage"]} == {"real", "null"}
    assert len(summary["sae_quality"]) == 4 * 2
    assert all(0 <= r["fvu"] < 1.5 for r in summary["sae_quality"])
    assert summary["distillation"][0]["k_small"] == 16 and summary["distillation"][0]["k_large"] == 32
    att = next(iter(summary["attribution"].values()))
    assert len(att["base_share"]) == 2 * 64 and all(0 <= s <= 1 for s in att["base_share"])
    html = (report / "report.html").read_text()
    assert "http://" not in html.replace("http://www.w3.org", "")
    # The rd store's prefix is exactly the small model's embedding (Matryoshka property end to end).
    from rd_interp.io.store import EmbeddingStore

    stages = pipe._stages
    small = EmbeddingStore(pipe.root / "stages" / _dir(pipe, "embed-tiny16") / "store")
    rd = EmbeddingStore(pipe.root / "stages" / _dir(pipe, "distill") / "rd_store")
    assert rd.ids == small.ids and stages
    pid = small.ids[3]
    assert (rd.get(pid)[:, :16] == small.get(pid)).all()


def _dir(pipe, name):
    matches = [p.name for p in (pipe.root / "stages").iterdir() if p.name.rsplit("-", 1)[0] == name]
    assert len(matches) == 1, matches
    return matches[0]


def test_rerun_is_cached_and_identical(finished_run, caplog):
    from rd_interp.pipeline.run import run_pipeline

    cfg, pipe = finished_run
    before = (pipe.root / "report" / "summary.json").read_bytes()
    n_dirs = len(list((pipe.root / "stages").iterdir()))
    with caplog.at_level("INFO"):
        run_pipeline(cfg)
    assert "running in" not in caplog.text
    assert (pipe.root / "report" / "summary.json").read_bytes() == before
    assert len(list((pipe.root / "stages").iterdir())) == n_dirs


def test_changing_an_enrich_option_reruns_only_enrichment(finished_run):
    from rd_interp.pipeline.run import run_pipeline

    cfg, pipe = finished_run
    old = {p.name for p in (pipe.root / "stages").iterdir()}
    cfg2 = RunConfig.from_dict(cfg.to_dict())
    cfg2.enrich.top_n = 12
    run_pipeline(cfg2)
    new = {p.name for p in (pipe.root / "stages").iterdir()} - old
    assert new and all(n.startswith("enrich-") for n in new)
    assert len(new) == 4 * 2


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


def test_stage_info_records_config_keys(finished_run):
    cfg, pipe = finished_run
    info = read_json(pipe.root / "stages" / _dir(pipe, "distill") / "_done.json")
    assert info["payload"]["distill"]["train_proteins"] == 40
    assert info["result"]["dims"] == [16, 32]


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
    step = summary["distillation"][0]
    assert (step["k_small"], step["k_large"]) == (64, 96) and step["r2"] > 0.5
    real = [r for r in summary["coverage"] if r["control"] == "real" and r["namespace"] == "all"]
    null = [r for r in summary["coverage"] if r["control"] == "null" and r["namespace"] == "all"]
    assert len(real) == len(null) == 4
    # Label-permuted annotations must not capture more terms than the real ones.
    assert sum(r["n_terms_mean"] for r in null) <= sum(r["n_terms_mean"] for r in real)
