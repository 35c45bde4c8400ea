"""Training a tiny family end to end (seconds), resumability, and loading through the ESM-2 loader."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rd_interp.io.fasta import write_fasta
from rd_interp.plm import family as fam
from rd_interp.plm.esm import load_model
from rd_interp.plm.family import FamilyConfig, MemberSpec, alphabet, mask_tokens, train_family, train_member


def _seqs(n=60, seed=0):
    rng = np.random.default_rng(seed)
    aa = np.array(list("ACDEFGHIKLMNPQRSTVWY"))
    # a learnable pattern (repeats) so the loss can drop below unigram quickly
    out = []
    for _ in range(n):
        motif = "".join(rng.choice(aa, size=int(rng.integers(3, 6))))
        out.append((motif * 20)[: int(rng.integers(30, 70))])
    return out


def _cfg(**kw):
    members = [MemberSpec("t-S", 1, 16, 2, 20000, lr=5e-3), MemberSpec("t-L", 2, 32, 2, 20000, lr=5e-3)]
    base = dict(members=members, crop=48, batch_tokens=400, n_heldout=8, eval_crop=64, checkpoint_every=5,
                log_every=5, threads=1)
    base.update(kw)
    return FamilyConfig(**base)


def test_masking_recipe():
    alpha = alphabet()
    gen = torch.Generator().manual_seed(0)
    toks = torch.full((64, 402), alpha.get_idx("A"))
    toks[:, 0], toks[:, -1] = alpha.cls_idx, alpha.eos_idx
    toks[:, -2] = alpha.padding_idx
    inp, tgt = mask_tokens(toks, alpha, gen)
    sel = tgt != -100
    assert abs(sel.float().mean().item() - 0.15) < 0.01
    assert not sel[:, [0, -1, -2]].any()  # never BOS/EOS/padding
    masked = (inp[sel] == alpha.mask_idx).float().mean().item()
    unchanged = (inp[sel] == toks[sel]).float().mean().item()
    assert abs(masked - 0.8) < 0.02 and 0.09 < unchanged < 0.13  # 10% kept + random draws of 'A'


def test_tiny_family_trains_loads_and_resumes(tmp_path):
    fasta = tmp_path / "train.fasta"
    write_fasta(fasta, [(f"s{i}", s) for i, s in enumerate(_seqs())])
    out = tmp_path / "models"
    summary = train_family(fasta, out, _cfg(), progress=False)
    assert summary["order"] == ["t-S", "t-L"]
    for name in ("t-S", "t-L"):
        m = summary["members"][name]
        assert m["tokens_seen"] >= 20000 and np.isfinite(m["heldout"]["perplexity"])
        assert m["heldout"]["perplexity"] < m["heldout"]["unigram_perplexity"]  # learned the repeats
        model, _, info = load_model(out / f"{name}.pt")  # the real ESM-2 loading path
        assert info.n_layers == m["layers"] and info.embed_dim == m["dim"] and info.sha256 == m["sha256"]
    assert summary["n_heldout_sequences"] == 8 and summary["n_train_sequences"] == 52
    before = (out / "t-L.pt").read_bytes()
    again = train_family(fasta, out, _cfg(), progress=False)  # finished members are skipped
    assert (out / "t-L.pt").read_bytes() == before and again["members"].keys() == summary["members"].keys()
    with pytest.raises(ValueError, match="another config"):
        train_family(fasta, out, _cfg(crop=40), progress=False)


def test_interrupted_member_resumes_identically(tmp_path, monkeypatch):
    seqs = _seqs(40)
    cfg = _cfg(checkpoint_every=3)
    spec = MemberSpec("r", 1, 16, 2, 5000, lr=5e-3)
    ref, _ = train_member(spec, seqs, cfg, tmp_path / "a", progress=False)
    calls = {"n": 0}
    real = fam._lr_at

    def boom(step, *a):
        calls["n"] += 1
        if calls["n"] == 8:  # dies after the step-6 checkpoint, losing step 7
            raise KeyboardInterrupt
        return real(step, *a)

    monkeypatch.setattr(fam, "_lr_at", boom)
    with pytest.raises(KeyboardInterrupt):
        train_member(spec, seqs, cfg, tmp_path / "b", progress=False)
    assert (tmp_path / "b" / "r.state.pt").is_file()
    monkeypatch.setattr(fam, "_lr_at", real)
    res, stats = train_member(spec, seqs, cfg, tmp_path / "b", progress=False)
    for (k, a), (_, b) in zip(ref.state_dict().items(), res.state_dict().items()):
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=k)


def test_fused_training_forward_equals_fair_esm():
    """The fused training forward (fast attention, LM head on masked positions) has fair-esm's logits and gradients."""
    import torch.nn.functional as F

    alpha = alphabet()
    model = fam.build_model(MemberSpec("f", 2, 32, 2, 1), alpha, seed=0)
    model.train()
    toks = fam.collate(fam.encode(_seqs(6), alpha), alpha)  # unequal lengths: padding is exercised
    inputs, targets = mask_tokens(toks, alpha, torch.Generator().manual_seed(0))
    sel = targets != -100
    out = []
    for fused in (False, True):
        model.zero_grad()
        logits = fam.mlm_logits(model, inputs, sel, fused=fused)
        F.cross_entropy(logits, targets[sel]).backward()
        out.append((logits.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}))
    (la, ga), (lb, gb) = out
    assert la.shape == (int(sel.sum()), len(alpha.all_toks))
    torch.testing.assert_close(la, lb, rtol=1e-4, atol=1e-5)
    assert ga.keys() == gb.keys()
    for k in ga:
        torch.testing.assert_close(ga[k], gb[k], rtol=1e-3, atol=1e-6, msg=k)


