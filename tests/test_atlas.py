"""Latent atlas: payload built from real objects, the packed page (CSP, escaping, determinism), size."""

from __future__ import annotations

import base64
import hashlib
import json
import re
import struct
import zlib

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import torch

from rd_interp.enrich.coverage import strata
from rd_interp.enrich.result import EnrichmentResult
from rd_interp.io.fasta import FastaRecord
from rd_interp.io.store import StoreWriter
from rd_interp.report.atlas import (
    AtlasSpace,
    SpaceBlock,
    build_atlas,
    build_sae_entry,
    pack_chunk,
    select_terms,
    write_atlas,
)
from rd_interp.report.strip import StripProtein, StripTrack, quantize, write_strip_page
from rd_interp.sae.encode import TopStrips, decoder_share, encode_proteins, encode_sequence_activations
from rd_interp.sae.model import SAEConfig, SparseAutoencoder
from tests.atlas_fixtures import XSS_ACC, XSS_LABEL, XSS_NAME, XSS_TERM, demo_payload

AA = "ACDEFGHIKLMNPQRSTVWY"
# encode_proteins passes read-only store rows to torch (sae/encode.py); harmless, not this module's concern
pytestmark = pytest.mark.filterwarnings("ignore:The given NumPy array is not writable")


# ------------------------------------------------------------------------------------------ helpers
def unpack(blob: bytes) -> tuple[dict, dict[str, np.ndarray]]:
    """Python twin of the page's chunk reader."""
    raw = zlib.decompress(blob)
    (hl,) = struct.unpack("<I", raw[:4])
    head = json.loads(raw[4:4 + hl].decode("utf-8"))
    base = 4 + hl + (-(4 + hl) % 8)
    types = {"u1": "<u1", "u2": "<u2", "u4": "<u4", "i4": "<i4", "f4": "<f4", "f8": "<f8"}
    arrays = {}
    for k, (code, off, n) in head["arrays"].items():
        assert (base + off) % 8 == 0
        arrays[k] = np.frombuffer(raw, dtype=types[code], count=n, offset=base + off)
    return head["json"], arrays


def page_parts(html: str) -> tuple[dict, dict[str, bytes]]:
    meta = json.loads(re.search(r'<script type="application/json" id="atlas-meta">(.*?)</script>', html, re.DOTALL).group(1))
    chunks = {m.group(1): base64.b64decode(m.group(2))
              for m in re.finditer(r'<script type="application/octet-stream" id="chunk-([^"]+)">([^<]*)</script>', html)}
    return meta, chunks


class FakeOntology:
    def __init__(self, parents: dict[str, set[str]]):
        self.parents = parents

    def ancestors(self, g):
        return self.parents.get(g, set())


# ------------------------------------------------------------------------------------------ units
def test_quantize():
    q, scale = quantize([0.0, 1e-6, 0.5, 2.0])
    assert scale == 2.0 and q.dtype == np.uint8
    assert q.tolist() == [0, 1, 64, 255]  # a tiny but non-zero activation stays visible (1, not 0)
    assert quantize([0, 0])[1] == 0.0 and quantize([])[0].size == 0
    q, _ = quantize([0.1, 0.2], levels=15)
    assert q.tolist() == [8, 15]
    for bad in ([-1.0], [float("nan")]):
        with pytest.raises(ValueError, match="finite and >= 0"):
            quantize(bad)
    with pytest.raises(ValueError, match="levels"):
        quantize([1.0], levels=0)


def _row(g, p, ic, depth, ns="BP", name=None):
    return {"go_id": g, "name": name or g.lower(), "namespace": ns, "p_adj": p, "p": p / 10, "fold": 3.0,
            "depth": depth, "ic": ic, "study_count": 5}


