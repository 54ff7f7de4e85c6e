"""Momentum-grouped doubles: the same connections (each once) as the masked enumeration."""

import jax
import jax.numpy as jnp
import numpy as np

from nqsbench.nqs import RBM, FermionHamiltonian, Sector, make_local_energy
from nqsbench.nqs.operator import make_connections
from conftest import hchain




def test_grouped_singles_and_doubles_equal_masked():
    ham = hchain(3)
    sec = Sector.from_hamiltonian(ham)
    fh = FermionHamiltonian(ham, sec)
    configs = sec.enumerate()[::7][:40]
    g = jax.jit(jax.vmap(make_connections(fh, grouped=True)))(jnp.asarray(configs))
    m = jax.jit(jax.vmap(make_connections(fh, grouped=False)))(jnp.asarray(configs))
    assert g[5].shape[1] < m[5].shape[1] and g[1].shape[1] < m[1].shape[1]   # fewer padded entries
    for b, sl in ((b, sl) for b in range(len(configs)) for sl in (slice(1, 5), slice(5, 9))):
        def as_set(out):
            rem, add, mel, ok = (np.asarray(o[b]) for o in out[sl])
            keep = ok & (np.abs(mel) > 0)
            items = [(tuple(r), tuple(a), complex(v)) for r, a, v in zip(rem[keep], add[keep], mel[keep])]
            assert len({it[:2] for it in items}) == len(items)          # each excitation once
            return {it[:2]: it[2] for it in items}
        sg, sm = as_set(g), as_set(m)
        assert sg.keys() == sm.keys()
        np.testing.assert_allclose([sg[k] for k in sm], [sm[k] for k in sm], rtol=0, atol=1e-14)
    model = RBM(sec.n_spin_orbitals, alpha=1.0, sigma=0.3)
    params = model.init(jax.random.PRNGKey(0), reference=sec.hf_config)
    e_g = make_local_energy(fh, model, grouped=True)(params, configs)
    e_m = make_local_energy(fh, model, grouped=False)(params, configs)
    np.testing.assert_allclose(np.asarray(e_g), np.asarray(e_m), rtol=1e-12)
