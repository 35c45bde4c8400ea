"""The shipped offline ESM-2-architecture family, and the code that trains such a family.

Why: real ESM-2 weights cannot be downloaded everywhere, yet reverse distillation needs a family of
models of one architecture, growing in depth and width. Members are fair-esm ``ESM2`` modules trained
with the ESM-2 masked-language-model recipe (15% of residues chosen; 80% -> <mask>, 10% -> random
residue, 10% unchanged) and saved in fair-esm's own checkpoint format, so `esm.load_model` loads them
through exactly the code path used for real ESM-2 checkpoints.

Training is deterministic for a given config and seed (token budgets, not wall-clock budgets) and
resumable: a training-state checkpoint is written atomically every `checkpoint_every` steps. The
training forward replays fair-esm's layers with torch's fused `scaled_dot_product_attention` (as
plm/fast.py does for inference; same weights, same math to float rounding), which is what makes tens of
millions of tokens affordable on one CPU core; the saved checkpoint is plain fair-esm.
"""

from __future__ import annotations

import argparse
import ctypes
import dataclasses
import json
import logging
import math
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from rd_interp.io.atomic import atomic_path, read_json, sha256_file, write_json, write_text
from rd_interp.io.fasta import fasta_checksum, read_fasta
from rd_interp.io.provenance import versions
from rd_interp.plm.fast import fast_forward, supports_fast_forward

log = logging.getLogger(__name__)

#: Shipped members, small -> large (files data/models/<name>.pt).
SHIPPED_FAMILY: list[str] = ["mini-S", "mini-M", "mini-L"]

STANDARD_AA = "ACDEFGHIKLMNPQRSTVWY"


@dataclass
class MemberSpec:
    name: str
    layers: int
    dim: int
    heads: int
    tokens: int  # training budget in non-padding tokens (BOS/EOS included)
    lr: float | None = None  # None: 1.5e-3 * sqrt(64 / dim)

    def peak_lr(self) -> float:
        return self.lr if self.lr is not None else 1.5e-3 * math.sqrt(64 / self.dim)


def _default_members() -> list[MemberSpec]:
    # ESM-2's ratios (depth and width both growing, head dim 32 as in ESM-2 150M), sized for about four
    # hours of one CPU core in total; on a GPU, train wider/deeper members for longer.
    return [
        MemberSpec("mini-S", 4, 96, 3, 12_000_000),
        MemberSpec("mini-M", 6, 128, 4, 14_000_000),
        MemberSpec("mini-L", 8, 160, 5, 15_000_000),
    ]


