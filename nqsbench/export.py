"""Instances for other codes: ``nqsbench export`` writes a catalog Hamiltonian as files any code
can read, with a manifest that says what they are and what the references are.

Files in the output folder:

- ``FCIDUMP``: the real Γ-supercell Hamiltonian (:meth:`Hamiltonian.real_supercell`: the k-space
  H rotated to real, orthonormal, atom-local orbitals of the same active space; chemist's
  notation with the 1/N_k folded in; 8-fold symmetric), written by ``pyscf.tools.fcidump`` with
  ``ECORE = N_k (E_nuc + E_core)``. Its eigenvalues are the raw supercell energies E_raw(N).
- ``instance.h5``: the complex k-resolved problem (HDF5): h1[k], the momentum-allowed ERI blocks
  (p k1 q k2 | r k3 s k4) with k4 = kconserv[k1, k2, k3] (no 1/N_k), kconserv, k-points,
  orbital energies, occupations, orbitals and overlaps, the constants (E_nuc, E_core per cell,
  the Madelung constant, exxdiv = None), the geometry, basis and sector. :func:`read_hdf5`
  rebuilds the :class:`~nqsbench.hamiltonian.Hamiltonian` from it (same hash).
- ``manifest.json``: sha256 of each file, the instance hash, the conventions (how to turn raw
  supercell energies into nqsbench's per-cell ewald numbers, per particle-number sector) and the
  reference values the store holds for the instance (exact, DMRG, CCSD(T), with provenance).

The instance hash (``instance_sha256``, what a submission names): the sha256 of the problem's
content, not of a file's bytes (HDF5 bytes depend on the library version), see
:func:`instance_sha256`. It identifies the integrals exactly, Bloch-orbital gauge included, so it
is recomputed from this store's Hamiltonian (disk cache) when a submission is scored.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from .catalog import Geometry
from .errors import NqsbenchError, RecordError
from .hamiltonian import Hamiltonian
from .io import atomic_write, atomic_write_json
from .store import Store, read

FCIDUMP_FILE = "FCIDUMP"
HDF5_FILE = "instance.h5"
MANIFEST_FILE = "manifest.json"
FORMATS = ("fcidump", "hdf5", "all")
REFERENCE_ORDER = ("exact", "dmrg", "ccsd_t")     # the best available reference, in this order
HDF5_FORMAT = "nqsbench-instance"
HDF5_FORMAT_VERSION = 1
MANIFEST_SCHEMA = "nqsbench.instance-manifest"

# what instance_sha256 hashes, in this order (arrays as little-endian C-order bytes of these dtypes)
INSTANCE_ARRAYS = (("h1", "<c16"), ("eri", "<c16"), ("kconserv", "<i8"), ("kvec", "<i8"), ("mesh", "<i8"),
                   ("mo_occ", "<f8"))
INSTANCE_SCALARS = ("e_nuc", "e_core", "madelung", "n_core", "n_elec_cell")
INSTANCE_HASH_DEFINITION = (
    "sha256 of: b'nqsbench-instance-v1\\n', then for each of h1 (complex128), eri (complex128), "
    "kconserv, kvec, mesh (int64), mo_occ (float64) of instance.h5's /hamiltonian, /kpoints and "
    "/orbitals groups: the name in ASCII, b'\\n' and the array's little-endian C-order bytes; then "
    "the canonical JSON (sorted keys, separators ',' ':') of {e_nuc, e_core, madelung, n_core, "
    "n_elec_cell} (the /hamiltonian attributes). nqsbench.export.instance_sha256 computes it.")


class ExportError(NqsbenchError):
    pass


# ----------------------------------------------------------------------------- hashes
def instance_sha256(ham: Hamiltonian) -> str:
    """The instance hash (see :data:`INSTANCE_HASH_DEFINITION`)."""
    h = hashlib.sha256(b"nqsbench-instance-v1\n")
    for name, dtype in INSTANCE_ARRAYS:
        h.update(name.encode() + b"\n")
        h.update(np.ascontiguousarray(np.asarray(getattr(ham, name)).astype(dtype)).tobytes())
    scalars = {s: getattr(ham, s) for s in INSTANCE_SCALARS}
    scalars = {k: (int(v) if k in ("n_core", "n_elec_cell") else float(v)) for k, v in scalars.items()}
    h.update(json.dumps(scalars, sort_keys=True, separators=(",", ":")).encode())
    return h.hexdigest()


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


# ----------------------------------------------------------------------------- conventions
def conventions(ham: Hamiltonian) -> dict:
    """How raw energies of the exported H become nqsbench's per-cell ewald numbers."""
    nk, m = ham.nk, float(ham.madelung)
    n0 = ham.n_alpha + ham.n_beta
    sectors = []
    for label, n in (("N-1", n0 - 1), ("N", n0), ("N+1", n0 + 1)):
        if 0 <= n <= 2 * ham.n_spatial:
            s = float(ham.ewald_shift(n))
            sectors.append({"sector": label, "n_active_electrons": n,
                            "n_electrons_total": n + 2 * ham.n_core * nk,
                            "ewald_shift_supercell": s, "ewald_shift_per_cell": s / nk})
    return {
        "units": "Hartree, bohr",
        "n_k": nk, "madelung": m, "exxdiv": None,
        "n0_electrons_supercell": ham.n_elec_total,
        "n_core_electrons_supercell": 2 * ham.n_core * nk,
        "constant_supercell": float(ham.constant),
        "energy_raw": "E_raw(N): an eigenvalue of the exported Hamiltonian with N active electrons, its "
                      "constant included (FCIDUMP core energy, or N_k (e_nuc + e_core) of instance.h5): "
                      "the energy of the N_k-cell Born-von Karman supercell with exxdiv=None",
        "energy_ewald": "E_ewald(N) = E_raw(N) - (m/2) N_tot + (m/2) (N_tot - N0)^2 with N_tot = N + "
                        "n_core_electrons_supercell, m = madelung, N0 = n0_electrons_supercell: PySCF's "
                        "default exxdiv='ewald' numbers; 'sectors' lists the shift E_ewald - E_raw",
        "per_cell": "nqsbench reports energies per primitive cell: supercell energy / n_k",
        "sectors": sectors,
        "bands": "quasiparticle energies are supercell differences: electron E(N+1, K0+k) - E(N), hole "
                 "E(N) - E(N-1, K0-k); to ewald add the difference of the two sectors' shifts",
        "submission": "energy_per_cell = E/n_k with convention 'raw' (E_raw) or 'ewald' (E_ewald); "
                      "nqsbench score converts to ewald and gates against the best reference",
        "orbitals": "HDF5: flat spatial index i = k*n_orb + p, spin-orbitals alpha block then beta; "
                    "FCIDUMP: real Gamma-supercell orbitals (atom-local), indices 1..n_k*n_orb",
        "hamiltonian_k": "H = sum_k h1[k]_pq c+_{pk s} c_{qk s} + 1/(2 n_k) sum eri[k1,k2,k3]_pqrs "
                         "c+_{p k1 s} c+_{r k3 t} c_{s k4 t} c_{q k2 s} + n_k (e_nuc + e_core), "
                         "k4 = kconserv[k1,k2,k3]",
    }


