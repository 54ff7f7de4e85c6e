"""Physical constants and accuracy thresholds: the one place nqsbench takes them from.

Values are PySCF's (``pyscf.data.nist``, CODATA 2010), so Å → bohr conversions agree with the
cells PySCF builds and geometry input hashes stay stable; ``tests/test_units.py`` checks them
against PySCF. Kept as literals so importing the catalog does not import PySCF.
"""
from __future__ import annotations

BOHR_ANGSTROM = 0.52917721092            # pyscf.data.nist.BOHR (Å per bohr)
ANGSTROM_TO_BOHR = 1.0 / BOHR_ANGSTROM
HARTREE_TO_EV = 27.21138602              # pyscf.data.nist.HARTREE2EV
HARTREE_TO_MEV = HARTREE_TO_EV * 1000.0

# 1 kcal/mol = 1.5936 mHa; per primitive cell (design.md)
CHEMICAL_ACCURACY_MHA = 1.6
CHEMICAL_ACCURACY_HA = CHEMICAL_ACCURACY_MHA * 1e-3