@dataclass
class FamilyConfig:
    members: list[MemberSpec] = field(default_factory=_default_members)
    crop: int = 512  # residues per training crop (random window of longer sequences)
    batch_tokens: int = 8192  # padded tokens per step
    warmup_fraction: float = 0.1
    final_lr_fraction: float = 0.1
    weight_decay: float = 0.01
    grad_clip: float = 1.0
    mask_prob: float = 0.15
    n_heldout: int = 400  # sequences held out of training for the perplexity evaluation
    eval_crop: int = 256
    eval_every: int = 500  # steps between held-out perplexity evaluations logged during training (0: off)
    seed: int = 0
    # torch CPU threads; 1 is ~10x faster than 2 on a CPU shared with other jobs (no spinning barriers)
    threads: int | None = 1
    checkpoint_every: int = 100  # steps
    log_every: int = 20
    half: bool = True  # store weights as float16 (halves the shipped size)
    fused_attention: bool = True  # training forward with fused attention (plm/fast.py); False: fair-esm's own

    def validate(self) -> None:
        if not self.members:
            raise ValueError("FamilyConfig.members is empty")
        names = [m.name for m in self.members]
        if len(set(names)) != len(names):
            raise ValueError(f"FamilyConfig.members has duplicate names: {names}")
        for m in self.members:
            if m.dim % m.heads or (m.dim // m.heads) % 2:
                raise ValueError(f"{m.name}: dim {m.dim} must split into {m.heads} heads of even size (rotary)")
        if not 0 < self.mask_prob < 1:
            raise ValueError("mask_prob must be in (0, 1)")
        if self.batch_tokens < self.crop + 2:
            raise ValueError("batch_tokens must hold at least one crop")
        for key in ("checkpoint_every", "log_every"):
            if getattr(self, key) < 1:
                raise ValueError(f"{key} must be >= 1")
        if self.eval_every < 0:
            raise ValueError("eval_every must be >= 0")


# ---------------------------------------------------------------------------------------------------
# tokenisation and masking


def alphabet():
    import esm

    return esm.data.Alphabet.from_architecture("ESM-1b")


def _byte_table(alpha) -> np.ndarray:
    table = np.full(256, alpha.unk_idx, dtype=np.int64)
    for ch in "ACDEFGHIKLMNPQRSTVWYXBUZO":
        table[ord(ch)] = alpha.get_idx(ch)
    return table


def encode(seqs: Sequence[str], alpha, dtype=np.int64) -> list[np.ndarray]:
    """Residue token ids per sequence (no BOS/EOS), vectorised per sequence.

    dtype=np.uint8 stores a 150M-residue training set in 150 MB instead of 1.2 GB (ids are < 33).
    """
    table = _byte_table(alpha).astype(dtype)
    return [table[np.frombuffer(s.encode("ascii"), dtype=np.uint8)] for s in seqs]


def collate(chunks: Sequence[np.ndarray], alpha) -> torch.Tensor:
    """[BOS] residues [EOS] + padding, as fair-esm's BatchConverter lays them out."""
    T = max(len(c) for c in chunks) + 2
    out = np.full((len(chunks), T), alpha.padding_idx, dtype=np.int64)
    for i, c in enumerate(chunks):
        out[i, 0] = alpha.cls_idx
        out[i, 1:len(c) + 1] = c
        out[i, len(c) + 1] = alpha.eos_idx
    return torch.from_numpy(out)


def mask_tokens(tokens: torch.Tensor, alpha, gen: torch.Generator, mask_prob: float = 0.15):
    """ESM-2/BERT corruption -> (inputs, targets with -100 at unselected positions)."""
    special = torch.tensor([alpha.padding_idx, alpha.cls_idx, alpha.eos_idx])
    residue = ~torch.isin(tokens, special)
    u = torch.rand(tokens.shape, generator=gen)
    selected = residue & (u < mask_prob)
    targets = torch.where(selected, tokens, torch.full_like(tokens, -100))
    r = torch.rand(tokens.shape, generator=gen)
    aa = torch.tensor([alpha.get_idx(c) for c in STANDARD_AA])
    rand_tok = aa[torch.randint(len(aa), tokens.shape, generator=gen)]
    inputs = tokens.clone()
    inputs[selected & (r < 0.8)] = alpha.mask_idx
    swap = selected & (r >= 0.8) & (r < 0.9)
    inputs[swap] = rand_tok[swap]
    return inputs, targets


# ---------------------------------------------------------------------------------------------------
# checkpoint format


def build_model(spec: MemberSpec, alpha, seed: int):
    """A freshly initialised fair-esm ESM2 (BERT-style N(0, 0.02) init, zero biases)."""
    from esm.model.esm2 import ESM2

    torch.manual_seed(seed)
    model = ESM2(num_layers=spec.layers, embed_dim=spec.dim, attention_heads=spec.heads, alphabet=alpha,
                 token_dropout=True)
    for name, p in model.named_parameters():
        if name.endswith("bias"):
            torch.nn.init.zeros_(p)
        elif p.dim() >= 2:
            torch.nn.init.normal_(p, std=0.02)
    return model


def esm2_checkpoint(model, *, half: bool = True, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """fair-esm ESM-2 checkpoint dict: {"model": state dict with fairseq prefixes, "cfg": {"model": Namespace}}.

    Same layout as the released esm2_t*.pt files (contact-regression weights are absent there too).
    """
    state: dict[str, torch.Tensor] = {}
    converted: dict[int, torch.Tensor] = {}
    for k, v in model.state_dict().items():
        if k.startswith("contact_head."):
            continue
        key = ("encoder." if k.startswith("lm_head.") else "encoder.sentence_encoder.") + k
        if half and v.is_floating_point() and not k.endswith("inv_freq"):
            # Tied weights (embed_tokens / lm_head) share one storage: convert once, save once.
            ptr = v.data_ptr()
            if ptr not in converted:
                converted[ptr] = v.detach().to(torch.float16).clone()
            state[key] = converted[ptr]
        else:
            state[key] = v.detach().clone()
    cfg = argparse.Namespace(
        encoder_layers=model.num_layers, encoder_embed_dim=model.embed_dim,
        encoder_ffn_embed_dim=4 * model.embed_dim, encoder_attention_heads=model.attention_heads,
        token_dropout=model.token_dropout, max_positions=1024, arch="ESM-2",
    )
    out: dict[str, Any] = {"model": state, "cfg": {"model": cfg}}
    if extra:
        out["rd_interp"] = json.loads(json.dumps(extra))  # plain JSON types only (weights_only-safe)
    return out


def save_esm2_checkpoint(model, path: str | os.PathLike, *, half: bool = True,
                         extra: dict[str, Any] | None = None) -> str:
    """Write `model` atomically in fair-esm format; returns the file's sha256."""
    with atomic_path(path) as tmp:
        torch.save(esm2_checkpoint(model, half=half, extra=extra), tmp)
    return sha256_file(path)


# ---------------------------------------------------------------------------------------------------
# evaluation


@torch.inference_mode()
def mlm_perplexity(model, alpha, seqs: Sequence[str], *, seed: int = 1234, crop: int = 512,
                   batch_tokens: int = 8192, mask_prob: float = 0.15,
                   unigram: np.ndarray | None = None) -> dict[str, float]:
    """Held-out MLM perplexity with a fixed (seeded) corruption, identical for every model.

    Sequences are cut to their first `crop` residues. With `unigram` (probabilities over the
    alphabet), also the unigram baseline's perplexity on exactly the same masked targets.
    """
    model.eval()
    gen = torch.Generator().manual_seed(seed)
    toks = [t[:crop] for t in encode(seqs, alpha)]
    order = np.argsort([len(t) for t in toks], kind="stable")
    nll = 0.0
    nll_uni = 0.0
    n = 0
    i = 0
    while i < len(order):
        j = i + 1
        while j < len(order) and (j - i + 1) * (len(toks[order[j]]) + 2) <= batch_tokens:
            j += 1
        batch = collate([toks[k] for k in order[i:j]], alpha)
        inputs, targets = mask_tokens(batch, alpha, gen, mask_prob)
        logits = model(inputs)["logits"].float()
        sel = targets != -100
        nll += float(F.cross_entropy(logits[sel], targets[sel], reduction="sum").double())
        if unigram is not None:
            nll_uni += float(-np.log(unigram[targets[sel].numpy()]).astype(np.float64).sum())
        n += int(sel.sum())
        i = j
    out = {"perplexity": math.exp(nll / max(n, 1)), "cross_entropy": nll / max(n, 1), "n_masked": n}
    if unigram is not None:
        out["unigram_perplexity"] = math.exp(nll_uni / max(n, 1))
    return out


def unigram_distribution(seqs: Sequence[str], alpha) -> np.ndarray:
    """Add-one smoothed residue frequencies over the ESM letters (float64)."""
    counts = np.zeros(len(alpha.all_toks), dtype=np.float64)
    table = _byte_table(alpha)
    for s in seqs:
        counts += np.bincount(table[np.frombuffer(s.encode("ascii"), dtype=np.uint8)], minlength=len(counts))
    probs = np.zeros_like(counts)
    idx = [alpha.get_idx(c) for c in "ACDEFGHIKLMNPQRSTVWYXBUZO"]
    probs[idx] = counts[idx] + 1.0
    return probs / probs.sum()


# ---------------------------------------------------------------------------------------------------
# training


def split_heldout(ids: Sequence[str], n_heldout: int, seed: int) -> np.ndarray:
    """Boolean mask of held-out sequences (seeded, independent of file order beyond the ids)."""
    rng = np.random.default_rng(seed)
    held = np.zeros(len(ids), dtype=bool)
    held[rng.choice(len(ids), size=min(n_heldout, max(len(ids) - 1, 0)), replace=False)] = True
    return held


class _Batches:
    """Endless, seeded stream of padded training batches: random crops, length-bucketed to cut padding."""

    def __init__(self, toks: list[np.ndarray], cfg: FamilyConfig, seed: int):
        self.toks, self.cfg = toks, cfg
        self.rng = np.random.default_rng(seed)
        self.queue: list[list[np.ndarray]] = []

    def _refill(self) -> None:
        crop = self.cfg.crop
        pick = self.rng.choice(len(self.toks), size=min(len(self.toks), 64 * max(1, self.cfg.batch_tokens // crop)),
                               replace=False)
        chunks = []
        for k in pick:
            t = self.toks[k]
            if len(t) > crop:
                s = int(self.rng.integers(0, len(t) - crop + 1))
                t = t[s:s + crop]
            chunks.append(t)
        chunks.sort(key=len)
        batches, cur = [], []
        for c in chunks:
            if cur and (len(cur) + 1) * (len(c) + 2) > self.cfg.batch_tokens:
                batches.append(cur)
                cur = []
            cur.append(c)
        if cur:
            batches.append(cur)
        self.queue = [batches[i] for i in self.rng.permutation(len(batches))]

    def next(self) -> list[np.ndarray]:
        if not self.queue:
            self._refill()
        return self.queue.pop()


def mlm_logits(model, inputs: torch.Tensor, selected: torch.Tensor, *, fused: bool = True) -> torch.Tensor:
    """LM-head logits at the `selected` positions only ([n_selected, vocab]).

    fused: fair-esm's layers replayed with fused attention (plm/fast.py), and the LM head applied to the
    masked positions only (~15% of tokens); otherwise fair-esm's own forward. Same function either way
    (tests/test_plm_family.py checks logits and gradients).
    """
    if fused and supports_fast_forward(model):
        return model.lm_head(fast_forward(model, inputs, model.num_layers)[selected])
    return model(inputs)["logits"][selected]


def _lr_at(step: int, total: int, cfg: FamilyConfig, peak: float) -> float:
    warm = max(1, int(cfg.warmup_fraction * total))
    if step < warm:
        return peak * (step + 1) / warm
    frac = min(1.0, (step - warm) / max(1, total - warm))
    return peak * (cfg.final_lr_fraction + (1 - cfg.final_lr_fraction) * 0.5 * (1 + math.cos(math.pi * frac)))


def _estimate_steps(toks: list[np.ndarray], spec: MemberSpec, cfg: FamilyConfig) -> int:
    """Steps for the token budget, from the mean non-padding tokens per batch of this config."""
    probe = _Batches(toks, cfg, seed=cfg.seed + 999)
    real = [sum(len(c) + 2 for c in probe.next()) for _ in range(200)]
    return max(1, math.ceil(spec.tokens / float(np.mean(real))))


def train_member(spec: MemberSpec, train_seqs: Sequence[str], cfg: FamilyConfig, work_dir: str | os.PathLike,
                 *, progress: bool = True, heldout: Sequence[str] | None = None):
    """Train one member (resuming from work_dir/<name>.state.pt) -> (model, stats).

    With `heldout` and cfg.eval_every, held-out perplexity (fair-esm's own forward, the fixed
    corruption of the final evaluation) is recorded every eval_every steps in stats["eval_history"].
    """
    alpha = alphabet()
    work = Path(work_dir)
    work.mkdir(parents=True, exist_ok=True)
    toks = encode(train_seqs, alpha, dtype=np.uint8)
    total = _estimate_steps(toks, spec, cfg)
    seed = cfg.seed + sum(map(ord, spec.name))
    model = build_model(spec, alpha, seed)
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2 and "layer_norm" not in n]
    no_decay = [p for n, p in model.named_parameters() if not (p.dim() >= 2 and "layer_norm" not in n)]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}],
                            lr=spec.peak_lr(), betas=(0.9, 0.98), eps=1e-8)
    batches = _Batches(toks, cfg, seed)
    gen = torch.Generator().manual_seed(seed)
    step, seen, elapsed, loss_hist, eval_hist = 0, 0, 0.0, [], []
    state_path = work / f"{spec.name}.state.pt"
    if state_path.is_file():
        st = torch.load(state_path, map_location="cpu", weights_only=True)
        if st["spec"] != dataclasses.asdict(spec) or st["total"] != total:
            raise ValueError(f"{state_path}: training state is for a different member config; delete it to restart")
        model.load_state_dict(st["model"])
        opt.load_state_dict(st["opt"])
        gen.set_state(st["gen"])
        batches.rng.bit_generator.state = json.loads(st["np_rng"])
        batches.queue = [[np.asarray(c, dtype=np.int64) for c in b] for b in json.loads(st["queue"])]
        step, seen, elapsed, loss_hist = st["step"], st["seen"], st["elapsed"], list(st["loss_hist"])
        eval_hist = list(st.get("eval_hist", []))
        log.info("%s: resuming at step %d/%d", spec.name, step, total)
    model.train()
    t_start = time.time() - elapsed
    run_loss, run_n = 0.0, 0
    while step < total:
        chunk = batches.next()
        tokens = collate(chunk, alpha)
        inputs, targets = mask_tokens(tokens, alpha, gen, cfg.mask_prob)
        sel = targets != -100
        if not bool(sel.any()):
            step += 1
            continue
        for g in opt.param_groups:
            g["lr"] = _lr_at(step, total, cfg, spec.peak_lr())
        loss = F.cross_entropy(mlm_logits(model, inputs, sel, fused=cfg.fused_attention), targets[sel])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        opt.step()
        step += 1
        seen += int(sum(len(c) + 2 for c in chunk))
        run_loss += float(loss.detach()) * int(sel.sum())
        run_n += int(sel.sum())
        if step % cfg.log_every == 0 or step == total:
            el = time.time() - t_start
            loss_hist.append([step, seen, run_loss / max(run_n, 1)])
            if progress:
                log.info("%s step %d/%d tokens %d loss %.4f (ppl %.2f) %.0f tok/s", spec.name, step, total, seen,
                         run_loss / max(run_n, 1), math.exp(run_loss / max(run_n, 1)), seen / max(el, 1e-9))
            run_loss, run_n = 0.0, 0
        if heldout and cfg.eval_every and step % cfg.eval_every == 0 and step < total:
            t_ev = time.time()
            ev = mlm_perplexity(model, alpha, heldout, seed=cfg.seed + 1, crop=cfg.eval_crop)
            model.train()
            eval_hist.append([step, seen, ev["perplexity"]])
            t_start += time.time() - t_ev  # evaluation time is not training time
            if progress:
                log.info("%s step %d held-out perplexity %.3f", spec.name, step, ev["perplexity"])
        if step % cfg.checkpoint_every == 0 and step < total:
            _save_state(state_path, model, opt, gen, batches, spec, total, step, seen, time.time() - t_start,
                        loss_hist, eval_hist)
            _release_free_memory()
    model.eval()
    stats = {"steps": step, "tokens_seen": seen, "train_seconds": round(time.time() - t_start, 1),
             "loss_history": loss_hist, "eval_history": eval_hist}
    return model, stats


