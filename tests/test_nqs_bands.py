"""Excitation-subspace quasiparticle bands (issue 5): identities, estimators, the control."""
from __future__ import annotations

import json
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import hchain
from nqsbench.exact import ExactDiagonalization, SectorBlock
from nqsbench.nqs import RBM, Sector
from nqsbench.nqs.excitations import (nqs_vector, solve_subspace, subspace_exact, subspace_monte_carlo)
from nqsbench.runners.kpoint import run_hf


@dataclass(frozen=True)
class Determinant:
    """A single Slater determinant as a 'model': log ψ = −1e3 · (distance from ``config``)."""
    config: tuple

    def log_psi(self, params, x):
        ref = jnp.asarray(self.config)
        return (-1e3 * jnp.abs(jnp.asarray(x) - ref).sum(-1)).astype(jnp.complex128)


def _hf_vector(ham):
    sec = Sector.from_hamiltonian(ham)
    ed = SectorBlock(ham, ham.n_alpha, ham.n_beta, ham.k0_sector())
    m = ham.n_spatial
    pw = np.int64(1) << np.arange(m)
    hf = sec.hf_config.astype(np.int64)
    full = np.zeros((len(ed.alpha), len(ed.beta)), complex)
    full[ed.alpha.index([hf[:m] @ pw])[0], ed.beta.index([hf[m:] @ pw])[0]] = 1.0
    return ed.from_full(full), sec


def _bands_equal(a, b, tol):
    for x, y in zip(a, b):
        assert x["k"] == y["k"]
        for br in ("electron", "hole"):
            np.testing.assert_allclose(sorted(x[br]), sorted(y[br]), atol=tol, rtol=0)


@pytest.mark.parametrize("nk", [2, 4])
def test_hf_determinant_reproduces_koopmans(nk):
    """A Slater determinant's excitation subspace is spanned by single determinants: its
    energies are E_HF ± Koopmans orbital energies (+ Madelung sector constants), to 1e-8 Ha."""
    ham = hchain(nk, 1.8)
    psi, sec = _hf_vector(ham)
    sb = subspace_exact(ham, psi)
    assert abs(sb.e_ground + ham.constant - ham.e_hf * ham.nk) < 1e-8
    koopmans = run_hf(None, ham).bands
    _bands_equal(sb.bands(ham), koopmans, 1e-8)
    occ = ham.mo_occ > 0
    assert sb.ranks() == {"electron": [int((~o).sum()) for o in occ], "hole": [int(o.sum()) for o in occ]}
    # the Monte Carlo estimator on the same determinant: every sample is the HF configuration
    model = Determinant(tuple(int(v) for v in sec.hf_config))
    xs = np.broadcast_to(sec.hf_config, (8, 2, sec.n_spin_orbitals)).astype(np.int32)
    mc = subspace_monte_carlo(ham, model, None, xs, sector=sec)
    _bands_equal(mc.bands(ham), koopmans, 1e-8)


def test_two_electrons_gamma_subspace_is_exact():
    """H2 per cell, Γ only, minimal basis: c†_{p↑}|Ψ0⟩ (p = σg, σu) spans the (2↑,1↓) sector and
    c_{p↑}|Ψ0⟩ the (0↑,1↓) sector, so the subspace roots are the exact N±1 spectra."""
    ham = hchain(1, 1.8)
    ed = ExactDiagonalization(ham, n_roots=2, bands=False).run()
    sb = subspace_exact(ham, ed.psi_singlet, k0=ed.k_singlet)
    assert abs(sb.e_ground - ed.e_singlet) < 1e-10
    for create, branch in ((True, sb.electron), (False, sb.hole)):
        dst = SectorBlock(ham, ham.n_alpha + (1 if create else -1), ham.n_beta, 0)
        exact = np.linalg.eigvalsh(dst.dense_matrix())
        assert dst.dim == 2 and branch[0].rank == 2
        np.testing.assert_allclose(np.sort(branch[0].e_total), exact, atol=1e-10, rtol=0)


def test_nqs_vector_energy_matches_driver():
    """The NQS amplitudes mapped onto the exact-diagonalization layout give the same ⟨H⟩ as the
    NQS code's own exact expectation (checks the configuration mapping and sign conventions)."""
    from nqsbench.nqs import NQS

    ham = hchain(2, 1.4)
    mf = NQS(ham, sampler="exact", alpha=1.0, seed=4).run(5)
    psi, ed = nqs_vector(ham, mf.model, mf.params)
    e = np.vdot(psi, ed.matvec(psi)).real + ham.constant
    assert abs(e - mf.e_tot) < 1e-9


