"""A faster inference forward for fair-esm ESM-2 that reads the same weights.

fair-esm's MultiheadAttention materialises the [batch*heads, T, T] score matrix, masks it with
masked_fill and runs a separate float32 softmax: on CPU that is most of the time for small models and
long proteins. Here attention is torch's fused `scaled_dot_product_attention` and, on CPU, the rest of
the layer works on *packed* tokens:

- padding never enters a matmul: the real tokens of the batch are packed into one [N, C] matrix, so the
  linear layers (q/k/v fused into one GEMM, output projection, FFN) cost what the real tokens cost, and
  attention runs per group of equal-length sequences without a mask;
- rotary is one in-place complex multiply (q/k weight rows pair-interleaved once, see _pair_order);
- no big temporaries: the FFN runs in row chunks of `chunk_tokens` (its [chunk, 4C] hidden block stays in
  cache, and blocks under glibc's mmap threshold are reused instead of page-faulted in afresh on every
  call), residual adds are fused into the GEMMs (`addmm_`), GELU runs in place.
The math is fair-esm's (rotary as `x*cos + rotate_half(x)*sin`, exact erf GELU, the same layer norms and
token-dropout rescaling), so outputs equal fair-esm's to float rounding (tests/test_plm_fast.py checks
this against `model(tokens, repr_layers=...)`). On CUDA, or under autocast, the padded batched form is
used (one kernel per op, no per-sequence launches).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

#: FFN row-chunk size in bytes of its [rows, ffn] fp32 hidden block: small enough to stay in cache and
#: under glibc's 32 MiB mmap threshold (so the block is reused, not page-faulted in afresh), large enough
#: for full-speed GEMMs. 8 MiB -> 1092 rows at the 35M shape (ffn 1920), 5461 at mini-L (ffn 384).
CHUNK_BYTES = 8 << 20


def supports_fast_forward(model) -> bool:
    """True for fair-esm ESM2 models whose attention this module knows how to replay."""
    try:
        att = model.layers[0].self_attn
    except (AttributeError, IndexError, TypeError):
        return False
    return (att.bias_k is None and not att.add_zero_attn and hasattr(model, "emb_layer_norm_after")
            and hasattr(att, "rot_emb"))


def _embed(model, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """fair-esm's token embedding with token-dropout rescaling; returns (x [B, T, C], padding mask)."""
    padding_mask = tokens.eq(model.padding_idx)
    x = model.embed_scale * model.embed_tokens(tokens)
    if model.token_dropout:
        is_mask = tokens == model.mask_idx
        x = x.masked_fill(is_mask.unsqueeze(-1), 0.0)
        mask_ratio_train = 0.15 * 0.8
        src_lengths = (~padding_mask).sum(-1)
        mask_ratio_observed = is_mask.sum(-1).to(x.dtype) / src_lengths
        x = x * (1 - mask_ratio_train) / (1 - mask_ratio_observed)[:, None, None]
    x = x * (1 - padding_mask.unsqueeze(-1).type_as(x))
    return x, padding_mask


# ------------------------------------------------------------------------------------------------
# padded batched form (CUDA, autocast)
# ------------------------------------------------------------------------------------------------
def _attention(attn, x: torch.Tensor, key_keep: torch.Tensor | None) -> torch.Tensor:
    """fair-esm self-attention on x [B, T, C] (batch first). key_keep: [B, T] bool, True = real token."""
    B, T, C = x.shape
    H, hd = attn.num_heads, attn.head_dim
    q = attn.q_proj(x).view(B, T, H, hd).transpose(1, 2)  # [B, H, T, hd]
    k = attn.k_proj(x).view(B, T, H, hd).transpose(1, 2)
    v = attn.v_proj(x).view(B, T, H, hd).transpose(1, 2)
    q = q * attn.scaling
    if attn.rot_emb is not None:
        q, k = attn.rot_emb(q, k)
    mask = None if key_keep is None else key_keep[:, None, None, :]
    # q is already scaled (as fair-esm does before rotary), so SDPA must not scale again.
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=1.0)
    return attn.out_proj(out.transpose(1, 2).reshape(B, T, C))


