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
        ({"enrich": {"alternative": "less"}}, "enrich.alternative: 'less' is not one of"),
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