def test_exact_and_monte_carlo_estimators_agree():
    """Exact sums and jackknife Monte Carlo (i.i.d. samples of |ψ|², 32 blocks) agree within
    4 standard errors for every selected band and for E(N), on a correlated random RBM state."""
    ham = hchain(2, 1.8)
    sec = Sector.from_hamiltonian(ham)
    model = RBM(sec.n_spin_orbitals, alpha=1, sigma=0.3, bias=0.5)
    params = model.init(jax.random.PRNGKey(3), reference=sec.hf_config)
    psi, _ = nqs_vector(ham, model, params, sec)
    ex = subspace_exact(ham, psi)
    configs = sec.enumerate()
    lp = np.asarray(model.log_psi(params, configs))
    p = np.exp(2 * (lp.real - lp.real.max()))
    xs = configs[np.random.default_rng(1).choice(len(p), size=(32, 256), p=p / p.sum())]
    lines = []
    mc = subspace_monte_carlo(ham, model, params, xs, sector=sec, log=lines.append)
    assert abs(mc.e_ground - ex.e_ground) < 4 * mc.e_ground_error
    # its progress: the probe's estimate for all 8192 samples × 4 (k, branch) blocks, then each block
    assert lines[0].startswith("subspace mc: ~") and "for 8192 samples × 4 blocks" in lines[0], lines
    assert len(lines) == 5 and lines[-1].startswith("subspace mc: hole k=1 done (8192 samples") and \
        lines[-1].endswith("for the 0 (k, branch) blocks left)"), lines
    n_checked = 0
    for a, b in zip(mc.bands(ham), ex.bands(ham)):
        for br in ("electron", "hole"):
            err = np.asarray(a[f"{br}_error"])
            assert np.all(err > 0)
            assert np.all(np.abs(np.asarray(a[br]) - b[br]) < 4 * err), (a, b)
            n_checked += len(err)
    assert n_checked == 4
    # and the error bar is a real statistical error: far more samples shrink it
    assert max(max(b["electron_error"]) for b in mc.bands(ham)) < 0.05


@dataclass(frozen=True, eq=False)
class Lookup:
    """Any sector vector as a 'model': log ψ(x) looked up by the configuration's bit code."""
    codes: np.ndarray
    logs: np.ndarray

    def log_psi(self, params, x):
        x = jnp.asarray(x)
        code = (x.astype(jnp.int64) * (jnp.int64(1) << jnp.arange(x.shape[-1]))).sum(-1)
        i = jnp.clip(jnp.searchsorted(jnp.asarray(self.codes), code), 0, len(self.codes) - 1)
        return jnp.asarray(self.logs)[i]


def test_monte_carlo_code_path_with_exact_weights_equals_exact_estimator():
    """The exact ground state fed to the Monte Carlo code path (JAX connections, per-sample
    estimators) with every configuration weighted by |ψ|² reproduces the string-space exact
    estimator to 1e-8 Ha: two independent implementations of the control subspace."""
    ham = hchain(2, 2.2)
    ed = ExactDiagonalization(ham, n_roots=2, bands=False).run()
    ref = subspace_exact(ham, ed.psi_singlet, k0=ed.k_singlet)
    sec = Sector.from_hamiltonian(ham, k_total=ed.k_singlet)
    configs = sec.enumerate()
    m = ham.n_spatial
    pw = np.int64(1) << np.arange(m)
    eds = SectorBlock(ham, ham.n_alpha, ham.n_beta, ed.k_singlet)
    full = eds.to_full(ed.psi_singlet)
    amp = full[eds.alpha.index(configs[:, :m].astype(np.int64) @ pw),
               eds.beta.index(configs[:, m:].astype(np.int64) @ pw)]
    codes = configs.astype(np.int64) @ (np.int64(1) << np.arange(2 * m))
    order = np.argsort(codes)
    model = Lookup(codes[order], np.log(np.abs(amp[order]) + 1e-300) + 1j * np.angle(amp[order]))
    w = np.abs(amp) ** 2
    mc = subspace_monte_carlo(ham, model, None, configs[None], weights=(w / w.sum())[None], sector=sec,
                              n_blocks=4)
    assert abs(mc.e_ground - ref.e_ground) < 1e-8
    _bands_equal(mc.bands(ham), ref.bands(ham), 1e-8)


