"""SAELens export: the folded weights reproduce our encodings, in SAELens' own loader when it is installed.

SAELens is not a dependency; the round-trip test runs it in a side venv under ``.bench/saelens`` and is
skipped (saying how to create it) when that venv is absent. Provision it with

    python tests/test_sae_export.py --provision

(it shares torch with the project venv through a .pth file, so only sae-lens and its pure-Python
dependencies are downloaded).
"""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from rd_interp.sae.export import SAELENS_CFG, SAELENS_WEIGHTS, export_saelens, folded_saelens_tensors
from rd_interp.sae.model import SAEConfig, SparseAutoencoder
from rd_interp.sae.train import TrainConfig, train_sae

warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta state")

REPO = Path(__file__).resolve().parents[1]
SIDE_VENV = REPO / ".bench" / "saelens"
SIDE_PY = SIDE_VENV / "bin" / "python"
SAELENS_VERSION = "6.54.12"  # the version this export was checked against


def provision_saelens(venv: Path = SIDE_VENV, version: str = SAELENS_VERSION) -> Path:
    """Create `venv` with sae-lens, reusing this interpreter's site-packages (torch) via a .pth file."""
    import site
    import sysconfig

    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    py = venv / "bin" / "python"
    purelib = subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             check=True, capture_output=True, text=True).stdout.strip()
    ours = [p for p in [sysconfig.get_paths()["purelib"], *site.getsitepackages()] if Path(p).is_dir()]
    (Path(purelib) / "_project_venv.pth").write_text("\n".join(dict.fromkeys(ours)) + "\n", encoding="utf-8")
    subprocess.run([str(py), "-m", "pip", "install", "-q", f"sae-lens=={version}"], check=True)
    return py


# SAELens >= 6 inference, written out: pre = (x - b_dec) @ W_enc + b_enc (apply_b_dec_to_input), then
# topk: TopK then ReLU; standard: ReLU; jumprelu: ReLU(pre) * (pre > threshold).
def saelens_formula(t: dict[str, torch.Tensor], cfg: dict, x: torch.Tensor) -> torch.Tensor:
    pre = (x - t["b_dec"]) @ t["W_enc"] + t["b_enc"]
    if cfg["architecture"] == "topk":
        v, i = pre.topk(cfg["k"], dim=-1, sorted=False)
        return torch.zeros_like(pre).scatter_(-1, i, v.relu())
    if cfg["architecture"] == "jumprelu":
        return pre.relu() * (pre > t["threshold"])
    return pre.relu()


def _sae(arch: str, d: int = 24, n: int = 96, k: int = 6, seed: int = 0) -> SparseAutoencoder:
    """An SAE with non-trivial weights, biases and pre-processing (a large mean, a small scale)."""
    g = torch.Generator().manual_seed(seed)
    sae = SparseAutoencoder(SAEConfig(arch, d_in=d, n_latents=n, k=k), seed=seed)
    with torch.no_grad():
        sae.W_enc.add_(0.3 * torch.randn(sae.W_enc.shape, generator=g))
        sae.b_enc.copy_(0.2 * torch.randn(n, generator=g))
        sae.b_dec.copy_(0.5 * torch.randn(d, generator=g))
        sae.pre_mean.copy_(20 * torch.randn(d, generator=g))
        sae.pre_scale.fill_(0.037)
        if arch == "batchtopk":
            sae.threshold.fill_(0.4)
    return sae


@pytest.mark.parametrize("arch", ["topk", "relu", "batchtopk"])
def test_folded_weights_reproduce_our_encoding(arch, tmp_path):
    sae = _sae(arch)
    x = sae.pre_mean + 30 * torch.randn(500, sae.d_in, generator=torch.Generator().manual_seed(1))
    ours = sae.encode(x)
    out = export_saelens(sae, tmp_path / "sl")
    cfg = json.loads((out / SAELENS_CFG).read_text())
    t = load_file(str(out / SAELENS_WEIGHTS))
    theirs = saelens_formula(t, cfg, x)
    assert (ours > 0).sum() > 0.02 * ours.numel()  # the comparison is not between two zero matrices
    assert torch.equal(ours > 0, theirs > 0)
    assert float((ours - theirs).abs().max()) < 1e-4 * float(ours.abs().max())
    # the same function of the input up to rounding also for the reconstruction
    recon_theirs = theirs @ t["W_dec"] + t["b_dec"]
    assert torch.allclose(sae.decode(ours), recon_theirs, rtol=1e-5, atol=1e-4 * float(recon_theirs.abs().max()))


def test_export_cfg_and_tensors(tmp_path):
    sae = _sae("topk")
    sae.provenance.source = {"name": "rd.mini-L", "columns": {"start": 0, "stop": 24}}
    out = export_saelens(sae, tmp_path / "x", metadata={"model_name": "mini-L"})
    cfg = json.loads((out / SAELENS_CFG).read_text())
    assert cfg["architecture"] == "topk" and cfg["k"] == 6 and cfg["d_in"] == 24 and cfg["d_sae"] == 96
    assert cfg["apply_b_dec_to_input"] is True and cfg["normalize_activations"] == "none"
    assert cfg["metadata"]["sae_lens_version"].startswith("6.")
    assert cfg["metadata"]["model_name"] == "mini-L" and cfg["metadata"]["hook_name"] == "rd.mini-L"
    t = load_file(str(out / SAELENS_WEIGHTS))
    assert {k: tuple(v.shape) for k, v in t.items()} == {"W_enc": (24, 96), "b_enc": (96,), "W_dec": (96, 24),
                                                         "b_dec": (24,)}
    assert all(v.dtype == torch.float32 for v in t.values())
    # our own format is untouched: the SAE still pre-processes inside encode
    assert float(sae.pre_scale) == pytest.approx(0.037)


