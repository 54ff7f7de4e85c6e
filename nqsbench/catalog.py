"""System catalog: ``systems/*.toml`` → validated, frozen :class:`SystemSpec` → :class:`Geometry`.

Materials are data. Geometry entries may be numbers or small arithmetic expressions in the
named parameters (``"2*d"``, ``"a*sqrt(3)/2"``); they are evaluated by a whitelist AST walker,
never by ``eval``.
"""
from __future__ import annotations

import ast
import hashlib
import json
import math
import re
from functools import lru_cache
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from . import config
from .errors import CatalogError, validation_field_error
from .io import read_toml
from .units import ANGSTROM_TO_BOHR

SCHEMA_HINT = "schemas/system.schema.json"   # where a system file's keys are documented

MIN_ATOM_DISTANCE_BOHR = 0.5
SCHEMA_VERSION = 1
# Bounds on input that is evaluated or allocated from: longer expressions, larger exponents,
# longer lattice vectors, more k-points are refused with one line, never tried.
MAX_EXPRESSION_CHARS = 200
MAX_EXPRESSION_NODES = 100
MAX_EXPONENT = 64.0
MAX_VECTOR_BOHR = 200.0          # lattice vectors and atom positions (vacuum included)
MAX_KPOINTS = 1000
PARAMETER_NAME = r"^[A-Za-z_][A-Za-z0-9_]*$"

# Atomic numbers of the elements the catalog may use (STO-3G covers H–Kr).
_Z = {s: i + 1 for i, s in enumerate(
    "H He Li Be B C N O F Ne Na Mg Al Si P S Cl Ar K Ca Sc Ti V Cr Mn Fe Co Ni Cu Zn Ga Ge As Se "
    "Br Kr".split())}

Expr = float | str


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class Parameter(_Frozen):
    default: float
    unit: str
    description: str = ""
    scan: tuple[float, ...] = ()
    min: float | None = Field(None, description="smallest allowed value (checked before any PySCF call)")
    max: float | None = Field(None, description="largest allowed value (checked before any PySCF call)")

    @model_validator(mode="after")
    def _in_bounds(self) -> "Parameter":
        if self.min is not None and self.max is not None and self.min >= self.max:
            raise ValueError(f"min {self.min:g} ≥ max {self.max:g}; give min < max")
        for what, v in [("default", self.default)] + [("scan value", x) for x in self.scan]:
            why = self.out_of_bounds(v)
            if why:
                raise ValueError(f"{what} {why}")
        return self

    def out_of_bounds(self, v: float) -> str | None:
        """Why ``v`` is not an allowed value (non-finite, below min, above max), else None."""
        if not math.isfinite(v):
            return f"{v} is not a finite number"
        if self.min is not None and v < self.min:
            return f"{v:g} is below the minimum {self.min:g} {self.unit}"
        if self.max is not None and v > self.max:
            return f"{v:g} is above the maximum {self.max:g} {self.unit}"
        return None


class Atom(_Frozen):
    symbol: str
    position: tuple[Expr, Expr, Expr]

    @field_validator("symbol")
    @classmethod
    def _known_element(cls, v: str) -> str:
        if v not in _Z:
            raise ValueError(f"unknown element {v!r}; use a chemical symbol such as 'H' or 'Li'")
        return v


class KMeshes(_Frozen):
    exact: tuple[tuple[int, int, int], ...] = ()
    beyond: tuple[tuple[int, int, int], ...] = ()


