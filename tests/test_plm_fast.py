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