def _release_free_memory() -> None:
    """Hand freed heap memory back to the OS (glibc only; elsewhere a no-op).

    Why: batches of varying length make the fused attention allocate buffers of ever-new sizes, and
    glibc's heap then fragments: the training process grew by ~4 GB over two hours without it (a
    stable ~1 GB with a trim every 100 steps, which costs about a second).
    """
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def _save_state(path, model, opt, gen, batches, spec, total, step, seen, elapsed, loss_hist, eval_hist) -> None:
    st = {
        "model": model.state_dict(), "opt": opt.state_dict(), "gen": gen.get_state(),
        "np_rng": json.dumps(batches.rng.bit_generator.state),
        "queue": json.dumps([[c.tolist() for c in b] for b in batches.queue]),
        "spec": dataclasses.asdict(spec), "total": total, "step": step, "seen": seen, "elapsed": elapsed,
        "loss_hist": loss_hist, "eval_hist": eval_hist,
    }
    with atomic_path(path) as tmp:
        torch.save(st, tmp)


def train_family(fasta_path: str | os.PathLike, out_dir: str | os.PathLike, cfg: FamilyConfig | None = None,
                 *, only: Sequence[str] | None = None, work_dir: str | os.PathLike | None = None,
                 progress: bool = True, heldout_fasta: str | os.PathLike | None = None) -> dict[str, Any]:
    """Train the members of `cfg` on the sequences of `fasta_path` -> <out_dir>/<name>.pt, <name>.json, family.json.

    A held-out set (cfg.n_heldout sequences, seeded) is never trained on; held-out MLM perplexity of
    each member and of a unigram baseline (on the same masked residues) are reported. The held-out
    set is drawn from `fasta_path`, or, with `heldout_fasta`, from that file (then every sequence of
    `fasta_path` trains, except any equal to a held-out one by id or sequence). Why: the shipped family
    trains on a large set but keeps the held-out sequences of the previous family (drawn from the
    train pool), so that perplexities stay comparable across families. Resumable:
    finished members are skipped, an interrupted member continues from its last training-state
    checkpoint in `work_dir`. `only` trains a subset (separate processes may train different members
    into the same out_dir; each rewrites family.json from the member files present).
    """
    cfg = cfg or FamilyConfig()
    cfg.validate()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    work = Path(work_dir) if work_dir else out / ".train_state"
    recs = list(read_fasta(fasta_path))
    if heldout_fasta is None:
        ids = [r.id for r in recs]
        held = split_heldout(ids, cfg.n_heldout, cfg.seed)
        train = [r.sequence for r, h in zip(recs, held) if not h]
        heldout = [r.sequence for r, h in zip(recs, held) if h]
        heldout_ids = [i for i, h in zip(ids, held) if h]
        n_excluded = 0
    else:
        hrecs = list(read_fasta(heldout_fasta))
        held = split_heldout([r.id for r in hrecs], cfg.n_heldout, cfg.seed)
        heldout = [r.sequence for r, h in zip(hrecs, held) if h]
        heldout_ids = [r.id for r, h in zip(hrecs, held) if h]
        hid, hseq = set(heldout_ids), set(heldout)
        train = [r.sequence for r in recs if r.id not in hid and r.sequence not in hseq]
        n_excluded = len(recs) - len(train)
        del hrecs
    del recs
    alpha = alphabet()
    uni = unigram_distribution(train, alpha)
    cfg_dict = json.loads(json.dumps(dataclasses.asdict(cfg)))
    fasta_sha = fasta_checksum(fasta_path)
    # What a trained member depends on: its own spec plus these. Not the other members' specs, nor
    # threads or logging/checkpoint cadence, so that adding or resizing one member keeps the others.
    common = {
        "training": {k: v for k, v in cfg_dict.items() if k not in _NOT_RESULT_KEYS},
        "fasta": Path(fasta_path).name, "fasta_sha256": fasta_sha,
        "heldout_fasta": Path(heldout_fasta).name if heldout_fasta else None,
        "heldout_fasta_sha256": fasta_checksum(heldout_fasta) if heldout_fasta else None,
        "n_train_sequences": len(train), "n_train_residues": int(sum(map(len, train))),
        "n_train_excluded_as_heldout": n_excluded,
        "n_heldout_sequences": len(heldout), "heldout_ids_sha256": _sha_ids(heldout_ids),
    }
    names = [m.name for m in cfg.members]
    unknown = sorted(set(only or ()) - set(names))
    if unknown:
        raise ValueError(f"unknown member(s) {unknown}; the config has {names}")
    for spec in cfg.members:
        if only and spec.name not in only:
            continue
        path, meta_path = out / f"{spec.name}.pt", out / f"{spec.name}.json"
        if meta_path.is_file() and path.is_file():
            meta = read_json(meta_path)
            if {k: meta.get(k) for k in common} != common or meta.get("spec") != _spec_dict(spec):
                raise ValueError(f"{meta_path}: this member was trained with another config or sequence file; "
                                 "use another output directory")
            if sha256_file(path) == meta.get("sha256"):
                log.info("%s: already trained (%s), skipping", spec.name, path)
                continue
        model, stats = train_member(spec, train, cfg, work, progress=progress, heldout=heldout)
        t0 = time.time()
        ev = mlm_perplexity(model, alpha, heldout, seed=cfg.seed + 1, crop=cfg.eval_crop, unigram=uni)
        n_params = sum(p.numel() for n, p in model.named_parameters() if not n.startswith("contact_head"))
        info = {"name": spec.name, "layers": spec.layers, "dim": spec.dim, "heads": spec.heads,
                "n_params": int(n_params), "peak_lr": spec.peak_lr(), **stats, "heldout": ev,
                "eval_seconds": round(time.time() - t0, 1), "hardware": _hardware(), "created_by": versions()}
        info["sha256"] = save_esm2_checkpoint(model, path, half=cfg.half, extra={
            "name": spec.name, "training": {k: v for k, v in info.items() if k not in ("loss_history", "eval_history")}})
        info["file_bytes"] = path.stat().st_size
        write_json(meta_path, {**common, "spec": _spec_dict(spec), **info})
        log.info("%s: held-out perplexity %.3f (unigram %.3f), %d tokens, %.0f s", spec.name, ev["perplexity"],
                 ev["unigram_perplexity"], stats["tokens_seen"], stats["train_seconds"])
        state = work / f"{spec.name}.state.pt"
        if state.exists():
            state.unlink()
    members = {}
    for spec in cfg.members:
        mp = out / f"{spec.name}.json"
        if mp.is_file():
            members[spec.name] = {k: v for k, v in read_json(mp).items()
                                  if k not in common and k not in ("spec", "loss_history", "eval_history")}
    summary = {"config": cfg_dict, **common, "members": members, "order": [n for n in names if n in members]}
    write_json(out / "family.json", summary)
    return summary


