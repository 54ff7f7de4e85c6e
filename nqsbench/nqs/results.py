"""Final variational parameters beside a result record (``<stem>.params.msgpack``, no pickle).

Parameters of any pytree shape (the RBM's flat dict, a flax model's nested one) are written with
flax's msgpack serialization (raw array bytes: a round trip is bit for bit) together with what
they belong to. The record itself is built by :mod:`nqsbench.methods.nqs`; nothing here imports
PySCF.
"""
from __future__ import annotations

import json
from pathlib import Path


def plain(obj):
    """JSON-plain copy (numpy scalars, tuples, schedules → str)."""
    return json.loads(json.dumps(obj, default=lambda o: o.item() if hasattr(o, "item") else repr(o)))


def params_path(record_path: str | Path) -> Path:
    """``<stem>.params.msgpack`` beside a result record: the final variational parameters."""
    p = Path(record_path)
    return p.with_name(p.stem + ".params.msgpack")


def save_pytree(tree, path: str | Path, meta: dict | None = None, arrays: dict | None = None) -> Path:
    """Write a pytree of arrays (and a JSON-plain ``meta``, and named side ``arrays``)
    atomically, without pickle."""
    import jax
    import numpy as np
    from flax import serialization

    from ..io import atomic_write

    state = serialization.to_state_dict(jax.tree_util.tree_map(np.asarray, tree))
    side = {k: np.asarray(v) for k, v in (arrays or {}).items()}
    data = serialization.msgpack_serialize({"meta": json.dumps(meta or {}), "tree": state, "arrays": side})

    def write(tmp):
        with open(tmp, "wb") as fh:
            fh.write(data)
    return atomic_write(path, write)


def load_pytree(path: str | Path, template=None, arrays: bool = False):
    """(tree, meta) from :func:`save_pytree` (and its side arrays with ``arrays=True``: files
    written before there were any give {}); with ``template`` (a pytree of the same structure,
    e.g. a fresh ``model.init``) the tree is restored into its structure (lists, tuples), else
    as nested dicts. Leaves are jax arrays of the saved dtype."""
    import jax
    import jax.numpy as jnp
    from flax import serialization

    raw = serialization.msgpack_restore(Path(path).read_bytes())
    meta, tree = json.loads(raw["meta"]), raw["tree"]
    if template is not None:
        tree = serialization.from_state_dict(template, tree)
    tree = jax.tree_util.tree_map(jnp.asarray, tree)
    return (tree, meta, dict(raw.get("arrays") or {})) if arrays else (tree, meta)


def orbital_gauge(ham):
    """The active Bloch orbitals' coefficients (N_k, n_AO, n_orb): what fixes their phases,
    saved with parameters so that another build of the same integrals can take them."""
    return ham.mo_coeff[:, :, ham.n_core:ham.n_core + ham.n_orb]


GAUGE_TOL = 1e-6     # |⟨A|B⟩| of one orbital in two builds: 1 to ~1e-10 (thread-count noise)


def gauge_phases(saved_coeff, ham, tol: float = GAUGE_TOL):
    """θ per spin-orbital (Jordan–Wigner order) with |B_p⟩ = e^{iθ_p}|A_p⟩ between the orbitals
    ``saved_coeff`` (A) and ``ham``'s (B): U_k = C_A† S C_B must be diagonal and unitary to
    ``tol``. ValueError saying how far it is otherwise (a rotation among degenerate orbitals,
    or other orbitals altogether: another geometry or basis)."""
    import numpy as np

    a, b = np.asarray(saved_coeff), orbital_gauge(ham)
    if a.shape != b.shape:
        raise ValueError(f"orbital coefficients of shape {a.shape}, this Hamiltonian's are {b.shape}")
    u = np.einsum("kmp,kmn,knq->kpq", a.conj(), ham.ovlp, b)
    d = np.diagonal(u, axis1=1, axis2=2)
    off = np.abs(u - np.einsum("kp,pq->kpq", d, np.eye(u.shape[1]))).max()
    dev = max(off, np.abs(np.abs(d) - 1).max())
    if dev > tol:
        raise ValueError(f"the orbitals differ by more than phases (overlap off by {dev:.1e} > {tol:g})")
    theta = np.angle(d).reshape(-1)                       # flat spatial index i = k·n_orb + p
    return np.concatenate([theta, theta])                 # spin up, then spin down


