"""The Gene Ontology: a thin, validated wrapper around goatools' GODag.

Why wrap goatools instead of parsing OBO ourselves: the enrichment layer must agree with goatools bit for
bit, so the DAG (levels, depths, relationships, alt ids) must be goatools' own. What goatools lacks is
added here: a line-numbered check of user OBO files (goatools fails with a bare KeyError or silently
skips), the obsolete terms it drops (so annotations can be remapped via replaced_by and counted), and
loading of the shipped gzipped OBO through a checksum-verified cache (goatools reads plain files only).
"""

from __future__ import annotations

import contextlib
import functools
import gzip
import hashlib
import io
import logging
import os
import re
import tempfile
import zlib
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from rd_interp.io.atomic import atomic_path, read_json, sha256_file, write_json

log = logging.getLogger(__name__)

NAMESPACES = {"biological_process": "BP", "molecular_function": "MF", "cellular_component": "CC"}
NS_LONG = {v: k for k, v in NAMESPACES.items()}
GO_ID = re.compile(r"^GO:\d{7}$")


class OboError(ValueError):
    """A malformed OBO file; the message starts with ``<file>:<line>:``."""


@dataclass
class _Obsolete:
    name: str
    namespace: str
    replaced_by: list[str] = field(default_factory=list)
    consider: list[str] = field(default_factory=list)


@dataclass
class _Scan:
    data_version: str = ""
    n_terms: int = 0
    obsolete: dict[str, _Obsolete] = field(default_factory=dict)


def _scan_obo(path: Path, label: str) -> _Scan:
    """One pass over an OBO file: header, obsolete terms, and the structural errors goatools trips on.

    Checked (each reported with its line): tag-value syntax, [Term] stanzas with exactly one id, name and
    a known namespace, duplicate ids (also as alt_id), and is_a / relationship targets that exist and
    are not obsolete.
    """
    scan = _Scan()
    live: set[str] = set()
    first_line: dict[str, int] = {}
    refs: list[tuple[int, str, str]] = []  # (line, target, tag)
    stanza: str | None = None
    cur: dict[str, list[str]] = {}
    cur_line = 0
    tag_line: dict[str, int] = {}
    saw_header = False

    def close_term() -> None:
        if stanza != "Term":
            return
        ids = cur.get("id", [])
        if len(ids) != 1:
            raise OboError(f"{label}:{cur_line}: [Term] stanza has {len(ids)} 'id:' lines, expected exactly one")
        tid = ids[0]
        for tag in ("name", "namespace"):
            if len(cur.get(tag, [])) != 1:
                raise OboError(f"{label}:{cur_line}: term {tid} has {len(cur.get(tag, []))} '{tag}:' lines, "
                               "expected exactly one")
        ns = cur["namespace"][0]
        if ns not in NAMESPACES:
            raise OboError(f"{label}:{tag_line.get('namespace', cur_line)}: term {tid} has unknown namespace {ns!r} "
                           f"(expected one of {', '.join(NAMESPACES)})")
        for key in [tid, *cur.get("alt_id", [])]:
            if key in first_line:
                raise OboError(f"{label}:{tag_line['id'] if key == tid else tag_line.get('alt_id', cur_line)}: id {key} defined twice (first at line {first_line[key]})")
            first_line[key] = tag_line["id"] if key == tid else tag_line.get("alt_id", cur_line)
        if cur.get("is_obsolete", ["false"])[0] == "true":
            scan.obsolete[tid] = _Obsolete(cur["name"][0], NAMESPACES[ns],
                                           cur.get("replaced_by", []), cur.get("consider", []))
        else:
            live.add(tid)
            live.update(cur.get("alt_id", []))
            scan.n_terms += 1

    with _open_obo(path) as fh:
        lineno = 0
        try:
            for lineno, raw in enumerate(fh, start=1):
                line = raw.strip()
                if not line or line.startswith("!"):
                    continue
                if line.startswith("["):
                    if not line.endswith("]"):
                        raise OboError(f"{label}:{lineno}: malformed stanza header {line!r}")
                    close_term()
                    stanza, cur, cur_line = line[1:-1], {}, lineno
                    tag_line.clear()
                    continue
                tag, sep, value = line.partition(":")
                if not sep or not tag or " " in tag:
                    raise OboError(f"{label}:{lineno}: expected 'tag: value', got {line[:60]!r}")
                value = value.strip()
                if stanza is None:
                    saw_header = True
                    if tag == "data-version":
                        scan.data_version = value
                    continue
                if stanza != "Term":
                    continue
                if tag in ("is_a", "relationship", "replaced_by", "consider", "id", "alt_id"):
                    value = value.split("!", 1)[0].strip()
                    if "{" in value:
                        value = value.split("{", 1)[0].strip()
                cur.setdefault(tag, []).append(value)
                tag_line.setdefault(tag, lineno)
                if tag == "is_a":
                    refs.append((lineno, value, "is_a"))
                elif tag == "relationship":
                    parts = value.split()
                    if len(parts) != 2:
                        raise OboError(f"{label}:{lineno}: expected 'relationship: TYPE ID', got {value!r}")
                    refs.append((lineno, parts[1], parts[0]))
        except UnicodeDecodeError as exc:
            raise OboError(f"{label}:{lineno + 1}: not a UTF-8 text file ({exc.reason})") from None
        except (OSError, EOFError) as exc:
            raise OboError(f"{label}:{lineno + 1}: cannot read file ({exc})") from None
        close_term()
    if not saw_header and scan.n_terms == 0 and not scan.obsolete:
        raise OboError(f"{label}:1: not an OBO file (no header and no [Term] stanzas)")
    if scan.n_terms == 0:
        raise OboError(f"{label}:1: OBO file has no (non-obsolete) [Term] stanzas")
    for lineno, target, tag in refs:
        if target not in live:
            what = "an obsolete term" if target in scan.obsolete else "an id not defined in this file"
            raise OboError(f"{label}:{lineno}: {tag} target {target} is {what}")
    return scan


