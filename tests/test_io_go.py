import gzip
import random
import shutil

import pytest
from io_fixtures import MINI_OBO, mini_ontology, shipped_ontology  # noqa: F401

from rd_interp.io import go as go_mod
from rd_interp.io.go import Ontology, normalize_namespace


def test_mini_structure(mini_ontology):  # noqa: F811
    o = mini_ontology
    assert o.release == "releases/mini-1"
    assert len(o) == 10
    assert o.terms("BP") == ["GO:0000001", "GO:0000002", "GO:0000003", "GO:0000004", "GO:0008150"]
    assert o.namespace("GO:0000010") == "MF" and o.namespace("GO:0000021") == "CC"
    assert o.name("GO:0000102") == "term B"  # alt id
    # C: is_a root (level 1) and is_a B -> A -> root (depth 3)
    assert (o.level("GO:0000003"), o.depth("GO:0000003")) == (1, 3)
    assert (o.level("GO:0008150"), o.depth("GO:0008150")) == (0, 0)


def test_mini_resolution(mini_ontology):  # noqa: F811
    o = mini_ontology
    assert o.resolve_detail("GO:0000002") == ("GO:0000002", "direct")
    assert o.resolve_detail("GO:0000102") == ("GO:0000002", "alt")
    assert o.resolve_detail("GO:0000005") == ("GO:0000002", "replaced_by")
    assert o.resolve_detail("GO:0000007") == ("GO:0000002", "replaced_by")  # replaced by an obsolete, once more
    assert o.resolve_detail("GO:0000006") == (None, "obsolete")  # consider is not a replacement
    assert o.resolve_detail("GO:0009999") == (None, "unknown")
    assert o.resolve("GO:0000102") == "GO:0000002" and o.resolve("GO:0000006") is None
    assert o.is_obsolete("GO:0000006") and not o.is_obsolete("GO:0000002")
    assert "GO:0000102" in o and "GO:0000006" not in o
    with pytest.raises(KeyError, match="GO:0000006 is obsolete in the ontology"):
        o.namespace("GO:0000006")
    with pytest.raises(KeyError, match="GO:0009999 is not a term of"):
        o.level("GO:0009999")


def test_mini_ancestors(mini_ontology):  # noqa: F811
    o = mini_ontology
    assert o.ancestors("GO:0000004") == {"GO:0008150", "GO:0000003", "GO:0000002", "GO:0000001"}
    assert o.ancestors("GO:0000004", relationships=()) == {"GO:0008150"}
    assert o.ancestors("GO:0000102") == {"GO:0000001", "GO:0008150"}
    assert o.ancestors("GO:0008150") == set()
    a = o.ancestors("GO:0000021")
    a.add("mutated")  # callers get a copy, the memo is untouched
    assert o.ancestors("GO:0000021") == {"GO:0005575", "GO:0000020"}


def test_normalize_namespace():
    assert [normalize_namespace(x) for x in ("bp", "molecular_function", "C", "CCO")] == ["BP", "MF", "CC", "CC"]
    with pytest.raises(ValueError, match="unknown GO namespace"):
        normalize_namespace("XX")


def test_gz_cache_is_verified_and_repaired(tmp_path, monkeypatch):
    monkeypatch.setenv("RD_INTERP_CACHE", str(tmp_path / "cache"))
    gz = tmp_path / "mini.obo.gz"
    gz.write_bytes(gzip.compress(MINI_OBO.read_bytes()))
    o = Ontology.load(gz)
    assert o.source == gz and o.path.parent == tmp_path / "cache" / "obo"
    assert o.path.read_bytes() == MINI_OBO.read_bytes()
    # Corrupt the cached copy: the next load notices the checksum mismatch and rewrites it.
    o.path.write_text("garbage")
    go_mod._LOADED.clear()
    o2 = Ontology.load(gz)
    assert o2 is not o and o2.path.read_bytes() == MINI_OBO.read_bytes()
    assert Ontology.load(gz) is o2  # cached per process


def test_scan_of_a_cache_copy_is_kept_and_checked(tmp_path, monkeypatch):
    """The line-numbered checks run once per cached copy; later loads read their record, which counts only
    for the bytes it was made from."""
    import json

    monkeypatch.setenv("RD_INTERP_CACHE", str(tmp_path / "cache"))
    gz = tmp_path / "mini.obo.gz"
    gz.write_bytes(gzip.compress(MINI_OBO.read_bytes()))
    go_mod._LOADED.clear()
    o = Ontology.load(gz)
    memo = o.path.with_name(o.path.name + ".scan.json")
    rec = json.loads(memo.read_text())
    assert rec["n_terms"] == len(o) and rec["data_version"] == o.release == "releases/mini-1"
    assert sorted(rec["obsolete"]) == o.obsolete_ids()

    def reload():
        go_mod._LOADED.clear()
        return Ontology.load(gz)

    scans = []
    real_scan = go_mod._scan_obo
    monkeypatch.setattr(go_mod, "_scan_obo", lambda *a: scans.append(a) or real_scan(*a))
    o2 = reload()
    assert scans == [] and o2.resolve_detail("GO:0000007") == ("GO:0000002", "replaced_by")
    memo.write_text(json.dumps({**rec, "sha256": "0" * 64}))  # a record of other bytes: scanned again
    reload()
    assert len(scans) == 1 and json.loads(memo.read_text()) == rec
    memo.write_text("{not json")  # damaged: scanned again and rewritten
    reload()
    assert len(scans) == 2 and json.loads(memo.read_text()) == rec


def test_plain_path_used_directly(tmp_path):
    p = tmp_path / "copy.obo"
    shutil.copy(MINI_OBO, p)
    o = Ontology.load(str(p))
    assert o.path == p and len(o) == 10


def test_missing_obo(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.obo"):
        Ontology.load(tmp_path / "nope.obo")


# ------------------------------------------------------------------------------------ shipped GO
def test_shipped_ontology_counts(shipped_ontology):  # noqa: F811
    from rd_interp.io.datasets import manifest

    m = manifest()["go"]
    o = shipped_ontology
    s = o.summary()
    assert o.release == f"releases/{m['release']}" == "releases/2022-07-01"
    assert s["terms"] == m["terms"] and s["terms_per_namespace"] == m["terms_per_namespace"]
    assert s["alt_ids"] == m["alt_ids"] and s["obsolete_terms"] == m["obsolete_terms"]
    assert o.resolve("GO:0019952") == "GO:0000003"  # alt id of 'reproduction'
    assert o.resolve_detail("GO:0055114") == (None, "obsolete")  # oxidation-reduction process, no replacement
    assert o.namespace("GO:0005739") == "CC" and o.name("GO:0005739") == "mitochondrion"
    assert o.level("GO:0008150") == 0


def test_shipped_matches_goatools(shipped_ontology):  # noqa: F811
    """Ancestors (is_a + part_of) equal goatools' own propagation set; level/depth are goatools'."""
    from goatools.gosubdag.go_tasks import get_go2ancestors

    o = shipped_ontology
    rng = random.Random(0)
    sample = rng.sample(o.terms(), 400)
    g2a = get_go2ancestors([o.dag[g] for g in sample], {"part_of"})
    for g in sample:
        assert o.ancestors(g) == g2a.get(g, set()), g
        assert (o.level(g), o.depth(g)) == (o.dag[g].level, o.dag[g].depth)
    # goatools' shortest/longest is_a path definitions, checked independently on a few terms
    for g in sample[:50]:
        parents = o.dag[g].parents
        if parents:
            assert o.level(g) == 1 + min(p.level for p in parents)
            assert o.depth(g) == 1 + max(p.depth for p in parents)