def test_select_terms_significant_specific_and_non_redundant():
    rows = [_row("GO:A", 1e-9, 2.0, 2), _row("GO:B", 1e-8, 3.0, 3), _row("GO:C", 1e-3, 9.0, 8),
            _row("GO:D", 1e-7, 4.0, 4), _row("GO:E", 1e-6, 5.0, 5), _row("GO:A", 1e-2, 2.0, 2, ns="MF")]
    onto = FakeOntology({"GO:B": {"GO:A"}, "GO:C": {"GO:B", "GO:A"}, "GO:D": set(), "GO:E": {"GO:D"}})
    out = select_terms(rows, n_terms=6, ontology=onto)
    # most significant (A), most specific (C); B is A's child -> redundant; D kept; E is D's child -> dropped
    assert [t.go_id for t in out] == ["GO:A", "GO:C", "GO:D"]
    assert [t.role for t in out] == [1, 2, 0]
    assert out[0].p_adj == 1e-9 and out[0].namespace == "BP"  # the better of the two rows of GO:A
    # without an ontology only repeated ids are dropped; the limit holds
    out = select_terms(rows, n_terms=3)
    assert [t.go_id for t in out] == ["GO:A", "GO:C", "GO:B"]
    # the most significant term is also the most specific: one entry with both roles
    out = select_terms([_row("GO:X", 1e-5, 9.0, 9), _row("GO:Y", 1e-3, 1.0, 1)], n_terms=2)
    assert [(t.go_id, t.role) for t in out] == [("GO:X", 3), ("GO:Y", 0)]
    assert select_terms([], 5) == []


# ------------------------------------------------------------------------------------------ build
@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """A real (random) SAE over a real store of 14 proteins, its pooled scores and an enrichment table."""
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    d, n = 10, 24
    recs, path = [], tmp_path_factory.mktemp("atlas") / "store"
    with StoreWriter(path, dim=d, manifest={"model": "test"}, dtype="float32") as w:
        for i in range(14):
            L = int(rng.integers(8, 40))
            seq = "".join(rng.choice(list(AA), size=L))
            desc = f"sp|P{i:05d}|T{i}_HUMAN Test protein {i} OS=Homo sapiens OX=9606" if i % 2 else ""
            recs.append(FastaRecord(f"P{i:05d}", desc, seq, 1))
            w.append(f"P{i:05d}", rng.normal(0, 1, (L, d)).astype(np.float32) + 5)
    from rd_interp.io.store import EmbeddingStore

    store = EmbeddingStore(path)
    sae = SparseAutoencoder(SAEConfig("topk", d_in=d, n_latents=n, k=3), seed=1)
    with torch.no_grad():
        sae.pre_mean.fill_(5.0)
        sae.b_enc.copy_(torch.from_numpy(rng.normal(0, 0.3, n).astype(np.float32)))
    scores = encode_proteins(sae, store)
    table = pd.DataFrame([
        {"latent": 2, **_row("GO:0000010", 1e-6, 3.0, 3, name="alpha <b>"), "captured": True},
        {"latent": 2, **_row("GO:0000011", 1e-4, 6.0, 6), "captured": True},
        {"latent": 2, **_row("GO:0000012", 0.2, 8.0, 9), "captured": False},
        {"latent": 5, **_row("GO:0000013", 1e-3, 2.0, 2, ns="MF"), "captured": True},
    ])
    res = EnrichmentResult(table=table, latents=pd.DataFrame({"latent": range(n)}), config={}, meta={})
    return sae, store, scores, res, recs


