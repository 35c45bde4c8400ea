"""The stage contract: cache keys from whole config dataclasses, manifests, verification before reuse."""

import dataclasses
from dataclasses import dataclass

import numpy as np
import pytest

from rd_interp.io.atomic import read_json, sha256_json, write_json, write_npy
from rd_interp.io.manifest import ManifestError, claim_dir, load_manifest, write_manifest
from rd_interp.io.options import key_dict, opt
from rd_interp.pipeline.cache import plan, run_stage
from rd_interp.sae.config import SAEStageConfig


@dataclass
class Cfg:
    a: int = opt(1, "a")
    seeds: list[int] = opt(factory=lambda: [0, 1], fanout=True, help="fan-out")
    where: str = opt("/tmp/x", "a location", key=False)


def _body(calls, cfg=None, inputs=None, params=None):
    def body(d):
        calls.append(d)
        claim_dir(d, "toy", ["out.txt"])
        (d / "out.txt").write_text("x")
        return write_manifest(d, stage="toy", config=key_dict(cfg or Cfg()), inputs=inputs or {},
                              outputs=["out.txt"], params=params or {}, result={"n": 1})
    return body


def test_stage_runs_once_and_keys_follow_the_whole_config(tmp_path):
    calls = []
    st = plan(tmp_path, "toy", "toy", Cfg(), {}, {})
    m = run_stage(st, _body(calls))
    assert m.result == {"n": 1} and len(calls) == 1 and m.key == st.key
    again = run_stage(plan(tmp_path, "toy", "toy", Cfg(), {}, {}), _body(calls))
    assert len(calls) == 1 and again.digest == m.digest
    other = plan(tmp_path, "toy", "toy", Cfg(a=2), {}, {})
    assert other.dir != st.dir
    run_stage(other, _body(calls, Cfg(a=2)))
    assert len(calls) == 2
    # fan-out and location fields are not part of a unit's key
    assert plan(tmp_path, "toy", "toy", Cfg(seeds=[5], where="/elsewhere"), {}, {}).key == st.key


def test_adding_a_field_to_a_stage_config_changes_its_key(tmp_path):
    base = SAEStageConfig()
    Extended = dataclasses.make_dataclass("Extended", [("new_option", int, dataclasses.field(default=3))],
                                          bases=(SAEStageConfig,))
    k0 = plan(tmp_path, "sae", "sae", base, {}, {"seed": 0}).key
    k1 = plan(tmp_path, "sae", "sae", Extended(), {}, {"seed": 0}).key
    assert k0 != k1
    # and every existing option is in the key (none listed by hand)
    for f in dataclasses.fields(SAEStageConfig):
        if f.metadata.get("fanout"):
            continue
        assert f.name in key_dict(base), f.name
    assert "seeds" not in key_dict(base) and "spaces" not in key_dict(base)


def test_inputs_key_downstream_stages(tmp_path):
    calls = []
    up = run_stage(plan(tmp_path, "up", "toy", Cfg(), {}, {}), _body(calls))
    down = plan(tmp_path, "down", "toy", Cfg(), {"up": up}, {})
    m = run_stage(down, _body(calls, inputs={"up": up}))
    assert m.key == down.key and m.input("up").digest == up.digest
    assert m.inputs["up"]["dir"].startswith("..")  # relative: the folder can move


def test_corrupt_cached_output_is_recomputed_or_refused(tmp_path, caplog):
    calls = []
    st = plan(tmp_path, "toy", "toy", Cfg(), {}, {})
    run_stage(st, _body(calls))
    (st.dir / "out.txt").write_text("y")  # same size, edited in place
    with pytest.raises(ManifestError, match="fail verification"):
        run_stage(st, _body(calls), no_recompute=True)
    run_stage(st, _body(calls))
    assert len(calls) == 2 and "recomputing" in caplog.text
    (st.dir / "out.txt").write_text("")  # truncated
    assert load_manifest(st.dir).verify() and run_stage(st, _body(calls)) and len(calls) == 3


def test_interrupted_stage_is_rerun_and_resumes_in_place(tmp_path):
    st = plan(tmp_path, "toy", "toy", Cfg(), {}, {})

    def failing(d):
        (d / "out.txt").write_text("half")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_stage(st, failing)
    assert not st.done and (st.dir / "out.txt").exists()
    seen = []

    def resume(d):
        seen.append((d / "out.txt").read_text())
        return _body([])(d)

    run_stage(st, resume)
    assert seen == ["half"] and st.done


def test_claim_dir_refuses_foreign_files(tmp_path):
    (tmp_path / "mine.toml").write_text("user file")
    with pytest.raises(ManifestError, match="not empty and not a toy stage folder"):
        claim_dir(tmp_path, "toy", ["out.txt"])
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(ManifestError, match="not a folder"):
        claim_dir(f, "toy", [])


def test_planner_and_stage_must_agree(tmp_path):
    st = plan(tmp_path, "toy", "toy", Cfg(), {}, {"seed": 1})
    with pytest.raises(AssertionError, match="planned key"):
        run_stage(st, _body([]))  # the body records no seed


def test_atomic_writes_leave_no_temp_files(tmp_path):
    write_json(tmp_path / "a.json", {"b": np.float32(1.5), "a": np.arange(3)})
    write_npy(tmp_path / "x.npy", np.ones((2, 2)))
    assert read_json(tmp_path / "a.json") == {"a": [0, 1, 2], "b": 1.5}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json", "x.npy"]
    assert sha256_json({"a": 1, "b": 2}) == sha256_json({"b": 2, "a": 1})