def test_heldout_from_another_file_and_independent_members(tmp_path):
    """Held-out sequences drawn from a second file (as the shipped family does) never train; a member
    stays valid when another member's spec changes."""
    from rd_interp.io.atomic import read_json

    seqs = _seqs(80, seed=1)
    train_fa, held_fa = tmp_path / "train.fasta", tmp_path / "held.fasta"
    write_fasta(held_fa, [(f"h{i}", s) for i, s in enumerate(seqs[:30])])
    dup = seqs[3]  # a held-out candidate also present (under another id) in the training file
    write_fasta(train_fa, [(f"t{i}", s) for i, s in enumerate(seqs[30:])] + [("copy", dup)])
    cfg = _cfg(n_heldout=10, eval_every=5)
    out = tmp_path / "m"
    summary = train_family(train_fa, out, cfg, progress=False, heldout_fasta=held_fa, only=["t-S"])
    held = fam.split_heldout([f"h{i}" for i in range(30)], 10, cfg.seed)
    held_ids = [f"h{i}" for i in range(30) if held[i]]
    assert summary["heldout_ids_sha256"] == fam._sha_ids(held_ids) and summary["n_heldout_sequences"] == 10
    expect_excluded = int(held[3])  # "copy" is dropped only if seqs[3] was drawn into the held-out set
    assert summary["n_train_excluded_as_heldout"] == expect_excluded
    assert summary["n_train_sequences"] == 51 - expect_excluded
    meta = read_json(out / "t-S.json")
    assert meta["eval_history"] and all(np.isfinite(e[2]) for e in meta["eval_history"])
    before = (out / "t-S.pt").read_bytes()
    bigger = _cfg(n_heldout=10, eval_every=5, log_every=3,
                  members=[MemberSpec("t-S", 1, 16, 2, 20000, lr=5e-3), MemberSpec("t-L", 2, 32, 2, 30000, lr=5e-3)])
    again = train_family(train_fa, out, bigger, progress=False, heldout_fasta=held_fa)
    assert (out / "t-S.pt").read_bytes() == before  # kept: its own spec and the data did not change
    assert again["members"]["t-L"]["tokens_seen"] >= 30000 and again["order"] == ["t-S", "t-L"]
    with pytest.raises(ValueError, match="another config"):  # a member whose own spec changed is refused
        train_family(train_fa, out, _cfg(n_heldout=10, members=[MemberSpec("t-S", 1, 16, 2, 9000, lr=5e-3)]),
                     progress=False, heldout_fasta=held_fa)


def test_cli_family_train_with_toml_config(tmp_path, capsys):
    from rd_interp.cli import main

    fasta = tmp_path / "train.fasta"
    write_fasta(fasta, [(f"s{i}", s) for i, s in enumerate(_seqs(30))])
    (tmp_path / "fam.toml").write_text(
        'crop = 48\nbatch_tokens = 400\nn_heldout = 4\neval_crop = 64\nthreads = 1\n'
        '[[members]]\nname = "a"\nlayers = 1\ndim = 16\nheads = 2\ntokens = 1500\n'
        '[[members]]\nname = "b"\nlayers = 1\ndim = 32\nheads = 2\ntokens = 1500\n')
    rc = main(["family", "train", "--fasta", str(fasta), "--out", str(tmp_path / "m"),
               "--config", str(tmp_path / "fam.toml"), "--only", "b"])
    assert rc == 0
    out = capsys.readouterr().out
    assert "b: 1x32" in out and "held-out perplexity" in out and not (tmp_path / "m" / "a.pt").exists()
    rc = main(["family", "train", "--fasta", str(fasta), "--out", str(tmp_path / "m"),
               "--config", str(tmp_path / "fam.toml"), "--only", "zzz"])
    assert rc == 1 and "unknown member" in capsys.readouterr().err


