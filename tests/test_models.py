"""Models as plug-ins (issue 15): the registry, NNBF against brute force and HF, parameter files,
a toy model added through the registry alone, and the plateau criterion."""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Literal

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from typer.testing import CliRunner

from nqsbench.cli import app
from nqsbench.nqs import FermionHamiltonian, Sector, make_local_energy, models
from nqsbench.nqs import bruteforce as bf
from nqsbench.nqs.convergence import plateau
from nqsbench.nqs.models.base import LogRatio, ProductRatio
from nqsbench.nqs.models.nnbf import NNBF
from nqsbench.nqs.results import load_pytree, save_pytree
from nqsbench.records import _MODEL_SETTINGS, ModelSettings, NQSSettings, ResultRecord, read_record
from conftest import Kill, get_ham, hchain

runner = CliRunner()


def nnbf_for(ham, init_scale=0.3, layers=1, seed=0):
    sec = Sector.from_hamiltonian(ham)
    model = models.build({"kind": "nnbf", "init_scale": init_scale, "layers": layers}, sec)
    params = model.init(jax.random.PRNGKey(seed))
    # move the orbitals off HF too, so every part of Φ(x) is exercised
    rng = np.random.default_rng(seed)
    orb = params["params"]["orbitals"]
    params["params"]["orbitals"] = orb + 0.3 * (rng.normal(size=orb.shape) + 1j * rng.normal(size=orb.shape))
    return sec, model, params


# ----------------------------------------------------------------------------- registry
def test_builtin_models_registered_with_typed_settings():
    assert models.names()[:2] == ["rbm", "nnbf"]
    s = models.settings({"kind": "nnbf", "width": 2})
    assert type(s).__name__ == "Settings" and s.width == 2 and s.layers == 1
    with pytest.raises(Exception, match="extra"):
        models.settings({"kind": "nnbf", "alpha": 2})
    with pytest.raises(Exception, match="unknown; available: rbm, nnbf"):
        models.get("transformer")
    # recorded and hashed: another model option is another settings hash
    from nqsbench.methods.nqs import nqs_settings

    a, b = nqs_settings(model={"kind": "nnbf"}), nqs_settings(model={"kind": "nnbf", "width": 2})
    assert a.settings_hash() != b.settings_hash()
    again = NQSSettings.model_validate(json.loads(json.dumps(b.model_dump(mode="json"))))
    assert again.settings_hash() == b.settings_hash() and again.model.width == 2


def test_rbm_bias_option_sets_the_hf_start_and_keeps_old_hashes():
    """``bias`` (the hf start's visible bias) is recorded and hashed when set; at its default it
    is left out of the dump, so a record made before the option existed has the same hash."""
    from nqsbench.methods.nqs import nqs_settings

    default = nqs_settings(model={"kind": "rbm", "alpha": 2.0})
    explicit = nqs_settings(model={"kind": "rbm", "alpha": 2.0, "bias": 0.5})
    assert "bias" not in default.model_dump(mode="json")["model"]
    assert default.settings_hash() == explicit.settings_hash()
    strong = nqs_settings(model={"kind": "rbm", "alpha": 2.0, "bias": 2.0})
    assert strong.settings_hash() != default.settings_hash()
    again = NQSSettings.model_validate(json.loads(json.dumps(strong.model_dump(mode="json"))))
    assert again.model.bias == 2.0 and again.settings_hash() == strong.settings_hash()
    sec = Sector.from_hamiltonian(hchain(2))
    a = models.build(strong.model, sec).init(jax.random.PRNGKey(0), sec.hf_config)["a"]
    np.testing.assert_array_equal(np.asarray(a), 2.0 * (2.0 * sec.hf_config - 1.0))
    with pytest.raises(Exception, match="greater than 0"):
        models.settings({"kind": "rbm", "bias": 0})


def test_unregistered_model_kind_still_parses_with_the_same_hash():
    from nqsbench.methods.nqs import nqs_settings

    s = nqs_settings(model={"kind": "nnbf", "width": 3})
    d = s.model_dump(mode="json")
    d["model"]["kind"] = "someone-elses"
    parsed = NQSSettings.model_validate(d)
    assert type(parsed.model) is ModelSettings and parsed.model.width == 3
    assert parsed.settings_hash() == NQSSettings.model_validate(d).settings_hash()


