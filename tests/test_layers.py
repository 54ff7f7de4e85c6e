"""Package structure: no import cycle between nqsbench's modules, and the ``NQSBENCH_*``
environment is read in nqsbench/config.py only.

:func:`import_graph` parses every module with :mod:`ast` (no import is executed) and collects
every import, module-level or inside a function: ``import nqsbench.x``, ``from . import a``,
``from .a import b``, ``from ..x import y``, ``from nqsbench.x import y``. Each is resolved to the
nqsbench module it loads: the submodule when the imported name is one (``from .nqs import
hilbert`` → ``nqsbench.nqs.hilbert``), else the module or package ``__init__`` the names come
from (``from .nqs import NQS`` → ``nqsbench.nqs``). With ``parents=True`` an import of a
submodule from outside its package also depends on the package's ``__init__`` (which Python runs
first); a module never depends on its own enclosing packages that way (they are already being
initialised when it runs).
"""
from __future__ import annotations

import ast
import re
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "nqsbench"
ENV_NAME = re.compile(r"NQSBENCH_[A-Z_]+")
SETTINGS_MODULE = PACKAGE / "config.py"


# ----------------------------------------------------------------------------- the graph
@dataclass
class ImportGraph:
    """``edges[a]``: the nqsbench modules ``a`` imports; ``where[(a, b)]``: ``file:line`` of each."""
    modules: dict[str, Path]
    edges: dict[str, set[str]] = field(default_factory=dict)
    where: dict[tuple[str, str], list[str]] = field(default_factory=dict)

    def add(self, a: str, b: str, site: str) -> None:
        if a == b:
            return
        self.edges.setdefault(a, set()).add(b)
        self.where.setdefault((a, b), []).append(site)