# strips: encoded again from the store (one encoder call, or one per protein: bounded memory), or kept by the
# encode pass (TopStrips, in blocks of ~2 proteins, pruned after every block)
@pytest.mark.parametrize("fill_rows", [1 << 17, 7, "strips"])
def test_build_sae_entry_from_real_objects(tiny_run, fill_rows, monkeypatch):
    from rd_interp.report import atlas as atlas_module

    sae, store, scores, res, _ = tiny_run
    kw = {"store": store}
    if fill_rows == "strips":
        monkeypatch.setattr(TopStrips, "PRUNE_TRIPLES", 1)
        strips = TopStrips(5, sae.n_latents)
        again = encode_proteins(sae, store, batch_rows=40, strips=strips)
        np.testing.assert_allclose(again.toarray(), scores.toarray(), rtol=1e-5)  # GEMM shapes differ: ulps
        scores = again  # the strips rank by the scores of their own pass
        kw = {"strips": strips.arrays(), "lengths": store.lengths}
    else:
        monkeypatch.setattr(atlas_module, "FILL_ROWS", fill_rows)
    blocks = [SpaceBlock("base", 0, 4), SpaceBlock("residual", 4, 10)]
    e = build_sae_entry(sae, scores, store.ids, seed=3, enrichment=res, blocks=blocks, top_k=4,
                        hist_bins=5, protein_top=3, **kw)
    dense = scores.toarray()
    P = dense.shape[0]
    assert e.seed == 3 and e.n_latents == 24 and e.n_proteins == P and e.k == 3
    share = decoder_share(sae, slice(0, 4))
    fired_any = 0
    for lat in e.latents:
        col = dense[:, lat.index]
        assert lat.n_firing == int((col > 0).sum()) and lat.frequency == pytest.approx(lat.n_firing / P)
        assert sum(lat.histogram) == lat.n_firing and len(lat.histogram) == 5
        assert lat.max_activation == pytest.approx(float(col.max()))
        order = sorted(range(P), key=lambda i: (-col[i], i))[:min(4, lat.n_firing)]
        assert [t.accession for t in lat.top] == [store.ids[i] for i in order]
        assert lat.decoder_share == pytest.approx(float(share[lat.index]))
        assert lat.stratum == strata(share, 4 / 10, 0.5)[lat.index]  # base block: 4 of 10 dimensions
        for tp in lat.top:  # the strip is the quantised per-residue activation; its max is the pooled value
            fired_any += 1
            per = encode_sequence_activations(sae, store.get(tp.accession)).toarray()[:, lat.index]
            assert tp.residues.shape == per.shape and tp.residues.dtype == np.uint8
            assert np.abs(tp.residues / 255 * tp.scale - per).max() <= tp.scale / 255 / 2 + 1e-7
            assert tp.scale == pytest.approx(tp.activation, rel=1e-6)
            assert int(tp.residues.argmax()) == int(per.argmax())
    assert fired_any > 10
    # terms: captured rows only, most significant first
    t2 = e.latents[2].terms
    assert [t.go_id for t in t2] == ["GO:0000010", "GO:0000011"] and [t.role for t in t2] == [1, 2]
    assert e.latents[2].n_terms == 2 and e.latents[5].terms[0].namespace == "MF" and e.latents[0].terms == []
    # protein -> latents: relative activation in (0, 1], strongest first
    for acc, lst in e.protein_latents.items():
        i = store.ids.index(acc)
        rel = [dense[i, j] / dense[:, j].max() for j, _ in lst]
        assert len(lst) <= 3 and [r for _, r in lst] == pytest.approx(rel, rel=1e-5)
        assert all(0 < r <= 1 for _, r in lst) and rel == sorted(rel, reverse=True)


def test_strips_that_rank_other_proteins_are_refused(tiny_run):
    sae, store, scores, _res, _ = tiny_run
    strips = TopStrips(3, sae.n_latents)
    encode_proteins(sae, store, strips=strips)
    arrays = strips.arrays()
    arrays["rows"] = arrays["rows"][::-1].copy()
    with pytest.raises(ValueError, match="rank other top proteins"):
        build_sae_entry(sae, scores, store.ids, seed=0, top_k=3, strips=arrays, lengths=store.lengths)
    bad = {**strips.arrays(), "pos": strips.arrays()["pos"] + 1000}
    with pytest.raises(ValueError, match="outside"):
        build_sae_entry(sae, scores, store.ids, seed=0, top_k=3, strips=bad, lengths=store.lengths)
    with pytest.raises(ValueError, match="cover 3 latents"):
        build_sae_entry(sae, scores, store.ids, seed=0, top_k=3, strips={**arrays, "rows": arrays["rows"][:, :3]},
                        lengths=store.lengths)
    # fewer kept proteins than the atlas shows: the store is encoded again instead
    e = build_sae_entry(sae, scores, store.ids, seed=0, top_k=4, strips=arrays, lengths=store.lengths, store=store)
    assert all(tp.residues is not None for lat in e.latents for tp in lat.top)


def test_build_sae_entry_bad_inputs(tiny_run):
    sae, store, scores, _res, _ = tiny_run
    with pytest.raises(ValueError, match="24 latents"):
        build_sae_entry(sae, scores[:, :5], store.ids, seed=0)
    with pytest.raises(ValueError, match="protein ids"):
        build_sae_entry(sae, scores, store.ids[:-1], seed=0)
    with pytest.raises(ValueError, match="no residue embeddings"):
        build_sae_entry(sae, scores, ["Q" + i for i in store.ids], seed=0, store=store)


