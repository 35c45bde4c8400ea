"""Data flows one way: io -> data -> plm -> distill -> probe -> sae -> enrich -> report -> config -> pipeline -> cli.

Checked on the source (every import, including those inside functions): a module never imports a higher
layer, and the package has no import cycle between modules.
"""

import ast
from pathlib import Path

import rd_interp

ROOT = Path(rd_interp.__file__).parent
LAYERS = ["io", "device", "dist", "data", "plm", "distill", "probe", "sae", "enrich", "report", "config", "pipeline", "cli",
          "__main__"]
RANK = {name: i for i, name in enumerate(LAYERS)}
RANK["device"] = RANK["io"]  # a leaf used by every stage
RANK["dist"] = RANK["io"]  # the torchrun process group: a leaf (torch only) used by plm and sae


def _module(path: Path) -> str:
    rel = path.relative_to(ROOT.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _imports() -> dict[str, set[str]]:
    mods = {_module(p): p for p in ROOT.rglob("*.py")}
    graph: dict[str, set[str]] = {m: set() for m in mods}
    for mod, path in mods.items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            for name in names:
                if name.startswith("rd_interp") and name in mods and name != mod:
                    graph[mod].add(name)
    return graph


def _layer(mod: str) -> int:
    parts = mod.split(".")
    return RANK.get(parts[1], -1) if len(parts) > 1 else -1


def test_no_module_imports_a_higher_layer():
    bad = [(m, t) for m, targets in _imports().items() for t in targets if _layer(t) > _layer(m)]
    assert not bad, bad


def test_no_import_cycles():
    graph = _imports()
    # collapse package __init__ re-exports: a package importing its own submodules is not a cycle
    for m in graph:
        if (ROOT.parent / m.replace(".", "/") / "__init__.py").is_file():
            graph[m] = {t for t in graph[m] if not t.startswith(m + ".")}
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> list[str] | None:
        state[m] = 1
        stack.append(m)
        for t in sorted(graph[m]):
            if state.get(t) == 1:
                return stack[stack.index(t):] + [t]
            if t not in state and (cyc := visit(t)):
                return cyc
        stack.pop()
        state[m] = 2
        return None

    for m in sorted(graph):
        if m not in state:
            cycle = visit(m)
            assert cycle is None, " -> ".join(cycle)
