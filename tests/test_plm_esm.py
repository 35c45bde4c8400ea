"""ESM-2 loading through fair-esm's own builder: weights dir, hub cache, offline errors, safe unpickling."""

from __future__ import annotations

import argparse
import shutil

import pytest
import torch
from plm_fixtures import save_tiny

from rd_interp.plm import esm as resm
from rd_interp.plm.esm import ESM2_MODELS, ModelNotFoundError, load_checkpoint, load_model, resolve_checkpoint


@pytest.fixture
def hub(tmp_path, monkeypatch):
    old = torch.hub.get_dir()
    torch.hub.set_dir(str(tmp_path / "hub"))
    yield tmp_path / "hub" / "checkpoints"
    torch.hub.set_dir(old)


def _tokens(alpha, seqs):
    _, _, toks = alpha.get_batch_converter()([(str(i), s) for i, s in enumerate(seqs)])
    return toks


def test_checkpoint_has_fair_esm_layout(tmp_path):
    save_tiny(tmp_path / "m.pt")
    data = load_checkpoint(tmp_path / "m.pt")
    assert isinstance(data["cfg"]["model"], argparse.Namespace)
    assert data["cfg"]["model"].encoder_layers == 2 and data["cfg"]["model"].encoder_embed_dim == 16
    keys = set(data["model"])
    assert "encoder.sentence_encoder.embed_tokens.weight" in keys
    assert "encoder.sentence_encoder.layers.1.fc2.weight" in keys
    assert "encoder.lm_head.dense.weight" in keys and not any("contact_head" in k for k in keys)


def test_load_path_roundtrip_exact(tmp_path):
    ref = save_tiny(tmp_path / "tiny.pt", layers=3, dim=24, heads=3)
    model, alpha, info = load_model(tmp_path / "tiny.pt")
    assert (info.n_layers, info.embed_dim, info.name) == (3, 24, "tiny")
    assert info.n_params == sum(p.numel() for n, p in ref.named_parameters() if not n.startswith("contact"))
    assert len(info.sha256) == 64 and not model.training
    toks = _tokens(alpha, ["MKTAYIAKQR", "GAVLIPF"])
    with torch.no_grad():
        a = model(toks, repr_layers=[3])["representations"][3]
        b = ref(toks, repr_layers=[3])["representations"][3]
    torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_half_checkpoint_loads_as_float32(tmp_path):
    ref = save_tiny(tmp_path / "h.pt", half=True)
    model, _, _ = load_model(tmp_path / "h.pt")
    assert all(p.dtype == torch.float32 for p in model.parameters())
    torch.testing.assert_close(model.embed_tokens.weight, ref.embed_tokens.weight, rtol=1e-3, atol=1e-3)
    assert model.lm_head.weight is model.embed_tokens.weight  # tied weights survive


def test_resolution_order_weights_dir_then_hub(tmp_path, hub):
    name = ESM2_MODELS["8M"]
    hub.mkdir(parents=True)
    save_tiny(hub / f"{name}.pt", dim=16, seed=1)
    (tmp_path / "w").mkdir()
    save_tiny(tmp_path / "w" / f"{name}.pt", dim=32, heads=4, seed=2)
    _, _, info = load_model("8M", download=False)
    assert info.embed_dim == 16 and info.source_path == str(hub / f"{name}.pt") and info.name == name
    _, _, info = load_model("8m", weights_dir=tmp_path / "w", download=False)
    assert info.embed_dim == 32 and info.source_path.startswith(str(tmp_path / "w"))
    # the fair-esm name works too
    assert resolve_checkpoint(name, download=False)[1] == hub / f"{name}.pt"


def test_offline_missing_is_one_clear_error(hub, monkeypatch):
    def no_network(*a, **k):
        raise AssertionError("tests must not download")

    monkeypatch.setattr(torch.hub, "download_url_to_file", no_network)
    with pytest.raises(ModelNotFoundError) as exc:
        load_model("650M", download=False)
    msg = str(exc.value)
    assert "esm2_t33_650M_UR50D.pt" in msg and "https://dl.fbaipublicfiles.com/fair-esm/models/" in msg
    assert "--weights-dir" in msg and str(hub) in msg
    monkeypatch.setenv("RD_INTERP_OFFLINE", "1")
    with pytest.raises(ModelNotFoundError, match="downloads are off"):
        load_model("35M")


def test_failed_download_is_clear(hub, monkeypatch):
    import urllib.error

    def fail(url, dst, progress=True):
        assert url.endswith("/esm2_t6_8M_UR50D.pt")
        raise urllib.error.URLError("no route to host")

    monkeypatch.setattr(torch.hub, "download_url_to_file", fail)
    monkeypatch.delenv("RD_INTERP_OFFLINE", raising=False)
    with pytest.raises(ModelNotFoundError, match="download failed"):
        load_model("8M")


def test_download_goes_to_hub_cache(tmp_path, hub, monkeypatch):
    src = tmp_path / "src.pt"
    save_tiny(src)

    def fake(url, dst, progress=True):
        shutil.copy(src, dst)

    monkeypatch.setattr(torch.hub, "download_url_to_file", fake)
    monkeypatch.delenv("RD_INTERP_OFFLINE", raising=False)
    _, _, info = load_model("8M")
    assert info.source_path == str(hub / "esm2_t6_8M_UR50D.pt")


def test_unknown_names_and_bad_files(tmp_path):
    with pytest.raises(ValueError, match="unknown model"):
        load_model("esm3-huge")
    with pytest.raises(FileNotFoundError):
        load_model(tmp_path / "missing.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="not a readable torch checkpoint|refusing"):
        load_model(tmp_path / "junk.pt")
    torch.save({"weights": torch.zeros(2)}, tmp_path / "nomodel.pt")
    with pytest.raises(ValueError, match="not a fair-esm checkpoint"):
        load_model(tmp_path / "nomodel.pt")


class Evil:
    def __reduce__(self):
        return (print, ("pwned",))


def test_pickled_code_is_refused(tmp_path):
    torch.save({"model": {}, "cfg": {"model": Evil()}}, tmp_path / "evil.pt")
    with pytest.raises(ValueError, match="refusing to load"):
        load_model(tmp_path / "evil.pt")


def test_shipped_members_resolve(tmp_path, monkeypatch):
    (tmp_path / "models").mkdir()
    save_tiny(tmp_path / "models" / "mini-X.pt")
    monkeypatch.setenv("RD_INTERP_DATA", str(tmp_path))
    model, _, info = load_model("mini-X")
    assert info.name == "mini-X" and info.n_layers == 2
    assert "mini-X" in resm.shipped_models()