def test_shipped_family_is_ordered_and_loadable():
    """The committed family meets its contract: ESM-2-like growth in depth and width, more tokens for larger
    members, held-out perplexity falling with size on the previous family's held-out set, checksums."""
    from rd_interp.io.atomic import read_json, sha256_file
    from rd_interp.io.datasets import manifest, shipped_train_pool
    from rd_interp.io.fasta import read_fasta
    from rd_interp.plm.esm import shipped_models
    from rd_interp.plm.family import SHIPPED_FAMILY

    models = shipped_models()
    models_dir = next(iter(models.values())).parent
    summary = read_json(models_dir / "family.json")
    assert summary["order"] == SHIPPED_FAMILY
    mem = [summary["members"][n] for n in SHIPPED_FAMILY]
    assert all(a["layers"] < b["layers"] and a["dim"] < b["dim"] for a, b in zip(mem, mem[1:]))
    assert all(m["dim"] == 32 * m["heads"] for m in mem)  # head dimension 32 throughout
    tokens = [m["tokens_seen"] for m in mem]
    assert tokens[0] >= 5_000_000 and all(a < b for a, b in zip(tokens, tokens[1:]))
    ppl = [m["heldout"]["perplexity"] for m in mem]
    uni = mem[0]["heldout"]["unigram_perplexity"]
    assert all(a > b for a, b in zip(ppl, ppl[1:])) and all(p < 0.8 * uni for p in ppl)
    for n, m in zip(SHIPPED_FAMILY, mem):
        assert sha256_file(models[n]) == m["sha256"]
    assert sum(p.stat().st_size for p in models.values()) < 25e6
    _, _, info = load_model(SHIPPED_FAMILY[-1])
    assert (info.n_layers, info.embed_dim) == (mem[-1]["layers"], mem[-1]["dim"])
    # trained on the set data/rebuild.py regenerates; held out: the previous family's 400 sequences
    assert summary["fasta_sha256"] == manifest()["plm_train"]["sha256"]
    pool_ids = [r.id for r in read_fasta(shipped_train_pool())]
    held = fam.split_heldout(pool_ids, summary["n_heldout_sequences"], summary["config"]["seed"])
    assert summary["n_heldout_sequences"] == 400 and summary["heldout_fasta"] == "train_pool.fasta.gz"
    assert summary["heldout_ids_sha256"] == fam._sha_ids([i for i, h in zip(pool_ids, held) if h])
    readme = (models_dir / "README.md").read_text()
    for m in mem:
        assert m["sha256"] in readme and f"{m['heldout']['perplexity']:.3f}" in readme
    assert fam.PROBE_BEGIN in readme and fam.PROBE_END in readme
    # the functional check was run on these very weights (analyses/probe_family.py writes both)
    probe = read_json(models_dir / "probe.json")
    assert all(probe["rows"][n]["sha256"] == m["sha256"] for n, m in zip(SHIPPED_FAMILY, mem))


def test_member_cards_of_the_shipped_family(tmp_path, monkeypatch):
    """The report's model table: shape, size, tokens and perplexity from family.json; probe AUROC only when
    probe.json was computed on the same weights."""
    import json
    import shutil

    from rd_interp.plm import cards
    from rd_interp.plm.esm import shipped_models

    fam = json.loads((shipped_models()["mini-L"].parent / "family.json").read_text())
    card = cards.member_card("mini-L")
    rec = fam["members"]["mini-L"]
    assert (card["layers"], card["dim"], card["params"], card["tokens_seen"]) == (
        rec["layers"], rec["dim"], rec["n_params"], rec["tokens_seen"])
    assert card["heldout_ppl"] == rec["heldout"]["perplexity"] < card["unigram_ppl"]
    assert cards.member_card("35M") is None and cards.member_card(str(tmp_path / "model.pt")) is None
    # a probe.json for other weights is not shown; for these weights it is
    d = tmp_path / "models"
    d.mkdir()
    for f in ("mini-L.pt", "family.json"):
        shutil.copy(shipped_models()["mini-L"].parent / f, d / f)
    monkeypatch.setattr(cards, "shipped_models", lambda: {"mini-L": d / "mini-L.pt"})
    row = {"BP": {"macro_auroc": 0.8}, "MF": {"macro_auroc": 0.9}, "CC": {"macro_auroc": 0.85}}
    (d / "probe.json").write_text(json.dumps({"rows": {"mini-L": {**row, "sha256": "0" * 64}}}))
    assert cards.member_card("mini-L")["probe_macro_auroc"] is None
    (d / "probe.json").write_text(json.dumps({"rows": {"mini-L": {**row, "sha256": rec["sha256"]}}}))
    assert cards.member_card("mini-L")["probe_macro_auroc"] == {"BP": 0.8, "MF": 0.9, "CC": 0.85}
    (d / "probe.json").write_text("{not json")
    with pytest.raises(ValueError, match="probe.json: unreadable"):
        cards.member_card("mini-L")
