"""User-facing errors: one line that names the file/field and the fix; the CLI exits non-zero."""


class NqsbenchError(Exception):
    """Base class for errors caused by input, shown to the user as one line."""


class CatalogError(NqsbenchError):
    """A system file or a geometry/k-mesh request is invalid."""


class SectorTooLargeError(NqsbenchError):
    """An exact-diagonalization sector exceeds the configured size limit."""


class MemoryBudgetError(NqsbenchError):
    """A run's estimated peak memory exceeds its budget or the machine (refused before allocating)."""


class RecordError(NqsbenchError):
    """A result record is missing, corrupt or fails its schema."""


class SuiteError(NqsbenchError):
    """A suite file is invalid (one line naming the file, field and fix)."""


class UnsafePathError(NqsbenchError):
    """A path built from input (parameter names, ids, labels) would land outside its root folder."""


def validation_field_error(exc, prefix: str = "", see: str = "", default: str = "") -> str:
    """The first error of a pydantic ``ValidationError`` as ``field 'LOC': what to do``: LOC the
    dotted path (``tasks[2].gates[0].kind``, under ``prefix``), an unknown key "remove it", a
    missing one "add it" (``see``: where the keys are documented), else pydantic's message."""
    err = exc.errors()[0]
    loc = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in err["loc"]).lstrip(".")
    where = f"{prefix}.{loc}" if prefix and loc else (prefix or loc or default)
    hint = f" (see {see})" if see else ""
    if err["type"] == "extra_forbidden":
        return f"field '{where}': unknown key; remove it{hint}"
    if err["type"] == "missing":
        return f"field '{where}': missing; add it{hint}"
    return f"field '{where}': {err['msg'].removeprefix('Value error, ')}"
