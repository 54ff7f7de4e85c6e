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


def save_pytree(tree, path: str | Path, meta: dict | None = None) -> Path:
    """Write a pytree of arrays (and a JSON-plain ``meta``) atomically, without pickle."""
    import jax
    import numpy as np
    from flax import serialization

    from ..io import atomic_write

    state = serialization.to_state_dict(jax.tree_util.tree_map(np.asarray, tree))
    data = serialization.msgpack_serialize({"meta": json.dumps(meta or {}), "tree": state})

    def write(tmp):
        with open(tmp, "wb") as fh:
            fh.write(data)
    return atomic_write(path, write)


def load_pytree(path: str | Path, template=None):
    """(tree, meta) from :func:`save_pytree`; with ``template`` (a pytree of the same structure,
    e.g. a fresh ``model.init``) the tree is restored into its structure (lists, tuples), else
    as nested dicts. Leaves are jax arrays of the saved dtype."""
    import jax
    import jax.numpy as jnp
    from flax import serialization

    raw = serialization.msgpack_restore(Path(path).read_bytes())
    meta, tree = json.loads(raw["meta"]), raw["tree"]
    if template is not None:
        tree = serialization.from_state_dict(template, tree)
    return jax.tree_util.tree_map(jnp.asarray, tree), meta


def save_params(driver, path: str | Path) -> Path:
    """Final parameters + what they belong to (Hamiltonian hash: Bloch-orbital phases are
    arbitrary, so parameters are only valid for the exact integrals they were trained on)."""
    meta = {"hamiltonian_hash": driver.ham.hash, "flags": plain(driver.dump_flags()), "step": driver.step}
    return save_pytree(driver.params, path, meta)


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


def init_setting(init: str) -> tuple[str, Path | None]:
    """An NQS start as given (hf, random, or the ``.params.msgpack`` / record ``.json`` of an
    earlier run) → (the ``init`` setting, the parameters file or None); FileNotFoundError when
    the file is missing. The file is read once, for its digest."""
    if init in ("hf", "random"):
        return init, None
    path = params_file(init)
    return f"params:{params_digest(path)}", path


def load_params(path: str | Path, ham=None, template=None) -> tuple[dict, dict]:
    """(params, meta) from :func:`save_params`; ValueError when they belong to other integrals
    than ``ham``'s (not checked without ``ham``), RecordError when the file is unreadable."""
    from ..errors import RecordError

    try:
        params, meta = load_pytree(path, template)
        meta["hamiltonian_hash"]
    except Exception as exc:  # noqa: BLE001 - msgpack, flax and OS errors alike: one line to the user
        raise RecordError(f"{path}: unreadable parameters ({type(exc).__name__}: {exc}); rerun "
                          "`nqsbench run` to make them again") from None
    if ham is not None and meta["hamiltonian_hash"] != ham.hash:
        raise ValueError(f"{path}: parameters were trained on Hamiltonian {meta['hamiltonian_hash']}, "
                         f"not {ham.hash}; rerun `nqsbench run`")
    return params, meta
