"""The fused-attention forward must reproduce fair-esm's own forward on padded batches."""

import pytest
import torch

from rd_interp.plm.family import MemberSpec, alphabet, build_model
from rd_interp.plm.fast import fast_forward, supports_fast_forward


@pytest.mark.parametrize("layers, dim, heads", [(2, 32, 4), (3, 48, 6)])
def test_fast_forward_equals_fair_esm(layers, dim, heads):
    alpha = alphabet()
    model = build_model(MemberSpec("t", layers, dim, heads, 1000), alpha, seed=layers).eval()
    # Random weights with a larger scale so attention is far from uniform.
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() >= 2:
                p.normal_(0, 0.3)
    assert supports_fast_forward(model)
    g = torch.Generator().manual_seed(0)
    seqs = ["".join("ACDEFGHIKLMNPQRSTVWY"[i] for i in torch.randint(0, 20, (n,), generator=g))
            for n in (5, 37, 120, 64)]
    seqs[1] = seqs[1][:10] + "<mask>" + seqs[1][11:]  # token dropout rescaling path
    _, _, tokens = alpha.get_batch_converter()([(str(i), s) for i, s in enumerate(seqs)])
    keep = tokens.ne(alpha.padding_idx)
    with torch.inference_mode():
        for layer in (0, 1, layers):
            ref = model(tokens, repr_layers=[layer])["representations"][layer]
            got = fast_forward(model, tokens, layer)
            err = (got - ref)[keep].abs().max().item()
            assert err < 1e-4 * max(1.0, ref.abs().max().item()), (layer, err)


def _model_and_tokens(lengths, seed=0):
    alpha = alphabet()
    model = build_model(MemberSpec("t", 2, 48, 6, 1000), alpha, seed=seed).eval()
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() >= 2:
                p.normal_(0, 0.3)
    g = torch.Generator().manual_seed(seed)
    seqs = ["".join("ACDEFGHIKLMNPQRSTVWY"[i] for i in torch.randint(0, 20, (n,), generator=g)) for n in lengths]
    _, _, tokens = alpha.get_batch_converter()([(str(i), s) for i, s in enumerate(seqs)])
    return model, alpha, tokens


@pytest.mark.parametrize("lengths, chunk", [((30, 30, 30, 12, 12, 50), 7),  # equal-length groups, tiny FFN chunks
                                            ((40, 40), None),                # no padding at all
                                            ((9,), 3)])                      # one protein
def test_packed_forward_equals_fair_esm(lengths, chunk):
    model, alpha, tokens = _model_and_tokens(lengths)
    keep = tokens.ne(alpha.padding_idx)
    with torch.inference_mode():
        ref = model(tokens, repr_layers=[2])["representations"][2]
        got = fast_forward(model, tokens, 2, chunk_tokens=chunk)
    err = (got - ref)[keep].abs().max().item()
    assert err < 1e-4 * max(1.0, ref.abs().max().item()), err
    assert bool((got[~keep] == 0).all())  # padding rows are zero on the packed path


def test_fused_qkv_cache_follows_weight_changes():
    model, alpha, tokens = _model_and_tokens((20, 33))
    keep = tokens.ne(alpha.padding_idx)
    with torch.inference_mode():
        fast_forward(model, tokens, 2)  # fills the cache
    with torch.no_grad():
        model.layers[0].self_attn.k_proj.weight.mul_(-1.5)  # in place: same storage, new version
    with torch.inference_mode():
        ref = model(tokens, repr_layers=[2])["representations"][2]
        got = fast_forward(model, tokens, 2)
    assert (got - ref)[keep].abs().max().item() < 1e-4 * max(1.0, ref.abs().max().item())