class SystemSpec(_Frozen):
    """One material family: lattice, atoms and basis, with named geometry parameters."""

    schema_version: int = SCHEMA_VERSION
    id: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$")
    description: str
    source: str
    dimension: Literal[1, 2, 3]
    unit: Literal["bohr", "angstrom"]
    basis: str
    lattice: tuple[tuple[Expr, Expr, Expr], tuple[Expr, Expr, Expr], tuple[Expr, Expr, Expr]]
    periodic_axes: tuple[int, ...] | None = None
    atoms: tuple[Atom, ...] = Field(min_length=1)
    kmesh: tuple[int, int, int]
    kmeshes: KMeshes = KMeshes()
    frozen_core: int = Field(default=0, ge=0)
    tier: Literal["exact", "beyond"]
    parameters: dict[str, Parameter] = Field(
        {}, json_schema_extra={"propertyNames": {"pattern": PARAMETER_NAME}},
        description="named geometry parameters; names are identifiers (they make record folder names)")

    @model_validator(mode="after")
    def _consistent(self) -> "SystemSpec":
        axes = self.axes
        if len(axes) != self.dimension or sorted(set(axes)) != sorted(axes) or any(
                a not in (0, 1, 2) for a in axes):
            raise ValueError(f"periodic_axes {list(axes)} must list {self.dimension} distinct "
                             "lattice-vector indices in 0..2")
        for name in self.parameters:
            if not re.fullmatch(PARAMETER_NAME, name):
                raise ValueError(f"parameter name {name!r} is not an identifier (letters, digits, '_'; "
                                 "not starting with a digit); rename it")
            if name in _FUNCTIONS or name in _CONSTANTS:
                raise ValueError(f"parameter name {name!r} shadows a built-in; rename it")
        if self.n_electrons_cell % 2:
            raise ValueError(f"odd electron count per cell ({self.n_electrons_cell}); nqsbench "
                             "solves closed-shell neutral cells: double the cell")
        if 2 * self.frozen_core >= self.n_electrons_cell:
            raise ValueError(f"frozen_core={self.frozen_core} freezes all "
                             f"{self.n_electrons_cell} electrons; lower it")
        self.check_kmesh(self.kmesh)
        for km in self.kmeshes.exact + self.kmeshes.beyond:
            self.check_kmesh(km)
        return self

    @property
    def axes(self) -> tuple[int, ...]:
        return self.periodic_axes if self.periodic_axes is not None else tuple(range(self.dimension))

    @property
    def n_electrons_cell(self) -> int:
        return sum(_Z[a.symbol] for a in self.atoms)

    def check_kmesh(self, kmesh) -> tuple[int, int, int]:
        km = tuple(int(k) for k in kmesh)
        if len(km) != 3 or any(k < 1 for k in km):
            raise ValueError(f"k-mesh {list(kmesh)} must be three positive integers")
        if math.prod(km) > MAX_KPOINTS:
            raise ValueError(f"k-mesh {list(km)} has {math.prod(km)} k-points, more than nqsbench's "
                             f"limit of {MAX_KPOINTS}; use a smaller mesh")
        bad = [i for i in range(3) if km[i] > 1 and i not in self.axes]
        if bad:
            raise ValueError(f"k-mesh {list(km)} samples non-periodic axis {bad[0]} of a "
                             f"{self.dimension}D system; use 1 there (periodic axes: {list(self.axes)})")
        return km

    def geometry(self, params: dict[str, float] | None = None, kmesh=None) -> "Geometry":
        """Resolve parameters (defaults overridden by ``params``) into numbers in bohr."""
        params = dict(params or {})
        unknown = sorted(set(params) - set(self.parameters))
        if unknown:
            raise CatalogError(f"{self.id}: unknown parameter {unknown[0]!r}; known: "
                               f"{sorted(self.parameters)}")
        values = {k: float(params.get(k, p.default)) for k, p in self.parameters.items()}
        for k, v in values.items():
            why = self.parameters[k].out_of_bounds(v)
            if why:
                raise CatalogError(f"{self.id}: parameter {k} = {why} (field 'parameters.{k}'); "
                                   "choose a value inside the bounds")
        scale = ANGSTROM_TO_BOHR if self.unit == "angstrom" else 1.0
        where = f"{self.id}"
        lattice = np.array([[scale * _evaluate(e, values, f"{where}: lattice[{i}][{j}]")
                             for j, e in enumerate(row)] for i, row in enumerate(self.lattice)])
        coords = np.array([[scale * _evaluate(e, values, f"{where}: atoms[{i}].position[{j}]")
                            for j, e in enumerate(a.position)] for i, a in enumerate(self.atoms)])
        try:
            km = self.check_kmesh(self.kmesh if kmesh is None else kmesh)
        except ValueError as exc:
            raise CatalogError(f"{where}: --kmesh: {exc}") from None
        geom = Geometry(spec=self, params=values, lattice=lattice, symbols=tuple(a.symbol for a in self.atoms),
                        coords=coords, kmesh=km)
        geom.validate()
        return geom