def reference_values(store: Store, geom: Geometry) -> dict:
    """The exact / DMRG / CCSD(T) records the store holds for the instance, and the best one."""
    out: dict = {}
    best = None
    for m in REFERENCE_ORDER:
        path = store.path(m, geom)
        if not path.exists():
            continue
        st = store.status(m, geom, path=path)
        try:
            rec = read(path)
        except RecordError as exc:
            out[m] = {"path": str(path), "fresh": False, "status": str(exc)}
            continue
        out[m] = {"path": str(path), "fresh": st.fresh, "status": st.reason, "converged": rec.converged,
                  "energy_per_cell": rec.energy_per_cell, "energy_per_cell_raw": rec.energy_per_cell_raw,
                  "energy_error": getattr(rec, "energy_error", None), "settings": rec.settings.model_dump(mode="json"),
                  "settings_hash": rec.settings_hash, "input_hash": rec.input_hash,
                  "hamiltonian_hash": rec.hamiltonian_hash, "provenance": rec.provenance.model_dump(mode="json")}
        if best is None and st.fresh and not rec.failed and rec.energy_per_cell is not None:
            best = m
    return {"best": best, "order": list(REFERENCE_ORDER), "records": out}


# ----------------------------------------------------------------------------- writers
def write_fcidump(ham: Hamiltonian, path: str | Path) -> Path:
    """FCIDUMP of the real Γ-supercell H (ECORE = the constant), atomically."""
    from pyscf.tools import fcidump

    h, eri = ham.real_supercell()
    n = h.shape[0]
    nelec = ham.n_alpha + ham.n_beta
    return atomic_write(path, lambda tmp: fcidump.from_integrals(str(tmp), h, eri, n, nelec,
                                                                 nuc=float(ham.constant), ms=0))


