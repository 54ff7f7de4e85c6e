"""The band subspace (:mod:`nqsbench.nqs.excitations`): S and H of {c†_{pk↑}|Ψ⟩}, {c_{pk↑}|Ψ⟩}
for every k and the generalized eigenproblems, for the workload's RBM state Ψ.

``time_band_subspace``: the exact estimator (sums over the N and N±1 sectors), Ψ already mapped
onto the exact-diagonalization layout in setup; ``time_band_krylov``: the same with the Krylov
space of the default order (``bands --method krylov``: order + 1 sector matvecs per vector). ``time_band_subspace_mc``: the Monte Carlo
estimator on the first MC_SAMPLES of the workload's Metropolis samples (32 chains × 4, jackknife
over chains), timed as a user calls it (it jits its per-k estimators inside each call, so
compilation is included). Per sample and (k, branch) it evaluates n_orb² × (connections)
amplitude ratios, far more work than a local energy, hence the small sample count.
"""
from __future__ import annotations

from .common import SystemBenchmark, exact_tier_only, memo, workload

MC_SAMPLES = 128


class BandSubspace(SystemBenchmark):
    number = 1
    rounds = 1
    repeat = (1, 3, 60.0)
    min_run_count = 1
    warmup_time = 0.0

    def setup(self, paths, system):
        from nqsbench.nqs.excitations import nqs_vector

        exact_tier_only(system)
        self.w = w = workload(system, paths[system])
        self.psi = memo(("psi", system), lambda: nqs_vector(w.ham, w.model, w.params, w.sector)[0])
        self.xs = w.samples[:MC_SAMPLES].reshape(32, -1, w.samples.shape[-1])

    def time_band_subspace(self, paths, system):
        from nqsbench.nqs.excitations import subspace_exact

        subspace_exact(self.w.ham, self.psi)

    def time_band_krylov(self, paths, system):
        from nqsbench.methods.nqs_bands import DEFAULT_KRYLOV_ORDER
        from nqsbench.nqs.excitations import subspace_exact

        subspace_exact(self.w.ham, self.psi, order=DEFAULT_KRYLOV_ORDER)

    def time_band_subspace_mc(self, paths, system):
        from nqsbench.nqs.excitations import subspace_monte_carlo

        subspace_monte_carlo(self.w.ham, self.w.model, self.w.params, self.xs, sector=self.w.sector)