class Geometry:
    """A spec at concrete parameter values and k-mesh (lattice and coordinates in bohr)."""

    def __init__(self, spec: SystemSpec, params, lattice, symbols, coords, kmesh):
        self.spec, self.params, self.kmesh = spec, dict(params), tuple(kmesh)
        self.lattice, self.symbols, self.coords = lattice, symbols, coords

    def validate(self) -> None:
        for what, vecs in (("lattice", self.lattice), ("atoms", self.coords)):
            biggest = float(np.max(np.abs(vecs)))    # first: the norm of 1e200 overflows
            longest = float(np.max(np.linalg.norm(vecs, axis=1))) if biggest <= MAX_VECTOR_BOHR else biggest
            if not longest <= MAX_VECTOR_BOHR:
                raise CatalogError(f"{self.spec.id}: field '{what}': a vector of {longest:.4g} bohr at "
                                   f"{self.params}, longer than nqsbench's limit of {MAX_VECTOR_BOHR:g} "
                                   "bohr; check the parameters (and their units)")
        # as PySCF takes them: periodic vectors first (nqsbench.build.pyscf_order)
        order = list(self.spec.axes) + [i for i in range(3) if i not in self.spec.axes]
        det = np.linalg.det(self.lattice[order])
        if abs(det) < 1e-6:
            raise CatalogError(f"{self.spec.id}: field 'lattice': vectors are linearly dependent "
                               f"at {self.params}; check the lattice expressions")
        if det < 0:
            taken = "" if order == [0, 1, 2] else f" taken periodic first (order {order})"
            raise CatalogError(f"{self.spec.id}: field 'lattice': the vectors{taken} are left-handed "
                               f"(a1·(a2×a3) < 0) at {self.params}; flip the sign of one vector")
        # Minimum distance over periodic images along the periodic axes.
        shifts = [np.zeros(3)]
        for ax in self.spec.axes:
            shifts = [s + n * self.lattice[ax] for s in shifts for n in (-1, 0, 1)]
        for i in range(len(self.coords)):
            for j in range(len(self.coords)):
                for s in shifts:
                    if i == j and not np.any(s):
                        continue
                    dist = np.linalg.norm(self.coords[i] - self.coords[j] - s)
                    if dist < MIN_ATOM_DISTANCE_BOHR:
                        raise CatalogError(
                            f"{self.spec.id}: field 'atoms': atoms {i} ({self.symbols[i]}) and {j} "
                            f"({self.symbols[j]}) are {dist:.3f} bohr apart (< {MIN_ATOM_DISTANCE_BOHR}) "
                            f"at {self.params}; fix the positions or parameters")

    @property
    def nk(self) -> int:
        return int(np.prod(self.kmesh))

    @property
    def tier(self) -> str:
        if self.kmesh in self.spec.kmeshes.beyond:
            return "beyond"
        if self.kmesh in self.spec.kmeshes.exact:
            return "exact"
        return self.spec.tier

    def as_dict(self) -> dict:
        return {"system": self.spec.id, "params": self.params, "kmesh": list(self.kmesh),
                "basis": self.spec.basis, "frozen_core": self.spec.frozen_core,
                "lattice_bohr": self.lattice.round(12).tolist(), "symbols": list(self.symbols),
                "coords_bohr": self.coords.round(12).tolist(), "dimension": self.spec.dimension,
                "periodic_axes": list(self.spec.axes)}

    def input_hash(self, extra: dict | None = None) -> str:
        payload = dict(self.as_dict(), **(extra or {}))
        blob = json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()
        return hashlib.sha256(blob).hexdigest()[:16]

    def label(self) -> str:
        p = "_".join(f"{k}{v:g}" for k, v in sorted(self.params.items()))
        return f"{self.spec.id}_{p}_k{'x'.join(map(str, self.kmesh))}"


# ---------------------------------------------------------------- safe arithmetic expressions
_FUNCTIONS = {"sqrt": math.sqrt, "sin": math.sin, "cos": math.cos, "tan": math.tan}
_CONSTANTS = {"pi": math.pi}


def _power(a: float, b: float) -> float:
    if abs(b) > MAX_EXPONENT:
        raise ValueError(f"exponent {b:g} is larger than {MAX_EXPONENT:g}")
    return float(a) ** float(b)     # floats: overflow raises at once, never a huge integer


_BINOPS = {ast.Add: lambda a, b: a + b, ast.Sub: lambda a, b: a - b, ast.Mult: lambda a, b: a * b,
           ast.Div: lambda a, b: a / b, ast.Pow: _power}


def _evaluate(expr: Expr, values: dict[str, float], where: str) -> float:
    """A finite float, or CatalogError naming ``where``. Bounded: at most MAX_EXPRESSION_CHARS
    characters and MAX_EXPRESSION_NODES syntax nodes, float arithmetic only (no integer powers
    that run for ever), exponents up to MAX_EXPONENT, every intermediate value finite."""
    if isinstance(expr, (int, float)):
        v = float(expr)
        if not math.isfinite(v):
            raise CatalogError(f"{where}: {v} is not a finite number")
        return v
    shown = expr if len(expr) <= 40 else expr[:37] + "..."
    if len(expr) > MAX_EXPRESSION_CHARS:
        raise CatalogError(f"{where}: expression {shown!r} has {len(expr)} characters, more than "
                           f"{MAX_EXPRESSION_CHARS}; write a shorter one")
    try:
        tree = ast.parse(expr, mode="eval")
        n_nodes = sum(1 for _ in ast.walk(tree))
        if n_nodes > MAX_EXPRESSION_NODES:
            raise ValueError(f"{n_nodes} terms, more than {MAX_EXPRESSION_NODES}")
        v = float(_walk(tree.body, values))
    except (SyntaxError, KeyError, ValueError, TypeError, ZeroDivisionError, OverflowError,
            RecursionError, MemoryError) as exc:
        msg = exc.args[0] if exc.args and isinstance(exc.args[0], str) else type(exc).__name__
        if isinstance(exc, OverflowError):
            msg = "the result is too large"
        raise CatalogError(f"{where}: cannot evaluate {shown!r}: {msg}; use numbers, + - * / **, "
                           f"sqrt/sin/cos/tan, pi and the declared parameters") from None
    return v


