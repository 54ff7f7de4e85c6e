"""Units: the constants of nqsbench/units.py are PySCF's, and no other module redefines them."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

from nqsbench import units

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "nqsbench"
UNITS = PACKAGE / "units.py"

# Conversion factors a module could hard-code instead of importing them from nqsbench.units.
# Compared with a relative tolerance of 1e-4: that covers every CODATA edition (they differ by
# ~1e-8) and also the truncated spellings (27.2114, 0.52918, 1.88973, 27211.4), while no ordinary
# parameter of the package comes that close to one of them.
UNIT_VALUES = {
    "Hartree in meV": 27211.386,
    "Hartree in eV": 27.211386,
    "eV in Hartree": 1.0 / 27.211386,
    "meV in Hartree": 1.0 / 27211.386,
    "bohr in Å": 0.52917721,
    "Å in bohr": 1.0 / 0.52917721,
}
REL_TOL = 1e-4


def test_constants_are_pyscfs():
    from pyscf.data import nist
    from pyscf.lib import parameters

    assert units.BOHR_ANGSTROM == nist.BOHR
    assert units.BOHR_ANGSTROM == parameters.BOHR          # what pyscf.pbc.gto.Cell uses for unit='A'
    assert units.ANGSTROM_TO_BOHR == 1.0 / nist.BOHR
    assert units.HARTREE_TO_EV == nist.HARTREE2EV
    assert units.HARTREE_TO_MEV == nist.HARTREE2EV * 1000.0
    assert units.CHEMICAL_ACCURACY_HA == pytest.approx(units.CHEMICAL_ACCURACY_MHA * 1e-3, rel=1e-15)


def test_modules_take_the_constants_from_units():
    from nqsbench import bandstructure, catalog

    assert bandstructure.HARTREE_TO_EV is units.HARTREE_TO_EV      # re-exported, not recomputed
    assert bandstructure.HARTREE_TO_MEV is units.HARTREE_TO_MEV
    assert catalog.ANGSTROM_TO_BOHR is units.ANGSTROM_TO_BOHR


def unit_literals(path: Path, root: Path = ROOT) -> list[str]:
    """``file:line value (what)`` for every numeric literal in ``path`` close to a unit factor."""
    tree = ast.parse(path.read_text(), filename=str(path))
    hits = []
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Constant) and isinstance(node.value, (int, float))
                and not isinstance(node.value, bool)) or node.value == 0:
            continue
        for what, ref in UNIT_VALUES.items():
            if abs(node.value - ref) <= REL_TOL * ref:
                hits.append(f"{path.relative_to(root)}:{node.lineno} {node.value!r} ({what})")
    return hits


def _sources(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*.py") if "__pycache__" not in p.parts and p != UNITS)


def test_scan_finds_a_redefinition(tmp_path):
    """The scan itself: it sees a hard-coded factor (any CODATA edition, or truncated)."""
    src = tmp_path / "mod.py"
    src.write_text("A = 27211.386245988\nB = 27.2114\n\ndef f(x):\n    return x / 0.529177\n"
                   "C = 1.6e-3\nD = 1000\n")
    assert [h.split()[0] for h in unit_literals(src, tmp_path)] == ["mod.py:1", "mod.py:2", "mod.py:5"]


@pytest.mark.parametrize("folder", ["nqsbench", "benchmarks"])
def test_no_module_redefines_a_unit_constant(folder):
    """Every conversion factor comes from nqsbench/units.py; the message lists each offending literal."""
    hits = [h for path in _sources(ROOT / folder) for h in unit_literals(path)]
    assert not hits, ("unit constants defined outside nqsbench/units.py (import them from there):\n  "
                      + "\n  ".join(hits))


def test_no_module_assigns_a_units_name():
    """No module binds one of units' names (``HARTREE_TO_MEV = …``, ``CHEMICAL_ACCURACY_MHA = 1.6``)
    to a value of its own; importing it (``from .units import X``) is the only way in."""
    names = {n for n in vars(units) if n.isupper()}
    hits = []
    for path in _sources(PACKAGE) + _sources(ROOT / "benchmarks"):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            targets = (node.targets if isinstance(node, ast.Assign)
                       else [node.target] if isinstance(node, (ast.AnnAssign, ast.AugAssign)) else [])
            for t in targets:
                for n in ast.walk(t):
                    if isinstance(n, ast.Name) and n.id in names:
                        hits.append(f"{path.relative_to(ROOT)}:{node.lineno} {n.id}")
    assert not hits, "names of nqsbench/units.py assigned elsewhere (import them instead):\n  " + "\n  ".join(hits)