def test_fast_paths_declared_by_protocols():
    sec = Sector.from_hamiltonian(hchain(2))
    rbm, nnbf = models.build("rbm", sec), models.build("nnbf", sec)
    assert isinstance(rbm, ProductRatio) and isinstance(rbm, LogRatio)
    assert isinstance(nnbf, LogRatio) and not isinstance(nnbf, ProductRatio)


# ----------------------------------------------------------------------------- NNBF physics
@pytest.mark.parametrize("system,kmesh", [("h-chain", (1, 1, 2)), ("lih", (1, 1, 1))])
def test_nnbf_at_zero_backflow_is_the_hf_determinant(system, kmesh):
    """init_scale = 0: ψ is the HF determinant, its local energy at the HF configuration is
    PySCF's KRHF energy (exxdiv=None, supercell) to 1e-10 Ha, and ψ vanishes elsewhere."""
    ham = get_ham(system, kmesh) if system != "h-chain" else hchain(2)
    sec = Sector.from_hamiltonian(ham)
    model = models.build({"kind": "nnbf", "init_scale": 0.0}, sec)
    params = model.init(jax.random.PRNGKey(1), reference=sec.hf_config)
    basis = sec.enumerate()
    psi = np.exp(np.asarray(model.log_psi(params, basis)))
    is_hf = (basis == sec.hf_config).all(1)
    assert is_hf.sum() == 1 and np.allclose(psi[is_hf], 1.0, atol=1e-14) and np.all(psi[~is_hf] == 0)
    eloc = make_local_energy(FermionHamiltonian(ham, sec), model, chunk_size=8)
    e = complex(np.asarray(eloc(params, sec.hf_config[None]))[0])
    assert abs(e.real - ham.e_hf * ham.nk) < 1e-10 and abs(e.imag) < 1e-12


def test_auto_defaults_follow_the_system_size():
    """``alpha = "auto"`` and ``init = "auto"``: α = 4 (where the sector is no smaller than its
    parameters) and the random start up to 16 spin-orbitals, α = 2 and the hf start above; given
    values pass through."""
    from types import SimpleNamespace

    from nqsbench.nqs.models.base import resolve_init

    assert [resolve_init("auto", n) for n in (8, 16, 24, 96)] == ["random", "random", "hf", "hf"]
    assert resolve_init("hf", 8) == "hf" and resolve_init("random", 96) == "random"
    rbm = models.settings({"kind": "rbm"})
    assert rbm.alpha == "auto"
    # α = 4 needs a small system whose sector has at least as many configurations as its parameters
    # (1 104 at 16 spin-orbitals)
    sizes = [(16, 1236), (16, 225), (24, 142376)]
    assert [models.build(rbm, SimpleNamespace(n_spin_orbitals=n, dim=lambda d=d: d)).alpha
            for n, d in sizes] == [4.0, 2.0, 2.0]
    assert models.build(models.settings({"kind": "rbm", "alpha": 3}), SimpleNamespace(n_spin_orbitals=8)).alpha == 3.0


def test_nnbf_random_start_spreads_the_orbitals_and_hf_start_is_hf():
    """The NNBF's hf start has Φ₀ = the HF unit columns; its random start (no reference) adds
    complex noise of std RANDOM_ORBITAL_SCALE to every entry, the same for the same key."""
    from nqsbench.nqs.models.nnbf import RANDOM_ORBITAL_SCALE

    sec = Sector.from_hamiltonian(hchain(2))
    model = models.build({"kind": "nnbf"}, sec)
    hf = np.asarray(model.init(jax.random.PRNGKey(5), reference=sec.hf_config)["params"]["orbitals"])
    ref = np.zeros_like(hf)
    ref[np.flatnonzero(sec.hf_config), np.arange(sec.n_electrons)] = 1.0
    np.testing.assert_array_equal(hf, ref)
    rnd = np.asarray(model.init(jax.random.PRNGKey(5))["params"]["orbitals"])
    np.testing.assert_array_equal(rnd, np.asarray(model.init(jax.random.PRNGKey(5))["params"]["orbitals"]))
    spread = np.std(np.concatenate([(rnd - ref).real.ravel(), (rnd - ref).imag.ravel()]))
    assert 0.5 * RANDOM_ORBITAL_SCALE < spread < 1.5 * RANDOM_ORBITAL_SCALE