def _open_obo(path: Path):
    with open(path, "rb") as fh:
        gz = fh.read(2) == b"\x1f\x8b"
    if gz:
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8-sig")
    return open(path, encoding="utf-8-sig")


@contextlib.contextmanager
def _goatools_reads_utf8():
    """goatools opens the OBO with the locale's encoding; make it UTF-8 (BOM dropped) whatever the locale.

    Why: under LC_ALL=C (or any non-UTF-8 locale without Python's UTF-8 mode) a term name with one
    non-ASCII character would fail inside goatools with a bare codec error naming nothing.
    """
    from goatools import obo_parser

    had = "open" in vars(obo_parser)
    old = vars(obo_parser).get("open")
    obo_parser.open = functools.partial(open, encoding="utf-8-sig")  # module global shadows the builtin
    try:
        yield
    finally:
        if had:
            obo_parser.open = old
        else:
            del obo_parser.open


def _plain_obo(path: Path) -> Path:
    """A plain-text copy of a gzipped OBO in the cache, keyed by the gz's sha256 and verified on reuse."""
    from rd_interp.io.datasets import cache_dir

    key = sha256_file(path)[:16]
    stem = path.name.removesuffix(".gz")
    stem = stem.removesuffix(".obo")
    for base in (cache_dir() / "obo", Path(tempfile.gettempdir()) / f"rd_interp-{os.getuid()}" / "obo"):
        target = base / f"{stem}-{key}.obo"
        sidecar = target.with_name(target.name + ".sha256")
        try:
            if target.is_file() and sidecar.is_file() and sha256_file(target) == sidecar.read_text(encoding="ascii", errors="replace").strip():
                return target
            h = hashlib.sha256()
            with atomic_path(target) as tmp, gzip.open(path, "rb") as src, open(tmp, "wb") as dst:
                for block in iter(lambda: src.read(1 << 20), b""):
                    h.update(block)
                    dst.write(block)
            with atomic_path(sidecar) as tmp:
                tmp.write_text(h.hexdigest() + "\n", encoding="ascii")
            return target
        except (gzip.BadGzipFile, EOFError, zlib.error) as exc:
            raise OboError(f"{path}:1: corrupt gzip file ({exc})") from None
        except OSError as exc:  # unwritable cache: try the next location
            log.debug("cannot use OBO cache %s: %s", base, exc)
    raise OSError(f"{path}: cannot decompress into any cache directory (set RD_INTERP_CACHE)")


