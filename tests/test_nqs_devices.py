"""The sample batch split across devices (issue 14): two CPU devices
(``XLA_FLAGS=--xla_force_host_platform_device_count=2``) give the energy trace of one, with plain
and with semistochastic Markov chains (the set D's rows are computed whole, beside the split
samples)."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

SCRIPT = """
import json, sys
sys.path.insert(0, {tests!r})
import jax
from conftest import hchain
from nqsbench.nqs.defaults import make_driver
d = make_driver(hchain(2), sampler="mcmc", n_samples=256, n_chains=16, seed=5, n_steps=4,
                deterministic={deterministic})
d.run(4)
print(json.dumps({{"devices": len(jax.devices()), "sharded": d._sample_mesh() is not None,
                  "energy": d.trace["energy"] + [d.energy]}}))
"""


def _trace(n_devices: int, deterministic: int = 0) -> dict:
    env = {**os.environ, "XLA_FLAGS": f"--xla_force_host_platform_device_count={n_devices}"}
    code = SCRIPT.format(tests=str(Path(__file__).parent), deterministic=deterministic)
    p = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-2000:]
    return json.loads(p.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("deterministic", [0, 6])
def test_one_and_two_devices_give_the_same_energy_trace(deterministic):
    one, two = _trace(1, deterministic), _trace(2, deterministic)
    assert (one["devices"], one["sharded"]) == (1, False)
    assert (two["devices"], two["sharded"]) == (2, True)
    np.testing.assert_allclose(two["energy"], one["energy"], rtol=1e-12, atol=0)