@pytest.mark.parametrize("nk,layers", [(2, 1), (3, 2)])
def test_nnbf_local_energy_matches_bruteforce(nk, layers):
    """E_loc(x) through the backflow's low-rank fast path = (H ψ)(x)/ψ(x) with H built by brute
    force (nothing shared with the local-energy code but the integrals)."""
    ham = hchain(nk)
    sec, model, params = nnbf_for(ham, layers=layers, seed=nk)
    basis = bf.sector_basis(ham)
    h = bf.sector_matrix(ham, basis)
    psi = np.exp(np.asarray(model.log_psi(params, basis)))
    ref = (h @ psi) / psi
    eloc = make_local_energy(FermionHamiltonian(ham, sec), model, chunk_size=16)
    pick = np.random.default_rng(nk).choice(len(basis), size=min(len(basis), 40), replace=False)
    np.testing.assert_allclose(np.asarray(eloc(params, basis[pick])), ref[pick], rtol=1e-10, atol=0)


def test_nnbf_rows_equal_the_full_flax_backflow():
    """log ψ from the occupied rows only = log det of the full flax Φ(x) at those rows."""
    sec, model, params = nnbf_for(hchain(2), layers=2)
    xs = sec.enumerate()
    full = np.asarray(model.module.apply(params, jnp.asarray(xs, dtype=jnp.complex128)))
    ref = [np.log(np.linalg.det(full[i][np.flatnonzero(x)])) for i, x in enumerate(xs)]
    got = np.asarray(model.log_psi(params, xs))
    np.testing.assert_allclose(np.exp(got), np.exp(ref), rtol=1e-11)


def test_nnbf_holomorphic_jacobian_matches_finite_differences():
    from jax.flatten_util import ravel_pytree

    from nqsbench.nqs.optimizer import jacobian

    sec, model, params = nnbf_for(hchain(2))
    x = sec.enumerate()[:3]
    o = np.asarray(jacobian(model, params, x))
    flat, unravel = ravel_pytree(params)
    for k in (0, 17, len(flat) - 1):
        eps = 1e-6
        dp = np.zeros(len(flat), complex)
        dp[k] = eps
        fd = (np.asarray(model.log_psi(unravel(flat + dp), x)) - np.asarray(model.log_psi(unravel(flat - dp), x))) / (2 * eps)
        np.testing.assert_allclose(o[:, k], fd, rtol=1e-6, atol=1e-8)


# ----------------------------------------------------------------------------- parameter files
def test_nested_pytree_round_trips_bit_for_bit(tmp_path):
    sec, model, params = nnbf_for(hchain(2), layers=2)
    tree = {"model": params, "extra": [jnp.arange(3.0), {"deep": jnp.asarray([1e-300 + 2j, -0.0])}]}
    path = save_pytree(tree, tmp_path / "p.msgpack", {"note": "x"})
    back, meta = load_pytree(path, template=tree)
    assert meta == {"note": "x"}
    assert jax.tree_util.tree_structure(back) == jax.tree_util.tree_structure(tree)
    for a, b in zip(jax.tree_util.tree_leaves(tree), jax.tree_util.tree_leaves(back)):
        a, b = np.asarray(a), np.asarray(b)
        assert a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()
    assert b"pickle" not in path.read_bytes()[:0]  # msgpack: no pickle opcode stream is ever loaded


# ----------------------------------------------------------------------------- a toy plug-in
@dataclass(frozen=True)
class Jastrow:
    """log ψ = a·x + xᵀ J x (complex): a model nqsbench has never seen."""
    n: int

    def init(self, key, reference=None):
        k1, k2 = jax.random.split(key)
        a = 0.5 * (2.0 * jnp.asarray(reference, dtype=jnp.float64) - 1.0) if reference is not None else \
            0.01 * jax.random.normal(k1, (self.n,))
        return {"a": a.astype(jnp.complex128),
                "J": {"w": 0.01 * jax.random.normal(k2, (self.n, self.n)).astype(jnp.complex128)}}

    def log_psi(self, params, x):
        x = jnp.asarray(x).astype(jnp.complex128)
        return x @ params["a"] + jnp.einsum("...i,ij,...j->...", x, params["J"]["w"], x)


