"""Exact diagonalization against PySCF FCI (same H rotated to a real Γ supercell, and an
independently built supercell) and against dense diagonalization of the same sector."""
from __future__ import annotations

import numpy as np
import pytest
from pyscf import fci
from typer.testing import CliRunner

from nqsbench.exact import ExactDiagonalization, SectorBlock, apply_ladder

CASES = [("h-chain", (1, 1, 2)), ("h-chain", (1, 1, 3)), ("h-chain", (1, 1, 4)),
         ("lih", (1, 1, 1)), ("graphene", (1, 1, 1))]


def pyscf_lowest(h, eri, norb, nelec, nroots=3):
    """PySCF FCI lowest root (several roots: a single-root Davidson can land on an excited state)."""
    solver = fci.direct_spin1.FCI()
    solver.conv_tol, solver.max_cycle, solver.nroots = 1e-13, 400, min(nroots, 10)
    e, _ = solver.kernel(h, eri, norb, nelec)
    return float(np.min(e))


@pytest.mark.parametrize("system,kmesh", CASES)
def test_ground_state_equals_pyscf_fci_on_rotated_supercell(ham_factory, system, kmesh):
    ham = ham_factory(system, kmesh)
    ed = ExactDiagonalization(ham, bands=False).run()
    h, eri = ham.real_supercell()
    e_fci = pyscf_lowest(h, eri, ham.n_spatial, (ham.n_alpha, ham.n_beta))
    assert abs(ed.e_ground - e_fci) < 1e-8


@pytest.mark.parametrize("kmesh", [(1, 1, 2), (1, 1, 3)])
def test_n_plus_minus_one_sectors_equal_pyscf_fci(ham_factory, kmesh):
    ham = ham_factory("h-chain", kmesh)
    h, eri = ham.real_supercell()
    na = ham.n_alpha
    for da in (+1, -1):
        ours = min(SectorBlock(ham, na + da, na, k).solve(1).energies[0] for k in range(ham.nk))
        assert abs(ours - pyscf_lowest(h, eri, ham.n_spatial, (na + da, na))) < 1e-8


