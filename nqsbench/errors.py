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
