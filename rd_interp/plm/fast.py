"""A faster inference forward for fair-esm ESM-2 that reads the same weights.

fair-esm's MultiheadAttention materialises the [batch*heads, T, T] score matrix, masks it with
masked_fill and runs a separate float32 softmax: on CPU that is most of the time for small models and
long proteins. Here each layer calls torch's fused `scaled_dot_product_attention` instead (flash /
memory-efficient kernels on CPU and CUDA); everything else (rotary embedding, layer norms, GELU, token
dropout rescaling) is fair-esm's own modules, so outputs equal fair-esm's to float rounding
(tests/test_plm_fast.py checks this against `model(tokens, repr_layers=...)`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


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


def supports_fast_forward(model) -> bool:
    """True for fair-esm ESM2 models whose attention this module knows how to replay."""
    try:
        att = model.layers[0].self_attn
    except (AttributeError, IndexError, TypeError):
        return False
    return (att.bias_k is None and not att.add_zero_attn and hasattr(model, "emb_layer_norm_after")
            and hasattr(att, "rot_emb"))


def fast_forward(model, tokens: torch.Tensor, layer: int) -> torch.Tensor:
    """Representations [B, T, C] after `layer` (final layer: after emb_layer_norm_after), like fair-esm."""
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
    key_keep = ~padding_mask if padding_mask.any() else None
    for i in range(layer):
        x = _layer(model.layers[i], x, key_keep)
    if layer == model.num_layers:
        x = model.emb_layer_norm_after(x)
    return x
