"""NetKet as a peer: our Hamiltonian as NetKet's fast fermion operator, our RBM parameters in
NetKet's complex RBM, and NetKet's own local-energy kernel on the same samples.

Conventions (checked by ``tests/test_peers_netket.py``):

* Spin-orbital index: ours is i (spin up) and M + i (spin down), Jordan–Wigner string over lower
  indices, determinant c†_{j1} c†_{j2} … |0⟩ ascending. NetKet's ``SpinOrbitalFermions(M, s=1/2)``
  is spin-major too (index = spin_block * M + orbital, block 0 is its sz = −1/2) with the same JW
  convention, so we pass our spin-orbital indices to NetKet unchanged: NetKet's block 0 holds our
  spin up (a pure relabelling; ``n_fermions_per_spin=(n_up, n_dn)`` is in block order).
* H = Σ h_pq c†_p c_q + ½ Σ (pq|rs) c†_p c†_r c_s c_q + constant over same-spin pairs (p,q), (r,s).
  Default (``method="arrays"``): ``ham.dense()`` as sparse arrays (|x| ≤ cutoff dropped, never
  stored as zeros: a stored zero in the one-body block breaks NetKet's builder) into
  ``ParticleNumberAndSpinConservingFermioperator2nd._from_sparse_arrays_normal_order_all_sectors``
  with w_ijkl = ½ (il|jk), as NetKet's ``from_pyscf_molecule`` does with its own integrals (that
  constructor itself is molecular only). ``method="terms"``: every term as
  ``FermionOperator2ndJax``, converted with ``from_fermionoperator2nd`` (same operator, minutes
  to build at 64 spin-orbitals).
* NetKet's ``nk.models.RBM``: log ψ = Σ_j log cosh(x·K + b)_j + x·v with inputs x ∈ {0, 1} for
  fermions; ours is a·x + Σ_j log cosh(b_j + W_j·x). So K = Wᵀ, b = b, v = a; both log cosh are
  the stable form with −log 2.
"""
from __future__ import annotations

import numpy as np

from ..errors import NqsbenchError


class MissingPeerError(NqsbenchError):
    """An optional peer code (extra ``peers``) is not installed."""


def require_netket():
    """The ``netket`` module, or a one-line error naming the extra that installs it."""
    try:
        import netket as nk
    except ImportError as exc:
        raise MissingPeerError(f"netket is not installed ({exc}); install the optional 'peers' extra: "
                               "pip install -e '.[peers]'") from None
    return nk


def netket_hilbert(ham, n_up: int | None = None, n_dn: int | None = None):
    nk = require_netket()
    n_up = ham.n_alpha if n_up is None else int(n_up)
    n_dn = ham.n_beta if n_dn is None else int(n_dn)
    return nk.hilbert.SpinOrbitalFermions(n_orbitals=ham.n_spatial, s=0.5,
                                          n_fermions_per_spin=(n_up, n_dn))


def netket_terms(ham, tol: float = 0.0):
    """(terms, weights) of H without the constant, in our spin-orbital indices (NetKet format:
    a term is ((site, dagger), ...), applied right to left like a product of operators)."""
    h, eri = ham.dense()
    m = ham.n_spatial
    terms, weights = [], []
    # one-body: same spin
    p, q = np.nonzero(np.abs(h) > tol)
    for s in range(2):
        o = s * m
        terms += [((int(a) + o, 1), (int(b) + o, 0)) for a, b in zip(p, q)]
        weights += list(h[p, q])
    # two-body: ½ (pq|rs) c†_p c†_r c_s c_q, spin σ on (p,q), τ on (r,s)
    p, q, r, t = np.nonzero(np.abs(eri) > tol)
    w = 0.5 * eri[p, q, r, t]
    for s1 in range(2):
        for s2 in range(2):
            o1, o2 = s1 * m, s2 * m
            P, Q, R, T = p + o1, q + o1, r + o2, t + o2
            keep = (P != R) & (Q != T)            # c†_p c†_p = 0, c_q c_q = 0
            terms += [((int(a), 1), (int(c), 1), (int(d), 0), (int(b), 0))
                      for a, b, c, d in zip(P[keep], Q[keep], R[keep], T[keep])]
            weights += list(w[keep])
    return terms, [complex(x) for x in weights]


def netket_arrays(ham, cutoff: float = 1e-11):
    """(constant, h_ij, w_ijkl) as ``sparse.COO`` for NetKet's all-sectors array builder, which
    reads H = w + Σ_ijσ h_ij c†_iσ c_jσ + Σ_ijklσρ w_ijkl c†_iσ c†_jρ c_kρ c_lσ over spatial
    orbitals, so w_ijkl = ½ (il|jk) (``0.5 * eri.transpose(0, 2, 3, 1)``, as NetKet's
    ``from_pyscf_molecule``). Entries with |x| ≤ cutoff are dropped, never stored as zeros: NetKet
    does not prune the one-body block, and a stored zero there breaks its builder
    (``_prepare_data_helper`` counts a row's terms with ``A != 0`` but walks every stored entry;
    h-chain 1×1×2: ValueError "zero-size array to reduction operation maximum"). Kept near-zeros
    (no cutoff) are harmless but add connections (h-chain 1×1×2: 35 instead of 15)."""
    import sparse

    h, eri = ham.dense()

    def coo(a):
        idx = np.nonzero(np.abs(a) > cutoff)
        return sparse.COO(np.array(idx), a[idx], shape=a.shape)

    return float(ham.constant), coo(h), coo(0.5 * eri.transpose(0, 2, 3, 1))