class JastrowSettings(ModelSettings):
    model_config = {"extra": "forbid"}
    kind: Literal["toy-jastrow"] = "toy-jastrow"


@pytest.fixture
def toy_model():
    spec = models.register(JastrowSettings, lambda s, sector: Jastrow(sector.n_spin_orbitals), "test model")
    yield spec
    models._MODELS.pop("toy-jastrow", None)
    _MODEL_SETTINGS.models.pop("toy-jastrow", None)


def test_toy_model_runs_run_bands_and_suite_through_the_registry_alone(toy_model, tmp_path, monkeypatch):
    monkeypatch.setenv("NQSBENCH_RESULTS", str(tmp_path / "results"))
    base = ["h-chain", "--param", "d=2.2", "--kmesh", "1,1,2"]
    res = runner.invoke(app, ["run", *base, "--model", "toy-jastrow", "--steps", "6", "--no-progress"])
    assert res.exit_code == 0, res.output
    rec_path = tmp_path / "results" / "h-chain" / "d2.2_k1x1x2" / "nqs-toy-jastrow-exact-s0.json"
    rec = read_record(rec_path, ResultRecord)
    assert rec.method == "nqs-toy-jastrow" and rec.settings.model.kind == "toy-jastrow" and rec.n_steps == 6
    assert rec_path.with_name(rec_path.stem + ".params.msgpack").exists()
    res = runner.invoke(app, ["bands", *base, "--model", "toy-jastrow", "--steps", "6", "--no-control", "--no-plot"])
    assert res.exit_code == 0, res.output
    assert (rec_path.parent / "nqs-toy-jastrow-exact-s0.bands-krylov8-exact.json").exists()
    suite = tmp_path / "toy.toml"
    suite.write_text('name = "toy"\ndescription = "toy model"\n[[tasks]]\nkind = "nqs"\nsystem = "h-chain"\n'
                     'kmesh = [1, 1, 2]\nparams = { d = [2.2] }\nmodel = { kind = "toy-jastrow" }\nsteps = 5\n'
                     'label = "suite"\n')
    res = runner.invoke(app, ["suite", str(suite), "--jobs", "1"])
    assert res.exit_code == 0, res.output
    assert (rec_path.parent / "nqs-toy-jastrow-exact-s0-suite.json").exists()


def test_unknown_model_and_bad_model_option_one_line_exit_2(tmp_path):
    base = ["run", "h-chain", "--kmesh", "1,1,2", "--no-progress", "--out", str(tmp_path / "r.json")]
    res = runner.invoke(app, [*base, "--model", "transformer"])
    assert res.exit_code == 2 and "--model 'transformer': unknown model; available: rbm, nnbf" in res.output
    res = runner.invoke(app, [*base, "--model", "nnbf", "--model-opt", "layers=9"])
    assert res.exit_code == 2 and "--model-opt layers 9" in res.output and "(model 'nnbf')" in res.output
    res = runner.invoke(app, [*base, "--model", "nnbf", "--alpha", "3"])
    assert res.exit_code == 2 and "--alpha 3.0: the RBM's" in res.output
    res = runner.invoke(app, [*base, "--steps", "many"])
    assert res.exit_code == 2 and "--steps 'many'" in res.output
    assert not (tmp_path / "r.json").exists()


# ----------------------------------------------------------------------------- convergence
def test_plateau_criterion_on_synthetic_traces():
    rng = np.random.default_rng(0)
    flat = -1.0 + 1e-3 * rng.normal(size=200)                  # Monte Carlo noise, no drift
    assert plateau(flat, window=50, tol_mha=0.05).converged
    falling = -1.0 - 1e-5 * np.arange(200)                     # 0.5 mHa per window, exact sampling
    v = plateau(falling, window=50, tol_mha=0.05)
    assert not v.converged and "still moving" in v.reason
    assert not plateau(flat[:60], window=50).converged       # fewer than two windows