def test_build_atlas_names_and_missing_records(tiny_run, tmp_path):
    sae, store, scores, res, recs = tiny_run
    e = build_sae_entry(sae, scores, store.ids, seed=0, enrichment=res, store=store, top_k=3)
    p = build_atlas([AtlasSpace("large", "mini-L", [e])], recs)
    assert p.proteins["P00001"].name == "Test protein 1" and p.proteins["P00000"].name == ""
    tops = {tp.accession for lat in e.latents for tp in lat.top}
    assert all((p.proteins[a].sequence != "") == (a in tops) for a in p.proteins)
    with pytest.raises(ValueError, match="'P00003' is in the atlas but not in the FASTA records"):
        build_atlas([AtlasSpace("large", "mini-L", [e])], [r for r in recs if r.id != "P00003"])
    with pytest.raises(ValueError, match="unique"):
        build_atlas([AtlasSpace("a", "A", [e]), AtlasSpace("a", "B", [e])], recs)
    info = write_atlas(p, tmp_path / "atlas.html")
    _meta, chunks = page_parts((tmp_path / "atlas.html").read_text())
    j, a = unpack(chunks["idx"])
    assert j["accs"] == sorted(p.proteins) and a["s0.freq"].tolist() == pytest.approx([lat.frequency for lat in e.latents])
    assert j["go_names"][j["go_ids"].index("GO:0000010")] == "alpha <b>"
    _dj, da = unpack(chunks["d0"])
    lat = next(x for x in e.latents if len(x.top) >= 2)
    k = int(da["toff"][lat.index]) + 1
    assert j["accs"][da["tprot"][k]] == lat.top[1].accession
    assert bytes(da["strips"][da["soff"][k]:da["soff"][k + 1]]) == lat.top[1].residues.tobytes()
    _sj, sa = unpack(chunks["seq"])
    i = j["accs"].index(lat.top[1].accession)
    assert bytes(sa["seq"][sa["off"][i]:sa["off"][i + 1]]).decode() == p.proteins[lat.top[1].accession].sequence
    assert info["bytes"] == (tmp_path / "atlas.html").stat().st_size


def test_pack_chunk_layout():
    blob = pack_chunk({"x": [1, "é"]}, {"a": np.arange(3, dtype=np.uint8), "b": np.array([1.5, -2], np.float32),
                                        "c": np.array([7], np.float64)})
    j, a = unpack(blob)
    assert j == {"x": [1, "é"]} and a["a"].tolist() == [0, 1, 2] and a["b"].tolist() == [1.5, -2.0]
    assert a["c"].tolist() == [7.0]
    with pytest.raises(TypeError, match="1-D"):
        pack_chunk({}, {"bad": np.zeros((2, 2), np.float32)})
    with pytest.raises(TypeError):
        pack_chunk({}, {"bad": np.zeros(2, np.int64)})


# ------------------------------------------------------------------------------------------ page
@pytest.fixture(scope="module")
def demo_html(tmp_path_factory):
    path = tmp_path_factory.mktemp("demo") / "atlas.html"
    info = write_atlas(demo_payload(), path)
    return path, info


def test_demo_sized_atlas_under_15_mb(demo_html):
    _path, info = demo_html
    p = demo_payload()
    n_lat = sum(e.n_latents for s in p.spaces for e in s.saes)
    n_strips = sum(len(lat.top) for s in p.spaces for e in s.saes for lat in e.latents)
    print(f"\ndemo-sized atlas: {len(p.spaces)} spaces, {n_lat} latents, {n_strips} strips, "
          f"{len(p.proteins)} proteins -> {info['bytes'] / 1e6:.2f} MB; chunks (compressed bytes): {info['chunks']}")
    assert n_lat == 4 * 3 * 768 and len(p.proteins) == 3000 and n_strips > 60000
    assert info["bytes"] < 15e6