#: format of the scan record kept beside a cached plain copy (bump when _Scan changes)
SCAN_FORMAT = 1


def _scan_cached(plain: Path, label: str) -> _Scan:
    """_scan_obo of a cache copy made by _plain_obo, itself kept beside the copy as JSON keyed by the copy's
    verified sha256: the scan's checks passed on exactly these bytes, so every later process (each worker of a
    run) reads the record (ms) instead of scanning again (~1.2 s for the shipped GO release)."""
    digest = plain.with_name(plain.name + ".sha256").read_text(encoding="ascii", errors="replace").strip()
    memo = plain.with_name(plain.name + ".scan.json")
    try:
        rec = read_json(memo)
        if rec.get("format") == SCAN_FORMAT and rec.get("sha256") == digest:
            return _Scan(rec["data_version"], int(rec["n_terms"]),
                         {k: _Obsolete(**v) for k, v in rec["obsolete"].items()})
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        pass  # missing or not ours: scan again
    scan = _scan_obo(plain, label)
    try:
        write_json(memo, {"format": SCAN_FORMAT, "sha256": digest, "data_version": scan.data_version,
                          "n_terms": scan.n_terms, "obsolete": {k: asdict(v) for k, v in scan.obsolete.items()}})
    except OSError as exc:  # a read-only cache still works, it only scans every time
        log.debug("cannot keep the OBO scan %s: %s", memo, exc)
    return scan


_LOADED: dict[tuple, Ontology] = {}


