"""Krylov-extended excitation subspace (issue 17): block Lanczos from the paper's vectors, checked
against an independent block Lanczos, dense diagonalization, and the order-0 subspace."""
from __future__ import annotations

import numpy as np
import pytest
from typer.testing import CliRunner

from conftest import hchain
from nqsbench.cli import app
from nqsbench.exact import ExactDiagonalization, SectorBlock, apply_ladder, krylov_roots
from nqsbench.nqs.excitations import krylov_subspace, solve_subspace, subspace_exact
from nqsbench.records import BandRecord, read_record

runner = CliRunner()


def ground(ham):
    ed = ExactDiagonalization(ham, n_roots=2, bands=False).run()
    return (ed.psi_singlet, ed.k_singlet) if ed.psi_singlet is not None else (ed.psi_ground, ed.k_ground)


def starts(ham, psi, k0, k, create=True):
    """(source sector, target sector, the paper's vectors c†_{pk↑}|Ψ⟩ (or c_{pk↑}|Ψ⟩))."""
    src = SectorBlock(ham, ham.n_alpha, ham.n_beta, k0)
    dst = SectorBlock(ham, ham.n_alpha + (1 if create else -1), ham.n_beta,
                      ham.k_add(k0, k) if create else ham.k_sub(k0, k))
    vecs = np.stack([apply_ladder(src, psi, k * ham.n_orb + p, 0, create, dst) for p in range(ham.n_orb)], axis=1)
    return src, dst, vecs


@pytest.mark.parametrize("order", [1, 2, 3])
@pytest.mark.parametrize("create", [True, False])
def test_order_n_is_n_plus_1_block_lanczos_steps(order, create):
    """Ritz energies and spectral weights of order n = those of exact.krylov_roots (QR-based block
    Lanczos, another implementation) stopped after n + 1 blocks, from the same start vectors."""
    ham = hchain(4, 2.6)
    psi, k0 = ground(ham)
    _, dst, vecs = starts(ham, psi, k0, 1, create)
    e, z, _, r = krylov_subspace(dst.matvec, vecs, 1.0, order, s_threshold=1e-12)
    theta, weights, _ = krylov_roots(dst.matvec, vecs, 1, max_blocks=order + 1)
    assert r == len(theta) == (order + 1) * ham.n_orb
    np.testing.assert_allclose(e, theta, atol=1e-10, rtol=0)
    np.testing.assert_allclose(z, weights.sum(axis=1), atol=1e-10, rtol=0)


def test_order_0_is_the_subspace():
    ham = hchain(4, 1.8)
    psi, k0 = ground(ham)
    _, dst, vecs = starts(ham, psi, k0, 0)
    s_mat = vecs.conj().T @ vecs
    h_mat = vecs.conj().T @ np.stack([dst.matvec(v) for v in vecs.T], axis=1)
    e0, z0, _, r0 = solve_subspace(s_mat, h_mat, 1e-3)
    e, z, _, r = krylov_subspace(dst.matvec, vecs, 1.0, 0, 1e-3)
    assert r == r0
    np.testing.assert_allclose(e, e0, atol=1e-12, rtol=0)
    np.testing.assert_allclose(z, z0, atol=1e-12, rtol=0)


def test_no_start_direction_gives_an_empty_space():
    """c† on orbitals the state fills: S = 0, nothing is kept, no roots (as the subspace does)."""
    e, z, s, r = krylov_subspace(lambda v: 2.0 * v, np.zeros((5, 2), complex), 1.0, 3)
    assert r == 0 and e.shape == z.shape == (0,) and np.all(s == 0)
    e0, z0, _, r0 = solve_subspace(np.zeros((2, 2)), np.zeros((2, 2)), 1e-3)
    assert r0 == 0 and e0.shape == (0,)