def test_plateau_verdict_in_records(tmp_path):
    """A 5-step run is not converged; an auto run that ends by the criterion is."""
    out5, auto = tmp_path / "five.json", tmp_path / "auto.json"
    base = ["run", "h-chain", "--param", "d=2.2", "--kmesh", "1,1,2", "--no-progress"]
    res = runner.invoke(app, [*base, "--steps", "5", "--out", str(out5)])
    assert res.exit_code == 0 and "NOT CONVERGED" in res.output, res.output
    rec = read_record(out5, ResultRecord)
    assert not rec.converged and not rec.failed and "fewer than two windows" in rec.convergence
    res = runner.invoke(app, [*base, "--out", str(auto)])
    assert res.exit_code == 0 and "converged: plateau" in res.output, res.output
    rec = read_record(auto, ResultRecord)
    assert rec.converged and rec.settings.steps == "auto" and rec.n_steps < rec.settings.max_steps
    assert rec.n_steps >= 2 * rec.settings.convergence.window


def test_auto_steps_halves_the_rate_on_plateaus_and_resumes_exactly(tmp_path):
    """steps = auto with Markov chains: each plateau above lr_final halves the learning rate (the
    trace records it), a plateau at lr_final stops the run; a run killed and resumed from its
    checkpoint takes the same decisions (the rate is checkpointed, the segment is in the trace)."""
    from nqsbench.nqs import NQS, SR, Checkpoint, MetropolisSampler
    from nqsbench.nqs.convergence import AutoSteps

    ham = hchain(2, d=2.2)

    def driver():
        smp = MetropolisSampler(Sector.from_hamiltonian(ham), n_chains=8, n_samples=64, n_discard_per_chain=2)
        return NQS(ham, sampler=smp, optimizer=SR(0.05, 1e-2), seed=3)

    def auto():   # tiny windows and a wide tolerance so that plateaus come within a few steps
        return AutoSteps(window=5, tol_mha=50.0, sigmas=2.0, decay=0.5, lr_final=0.0125, check_every=1)

    ref_auto = auto()
    ref = driver().run(200, callbacks=[ref_auto])
    lr = np.asarray(ref.trace["lr"])
    assert ref_auto.verdict is not None and ref.stopped_early and 18 < ref.step < 200
    assert list(np.unique(lr)[::-1]) == [0.05, 0.025, 0.0125]       # halved twice, then stopped
    assert ref.learning_rate == pytest.approx(0.0125)

    with pytest.raises(KeyboardInterrupt):
        driver().run(200, callbacks=[auto(), Checkpoint(tmp_path, every_steps=1), Kill(17)])
    resumed = driver().run(200, callbacks=[auto()], resume=tmp_path)
    assert resumed.step == ref.step
    np.testing.assert_array_equal(resumed.trace_arrays["energy"], ref.trace_arrays["energy"])
    np.testing.assert_array_equal(resumed.trace_arrays["lr"], ref.trace_arrays["lr"])


def test_models_listing_plain_and_json():
    res = runner.invoke(app, ["models", "--json"])
    assert res.exit_code == 0, res.output
    rows = {m["name"]: m for m in json.loads(res.output)["models"]}
    assert rows["rbm"]["options"]["alpha"]["default"] == "auto"
    assert rows["nnbf"]["options"]["width"]["default"] == 1.0 and rows["nnbf"]["optimizer_defaults"]["exact"]["lr"] == 0.1
    res = runner.invoke(app, ["models"], terminal_width=80)
    assert res.exit_code == 0 and "nnbf" in res.output and "init_scale" in res.output


def test_nnbf_band_estimators_agree_through_its_fast_path():
    """Bands of an NNBF state: the Monte Carlo code path (the backflow's low-rank log-ratios of
    chained flips, q = p cancelling) with every configuration weighted by |ψ|² equals the exact
    estimator on the state vector to 1e-8 Ha."""
    from nqsbench.nqs.excitations import nqs_vector, subspace_exact, subspace_monte_carlo

    ham = hchain(2, 2.2)
    sec, model, params = nnbf_for(ham, init_scale=0.2, seed=5)
    psi, _ = nqs_vector(ham, model, params, sec)
    ref = subspace_exact(ham, psi, k0=sec.k_total)
    configs = sec.enumerate()
    w = np.exp(2 * np.real(np.asarray(model.log_psi(params, configs))))
    mc = subspace_monte_carlo(ham, model, params, configs[None], weights=(w / w.sum())[None], sector=sec,
                              n_blocks=4)
    assert abs(mc.e_ground - ref.e_ground) < 1e-8
    for a, b in zip(mc.bands(ham), ref.bands(ham)):
        for branch in ("electron", "hole"):
            np.testing.assert_allclose(a[branch], b[branch], atol=1e-8)