def netket_operator(ham, n_up: int | None = None, n_dn: int | None = None,
                    cutoff: float = 1e-11, fast: bool = True, method: str = "arrays"):
    """Our Hamiltonian (supercell, constant included) as NetKet's
    ``ParticleNumberAndSpinConservingFermioperator2nd``.

    ``method="arrays"`` (default): built directly from sparse integral arrays
    (:func:`netket_arrays`), seconds even for 64 spin-orbitals. ``method="terms"``: every term
    listed in Python (:func:`netket_terms`) into ``FermionOperator2ndJax``, then converted with
    ``from_fermionoperator2nd`` (slow: > 600 s for graphene 2×2×1). ``fast=False``: that generic
    ``FermionOperator2ndJax`` itself (implies the term list)."""
    nk = require_netket()
    if method not in ("arrays", "terms"):
        raise ValueError(f"method must be 'arrays' or 'terms', not {method!r}")
    hi = netket_hilbert(ham, n_up, n_dn)
    if method == "arrays" and fast:
        from netket.experimental.operator import ParticleNumberAndSpinConservingFermioperator2nd as Op
        # NetKet's own builder (its from_pyscf_molecule path): same spin in descending normal
        # order, cutoff applied; σ ≠ ρ folded into σ > ρ. Complex weights are fine.
        return Op._from_sparse_arrays_normal_order_all_sectors(hi, list(netket_arrays(ham, cutoff)),
                                                               cutoff=cutoff)
    terms, weights = netket_terms(ham)
    op = nk.operator.FermionOperator2ndJax(hi, terms, weights, constant=float(ham.constant),
                                           cutoff=cutoff)
    if not fast:
        return op
    from netket.experimental.operator import ParticleNumberAndSpinConservingFermioperator2nd
    return ParticleNumberAndSpinConservingFermioperator2nd.from_fermionoperator2nd(op, cutoff=cutoff)


def netket_rbm(model):
    """NetKet's complex RBM with the same hidden density as our :class:`~nqsbench.nqs.models.RBM`."""
    nk = require_netket()
    return nk.models.RBM(param_dtype=complex, alpha=model.n_hidden / model.n_visible)


def to_netket_params(params) -> dict:
    """Our RBM parameters {a, b, W (H, V)} → NetKet's {Dense: {kernel (V, H), bias}, visible_bias}."""
    import jax.numpy as jnp
    return {"Dense": {"kernel": jnp.asarray(params["W"]).T, "bias": jnp.asarray(params["b"])},
            "visible_bias": jnp.asarray(params["a"])}


def from_netket_tree(tree) -> dict:
    """NetKet's RBM pytree layout (parameters, gradients, updates) → ours {a, b, W (H, V)}."""
    return {"a": np.asarray(tree["visible_bias"]), "b": np.asarray(tree["Dense"]["bias"]),
            "W": np.asarray(tree["Dense"]["kernel"]).T}


def netket_local_energy(op, nk_model, chunk_size: int | None = None):
    """Jitted ``eloc(nk_params, xs)`` using NetKet's own kernel for jax operators
    (``netket.vqs.mc.kernels.local_value_kernel_jax``: get_conn_padded, then log ψ of every
    connected configuration), the kernel ``MCState.expect`` runs. ``chunk_size`` samples at a
    time (``jax.lax.map``, as NetKet's chunking does); None: the whole batch at once.
    Pass xs as NetKet's samplers give them (int8 0/1, see :func:`to_netket_samples`)."""
    from functools import partial

    import jax
    from netket.vqs.mc.kernels import local_value_kernel_jax

    def logpsi(p, x):
        return nk_model.apply({"params": p}, x)

    @jax.jit
    def eloc(p, xs):
        if chunk_size is None:
            return local_value_kernel_jax(logpsi, p, xs, op)
        return jax.lax.map(partial(local_value_kernel_jax, logpsi, p, O=op), xs,
                           batch_size=chunk_size)

    return eloc


def to_netket_samples(xs):
    """Our (B, 2M) 0/1 configurations in NetKet's dtype (same index order, see module doc)."""
    import jax.numpy as jnp
    return jnp.asarray(np.asarray(xs), dtype=jnp.int8)


def netket_log_psi(nk_model):
    import jax

    @jax.jit
    def lp(p, xs):
        return nk_model.apply({"params": p}, xs)
    return lp