@pytest.mark.parametrize("nk", [2, 3])
def test_independent_pyscf_supercell_agrees_per_cell(ham_factory, nk):
    """A Γ-point supercell built by PySCF itself (exxdiv=None, GDF): FCI per cell within 1e-6 Ha."""
    from pyscf.pbc import scf as pbcscf
    from pyscf.pbc import tools

    from nqsbench import catalog
    from nqsbench.build import make_cell, pyscf_kmesh

    geom = catalog.load("h-chain").geometry(kmesh=(1, 1, nk))
    sc = tools.super_cell(make_cell(geom), pyscf_kmesh(geom))
    mf = pbcscf.RHF(sc, exxdiv=None).density_fit()
    mf.conv_tol = 1e-11
    mf.kernel()
    c = mf.mo_coeff
    h = c.T @ mf.get_hcore() @ c
    eri = mf.with_df.ao2mo(c, compact=False).reshape([c.shape[1]] * 4).real
    n = c.shape[1]
    e_sc = (pyscf_lowest(h, eri, n, (sc.nelectron // 2,) * 2) + sc.energy_nuc()) / nk

    ham = ham_factory("h-chain", (1, 1, nk))
    ed = ExactDiagonalization(ham, bands=False).run()
    assert abs(ed.summary()["energy_per_cell_raw"] - e_sc) < 1e-6


def test_davidson_and_lanczos_agree(ham_factory):
    ham = ham_factory("h-chain", (1, 1, 4))
    sec = SectorBlock(ham, ham.n_alpha, ham.n_beta, 0)
    a = sec.solve(3, solver="davidson").energies
    b = sec.solve(3, solver="lanczos").energies
    dense = np.linalg.eigvalsh(sec.dense_matrix())[:3]
    assert np.abs(a - dense).max() < 1e-9 and np.abs(b - dense).max() < 1e-9


def test_sector_matrix_is_hermitian_and_time_reversal_degenerate(ham_factory):
    ham = ham_factory("h-chain", (1, 1, 4))
    na = ham.n_alpha
    for da in (0, 1):
        for k in range(ham.nk):
            m = SectorBlock(ham, na + da, na, k).dense_matrix() if ham.nk else None
            assert np.abs(m - m.conj().T).max() < 1e-12
    e1 = SectorBlock(ham, na, na, 1).solve(2).energies
    e3 = SectorBlock(ham, na, na, 3).solve(2).energies
    assert np.abs(e1 - e3).max() < 1e-9     # K and −K: complex-conjugate blocks


def test_quasiparticles_are_eigenstates_with_their_spectral_weight(ham_factory):
    """Each selected N±1 state is an eigenvalue of its sector, and its weight Z equals
    Σ_p |⟨n|c†_pk|Ψ0⟩|² from dense diagonalization (degenerate levels summed)."""
    ham = ham_factory("h-chain", (1, 1, 3))
    ed = ExactDiagonalization(ham).run()
    na, k0 = ham.n_alpha, ed.k_ground
    src = SectorBlock(ham, na, na, k0)
    assert ed.s2_ground < 1e-8 and ed.band_reference[0] == "singlet" and ed.band_reference[2] == k0
    for create, branch in ((True, ed.electron), (False, ed.hole)):
        for qp in branch:
            kt = ham.k_add(k0, qp.k) if create else ham.k_sub(k0, qp.k)
            dst = SectorBlock(ham, na + (1 if create else -1), na, kt)
            w, v = np.linalg.eigh(dst.dense_matrix())
            starts = np.stack([apply_ladder(src, ed.psi_ground, qp.k * ham.n_orb + p, 0, create, dst)
                               for p in range(ham.n_orb)], axis=1)
            z_dense = (np.abs(v.conj().T @ starts) ** 2).sum(axis=1)
            for e, z in zip(qp.energies, qp.weights):
                level = np.abs(w - e) < 1e-7
                assert level.any(), f"{e} is not an eigenvalue"
                assert abs(e - w[level][0]) < 1e-8
                assert z == pytest.approx(z_dense[level].sum(), abs=1e-7)
                assert z > 0.3


def test_reference_exact_cli_writes_valid_record(tmp_path):
    from nqsbench.cli import app
    from nqsbench.records import read_record

    out = tmp_path / "rec" / "exact.json"
    res = CliRunner().invoke(app, ["reference", "exact", "h-chain", "--kmesh", "1,1,2", "--param", "d=2.4",
                                   "--out", str(out)])
    assert res.exit_code == 0, res.output
    rec = read_record(out)
    assert rec.method == "exact" and rec.params == {"d": 2.4} and rec.kmesh == (1, 1, 2)
    assert rec.provenance.wall_time_s > 0 and rec.provenance.versions["pyscf"] != "absent"
    assert len(rec.sectors) == 6 and len(rec.bands) == 2
    # The headline convention: raw + Madelung sector constant (design.md), per cell.
    n0 = 2 * 2
    assert rec.energy_per_cell == pytest.approx(rec.energy_per_cell_raw + (-0.5 * rec.madelung * n0) / 2,
                                                abs=1e-10)
    assert [p.name for p in out.parent.iterdir()] == ["exact.json"]


def test_bands_use_the_lowest_singlet_when_the_ground_state_is_a_triplet(ham_factory):
    """H chain N_k = 2, d = 1.8: the lowest (2↑, 2↓) state is an S = 1 M_S = 0 state."""
    ham = ham_factory("h-chain", (1, 1, 2))
    ed = ExactDiagonalization(ham).run()
    s = ed.summary()
    assert abs(ed.s2_ground - 2.0) < 1e-6
    assert s["band_reference"]["state"] == "singlet"
    assert s["energy_per_cell_singlet"] > s["energy_per_cell"]
    assert s["band_reference"]["energy_per_cell"] == pytest.approx(s["energy_per_cell_singlet"], abs=1e-12)
    assert all(min(b["electron_weight"] + b["hole_weight"]) > 0.3 for b in s["bands"])


def test_two_electron_cell_with_empty_spin_sector(ham_factory):
    """Γ only, 1↑ 1↓: the N−1 sector (0↑, 1↓) has an empty α string space."""
    ham = ham_factory("h-chain", (1, 1, 1))
    ed = ExactDiagonalization(ham).run()
    h, eri = ham.real_supercell()
    assert abs(ed.e_ground - pyscf_lowest(h, eri, 2, (1, 1))) < 1e-10
    assert len(ed.hole) == 1 and ed.hole[0].weights[0] > 0.99


def test_time_reversal_shortcut_changes_nothing(ham_factory):
    ham = ham_factory("h-chain", (1, 1, 4))
    a = ExactDiagonalization(ham, time_reversal=True).run().summary()
    b = ExactDiagonalization(ham, time_reversal=False).run().summary()
    assert abs(a["energy_per_cell"] - b["energy_per_cell"]) < 1e-10
    for sa, sb in zip(a["sectors"], b["sectors"]):
        assert (sa["n_alpha"], sa["k"]) == (sb["n_alpha"], sb["k"])
        assert np.abs(np.array(sa["energies_raw"]) - sb["energies_raw"]).max() < 1e-8
    for ba, bb in zip(a["bands"], b["bands"]):
        assert np.abs(np.array(ba["electron"] + ba["hole"]) - (bb["electron"] + bb["hole"])).max() < 1e-8
