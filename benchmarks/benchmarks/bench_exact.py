"""Exact ground state: Davidson in every (N↑, N↓, K) sector of the neutral cell (no bands)."""
from __future__ import annotations

from .common import SystemBenchmark, exact_tier_only, hamiltonian


class TimeExactGroundState(SystemBenchmark):
    number = 1
    rounds = 1
    repeat = (1, 3, 120.0)        # H chain N_k = 6: ~30 s a call
    min_run_count = 1
    warmup_time = 0.0

    def setup(self, paths, system):
        exact_tier_only(system)
        self.ham = hamiltonian(system, paths[system])

    def time_ground_state(self, paths, system):
        from nqsbench.exact import ExactDiagonalization

        ExactDiagonalization(self.ham, n_roots=1, bands=False).run()