def test_threshold_drops_directions_and_is_reported():
    s = np.diag([1.0, 1e-4, 0.0])
    h = np.diag([2.0, 3.0, 0.0])
    e, z, s_eig, rank = solve_subspace(s, h, 1e-3)
    assert rank == 1 and np.allclose(e, [2.0]) and np.allclose(z, [1.0])
    e, z, s_eig, rank = solve_subspace(s, h, 1e-6)
    assert rank == 2 and np.allclose(e, [2.0, 3.0 / 1e-4])


def test_bands_cli_writes_record_and_figure(tmp_path, monkeypatch):
    """`nqsbench bands` on H chain N_k = 2 (d = 2.2: the ground state is a singlet there; at
    d ≤ 1.8 it is a triplet): record + figure written, errors against exact present, the NQS
    bands within 1.6 mHa (44 meV) of the exact-state subspace for a converged state.

    500 steps: at 300 the state's ⟨S²⟩ depended on the Bloch-orbital gauge of the build (0.0014
    with two BLAS threads, 0.0115 with one); at 500 it is 0.0003 / 0.0025 and the largest band
    error 8.1 / 4.0 meV (measured both ways)."""
    from typer.testing import CliRunner

    from nqsbench.cli import app
    from nqsbench.records import BandRecord, read_record

    monkeypatch.setenv("NQSBENCH_RESULTS", str(tmp_path))
    r = CliRunner().invoke(app, ["bands", "h-chain", "-k", "1,1,2", "-p", "d=2.2", "--steps", "500",
                                  "--method", "subspace"])
    assert r.exit_code == 0, r.output
    path = next(tmp_path.rglob("*.bands-exact.json"))
    rec = read_record(path, BandRecord)
    assert rec.errors["nqs_vs_exact"]["n"] > 0
    assert (path.parent / f"{rec.figure}.png").stat().st_size > 1000
    assert (path.parent / f"{rec.figure}.svg").exists()
    assert rec.ground_state["s2"] < 1e-2
    assert rec.errors["nqs_vs_exact_state_subspace"]["max_meV"] < 44.0
    assert not list(tmp_path.rglob("*.tmp"))


def test_bands_cli_bad_estimator():
    from typer.testing import CliRunner

    from nqsbench.cli import app

    r = CliRunner().invoke(app, ["bands", "h-chain", "--estimator", "magic"])
    assert r.exit_code == 2 and "--estimator" in r.output


def test_monte_carlo_bands_past_exact_diagonalization(tmp_path):
    """The Monte Carlo estimator needs no exact record (it is compared with exact where that exists,
    not computed for it), so it runs past exact diagonalization; the control there is refused in one
    line naming --no-control before any work (H chain N_k = 8: 20.7 M determinants)."""
    from typer.testing import CliRunner

    from nqsbench import catalog
    from nqsbench.cli import app
    from nqsbench.methods.nqs import nqs_settings
    from nqsbench.methods.nqs_bands import bands_settings
    from nqsbench.store import Store

    r = CliRunner().invoke(app, ["bands", "h-chain", "-k", "1,1,8", "--estimator", "mc", "--results",
                                 str(tmp_path / "res8"), "--references", str(tmp_path / "refs8")])
    assert r.exit_code == 2 and "--no-control" in r.output and "20,705,236" in r.output, r.output
    assert not (tmp_path / "res8").exists() or not list((tmp_path / "res8").rglob("*.json"))

    geom = catalog.load("h-chain").geometry({"d": 2.2}, (1, 1, 2))
    store = Store.default(tmp_path / "refs", tmp_path / "res")
    gs = nqs_settings("exact", steps=40)
    store.run("nqs", geom, gs)
    mc = bands_settings(gs, estimator="monte_carlo", samples=256, chains=8, control=False)
    rec = store.run("nqs_bands", geom, mc, force=True).record
    assert "nqs_vs_exact" not in rec.errors and not list((tmp_path / "refs").rglob("exact.json"))
    assert np.isfinite(rec.gap)
    store.run("exact", geom, force=True)
    again = store.run("nqs_bands", geom, mc, force=True).record
    assert again.errors["nqs_vs_exact"]["n"] > 0 and again.gap == rec.gap     # same samples, now compared