@pytest.mark.parametrize("nk, order", [(1, 1), (2, 8)])
def test_krylov_space_that_spans_the_sector_gives_exact_energies(nk, order):
    """H chain N_k = 1 (2 electrons; N+1 sector of dimension 2) and N_k = 2 (4 electrons, the
    doublet part of a 12-dimensional N+1 sector): the Krylov space reaches an invariant subspace,
    so every Ritz energy is an eigenvalue of the sector's dense matrix (1e-10 Ha) and the lowest
    state that c† reaches is found; E(N) from the exact state is E0."""
    ham = hchain(nk, 1.8)
    psi, k0 = ground(ham)
    sb = subspace_exact(ham, psi, k0=k0, order=order, s_threshold=1e-12)
    e0 = float(np.vdot(psi, SectorBlock(ham, ham.n_alpha, ham.n_beta, k0).matvec(psi)).real)
    assert abs(sb.e_ground - e0) < 1e-10 and abs(sb.meta["e_state"] - e0) < 1e-10
    for br in sb.electron + sb.hole:
        n_t = ham.n_alpha + (1 if br.create else -1)
        kt = ham.k_add(k0, br.k) if br.create else ham.k_sub(k0, br.k)
        spectrum = np.linalg.eigvalsh(SectorBlock(ham, n_t, ham.n_beta, kt).dense_matrix())
        dist = np.abs(br.e_total[:, None] - spectrum[None, :]).min(axis=1)
        assert dist.max() < 1e-10, (br.k, br.create, dist)
        # sum rule: the roots span every c†_p|Ψ⟩, so Σ_j Z_j = Σ_p ⟨φ_p|φ_p⟩ = tr S
        assert abs(br.weights.sum() - br.s_eigenvalues.sum()) < 1e-10


def test_krylov_bands_converge_to_exact_and_beat_eom_on_the_exact_state():
    """The control at d = 2.6 (N_k = 4): band MAE against the exact bands falls with the order,
    order 8 within 10 meV (EOM-CCSD: 151 meV)."""
    from nqsbench.bandstructure import band_errors

    ham = hchain(4, 2.6)
    psi, k0 = ground(ham)
    exact_bands = ExactDiagonalization(ham, n_roots=2, bands=True).run().summary()["bands"]
    mae = [band_errors(subspace_exact(ham, psi, k0=k0, order=n).bands(ham), exact_bands)["mae_meV"]
           for n in (0, 2, 8)]
    assert mae[0] > 1000 > mae[1] > mae[2] and mae[2] < 10, mae


def test_cli_krylov_record(tmp_path):
    res = runner.invoke(app, ["bands", "h-chain", "-k", "1,1,2", "--steps", "40", "--method", "krylov", "--order", "2",
                              "--no-plot", "--results", str(tmp_path)])
    assert res.exit_code == 0, res.output
    (path,) = tmp_path.rglob("*.bands-krylov2-exact.json")
    rec = read_record(path, BandRecord)
    assert rec.band_method == "krylov" and rec.order == 2 and rec.settings.order == 2 and rec.converged
    assert rec.krylov_energy_per_cell <= rec.energy_per_cell + 1e-12       # a Lanczos-improved E(N)
    assert all(0 < w <= 1 + 1e-9 for b in rec.bands for w in b.electron_weight + b.hole_weight)
    # no --method: krylov of the default order with the exact estimator, on the same ground state
    res = runner.invoke(app, ["bands", "h-chain", "-k", "1,1,2", "--steps", "40", "--no-plot", "--results", str(tmp_path)])
    assert res.exit_code == 0, res.output
    (path,) = tmp_path.rglob("*.bands-krylov8-exact.json")
    # the one ground state both made (bands make theirs of H + 0.1 S², the lowest singlet)
    assert [p.name for p in tmp_path.rglob("*.params.msgpack")] == ["nqs-rbm-exact-s0-s2pen0.1.params.msgpack"]


@pytest.mark.parametrize("args, says", [
    (["--method", "subspace", "--order", "2"], "--order 2: only --method krylov has an order"),
    (["--method", "krylov", "--estimator", "mc", "--order", "2"], "--order 2: the Monte Carlo krylov estimator has order 1 only"),
    (["--method", "lanczos"], "--method 'lanczos': choose 'subspace', 'krylov' or 'sector'"),
])
def test_cli_refusals(tmp_path, args, says):
    res = runner.invoke(app, ["bands", "h-chain", "-k", "1,1,2", *args, "--results", str(tmp_path)])
    assert res.exit_code == 2 and says in res.output and len(res.output.strip().splitlines()) == 1, res.output
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("fields, says", [
    ('band_method = "subspace"\norder = 2', "order 2: only band_method 'krylov' has an order"),
    ('estimator = "monte_carlo"\nband_method = "krylov"\norder = 3',
     "order 3: the Monte Carlo estimator of band_method 'krylov' has order 1 only"),
])
def test_suite_band_method_errors_are_one_line(tmp_path, fields, says):
    (tmp_path / "b.toml").write_text(f'name = "b"\ndescription = "bands"\n[[tasks]]\nkind = "bands"\nsystem = "h-chain"\n'
                                     f'kmesh = [1, 1, 2]\nparams = {{ d = 1.8 }}\n{fields}\n')
    res = runner.invoke(app, ["check", str(tmp_path / "b.toml")])
    assert res.exit_code == 2 and says in res.output and len(res.output.strip().splitlines()) == 1, res.output