def save_params(driver, path: str | Path) -> Path:
    """Final parameters + what they belong to: the Hamiltonian hash and its orbitals'
    coefficients (Bloch-orbital phases are arbitrary: another build of the same integrals, on
    another thread count, has other ones, which :func:`load_params` carries the state to)."""
    meta = {"hamiltonian_hash": driver.ham.hash, "flags": plain(driver.dump_flags()), "step": driver.step}
    return save_pytree(driver.params, path, meta, arrays={"mo_coeff": orbital_gauge(driver.ham)})


def params_digest(path: str | Path) -> str:
    """The first 16 hex digits of the sha256 of a parameters file: what ``init = "params:..."``
    names, so a run started from other parameters is a different run (settings hash)."""
    import hashlib

    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]


def params_file(path: str | Path) -> Path:
    """The parameters file a user means: a ``.params.msgpack`` itself, or a result record
    (``.json``) whose parameters lie beside it. FileNotFoundError when there are none."""
    p = Path(path)
    if p.suffix == ".json":
        p = params_path(p)
    if not p.is_file():
        raise FileNotFoundError(f"{p}: no such parameters file")
    return p


# The starts named by a word (any other ``init`` is a parameters file, or its ``params:<digest>``)
NAMED_STARTS = ("auto", "hf", "random")


def init_setting(init: str) -> tuple[str, Path | None]:
    """An NQS start as given (auto, hf, random, or the ``.params.msgpack`` / record ``.json`` of an
    earlier run) → (the ``init`` setting, the parameters file or None); FileNotFoundError when
    the file is missing. The file is read once, for its digest."""
    if init in NAMED_STARTS:
        return init, None
    path = params_file(init)
    return f"params:{params_digest(path)}", path


def load_params(path: str | Path, ham=None, template=None, model=None, arrays: bool = False) -> tuple:
    """(params, meta) from :func:`save_params` (and its side arrays with ``arrays=True``), for
    ``ham``'s orbitals (not checked without ``ham``): parameters trained on another build of the
    same integrals are carried to its orbital phases (``model.rephase``, :func:`gauge_phases`;
    ``meta["rephased"]`` says by how much). ValueError when that cannot be done (other
    integrals, orbitals that differ by more than phases, no saved orbitals, a model without
    ``rephase``), RecordError when the file is unreadable."""
    from ..errors import RecordError

    try:
        params, meta, side = load_pytree(path, template, arrays=True)
        meta["hamiltonian_hash"]
    except Exception as exc:  # noqa: BLE001 - msgpack, flax and OS errors alike: one line to the user
        raise RecordError(f"{path}: unreadable parameters ({type(exc).__name__}: {exc}); rerun "
                          "`nqsbench run` to make them again") from None
    if ham is not None and meta["hamiltonian_hash"] != ham.hash:
        try:
            params = carry_params(params, meta, side, ham, model)
        except ValueError as exc:
            raise ValueError(f"{path}: parameters were trained on Hamiltonian {meta['hamiltonian_hash']}, "
                             f"not {ham.hash}: {exc}; rerun `nqsbench run`") from None
    return (params, meta, side) if arrays else (params, meta)


def carry_phases(saved_coeff, ham, model):
    """θ (per spin-orbital) that carries parameters trained in orbitals ``saved_coeff`` (None when
    the file has none) to ``ham``'s build of the same integrals through ``model.rephase``;
    ValueError with the reason when they cannot be carried."""
    from .models.base import Rephase

    if saved_coeff is None:
        raise ValueError("the file has no orbital coefficients to carry them over (written before they were saved)")
    if not isinstance(model, Rephase):
        raise ValueError(f"the model {type(model).__name__} cannot take other orbital phases (no rephase)")
    return gauge_phases(saved_coeff, ham)


def carry_params(params, meta: dict, arrays: dict, ham, model):
    """Parameters saved on another build of ``ham``'s integrals, carried to its orbital phases
    (``meta["rephased"]``: the largest |θ|); ValueError with the reason when they cannot be."""
    import numpy as np

    theta = carry_phases(arrays.get("mo_coeff"), ham, model)
    meta["rephased"] = float(np.abs(theta).max())
    return model.rephase(params, theta)