def _kpts_abs(geom: Geometry | None, ham: Hamiltonian) -> np.ndarray | None:
    """k = (kvec / mesh) · b in bohr⁻¹, b the reciprocal vectors of the lattice in PySCF axis order."""
    if geom is None:
        return None
    from .build import pyscf_order

    a = np.asarray(geom.lattice)[pyscf_order(geom)]
    b = 2 * np.pi * np.linalg.inv(a).T
    return (ham.kvec / ham.mesh) @ b


def write_hdf5(ham: Hamiltonian, path: str | Path, geom: Geometry | None = None) -> Path:
    """The complex k-resolved instance as HDF5, atomically (layout: module docstring)."""
    import h5py

    meta = ham.meta or {}
    g = geom.as_dict() if geom is not None else meta.get("geometry", {})

    def write(tmp: Path) -> None:
        with h5py.File(tmp, "w", track_order=True) as f:
            f.attrs["format"] = HDF5_FORMAT
            f.attrs["format_version"] = HDF5_FORMAT_VERSION
            f.attrs["instance_sha256"] = instance_sha256(ham)
            f.attrs["hamiltonian_hash"] = ham.hash
            f.attrs["input_hash"] = str(meta.get("input_hash", "unknown"))
            f.attrs["system"] = str(g.get("system", ""))
            f.attrs["params"] = json.dumps(g.get("params", {}), sort_keys=True)
            f.attrs["kmesh"] = np.asarray(g.get("kmesh", ham.mesh), dtype=np.int64)
            f.attrs["basis"] = str(g.get("basis", ""))
            f.attrs["frozen_core"] = int(ham.n_core)
            f.attrs["exxdiv"] = "none"
            f.attrs["units"] = "Hartree, bohr"
            f.attrs["meta"] = json.dumps(meta, sort_keys=True, default=str)
            f.attrs["conventions"] = json.dumps(conventions(ham), sort_keys=True)
            hg = f.create_group("hamiltonian")
            hg.attrs["description"] = conventions(ham)["hamiltonian_k"]
            for s in ("e_nuc", "e_core", "e_hf", "madelung"):
                hg.attrs[s] = float(getattr(ham, s))
            hg.attrs["n_core"] = int(ham.n_core)
            hg.attrs["n_elec_cell"] = int(ham.n_elec_cell)
            hg.attrs["constant"] = float(ham.constant)
            hg.attrs["exxdiv"] = "none"
            hg.create_dataset("h1", data=np.asarray(ham.h1, dtype=np.complex128))
            e = hg.create_dataset("eri", data=np.asarray(ham.eri, dtype=np.complex128))
            e.attrs["description"] = ("eri[k1, k2, k3, p, q, r, s] = (p k1 q k2 | r k3 s k4), k4 = "
                                      "kconserv[k1, k2, k3], chemist's notation, no 1/N_k")
            hg.create_dataset("kconserv", data=np.asarray(ham.kconserv, dtype=np.int64))
            kg = f.create_group("kpoints")
            kg.create_dataset("kvec", data=np.asarray(ham.kvec, dtype=np.int64))
            kg.create_dataset("mesh", data=np.asarray(ham.mesh, dtype=np.int64))
            kg.attrs["description"] = ("k = kvec / mesh in reciprocal-lattice units (PySCF axis order: "
                                       "periodic axes first); kpts: absolute, bohr^-1")
            kabs = _kpts_abs(geom, ham)
            if kabs is not None:
                kg.create_dataset("kpts", data=kabs)
            og = f.create_group("orbitals")
            og.create_dataset("mo_energy", data=np.asarray(ham.mo_energy, dtype=np.float64))
            og.create_dataset("mo_occ", data=np.asarray(ham.mo_occ, dtype=np.float64))
            og.create_dataset("mo_coeff", data=np.asarray(ham.mo_coeff))
            og.create_dataset("ovlp", data=np.asarray(ham.ovlp))
            og.attrs["description"] = ("active orbitals per k (exxdiv=None orbital energies, occupations 0/2); "
                                       "mo_coeff: all MOs (core included) in the Bloch AO basis; ovlp: Bloch AO overlap")
            sg = f.create_group("sector")
            for k, v in (("n_alpha", ham.n_alpha), ("n_beta", ham.n_beta), ("k_total", ham.k0_sector()),
                         ("n_orb_per_k", ham.n_orb), ("n_spatial", ham.n_spatial),
                         ("n_spin_orbitals", ham.n_spin_orbitals)):
                sg.attrs[k] = int(v)
            gg = f.create_group("geometry")
            if g:
                gg.create_dataset("lattice_bohr", data=np.asarray(g["lattice_bohr"], dtype=np.float64))
                gg.create_dataset("coords_bohr", data=np.asarray(g["coords_bohr"], dtype=np.float64))
                gg.attrs["symbols"] = json.dumps(g["symbols"])
                gg.attrs["dimension"] = int(g["dimension"])
                gg.attrs["periodic_axes"] = np.asarray(g["periodic_axes"], dtype=np.int64)
                gg.attrs["geometry"] = json.dumps(g, sort_keys=True)
    return atomic_write(path, write)


