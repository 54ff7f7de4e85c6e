"""Reference runners (KRHF, KMP2, KRCCSD, KRCCSD(T), EOM-CCSD) against exact results and against
molecular PySCF on the same Hamiltonian rotated to a real Γ supercell."""
from __future__ import annotations

import numpy as np
import pytest
from pyscf import ao2mo, cc, fci, gto, mp, scf
from typer.testing import CliRunner

from nqsbench import catalog
from nqsbench.runners import kpoint


def geometry(system, kmesh, **params):
    return catalog.load(system).geometry(params, kmesh)


def supercell_rhf(ham):
    """RHF on the real Γ-supercell integrals of ``ham`` (a molecule with custom integrals)."""
    h, eri = ham.real_supercell()
    n = h.shape[0]
    mol = gto.M(verbose=0)
    mol.nelectron = ham.n_alpha + ham.n_beta
    mol.incore_anyway = True
    mf = scf.RHF(mol)
    mf.get_hcore = lambda *a: h
    mf.get_ovlp = lambda *a: np.eye(n)
    mf.energy_nuc = lambda *a: ham.constant
    mf._eri = ao2mo.restore(8, eri, n)
    mf.conv_tol = 1e-12
    # Start from the k-space HF density: the supercell RHF must land on the same determinant.
    mf.kernel(dm0=_hf_density(ham, h, eri))
    return mf


def _hf_density(ham, h, eri):
    """Lowest-energy aufbau density of the supercell Fock built iteratively from hcore."""
    n = h.shape[0]
    nocc = ham.n_alpha
    w, v = np.linalg.eigh(h)
    dm = 2 * v[:, :nocc] @ v[:, :nocc].T
    for _ in range(200):
        f = h + np.einsum("pqrs,rs->pq", eri, dm) - 0.5 * np.einsum("prsq,rs->pq", eri, dm)
        w, v = np.linalg.eigh(f)
        new = 2 * v[:, :nocc] @ v[:, :nocc].T
        if np.abs(new - dm).max() < 1e-10:
            break
        dm = 0.5 * (dm + new)
    return dm


def test_two_electron_ccsd_and_eom_ip_are_exact(ham_factory):
    """H2 per cell at Γ only: CCSD is FCI for 2 electrons, EOM-IP is exact for the 1-electron state."""
    geom = geometry("h-chain", (1, 1, 1), d=1.8)
    ham = ham_factory("h-chain", (1, 1, 1), d=1.8)
    h, eri = ham.real_supercell()
    e_fci = fci.direct_spin1.FCI().kernel(h, eri, 2, (1, 1))[0] + ham.constant
    e_nm1 = np.linalg.eigvalsh(h)[0] + ham.constant       # one electron: the lowest level of h
    mf = kpoint.scf_from_hamiltonian(geom, ham)
    ccsd = kpoint.run_ccsd(geom, ham, mf)
    assert ccsd.converged
    assert abs(ccsd.e_supercell_raw - e_fci) < 1e-8
    eom = kpoint.run_eom(geom, ham, mf)
    assert eom.converged
    hole = eom.bands[0]["hole"][0]
    exact_hole = (e_fci + ham.ewald_shift(2)) - (e_nm1 + ham.ewald_shift(1))
    assert abs(hole - exact_hole) < 1e-8
    # Koopmans hole = exxdiv=None HOMO shifted by the sector constant (−m), i.e. the ewald HOMO.
    hf = kpoint.run_hf(geom, ham)
    assert hf.bands[0]["hole"][0] == pytest.approx(ham.mo_energy[0][0] - ham.madelung, abs=1e-12)


@pytest.mark.parametrize("system,kmesh,params", [("h-chain", (1, 1, 3), {"d": 1.8}),
                                                 ("h-chain", (1, 1, 3), {"d": 2.6})])
def test_kpoint_methods_equal_supercell_methods_per_cell(ham_factory, system, kmesh, params):
    """KRHF, KMP2, KRCCSD and KRCCSD(T) per cell = molecular RHF/MP2/CCSD/CCSD(T) on the same H
    rotated to a real Γ supercell, per cell, to 1e-7 Ha."""
    geom = geometry(system, kmesh, **params)
    ham = ham_factory(system, kmesh, **params)
    nk = ham.nk
    smf = supercell_rhf(ham)
    assert smf.converged and abs(smf.e_tot / nk - ham.e_hf) < 1e-8
    mf = kpoint.scf_from_hamiltonian(geom, ham)
    e_mp2 = mp.MP2(smf).kernel()[0]
    mycc = cc.CCSD(smf)
    mycc.conv_tol, mycc.conv_tol_normt = 1e-11, 1e-8
    mycc.kernel()
    e_t = mycc.ccsd_t()
    runners = {"mp2": kpoint.run_mp2, "ccsd": kpoint.run_ccsd, "ccsd_t": kpoint.run_ccsd_t}
    res = {m: runners[m](geom, ham, mf) for m in ("mp2", "ccsd", "ccsd_t")}
    assert abs(res["mp2"].e_corr_per_cell - e_mp2 / nk) < 1e-7
    assert abs(res["ccsd"].e_corr_per_cell - mycc.e_corr / nk) < 1e-7
    assert abs(res["ccsd_t"].e_corr_per_cell - (mycc.e_corr + e_t) / nk) < 1e-7
    assert abs(res["ccsd"].e_supercell_raw - mycc.e_tot) / nk < 1e-7
    assert abs(e_t) > 1e-6     # (T) is not trivially zero here, so the comparison means something