_NOT_RESULT_KEYS = ("members", "threads", "checkpoint_every", "log_every", "eval_every")


def _spec_dict(spec: MemberSpec) -> dict[str, Any]:
    return json.loads(json.dumps(dataclasses.asdict(spec)))


def _sha_ids(ids: Sequence[str]) -> str:
    import hashlib

    return hashlib.sha256("\n".join(ids).encode()).hexdigest()


def _hardware() -> str:
    import platform

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    dev = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return f"{cpu}; {os.cpu_count()} logical CPUs; torch threads {torch.get_num_threads()}; {dev}"


#: How the shipped family was trained (data/models/README.md quotes it; the training set comes from rebuild.py).
SHIPPED_TRAIN_COMMAND = (
    "python data/rebuild.py && OMP_NUM_THREADS=1 nice python -c \"from rd_interp.plm.family import FamilyConfig, "
    "train_family; train_family('data/plm_train/train.fasta.gz', 'runs/family', FamilyConfig(), "
    "heldout_fasta='data/proteins/train_pool.fasta.gz')\"  # then copy runs/family/{mini-*.pt,mini-*.json,"
    "family.json} to data/models"
)

PROBE_BEGIN = "<!-- probe-table:begin"
PROBE_END = "<!-- probe-table:end -->"