def read_hdf5(path: str | Path) -> Hamiltonian:
    """The importer: an ``instance.h5`` → the :class:`Hamiltonian` it was exported from (same
    integrals, hash and instance hash; RecordError when the file is not one or is damaged)."""
    import h5py

    path = Path(path)
    try:
        with h5py.File(path, "r") as f:
            if f.attrs.get("format") != HDF5_FORMAT:
                raise RecordError(f"{path}: not an nqsbench instance (attribute 'format' is not {HDF5_FORMAT!r})")
            if int(f.attrs.get("format_version", -1)) != HDF5_FORMAT_VERSION:
                raise RecordError(f"{path}: instance format version {f.attrs.get('format_version')} is not "
                                  f"{HDF5_FORMAT_VERSION}; re-export it with this nqsbench")
            hg, kg, og = f["hamiltonian"], f["kpoints"], f["orbitals"]
            ham = Hamiltonian(
                h1=hg["h1"][()], eri=hg["eri"][()], kconserv=hg["kconserv"][()], kvec=kg["kvec"][()],
                mesh=kg["mesh"][()], e_nuc=float(hg.attrs["e_nuc"]), e_core=float(hg.attrs["e_core"]),
                e_hf=float(hg.attrs["e_hf"]), madelung=float(hg.attrs["madelung"]),
                n_core=int(hg.attrs["n_core"]), n_elec_cell=int(hg.attrs["n_elec_cell"]),
                mo_energy=og["mo_energy"][()], mo_occ=og["mo_occ"][()], mo_coeff=og["mo_coeff"][()],
                ovlp=og["ovlp"][()], meta=json.loads(f.attrs.get("meta", "{}")))
            want = str(f.attrs.get("instance_sha256", ""))
    except (OSError, KeyError) as exc:
        raise RecordError(f"{path}: not a readable nqsbench instance ({exc})") from None
    got = instance_sha256(ham)
    if got != want:
        raise RecordError(f"{path}: instance_sha256 {got} of the contents is not the recorded {want}: "
                          "the file was changed or damaged; export it again")
    return ham


