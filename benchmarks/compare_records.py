"""Compare the energies of two folders of records (a regression check across code versions).

    python benchmarks/compare_records.py OLD_RESULTS NEW_RESULTS [--tol 1e-10]

Pairs records by their path relative to each folder and compares every energy they hold, per
cell in Hartree: ``energy_per_cell``, ``energy_per_cell_raw``, ``energy_error`` and, for band
records, every band and control-band energy. Reads any schema version (version-1 records are
migrated on reading). Exit status 1 when a pair differs by more than ``--tol`` or a record is
missing from one side.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from nqsbench.store import read, record_paths


def energies(rec) -> dict[str, float]:
    out = {k: getattr(rec, k) for k in ("energy_per_cell", "energy_per_cell_raw", "energy_error")
           if getattr(rec, k, None) is not None}
    for name in ("bands", "control_bands"):
        for b in getattr(rec, name, []) or []:
            for branch in ("electron", "hole"):
                for i, e in enumerate(getattr(b, branch)):
                    out[f"{name}[k={b.k}].{branch}[{i}]"] = e
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("old", type=Path)
    ap.add_argument("new", type=Path)
    ap.add_argument("--tol", type=float, default=1e-10, help="largest allowed |difference| (Ha per cell)")
    args = ap.parse_args()
    old = {p.relative_to(args.old): p for p in record_paths(args.old)}
    new = {p.relative_to(args.new): p for p in record_paths(args.new)}
    bad = [f"only in {args.old}: {k}" for k in sorted(set(old) - set(new))]
    bad += [f"only in {args.new}: {k}" for k in sorted(set(new) - set(old))]
    worst, n = 0.0, 0
    for key in sorted(set(old) & set(new)):
        a, b = energies(read(old[key])), energies(read(new[key]))
        if set(a) != set(b):
            bad.append(f"{key}: different quantities ({sorted(set(a) ^ set(b))})")
        for q in sorted(set(a) & set(b)):
            d = abs(a[q] - b[q])
            worst, n = max(worst, d), n + 1
            if d > args.tol:
                bad.append(f"{key}: {q} {a[q]!r} vs {b[q]!r} (|Δ| = {d:.2e})")
    print(f"{len(set(old) & set(new))} records paired, {n} energies compared, max |Δ| = {worst:.2e} Ha/cell "
          f"(tolerance {args.tol:.0e})")
    for line in bad:
        print("  " + line)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
