import numpy as np

from rd_interp.io.atomic import read_json, sha256_json, write_json, write_npy
from rd_interp.pipeline.cache import make_stage, run_stage


def test_stage_runs_once_and_keys_follow_payload(tmp_path):
    calls = []

    def body(d):
        calls.append(d)
        (d / "out.txt").write_text("x")
        return {"n": 1}

    st = make_stage(tmp_path, "embed-m", {"a": 1})
    info = run_stage(st, body)
    assert info["result"] == {"n": 1} and len(calls) == 1
    again = run_stage(make_stage(tmp_path, "embed-m", {"a": 1}), body)
    assert len(calls) == 1 and again["key"] == info["key"]
    other = make_stage(tmp_path, "embed-m", {"a": 2})
    assert other.dir != st.dir
    run_stage(other, body)
    assert len(calls) == 2


def test_interrupted_stage_is_rerun_and_resumes_in_place(tmp_path):
    st = make_stage(tmp_path, "sae", {"k": 1})

    def failing(d):
        (d / "partial").write_text("half")
        raise KeyboardInterrupt

    try:
        run_stage(st, failing)
    except KeyboardInterrupt:
        pass
    assert not st.done and (st.dir / "partial").exists()

    def resume(d):
        return {"saw_partial": (d / "partial").exists()}

    assert run_stage(st, resume)["result"] == {"saw_partial": True}
    assert st.done


def test_atomic_writes_leave_no_temp_files(tmp_path):
    write_json(tmp_path / "a.json", {"b": np.float32(1.5), "a": np.arange(3)})
    write_npy(tmp_path / "x.npy", np.ones((2, 2)))
    assert read_json(tmp_path / "a.json") == {"a": [0, 1, 2], "b": 1.5}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json", "x.npy"]
    assert sha256_json({"a": 1, "b": 2}) == sha256_json({"b": 2, "a": 1})