def family_readme(summary: dict[str, Any], command: str, train_set: dict[str, Any] | None = None) -> str:
    """data/models/README.md text from a family.json summary (figures are never typed by hand).

    train_set: the data manifest's "plm_train" entry, quoted when it describes the training file.
    """
    cfg = summary["config"]
    rows, curves = [], []
    for name in summary["order"]:
        m = summary["members"][name]
        h = m["heldout"]
        rows.append(f"| {name} | {m['layers']} | {m['dim']} | {m['heads']} | {m['n_params']:,} | {m['tokens_seen']:,} | "
                    f"{m['steps']:,} | {m['peak_lr']:.2e} | {m['train_seconds'] / 60:.1f} | {h['perplexity']:.3f} | "
                    f"{m['file_bytes'] / 1e6:.2f} | `{m['sha256']}` |")
        hist = m.get("eval_history") or []
        if hist:
            pts = ", ".join(f"{seen / 1e6:.1f}M {ppl:.2f}" for _, seen, ppl in hist)
            curves.append(f"- {name}: {pts}, final {m['tokens_seen'] / 1e6:.1f}M {h['perplexity']:.2f}")
    first = summary["members"][summary["order"][0]]
    hw = first.get("hardware", "")
    uni = first["heldout"].get("unigram_perplexity")
    total_min = sum(summary["members"][n]["train_seconds"] for n in summary["order"]) / 60
    if train_set and train_set.get("sha256") == summary["fasta_sha256"]:
        data = [
            f"- Data: `{train_set['file']}` (not shipped: `python data/rebuild.py` regenerates it byte for byte from",
            f"  Debian `metastudent-data`; sha256 `{summary['fasta_sha256']}`, sha256 of its newline-joined accession",
            (f"  list `{train_set['ids_sha256']}`): {summary['n_train_sequences']:,} Swiss-Prot 2014-01 sequences "
             f"({summary['n_train_residues']:,} residues),"),
            "  disjoint by accession and by exact sequence from the evaluation proteins and from `train_pool.fasta.gz`.",
        ]
    else:
        data = [(f"- Data: `{summary['fasta']}` (sha256 `{summary['fasta_sha256']}`), "
                 f"{summary['n_train_sequences']:,} sequences ({summary['n_train_residues']:,} residues).")]
    if summary.get("heldout_fasta"):
        data.append(f"- Held out: {summary['n_heldout_sequences']} sequences of `{summary['heldout_fasta']}` (seeded "
                    "draw, never trained on), the same ones as the previous family's, so perplexities compare.")
    else:
        data.append(f"- Held out: {summary['n_heldout_sequences']} sequences of the same file (seeded, never trained on).")
    lines = [
        "# Shipped offline model family (data/models)",
        "",
        "Small protein language models of the **fair-esm ESM-2 architecture** (`esm.model.esm2.ESM2`, ESM-1b",
        "alphabet and tokenisation, rotary positions, token dropout), growing in depth and width as ESM-2 does",
        "(head dimension 32), for offline demos and tests. Each `<name>.pt` is a fair-esm checkpoint (`{\"model\":",
        "state dict with `encoder.sentence_encoder.` prefixes, \"cfg\": {\"model\": Namespace}}`, float16 weights) and",
        "loads through exactly the same code as real ESM-2 weights: `rd_interp.plm.esm.load_model(\"mini-L\")`.",
        "They are far smaller and shorter-trained than ESM-2 8M; use real ESM-2 (`--model 8M` ... `15B`) for",
        "research results. How much function their embeddings hold is measured below (GO-term probes).",
        "",
        "## Training",
        "",
        *data,
        "- Recipe: masked language modelling as ESM-2 (15% of residues; 80% `<mask>`, 10% random residue, 10% kept),",
        f"  random crops of up to {cfg['crop']} residues, ~{cfg['batch_tokens']} padded tokens per step, AdamW (0.9, 0.98),",
        (f"  weight decay {cfg['weight_decay']}, {cfg['warmup_fraction']:.0%} warmup then cosine decay to "
         f"{cfg['final_lr_fraction']:.0%}, gradient clip {cfg['grad_clip']}, seed {cfg['seed']}; "
         "token budgets (deterministic)."),
        "  The training forward replays fair-esm's layers with fused attention (`plm/fast.py`; same logits and",
        "  gradients to float rounding, tested); checkpoints are plain fair-esm.",
        f"- Hardware: {hw}; training time {total_min:.0f} min summed over members, one process on one core of a CPU",
        "  shared with other jobs.",
        f"- Command: `{command}`",
        "",
        "## Members",
        "",
        (f"Held-out perplexity: masked-LM perplexity on the {summary['n_heldout_sequences']} held-out sequences "
         f"(first {cfg['eval_crop']} residues, one fixed seeded 15% corruption shared by all members). "
         f"Unigram baseline (training residue frequencies) on the same masked residues: **{uni:.3f}**."),
        "",
        "| member | layers | dim | heads | parameters | tokens seen | steps | peak lr | train min | held-out ppl | MB | sha256 |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
        *rows,
        "",
    ]
    if curves:
        lines += ["Held-out perplexity during training (tokens seen, perplexity):", "", *curves, ""]
    lines += [
        "`family.json` holds the full config, per-member loss curves are in `<name>.json`.",
        "Retrain (resumable; finished members are skipped): the command above, or",
        "`rd_interp.plm.family.train_family(fasta, out_dir, FamilyConfig(...))` on your own sequences.",
        "",
    ]
    return "\n".join(lines)


def write_family_readme(models_dir: str | os.PathLike, command: str = SHIPPED_TRAIN_COMMAND,
                        train_set: dict[str, Any] | None = None) -> Path:
    """(Re)write <models_dir>/README.md from family.json and the member files, keeping the probe table
    that analyses/probe_family.py maintains between its markers."""
    d = Path(models_dir)
    summary = read_json(d / "family.json")
    for name in summary["order"]:  # eval histories live in the member files, not in family.json
        mp = d / f"{name}.json"
        if mp.is_file():
            summary["members"][name]["eval_history"] = read_json(mp).get("eval_history", [])
    text = family_readme(summary, command, train_set)
    path = d / "README.md"
    old = path.read_text() if path.is_file() else ""
    if PROBE_BEGIN in old and PROBE_END in old:
        block = old[old.index(PROBE_BEGIN):old.index(PROBE_END) + len(PROBE_END)]
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    write_text(path, text)
    return path