def _finite(v):
    if isinstance(v, complex) or not math.isfinite(v):
        raise ValueError(f"not a finite real number ({v})")
    return v


def _walk(node, values):
    return _finite(_walk1(node, values))


def _walk1(node, values):
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)) \
            and not isinstance(node.value, bool):
        return float(node.value)
    if isinstance(node, ast.Name):
        if node.id in values:
            return values[node.id]
        if node.id in _CONSTANTS:
            return _CONSTANTS[node.id]
        raise KeyError(f"unknown name {node.id!r}")
    if isinstance(node, ast.BinOp) and type(node.op) in _BINOPS:
        return _BINOPS[type(node.op)](_walk(node.left, values), _walk(node.right, values))
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        v = _walk(node.operand, values)
        return -v if isinstance(node.op, ast.USub) else v
    if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in _FUNCTIONS
            and len(node.args) == 1 and not node.keywords):
        return _FUNCTIONS[node.func.id](_walk(node.args[0], values))
    raise ValueError(f"unsupported syntax {ast.dump(node)[:40]}")


# ---------------------------------------------------------------- loading
def systems_dir() -> Path:
    """The catalog folder (an alias of :func:`nqsbench.config.systems_dir`, which reads the setting)."""
    return config.systems_dir()


def load_spec_file(path: str | Path) -> SystemSpec:
    path = Path(path)
    data = read_toml(path, CatalogError, "system file")
    try:
        spec = SystemSpec.model_validate(data)
    except ValidationError as exc:
        raise CatalogError(f"{path}: {validation_field_error(exc, see=SCHEMA_HINT, default='spec')}") from None
    _check_basis(spec, path)
    # Every expression must evaluate at the defaults; errors name the file.
    try:
        spec.geometry()
    except CatalogError as exc:
        raise CatalogError(f"{path}: {exc}") from None
    return spec


@lru_cache(maxsize=None)
def _basis_ok(basis: str, symbol: str) -> bool:
    from pyscf import gto  # the catalog checks basis names with PySCF's own library
    try:
        return bool(gto.basis.load(basis, symbol))
    except Exception:  # pyscf raises assorted errors for unknown basis names
        return False


def _check_basis(spec: SystemSpec, path: Path) -> None:
    for sym in sorted({a.symbol for a in spec.atoms}):
        if not _basis_ok(spec.basis, sym):
            raise CatalogError(f"{path}: field 'basis': unknown basis {spec.basis!r} for {sym}; "
                               "use a PySCF basis name such as 'sto-3g'")


def available() -> list[str]:
    return sorted(p.stem for p in systems_dir().glob("*.toml"))


def load(name_or_path: str) -> SystemSpec:
    """Load a system by catalog id (``h-chain``) or by path to a TOML file. A folder of that
    name (the results layout has ``h-chain/``, so running from a results folder makes one)
    is not a path to a system."""
    p = Path(name_or_path)
    if p.suffix == ".toml" or p.is_file():
        return load_spec_file(p)
    path = systems_dir() / f"{name_or_path}.toml"
    if not path.exists():
        raise CatalogError(f"unknown system {name_or_path!r}; available: {', '.join(available())}")
    spec = load_spec_file(path)
    if spec.id != name_or_path:
        raise CatalogError(f"{path}: field 'id': {spec.id!r} does not match the file name; rename one")
    return spec


def parse_params(items: list[str] | None) -> dict[str, float]:
    """``["d=2.4", "a=4.0"]`` → ``{"d": 2.4, "a": 4.0}`` with a clear error."""
    out = {}
    for item in items or []:
        key, sep, val = item.partition("=")
        try:
            if not sep:
                raise ValueError
            out[key.strip()] = float(val)
        except ValueError:
            raise CatalogError(f"--param {item!r}: expected NAME=NUMBER, e.g. d=2.4") from None
        if not math.isfinite(out[key.strip()]):
            raise CatalogError(f"--param {item!r}: {val.strip()} is not a finite number; give one, e.g. d=2.4")
    return out


def parse_kmesh(text: str | None):
    if text is None:
        return None
    try:
        km = tuple(int(x) for x in text.replace("x", ",").split(","))
        if len(km) != 3:
            raise ValueError
    except ValueError:
        raise CatalogError(f"--kmesh {text!r}: expected three integers, e.g. 1,1,4") from None
    return km


def json_schema() -> dict:
    return SystemSpec.model_json_schema()