def test_headline_ccsd_matches_pyscf_ewald_convention(ham_factory):
    """Our ewald headline = PySCF's KRCCSD e_tot with exxdiv='ewald' = E_HF(ewald) + E_corr."""
    from nqsbench.methods import compute, get

    geom = geometry("h-chain", (1, 1, 3), d=2.2)
    ham = ham_factory("h-chain", (1, 1, 3), d=2.2)
    rec = compute(get("ccsd"), geom, ham=ham)
    assert rec.converged
    e_hf_ewald = ham.meta["e_hf_ewald_pyscf"]
    assert rec.energy_per_cell == pytest.approx(e_hf_ewald + rec.e_corr_per_cell, abs=1e-8)


@pytest.mark.parametrize("d", [1.0, 1.8])
def test_eom_principal_bands_agree_with_exact(ham_factory, d):
    """H chain N_k = 3: EOM-IP/EA roots selected by one-particle weight are the exact
    quasiparticles (d = 1.0: the Γ electron lies above the satellites, so the lowest roots alone
    miss it); principal ones (Z > 0.9) agree to 2 mHa (IP), 6 mHa (EA) (measured: IP 1.4 mHa at
    d = 1.8; EA 5.7 mHa for the Γ antibonding state 5.4 Ha up at d = 1.0), and the EOM-CCSD gap is closer to exact than the HF Koopmans gap."""
    from nqsbench.exact import ExactDiagonalization

    geom = geometry("h-chain", (1, 1, 3), d=d)
    ham = ham_factory("h-chain", (1, 1, 3), d=d)
    s = ExactDiagonalization(ham).run().summary()
    eom = kpoint.run_eom(geom, ham)
    hf = kpoint.run_hf(geom, ham)
    assert eom.converged
    n_checked = 0
    for be, bc in zip(s["bands"], eom.bands):
        for key, tol in (("hole", 2e-3), ("electron", 6e-3)):
            for e_ex, z, e_cc, w in zip(be[key], be[key + "_weight"], bc[key], bc[key + "_weight"]):
                if z > 0.9:
                    assert w > 0.8, (key, be["k"], "EOM picked a satellite")
                    assert abs(e_ex - e_cc) < tol, (key, be["k"], e_ex, e_cc)
                    n_checked += 1
    assert n_checked >= 3
    assert abs(eom.gap - s["gap"]) < abs(hf.gap - s["gap"])


def test_ccsd_error_grows_when_stretched(ham_factory):
    """H chain N_k = 4: |E_CCSD − E_exact| per cell grows > 5× from d = 1.4 to 3.0 bohr (measured
    2.2 → 19.3 mHa) and is far beyond chemical accuracy when stretched."""
    from nqsbench.exact import ExactDiagonalization

    err = {}
    for d in (1.4, 3.0):
        geom = geometry("h-chain", (1, 1, 4), d=d)
        ham = ham_factory("h-chain", (1, 1, 4), d=d)
        ed = ExactDiagonalization(ham, bands=False).run()
        res = kpoint.run_ccsd(geom, ham)
        assert res.converged
        err[d] = abs(res.e_supercell_raw - (ed.e_ground + ham.constant)) / ham.nk
    assert err[3.0] > 5 * err[1.4] and err[3.0] > 10e-3, err


def test_reference_cli_writes_record_and_skips_when_hash_matches(tmp_path):
    from nqsbench.cli import app
    from nqsbench.records import read_record

    out = tmp_path / "rec" / "ccsd_t.json"
    args = ["reference", "ccsd_t", "h-chain", "--kmesh", "1,1,2", "--param", "d=2.4", "--out", str(out)]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    rec = read_record(out)
    assert rec.method == "ccsd_t" and rec.converged and rec.failure is None
    assert rec.energy_per_cell == pytest.approx(rec.energy_per_cell_raw - rec.madelung * 4 / 2 / 2, abs=1e-10)
    assert rec.energy_per_cell_raw - rec.e_hf_per_cell == pytest.approx(rec.e_corr_per_cell, abs=1e-10)
    mtime = out.stat().st_mtime_ns
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0 and "cached" in res.output and out.stat().st_mtime_ns == mtime
    # A record from other inputs (here: a tampered input hash) is recomputed.
    text = out.read_text().replace(rec.input_hash, "0" * len(rec.input_hash))
    out.write_text(text)
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0 and "wrote" in res.output and read_record(out).input_hash == rec.input_hash