def module_files(package: Path = PACKAGE) -> dict[str, Path]:
    """Dotted module name → file, e.g. ``nqsbench.nqs`` → nqsbench/nqs/__init__.py."""
    out = {}
    for path in sorted(package.rglob("*.py")):
        if "__pycache__" in path.parts:
            continue
        parts = list(path.relative_to(package.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def import_graph(package: Path = PACKAGE, parents: bool = False) -> ImportGraph:
    """The import graph of ``package`` (see the module docstring)."""
    modules = module_files(package)
    root = package.name
    graph = ImportGraph(modules, {m: set() for m in modules})

    def encloses(pkg: str, importer: str) -> bool:
        return importer == pkg or importer.startswith(pkg + ".")

    def targets(name: str, importer: str) -> list[str]:
        """``name`` itself when it is one of our modules, and (parents) its enclosing packages
        that do not enclose the importer."""
        if name not in modules:
            return []
        out = [name]
        if parents:
            parts = name.split(".")
            out += [p for p in (".".join(parts[:i]) for i in range(1, len(parts))) if not encloses(p, importer)]
        return out

    for mod, path in modules.items():
        is_pkg = path.name == "__init__.py"
        here = mod.split(".") if is_pkg else mod.split(".")[:-1]       # the package the module is in
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            site = f"{path.relative_to(package.parent)}:{getattr(node, 'lineno', 0)}"
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name == root or alias.name.startswith(root + "."):
                        for t in targets(alias.name, mod):
                            graph.add(mod, t, site)
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    if node.level - 1 > len(here) - 1:
                        continue                                      # beyond the top package
                    base_parts = here[:len(here) - (node.level - 1)]
                    base = ".".join(base_parts + (node.module.split(".") if node.module else []))
                else:
                    base = node.module or ""
                if not (base == root or base.startswith(root + ".")):
                    continue
                from_init = False
                for alias in node.names:
                    sub = f"{base}.{alias.name}"
                    if alias.name != "*" and sub in modules:
                        for t in targets(sub, mod):
                            graph.add(mod, t, site)
                    else:
                        from_init = True
                if from_init:
                    for t in targets(base, mod):
                        graph.add(mod, t, site)
                elif parents and not encloses(base, mod):         # the package runs first
                    for t in targets(base, mod):
                        graph.add(mod, t, site)
    return graph


def strongly_connected(edges: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's strongly connected components (each sorted; components in discovery order)."""
    index, low, on, stack, out, counter = {}, {}, set(), [], [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            out.append(sorted(comp))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return out


def _shortest_path(edges, src, dst, allowed) -> list[str] | None:
    prev, frontier = {src: None}, [src]
    while frontier:
        nxt = []
        for v in frontier:
            for w in sorted(edges.get(v, ())):
                if w in allowed and w not in prev:
                    prev[w] = v
                    if w == dst:
                        path = [w]
                        while prev[path[-1]] is not None:
                            path.append(prev[path[-1]])
                        return path[::-1]
                    nxt.append(w)
        frontier = nxt
    return None


def cycles(graph: ImportGraph) -> list[list[str]]:
    """For every edge inside a strongly connected component of more than one module, the shortest
    cycle through it (``[a, b, a]``), each cycle once; together they show every edge of every cycle."""
    out, seen = [], set()
    for comp in strongly_connected(graph.edges):
        if len(comp) < 2:
            continue
        members = set(comp)
        for a in comp:
            for b in sorted(graph.edges[a] & members):
                back = _shortest_path(graph.edges, b, a, members)
                cyc = [a] + back                                 # a -> b -> ... -> a
                ring = cyc[:-1]
                i = ring.index(min(ring))
                key = tuple(ring[i:] + ring[:i])
                if key not in seen:
                    seen.add(key)
                    out.append(list(key) + [key[0]])
    return out


def describe(graph: ImportGraph, cyc: list[str]) -> str:
    lines = [" -> ".join(cyc)]
    for a, b in zip(cyc, cyc[1:]):
        lines.append(f"    {a} -> {b}: {', '.join(graph.where[(a, b)])}")
    return "\n".join(lines)


# ----------------------------------------------------------------------------- tests
def test_import_graph_resolves_every_form(tmp_path):
    pkg = tmp_path / "nqsbench"
    (pkg / "sub").mkdir(parents=True)
    files = {
        "__init__.py": "",
        "a.py": "import nqsbench.b\nfrom . import c\nfrom .sub import d, NAME\n",
        "b.py": "def f():\n    from nqsbench.sub.d import x\n    import numpy\n",
        "c.py": "from .sub import *\nimport os\n",
        "sub/__init__.py": "NAME = 1\n",
        "sub/d.py": "from ..a import y\nfrom .. import b\nfrom . import e\n",
        "sub/e.py": "from nqsbench import c\n",
    }
    for name, text in files.items():
        (pkg / name).write_text(text)
    g = import_graph(pkg)
    assert g.edges == {"nqsbench": set(), "nqsbench.a": {"nqsbench.b", "nqsbench.c", "nqsbench.sub", "nqsbench.sub.d"},
                       "nqsbench.b": {"nqsbench.sub.d"}, "nqsbench.c": {"nqsbench.sub"},
                       "nqsbench.sub": set(), "nqsbench.sub.d": {"nqsbench.a", "nqsbench.b", "nqsbench.sub.e"},
                       "nqsbench.sub.e": {"nqsbench.c"}}
    assert g.where[("nqsbench.b", "nqsbench.sub.d")] == ["nqsbench/b.py:2"]     # function-level import
    assert cycles(g) == [["nqsbench.a", "nqsbench.b", "nqsbench.sub.d", "nqsbench.a"],
                         ["nqsbench.a", "nqsbench.sub.d", "nqsbench.a"],
                         ["nqsbench.b", "nqsbench.sub.d", "nqsbench.b"]]
    gp = import_graph(pkg, parents=True)
    assert "nqsbench.sub" in gp.edges["nqsbench.b"]          # nqsbench.sub.d from outside: sub/__init__ runs
    assert "nqsbench.sub" not in gp.edges["nqsbench.sub.e"] | gp.edges["nqsbench.sub.d"]


def test_no_import_cycle():
    graph = import_graph()
    found = cycles(graph)
    assert not found, (f"{len(found)} import cycle(s) between nqsbench modules:\n"
                       + "\n".join(describe(graph, c) for c in found))


def env_names(path: Path) -> list[str]:
    """``file:line NAME`` for every string constant that is a whole ``NQSBENCH_*`` variable name."""
    hits = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and ENV_NAME.fullmatch(node.value):
            hits.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.value}")
    return hits


def test_environment_is_read_in_config_only():
    """The ``NQSBENCH_*`` settings are read in nqsbench/config.py (pydantic-settings, prefix
    ``NQSBENCH_``); no other module names one of the variables."""
    hits = [h for path in module_files().values() if path != SETTINGS_MODULE for h in env_names(path)]
    assert not hits, ("NQSBENCH_* variables named outside nqsbench/config.py (use its folder functions):\n  "
                      + "\n  ".join(hits))


# ----------------------------------------------------------------------------- layers
# The layers of the package, bottom up (README, Layout). A module may import its own layer and the
# ones below it, never one above: catalog → hamiltonian → solvers → methods → store → suites → cli.
LAYERS = [
    ("foundation", ["nqsbench.errors", "nqsbench.io", "nqsbench.units", "nqsbench.config"]),
    ("catalog and records", ["nqsbench.catalog", "nqsbench.sectors", "nqsbench.records"]),
    ("hamiltonian", ["nqsbench.hamiltonian", "nqsbench.build"]),
    ("solvers", ["nqsbench.exact", "nqsbench.runners", "nqsbench.nqs", "nqsbench.bandstructure", "nqsbench.peers"]),
    ("methods", ["nqsbench.methods"]),
    ("store", ["nqsbench.store", "nqsbench.export"]),
    ("suites, gates, reports", ["nqsbench.gates", "nqsbench.suites", "nqsbench.executors", "nqsbench.table",
                                "nqsbench.report", "nqsbench.score", "nqsbench.leaderboard"]),
    ("interfaces", ["nqsbench.cli", "nqsbench"]),
]


def layer_of(module: str) -> int:
    """Index in LAYERS of the longest prefix naming the module (a package covers its submodules)."""
    best, rank = -1, None
    for i, (_, prefixes) in enumerate(LAYERS):
        for p in prefixes:
            if (module == p or module.startswith(p + ".")) and len(p) > best:
                best, rank = len(p), i
    if rank is None:
        raise AssertionError(f"{module} is in no layer: add it to LAYERS in tests/test_layers.py")
    return rank


def test_every_module_has_a_layer():
    for module in module_files():
        layer_of(module)


def test_layers_only_point_down():
    graph = import_graph()
    up = [f"{a} ({LAYERS[layer_of(a)][0]}) -> {b} ({LAYERS[layer_of(b)][0]}): {', '.join(graph.where[(a, b)])}"
          for a, targets in graph.edges.items() for b in sorted(targets) if layer_of(b) > layer_of(a)]
    assert not up, "imports that point up a layer:\n  " + "\n  ".join(up)