class Ontology:
    """GO terms, their namespace/level/depth/ancestors, and id resolution (alt ids, obsolete ids).

    ``dag`` is goatools' GODag loaded with ``optional_attrs={"relationship"}``; alt ids are keys pointing
    at their main term (``dag[alt].item_id``); obsolete terms are not in it (as in goatools) but are
    known here so ``resolve`` can follow ``replaced_by`` and count what it drops.
    """

    def __init__(self, dag, path: Path, release: str, obsolete: dict[str, _Obsolete], source: Path | None = None):
        self.dag = dag
        self.path = Path(path)
        self.source = Path(source) if source is not None else self.path
        self.release = release
        self._obsolete = obsolete
        self._anc: dict[tuple[str, tuple[str, ...]], frozenset[str]] = {}

    # ------------------------------------------------------------------------------------------ loading
    @classmethod
    def load(cls, path: str | os.PathLike | None = None) -> Ontology:
        """Load an OBO file (plain or .gz); None loads the shipped GO release. Cached per process."""
        from rd_interp.io.datasets import shipped_obo

        src = Path(shipped_obo() if path is None else path).expanduser()
        if not src.is_file():
            raise FileNotFoundError(f"{src}: OBO file not found")
        st = src.stat()
        key = (str(src.resolve()), st.st_size, st.st_mtime_ns)
        if key in _LOADED:
            return _LOADED[key]
        with open(src, "rb") as fh:
            gz = fh.read(2) == b"\x1f\x8b"
        plain = _plain_obo(src) if gz else src
        scan = _scan_cached(plain, str(src)) if gz else _scan_obo(plain, str(src))
        from goatools.obo_parser import GODag

        with contextlib.redirect_stdout(io.StringIO()), _goatools_reads_utf8():
            dag = GODag(str(plain), optional_attrs={"relationship"}, load_obsolete=False, prt=None)
        onto = cls(dag, plain, scan.data_version or "unknown", scan.obsolete, source=src)
        _LOADED[key] = onto
        return onto

    # ------------------------------------------------------------------------------------------ ids
    def resolve_detail(self, go_id: str) -> tuple[str | None, str]:
        """(main id or None, how) with how in direct / alt / replaced_by / obsolete / unknown."""
        term = self.dag.get(go_id)
        if term is not None:
            return term.item_id, ("direct" if term.item_id == go_id else "alt")
        obs = self._obsolete.get(go_id)
        if obs is None:
            return None, "unknown"
        targets = set()
        for rep in obs.replaced_by:
            t = self.dag.get(rep)
            if t is None and rep in self._obsolete:  # a replacement that was itself obsoleted
                t = next((self.dag[r] for r in self._obsolete[rep].replaced_by if r in self.dag), None)
            if t is not None:
                targets.add(t.item_id)
        if len(targets) == 1:
            return targets.pop(), "replaced_by"
        return None, "obsolete"

    def resolve(self, go_id: str) -> str | None:
        """Main id for a current or alt id, the replacement of an obsolete id when given, else None."""
        return self.resolve_detail(go_id)[0]

    def is_obsolete(self, go_id: str) -> bool:
        return go_id in self._obsolete

    def obsolete_ids(self) -> list[str]:
        return sorted(self._obsolete)

    def _term(self, go_id: str):
        term = self.dag.get(go_id)
        if term is None:
            why = "obsolete in" if go_id in self._obsolete else "not a term of"
            raise KeyError(f"{go_id} is {why} the ontology {self.source} ({self.release})")
        return term

    def __contains__(self, go_id: object) -> bool:
        return go_id in self.dag

    def __len__(self) -> int:
        return sum(1 for k, t in self.dag.items() if k == t.item_id)

    def terms(self, namespace: str | None = None) -> list[str]:
        """Sorted main ids, optionally of one namespace ("BP"/"MF"/"CC" or the long name)."""
        ns = None if namespace is None else NS_LONG[normalize_namespace(namespace)]
        return sorted(k for k, t in self.dag.items() if k == t.item_id and (ns is None or t.namespace == ns))

    # ------------------------------------------------------------------------------------------ attributes
    def namespace(self, go_id: str) -> str:
        return NAMESPACES[self._term(go_id).namespace]

    def name(self, go_id: str) -> str:
        return self._term(go_id).name

    def level(self, go_id: str) -> int:
        """Shortest is_a path to the namespace root (goatools' .level)."""
        return self._term(go_id).level

    def depth(self, go_id: str) -> int:
        """Longest is_a path to the namespace root (goatools' .depth)."""
        return self._term(go_id).depth

    def ancestors(self, go_id: str, relationships: Iterable[str] = ("part_of",)) -> set[str]:
        """Main ids reachable upwards via is_a and the given relationships, excluding the term itself.

        With relationships=("part_of",) this is the set goatools propagates to with
        ``relationships={"part_of"}``; memoised, so propagating many proteins is cheap.
        """
        rels = tuple(sorted(set(relationships)))
        return set(self._ancestors(self._term(go_id).item_id, rels))

    def _ancestors(self, main: str, rels: tuple[str, ...]) -> frozenset[str]:
        key = (main, rels)
        hit = self._anc.get(key)
        if hit is not None:
            return hit
        term = self.dag[main]
        out: set[str] = set()
        parents = list(term.parents)
        rel = getattr(term, "relationship", None) or {}
        for r in rels:
            parents.extend(rel.get(r, ()))
        for p in parents:
            out.add(p.item_id)
            out |= self._ancestors(p.item_id, rels)
        result = frozenset(out)
        self._anc[key] = result
        return result

    def summary(self) -> dict:
        """Counts for reports: terms per namespace, alt ids, obsolete terms, release."""
        per = {"BP": 0, "MF": 0, "CC": 0}
        n_alt = 0
        for k, t in self.dag.items():
            if k == t.item_id:
                per[NAMESPACES[t.namespace]] += 1
            else:
                n_alt += 1
        return {"release": self.release, "path": str(self.source), "terms": sum(per.values()),
                "terms_per_namespace": per, "alt_ids": n_alt, "obsolete_terms": len(self._obsolete),
                "obsolete_with_replaced_by": sum(1 for o in self._obsolete.values() if o.replaced_by)}

    def __repr__(self) -> str:
        return f"Ontology({str(self.source)!r}, release={self.release!r}, terms={len(self)})"


def normalize_namespace(ns: str) -> str:
    """'BP'/'bp'/'biological_process'/'P' (GAF aspect) -> 'BP'."""
    s = str(ns).strip()
    up = s.upper()
    if up in ("BP", "MF", "CC"):
        return up
    if s.lower() in NAMESPACES:
        return NAMESPACES[s.lower()]
    aspect = {"P": "BP", "F": "MF", "C": "CC", "BPO": "BP", "MFO": "MF", "CCO": "CC"}
    if up in aspect:
        return aspect[up]
    raise ValueError(f"unknown GO namespace {ns!r} (expected BP, MF, CC or their long names)")
