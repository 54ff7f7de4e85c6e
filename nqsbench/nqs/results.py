"""Final variational parameters beside a result record (``<stem>.params.npz``, no pickle).

The record itself is built by :mod:`nqsbench.methods.nqs`; nothing here imports PySCF.
"""
from __future__ import annotations

import json
from pathlib import Path


def plain(obj):
    """JSON-plain copy (numpy scalars, tuples, schedules → str)."""
    return json.loads(json.dumps(obj, default=lambda o: o.item() if hasattr(o, "item") else repr(o)))


def params_path(record_path: str | Path) -> Path:
    """``<stem>.params.npz`` beside a result record: the final variational parameters."""
    p = Path(record_path)
    return p.with_name(p.stem + ".params.npz")


def save_params(driver, path: str | Path) -> Path:
    """Final parameters + what they belong to (Hamiltonian hash: Bloch-orbital phases are
    arbitrary, so parameters are only valid for the exact integrals they were trained on)."""
    import jax
    import numpy as np

    from ..io import atomic_write

    leaves, _ = jax.tree_util.tree_flatten(driver.params)
    meta = {"hamiltonian_hash": driver.ham.hash, "flags": plain(driver.dump_flags()), "step": driver.step,
            "keys": sorted(driver.params)}

    def write(tmp):
        with open(tmp, "wb") as fh:
            np.savez(fh, meta=np.array(json.dumps(meta)),
                     **{k: np.asarray(driver.params[k]) for k in sorted(driver.params)})
    return atomic_write(path, write)


def load_params(path: str | Path, ham) -> tuple[dict, dict]:
    """(params, meta) from :func:`save_params`; ValueError when they belong to other integrals."""
    import jax.numpy as jnp
    import numpy as np

    from ..errors import RecordError
    from .callbacks import UNREADABLE

    try:
        with np.load(path, allow_pickle=False) as d:
            meta = json.loads(str(d["meta"]))
            params = {k: jnp.asarray(d[k]) for k in meta["keys"]}
    except UNREADABLE as exc:
        raise RecordError(f"{path}: unreadable parameters ({type(exc).__name__}: {exc}); rerun "
                          "`nqsbench run` to make them again") from None
    if meta["hamiltonian_hash"] != ham.hash:
        raise ValueError(f"{path}: parameters were trained on Hamiltonian {meta['hamiltonian_hash']}, "
                         f"not {ham.hash}; rerun `nqsbench run`")
    return params, meta
