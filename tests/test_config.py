import json

import pytest

from rd_interp.config import RunConfig, demo_config
from rd_interp.io.serialize import ConfigError, dumps_toml, from_dict


def test_toml_round_trip(tmp_path):
    cfg = demo_config("out")
    cfg.distill.sigma_sq = 0.25
    cfg.sae.seeds = [3, 4]
    path = tmp_path / "c.toml"
    path.write_text(cfg.to_toml())
    back = RunConfig.load(path)
    assert back == cfg
    assert back.to_dict() == cfg.to_dict()


def test_json_round_trip(tmp_path):
    cfg = demo_config("x")
    path = tmp_path / "c.json"
    path.write_text(json.dumps(cfg.to_dict()))
    assert RunConfig.load(path) == cfg


@pytest.mark.parametrize(
    "patch, message",
    [
        ({"sae": {"k": "32"}}, "sae.k: expected an integer"),
        ({"sae": {"spaces": ["rd", "bogus"]}}, "unknown ['bogus']"),
        ({"models": {"family": ["mini-S"]}}, "at least two models"),
        ({"enrich": {"alpha": 1.5}}, "enrich.alpha"),
        ({"enrich": {"alternative": "lesser"}}, "enrich.alternative: 'lesser' is not one of"),
        ({"enrich": {"correction": "latent_namespace"}}, "enrich.correction: 'latent_namespace' is not one of"),
        ({"distill": {"regresor": "pcr"}}, "distill: unknown key(s) ['regresor']"),
        ({"device": "tpu"}, "device: 'tpu' is not one of"),
    ],
)
def test_invalid_configs_name_the_key(patch, message):
    with pytest.raises(ConfigError) as err:
        from_dict(RunConfig, patch)
    assert message in str(err.value)


def test_load_errors_name_the_file(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[sae]\nk = \n")
    with pytest.raises(ConfigError, match="bad.toml: cannot parse"):
        RunConfig.load(bad)
    with pytest.raises(ConfigError, match="not found"):
        RunConfig.load(tmp_path / "missing.toml")


def test_dumps_toml_quotes_and_nesting():
    text = dumps_toml({"a": 1, "b": {"c": "x\"y", "d": [1.5, 2.0], "e": {"f": True}}})
    import tomllib

    assert tomllib.loads(text) == {"a": 1, "b": {"c": "x\"y", "d": [1.5, 2.0], "e": {"f": True}}}


def test_old_keys_are_migrated_with_a_warning(tmp_path, caplog):
    old = tmp_path / "old.toml"
    old.write_text('[enrich]\npooling = "mean"\nstudy_mode = "fraction_of_max"\nbootstrap = 50\n'
                   'null_control = false\n[distill]\nridge_alpha = 2.0\n')
    cfg = RunConfig.load(old)
    assert (cfg.encode.pooling, cfg.enrich.mode, cfg.distill.alpha, cfg.enrich.n_permutations) == \
        ("mean", "fraction_of_max", 2.0, 0)
    assert "enrich.pooling was renamed encode.pooling" in caplog.text
    assert "enrich.bootstrap was removed" in caplog.text
    both = tmp_path / "both.toml"
    both.write_text('[enrich]\npooling = "mean"\n[encode]\npooling = "max"\n')
    with pytest.raises(ConfigError, match="both.toml: enrich.pooling was renamed encode.pooling; the file sets both"):
        RunConfig.load(both)


def test_config_upgrade_rewrites_the_file(tmp_path, capsys):
    from rd_interp.cli import main

    old = tmp_path / "old.toml"
    old.write_text('[enrich]\npooling = "mean"\n')
    assert main(["config", "--upgrade", str(old)]) == 0
    assert (tmp_path / "old.toml.bak").read_text() == '[enrich]\npooling = "mean"\n'
    assert RunConfig.load(old).encode.pooling == "mean" and "pooling" not in old.read_text().split("[encode]")[0]
    assert main(["config", "--check", str(old)]) == 0


def test_every_option_is_defined_once_with_help():
    """Each stage option is one dataclass field with a help text; the run config composes stage dataclasses,
    and no class re-declares an option one of its bases already defines."""
    import dataclasses

    for section in dataclasses.fields(RunConfig):
        value = getattr(RunConfig(), section.name)
        if not dataclasses.is_dataclass(value):
            assert section.metadata.get("help"), section.name
            continue
        cls = type(value)
        for f in dataclasses.fields(cls):
            assert f.metadata.get("help"), f"{section.name}.{f.name} has no help text"
        declared = [name for c in cls.__mro__ if dataclasses.is_dataclass(c)
                    for name in c.__dict__.get("__annotations__", {})]
        assert len(declared) == len(set(declared)), f"[{section.name}] re-declares an inherited option"


def test_a_partial_table_keeps_the_run_defaults():
    """[sae] with one key keeps the run's size-matched default (k_ratio), not the standalone SAE default."""
    cfg = RunConfig.from_dict({"sae": {"n_steps": 5}})
    assert cfg.sae.n_steps == 5 and cfg.sae.k_ratio == RunConfig().sae.k_ratio > 0


def test_paper_analysis_config_and_code_agree():
    """analyses/paper_sae_go.toml validates, and its header names the fallback family the script uses."""
    import importlib.util
    from pathlib import Path

    root = Path(__file__).resolve().parents[1] / "analyses"
    spec = importlib.util.spec_from_file_location("paper_sae_go", root / "paper_sae_go.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    cfg = RunConfig.load(root / "paper_sae_go.toml")
    assert len(cfg.sae.seeds) >= 5 and cfg.enrich.correction == "global" and cfg.enrich.n_permutations >= 100
    assert "control.naive" in cfg.sae.spaces and cfg.sae.n_latents > 0 and cfg.sae.k_ratio > 0
    header = (root / "paper_sae_go.toml").read_text().split("\n\n")[0]
    assert f"({' -> '.join(mod.FALLBACK)})" in header


def test_an_explicit_k_or_expansion_in_a_run_config_is_used_not_ignored():
    """The run defaults are size-matched (n_latents, k_ratio); a user who writes k or expansion gets them."""
    from rd_interp.config import RunConfig

    default = RunConfig.from_dict({})
    assert default.sae.k_ratio > 0 and default.sae.n_latents > 0
    cfg = RunConfig.from_dict({"sae": {"k": 7, "expansion": 3}})
    assert (cfg.sae.k, cfg.sae.k_ratio, cfg.sae.expansion, cfg.sae.n_latents) == (7, 0.0, 3, 0)
    cfg = RunConfig.from_dict({"sae": {"k": 7, "k_ratio": 0.1, "expansion": 3, "n_latents": 256}})
    assert (cfg.sae.k_ratio, cfg.sae.n_latents) == (0.1, 256)
    assert RunConfig.from_dict(default.to_dict()).to_dict() == default.to_dict()  # a round trip changes nothing