def test_page_is_self_contained_escaped_and_deterministic(demo_html, tmp_path):
    path, _ = demo_html
    html = path.read_text(encoding="utf-8")
    # CSP: no network, scripts and styles only by hash, and the hashes match the inline code
    csp = re.search(r'http-equiv="Content-Security-Policy" content="([^"]+)"', html).group(1)
    assert "default-src 'none'" in csp and "connect-src 'none'" in csp and "unsafe" not in csp
    scripts = re.findall(r"<script>(.*?)</script>", html, re.DOTALL)
    styles = re.findall(r"<style>(.*?)</style>", html, re.DOTALL)
    assert len(scripts) == 1 and len(styles) == 1
    for code, kind in ((scripts[0], "script-src"), (styles[0], "style-src")):
        digest = base64.b64encode(hashlib.sha256(code.encode()).digest()).decode()
        assert f"{kind} 'sha256-{digest}'" in csp
    # nothing external: no src=, no link/iframe/img/font, no url() in CSS
    assert not re.search(r"<(img|iframe|link|object|embed|audio|video)\b", html, re.IGNORECASE)
    assert not re.search(r"\bsrc\s*=", html) and "url(" not in styles[0] and "@import" not in styles[0]
    # hostile strings never appear as markup: title escaped, data only inside JSON-escaped / compressed blocks
    assert "<title>Synthetic demo-size atlas &lt;b&gt;not bold&lt;/b&gt;</title>" in html
    for bad in (XSS_NAME, XSS_TERM, XSS_ACC, XSS_LABEL):
        assert bad not in html
    assert not re.search(r"<(svg|img|script>window)", html, re.IGNORECASE)  # only JSON-escaped (\u003c) forms exist
    assert html.count("</script>") == html.count("<script")
    meta, chunks = page_parts(html)
    assert XSS_LABEL + "rd.residual" in [s["label"] for s in meta["spaces"]]  # ... but the data is intact
    j, _ = unpack(chunks["idx"])
    assert XSS_ACC in j["accs"] and XSS_NAME in j["names"] and XSS_TERM in j["go_names"]
    # deterministic: the same payload gives the same bytes
    write_atlas(demo_payload(), tmp_path / "again.html")
    assert (tmp_path / "again.html").read_bytes() == path.read_bytes()


def test_strip_page(tmp_path):
    seq = "MKTAYIAKQR"
    vals = np.array([0, 0, 0.5, 1.0, 0, 0, 0, 0.25, 0, 0])
    out = write_strip_page(tmp_path / "x.html", [StripProtein("P1", seq, [StripTrack("rd · latent 3", vals,
                                                                                   [("GO:1", XSS_TERM, 1e-5)])],
                                                              name=XSS_NAME)], title="explain <query>")
    html = out.read_text()
    assert "<title>explain &lt;query&gt;</title>" in html and XSS_NAME not in html and XSS_TERM not in html
    meta = json.loads(re.search(r'id="atlas-meta">(.*?)</script>', html, re.DOTALL).group(1))
    t = meta["proteins"][0]["tracks"][0]
    assert np.frombuffer(base64.b64decode(t["q"]), np.uint8).tolist() == [0, 0, 128, 255, 0, 0, 0, 64, 0, 0]
    assert t["scale"] == 1.0 and meta["proteins"][0]["name"] == XSS_NAME
    with pytest.raises(ValueError, match="P1: track 'bad' has 3 values for a sequence of 10 residues"):
        write_strip_page(tmp_path / "y.html", [StripProtein("P1", seq, [StripTrack("bad", [1, 2, 3])])])


def test_scores_may_be_any_sparse_or_dense_input(tiny_run):
    sae, store, scores, _, _ = tiny_run
    a = build_sae_entry(sae, scores, store.ids, seed=0)
    b = build_sae_entry(sae, sp.coo_matrix(scores.toarray()), store.ids, seed=0)
    assert [lat.top for lat in a.latents] == [lat.top for lat in b.latents]
    assert all(tp.residues is None for lat in a.latents for tp in lat.top)  # no store: no strips


def test_protein_name_from_headers():
    from rd_interp.io.fasta import parse_header, protein_name

    cases = {
        "sp|P69905|HBA_HUMAN Hemoglobin subunit alpha OS=Homo sapiens OX=9606 GN=HBA1 PE=1 SV=2": "Hemoglobin subunit alpha",
        "P99999 RecName: Full=Cytochrome c; AltName: Full=Cyt c;": "Cytochrome c",
        "Q1 some kinase": "some kinase",
        "A0A314": "",  # the shipped headers: accession only
        "tr|A0A0|A0A0_9XXX": "",
    }
    for header, name in cases.items():
        assert protein_name(parse_header(header)[1]) == name