def _layer(layer, x: torch.Tensor, key_keep: torch.Tensor | None) -> torch.Tensor:
    x = x + _attention(layer.self_attn, layer.self_attn_layer_norm(x), key_keep)
    h = layer.fc2(F.gelu(layer.fc1(layer.final_layer_norm(x))))  # fair-esm's gelu is the exact erf GELU
    return x + h


def _padded_forward(model, x: torch.Tensor, padding_mask: torch.Tensor, layer: int) -> torch.Tensor:
    key_keep = ~padding_mask if padding_mask.any() else None
    for i in range(layer):
        x = _layer(model.layers[i], x, key_keep)
    if layer == model.num_layers:
        x = model.emb_layer_norm_after(x)
    return x


# ------------------------------------------------------------------------------------------------
# packed form (CPU)
# ------------------------------------------------------------------------------------------------
def _rotary_table(inv_freq: torch.Tensor, pos: torch.Tensor, T: int) -> torch.Tensor:
    """cos + i*sin [N, 1, hd/2] (complex64) of each packed token's position, with fair-esm's frequencies
    (its cos/sin tables are cat(freqs, freqs), so one half describes them)."""
    t = torch.arange(T, device=inv_freq.device).type_as(inv_freq)
    freqs = torch.einsum("i,j->ij", t, inv_freq)
    return torch.complex(freqs.cos(), freqs.sin())[pos].unsqueeze(1)


def _pair_order(heads: int, hd: int) -> torch.Tensor:
    """Row order that puts each head's rotary pair (d, d + hd/2) side by side: d0, d0+h, d1, d1+h, ...

    fair-esm rotates x -> x*cos + rotate_half(x)*sin, i.e. the pair (x_d, x_{d+hd/2}) as the complex
    number x_d + i x_{d+hd/2} times cos + i sin. With q and k rows stored pair-interleaved, that is one
    in-place complex multiply. Attention only sees q.k dot products per head, which do not depend on
    the order of a head's dimensions as long as q and k share it, so v and the output keep fair-esm's order.
    """
    half = hd // 2
    within = torch.stack([torch.arange(half), torch.arange(half) + half], dim=1).reshape(-1)
    return (torch.arange(heads)[:, None] * hd + within[None, :]).reshape(-1)


def _fused_qkv(sa) -> tuple[torch.Tensor, torch.Tensor]:
    """q/k/v projections as one [3C, C] weight and [3C] bias (q and k rows pair-interleaved when rotary is
    used, see _pair_order), cached on the module until a weight changes (key: storage and in-place version
    counter of each parameter)."""
    params = (sa.q_proj.weight, sa.k_proj.weight, sa.v_proj.weight, sa.q_proj.bias, sa.k_proj.bias, sa.v_proj.bias)
    key = tuple((p.data_ptr(), p._version, p.dtype) for p in params)
    hit = getattr(sa, "_rd_fused_qkv", None)
    if hit is None or hit[0] != key:
        w, b = list(params[:3]), list(params[3:])
        if sa.rot_emb is not None:
            order = _pair_order(sa.num_heads, sa.head_dim).to(w[0].device)
            w[0], w[1], b[0], b[1] = w[0][order], w[1][order], b[0][order], b[1][order]
        hit = (key, torch.cat(w), torch.cat(b))
        sa._rd_fused_qkv = hit
    return hit[1], hit[2]