def test_export_refuses_what_it_cannot_fold(tmp_path):
    sae = _sae("batchtopk")
    sae.threshold.fill_(float("nan"))
    with pytest.raises(ValueError, match="threshold"):
        folded_saelens_tensors(sae)
    sae = _sae("topk")
    sae.pre_scale.fill_(0.0)
    with pytest.raises(ValueError, match="scale"):
        export_saelens(sae, tmp_path / "y")
    (tmp_path / "file").write_text("x")
    with pytest.raises(NotADirectoryError):
        export_saelens(_sae("topk"), tmp_path / "file")


# ----------------------------------------------------------------------------------- real SAELens
_SIDE_SCRIPT = """
import sys, numpy as np, torch
from sae_lens import SAE
import sae_lens
x = torch.from_numpy(np.load(sys.argv[1], allow_pickle=False))
for d in sys.argv[2:]:
    sae = SAE.load_from_disk(d, device="cpu")
    with torch.no_grad():
        z = sae.encode(x)
        r = sae.decode(z)
    np.save(d + "/z.npy", z.numpy(), allow_pickle=False)
    np.save(d + "/r.npy", r.numpy(), allow_pickle=False)
    print(d, sae_lens.__version__, type(sae).__name__)
"""
ARCHS = ("topk", "batchtopk", "relu")


def _side_python() -> str:
    if not SIDE_PY.is_file():
        pytest.skip(f"sae-lens side venv not found at {SIDE_VENV.relative_to(REPO)}; create it with "
                    "`python tests/test_sae_export.py --provision`")
    probe = subprocess.run([str(SIDE_PY), "-c", "import sae_lens"], check=False, capture_output=True,
                           text=True)
    if probe.returncode != 0:
        pytest.skip(f"sae_lens does not import in {SIDE_VENV.relative_to(REPO)}: {probe.stderr.strip()[-200:]}")
    return str(SIDE_PY)


@pytest.fixture(scope="module")
def saelens_round_trip(tmp_path_factory):
    """Train one SAE per architecture on mini-L embeddings of shipped eval proteins (2,000 residues), export
    each, and encode 1,000 held-out residues with SAELens' own loader (one side-venv process for all)."""
    py = _side_python()
    from rd_interp.io.fasta import read_fasta
    from rd_interp.plm.embed import embed_sequences
    from rd_interp.plm.esm import load_model

    recs = list(itertools.islice(read_fasta(REPO / "data" / "proteins" / "eval.fasta.gz"), 24))
    model, alphabet, _ = load_model("mini-L")
    arrs = [a for _, a in sorted(embed_sequences(model, alphabet, [r.sequence for r in recs]), key=lambda t: t[0])]
    X = np.concatenate(arrs).astype(np.float32)
    assert X.shape[0] >= 3000
    idx = np.random.default_rng(0).permutation(X.shape[0])
    train, test = X[idx[:2000]], X[idx[2000:3000]]
    tmp = tmp_path_factory.mktemp("saelens")
    saes, dirs = {}, []
    for arch in ARCHS:
        saes[arch] = train_sae(train, SAEConfig(arch, n_latents=384, k=16, l1_coeff=1.0),
                               TrainConfig(batch_size=256, n_steps=60), seed=0, progress=False)
        dirs.append(str(export_saelens(saes[arch], tmp / arch, metadata={"model_name": "mini-L"})))
    np.save(tmp / "x.npy", test, allow_pickle=False)
    res = subprocess.run([py, "-c", _SIDE_SCRIPT, str(tmp / "x.npy"), *dirs], check=False, capture_output=True,
                         text=True,
                         timeout=600)
    assert res.returncode == 0, res.stderr[-2000:]
    kinds = {Path(line.split()[0]).name: line.split()[1:] for line in res.stdout.strip().splitlines()}
    return saes, test, tmp, kinds


@pytest.mark.parametrize("arch", ARCHS)
def test_saelens_loads_export_and_encodes_like_us(arch, saelens_round_trip):
    saes, test, tmp, kinds = saelens_round_trip
    sae = saes[arch]
    z_theirs = np.load(tmp / arch / "z.npy", allow_pickle=False)
    r_theirs = np.load(tmp / arch / "r.npy", allow_pickle=False)
    z_ours = sae.encode(test).numpy()
    r_ours = sae.decode(torch.from_numpy(z_ours)).numpy()
    diff = float(np.abs(z_ours - z_theirs).max())
    rdiff = float(np.abs(r_ours - r_theirs).max())
    same_support = float(((z_ours > 0) == (z_theirs > 0)).mean())
    print(f"\nSAELens {' '.join(kinds[arch])} [{arch}]: {test.shape[0]} mini-L vectors, max |z_ours - z_saelens| = "
          f"{diff:.3g} (max z {z_ours.max():.3g}), max |x_hat diff| = {rdiff:.3g}, same active set "
          f"{100 * same_support:.4f}% of entries")
    assert (z_ours > 0).sum(1).mean() >= 1  # something fires
    assert diff < 1e-4 * max(float(z_ours.max()), 1.0)
    assert rdiff < 1e-4 * max(float(np.abs(r_ours).max()), 1.0)
    assert same_support > 0.9999


if __name__ == "__main__":
    if "--provision" in sys.argv:
        print(provision_saelens())
    else:
        print(__doc__)