def test_unconverged_ccsd_is_a_failed_record(ham_factory, monkeypatch):
    from nqsbench.methods import compute, get
    from nqsbench.records import CCSDSettings

    geom = geometry("h-chain", (1, 1, 2), d=2.4)
    ham = ham_factory("h-chain", (1, 1, 2), d=2.4)
    monkeypatch.setattr(kpoint, "_CC_MEMO", {})
    rec = compute(get("ccsd"), geom, CCSDSettings(max_cycle=1), ham=ham)
    assert not rec.converged and "did not converge" in rec.failure
    assert rec.energy_per_cell is None and rec.bands == []


def test_dmrg_equals_exact_on_h_chain_nk4(ham_factory):
    """block2 DMRG on the real Γ supercell of the H chain N_k = 4 (8 orbitals) = exact to 1e-6 Ha."""
    pytest.importorskip("pyblock2")
    from nqsbench.exact import ExactDiagonalization
    from nqsbench.runners.dmrg import run_dmrg

    geom = geometry("h-chain", (1, 1, 4), d=2.6)
    ham = ham_factory("h-chain", (1, 1, 4), d=2.6)
    ed = ExactDiagonalization(ham, bands=False).run()
    res = run_dmrg(geom, ham, {"schedule": [[100, 4, 1e-5], [250, 4, 0.0]], "reverse_bond_dims": [150, 100]})
    assert res.converged
    assert abs(res.e_supercell_raw - (ed.e_ground + ham.constant)) < 1e-6
    assert res.energy_error < 1e-6


def test_dmrg_schedule_follows_max_bond_dim():
    """``max_bond_dim`` alone sets the schedule and the reverse sweeps (it used to change only the
    failure message while the sweeps stayed at M = 500); the defaults and their hash are unchanged;
    a schedule that disagrees with it is refused with a message naming both."""
    from pydantic import ValidationError

    from nqsbench.methods import get
    from nqsbench.records import DMRGSettings

    assert get("dmrg").settings_from().settings_hash() == DMRGSettings().settings_hash() == "8f160b7ffe9aa1f2"
    assert DMRGSettings(max_bond_dim=500) == DMRGSettings()
    s = get("dmrg").settings_from(max_bond_dim=1500)
    assert [r[0] for r in s.schedule] == [50, 100, 250, 500, 1000, 1500] and s.schedule[-1] == (1500, 6, 0.0)
    assert s.reverse_bond_dims == (1200, 900, 600, 450, 300)
    assert DMRGSettings(schedule=((100, 4, 1e-5), (250, 4, 0.0)), reverse_bond_dims=(150,)).max_bond_dim == 250
    with pytest.raises(ValidationError, match="max_bond_dim 800 is not the schedule's largest bond dimension 500"):
        DMRGSettings(max_bond_dim=800, schedule=DMRGSettings().schedule)
    with pytest.raises(ValidationError, match="reverse_bond_dims must be below max_bond_dim 300"):
        DMRGSettings(max_bond_dim=300, reverse_bond_dims=(400,))


def test_dmrg_without_block2_names_the_extra(ham_factory, monkeypatch):
    import builtins

    from nqsbench.runners import dmrg

    real_import = builtins.__import__

    def fake_import(name, *args, **kwargs):
        if name.startswith("pyblock2"):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", fake_import)
    with pytest.raises(dmrg.MissingExtraError, match=r"\.\[dmrg\]"):
        dmrg.run_dmrg(None, None)


def test_pyscf_gets_the_budget_on_top_of_what_the_process_holds(ham_factory, monkeypatch):
    """PySCF compares its max_memory with the process's resident size: a process that already
    holds 6 GB (a long test session, a suite worker) must still run a KMP2 that fits (PySCF's
    default 4000 MB refused it in CI)."""
    import pyscf.lib

    from nqsbench import catalog, config
    from nqsbench.runners import kpoint
    from nqsbench.runners.kpoint import mp2_corr_per_cell, run_mp2

    monkeypatch.setattr(pyscf.lib, "current_memory", lambda: (6000.0, 6000.0))
    geom = catalog.load("h-chain").geometry(kmesh=(1, 1, 3))
    ham = ham_factory("h-chain", (1, 1, 3))
    res = run_mp2(geom, ham)
    assert res.converged and abs(res.e_corr_per_cell - mp2_corr_per_cell(ham)) < 1e-9
    assert kpoint.pyscf_max_memory_mb() == 6000.0 + 1000.0 * config.memory_gb()
    monkeypatch.setattr(kpoint, "pyscf_max_memory_mb", lambda: 4000.0)     # PySCF's default: refused
    with pytest.raises(MemoryError, match="Insufficient memory"):
        run_mp2(geom, ham)


@pytest.mark.parametrize("system,kmesh", [("h-chain", (1, 1, 3)), ("lih", (2, 1, 1))])
def test_mp2_from_our_integrals_equals_pyscf_kmp2(ham_factory, system, kmesh):
    """The integral-based MP2 used for 2D cells equals PySCF's KMP2 where PySCF has one."""
    from nqsbench import catalog
    from nqsbench.runners.kpoint import mp2_corr_per_cell, run_mp2

    geom = catalog.load(system).geometry(kmesh=kmesh)
    ham = ham_factory(system, kmesh)
    assert abs(run_mp2(geom, ham).e_corr_per_cell - mp2_corr_per_cell(ham)) < 1e-9