def _packed_layer(layer, x: torch.Tensor, groups: list[tuple[int, int, int]], rot: torch.Tensor | None,
                  qkv: torch.Tensor, att: torch.Tensor, chunk: int) -> None:
    """One transformer layer on packed tokens x [N, C], in place. groups: (row offset, n sequences, length)."""
    sa = layer.self_attn
    N, C = x.shape
    H, hd = sa.num_heads, sa.head_dim
    w, b = _fused_qkv(sa)
    torch.addmm(b, layer.self_attn_layer_norm(x), w.t(), out=qkv)
    if sa.rot_emb is not None:
        torch.view_as_complex(qkv[:, :2 * C].view(N, 2 * H, hd // 2, 2)).mul_(rot)
    for off, g, L in groups:
        blk = qkv[off:off + g * L].view(g, L, 3, H, hd)
        q, k, v = (blk[:, :, j].transpose(1, 2) for j in range(3))  # [g, H, L, hd] views
        o = F.scaled_dot_product_attention(q, k, v, scale=sa.scaling)  # fair-esm scales q before rotary: same
        att[off:off + g * L].view(g, L, H, hd).copy_(o.transpose(1, 2))
    x.add_(sa.out_proj.bias).addmm_(att, sa.out_proj.weight.t())
    ln, fc1, fc2 = layer.final_layer_norm, layer.fc1, layer.fc2
    for s in range(0, N, chunk):
        xs = x[s:s + chunk]
        h = torch.addmm(fc1.bias, ln(xs), fc1.weight.t())
        torch._C._nn.gelu_(h)  # exact erf GELU, in place
        xs.add_(fc2.bias).addmm_(h, fc2.weight.t())


def _groups(lengths: list[int]) -> list[tuple[int, int, int]]:
    """Runs of equal length in packed order -> (row offset, count, length): one SDPA call per run."""
    out: list[tuple[int, int, int]] = []
    off = 0
    for L in lengths:
        if out and out[-1][2] == L and out[-1][0] + out[-1][1] * L == off:
            o, g, _ = out[-1]
            out[-1] = (o, g + 1, L)
        else:
            out.append((off, 1, L))
        off += L
    return out


def _packed_forward(model, x: torch.Tensor, padding_mask: torch.Tensor, layer: int, chunk: int) -> torch.Tensor:
    B, T, C = x.shape
    keep = ~padding_mask
    # fair-esm pads on the right; a left pad or a hole would make position != column index.
    lengths = keep.sum(1)
    if not bool((keep == (torch.arange(T, device=x.device)[None, :] < lengths[:, None])).all()):
        return _padded_forward(model, x, padding_mask, layer)
    flat = keep.reshape(-1)
    idx = flat.nonzero().squeeze(1) if not bool(flat.all()) else None
    xp = x.reshape(B * T, C)
    xp = xp.index_select(0, idx) if idx is not None else xp.clone()
    N = xp.shape[0]
    pos = torch.arange(T, device=x.device).expand(B, T).reshape(-1)
    pos = pos[idx] if idx is not None else pos
    groups = _groups(lengths.tolist())
    qkv = x.new_empty(N, 3 * C)
    att = x.new_empty(N, C)
    rot, inv = None, None
    for i in range(layer):
        lay = model.layers[i]
        re = lay.self_attn.rot_emb
        if re is not None and (inv is None or not torch.equal(re.inv_freq, inv)):
            inv, rot = re.inv_freq, _rotary_table(re.inv_freq, pos, T)  # the same for every layer in practice
        _packed_layer(lay, xp, groups, rot if re is not None else None, qkv, att, chunk)
    if layer == model.num_layers:
        xp = model.emb_layer_norm_after(xp)
    if idx is None:
        return xp.view(B, T, C)
    out = x.new_zeros(B * T, C)
    out.index_copy_(0, idx, xp)
    return out.view(B, T, C)


def fast_forward(model, tokens: torch.Tensor, layer: int, *, chunk_tokens: int | None = None) -> torch.Tensor:
    """Representations [B, T, C] after `layer` (final layer: after emb_layer_norm_after), like fair-esm.

    Rows at padding positions are zero on the packed (CPU) path; callers read real tokens only.
    """
    x, padding_mask = _embed(model, tokens)
    packed = (x.device.type == "cpu" and not torch.is_autocast_enabled("cpu") and x.dtype == torch.float32
              and not torch.is_grad_enabled())
    if not packed or layer == 0:
        return _padded_forward(model, x, padding_mask, layer)
    if chunk_tokens is None:
        chunk_tokens = max(256, CHUNK_BYTES // (4 * int(model.layers[0].fc1.out_features)))
    return _packed_forward(model, x, padding_mask, layer, max(1, int(chunk_tokens)))