# ----------------------------------------------------------------------------- export
@dataclass
class Export:
    folder: Path
    manifest: dict
    files: dict[str, Path] = field(default_factory=dict)

    @property
    def manifest_path(self) -> Path:
        return self.folder / MANIFEST_FILE


def export(geom: Geometry, out: str | Path, fmt: str = "all", store: Store | None = None,
           ham: Hamiltonian | None = None) -> Export:
    """Write the instance of ``geom`` to ``out`` (``fmt``: fcidump, hdf5 or all) and its manifest."""
    from .build import get_hamiltonian
    from .records import versions

    if fmt not in FORMATS:
        raise ExportError(f"--format {fmt!r}: choose one of {', '.join(FORMATS)}")
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ExportError(f"-o {out}: exists and is not a folder; give a folder")
    store = store or Store.default()
    ham = ham if ham is not None else get_hamiltonian(geom)
    files: dict[str, Path] = {}
    if fmt in ("hdf5", "all"):
        files[HDF5_FILE] = write_hdf5(ham, out / HDF5_FILE, geom)
    if fmt in ("fcidump", "all"):
        files[FCIDUMP_FILE] = write_fcidump(ham, out / FCIDUMP_FILE)
    descriptions = {HDF5_FILE: "complex k-resolved Hamiltonian (HDF5; nqsbench.export.read_hdf5 imports it)",
                    FCIDUMP_FILE: "real Gamma-supercell Hamiltonian (FCIDUMP; core energy = constant_supercell): "
                                  "pyscf.tools.fcidump, block2, Dice, NECI"}
    spec = geom.spec
    manifest = {
        "schema_name": MANIFEST_SCHEMA, "schema_version": 1,
        "system": spec.id, "params": geom.params, "kmesh": list(geom.kmesh), "label": geom.label(),
        "basis": spec.basis, "frozen_core": spec.frozen_core, "dimension": spec.dimension,
        "input_hash": str(ham.meta.get("input_hash", "unknown")), "hamiltonian_hash": ham.hash,
        "instance_sha256": instance_sha256(ham), "instance_sha256_definition": INSTANCE_HASH_DEFINITION,
        "files": {name: {"sha256": file_sha256(p), "bytes": p.stat().st_size, "description": descriptions[name]}
                  for name, p in files.items()},
        "sector": {"n_alpha": ham.n_alpha, "n_beta": ham.n_beta, "k_total": ham.k0_sector(),
                   "n_spatial_orbitals": ham.n_spatial, "n_spin_orbitals": ham.n_spin_orbitals,
                   "n_active_electrons": ham.n_alpha + ham.n_beta},
        "conventions": conventions(ham),
        "references": reference_values(store, geom),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "versions": versions(),
    }
    atomic_write_json(out / MANIFEST_FILE, manifest)
    return Export(out, manifest, files)


def verify(folder: str | Path) -> list[str]:
    """Files of an exported folder whose sha256 is not the manifest's ('name: why'); [] = all match."""
    folder = Path(folder)
    try:
        manifest = json.loads((folder / MANIFEST_FILE).read_text())
    except (OSError, ValueError) as exc:
        raise RecordError(f"{folder / MANIFEST_FILE}: unreadable manifest ({exc})") from None
    bad = []
    for name, entry in manifest.get("files", {}).items():
        p = folder / name
        if not p.exists():
            bad.append(f"{name}: missing")
        elif file_sha256(p) != entry["sha256"]:
            bad.append(f"{name}: sha256 differs from the manifest")
    return bad
