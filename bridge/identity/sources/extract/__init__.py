"""The Annuaire Santé ``PS_LibreAcces_Personne_activite`` extract as a directory source.

Split by concern: :mod:`.parse` reads and validates the file (no database),
:mod:`.importer` writes an import and switches it in atomically, :mod:`.lookup`
answers queries over the current import. Names with a leading underscore are private
to this package, shared between its modules.
"""

from bridge.identity.sources.extract.importer import ImportReport, ImportSuperseded, import_extract
from bridge.identity.sources.extract.lookup import ExtractDirectory, current_import_id
from bridge.identity.sources.extract.parse import (
    BAD_ENCODING,
    IDNPS_MISMATCH,
    INVALID_IDENTIFIER,
    MISSING_NAME,
    UNKNOWN_IDENTIFIER_TYPE,
    WRONG_COLUMN_COUNT,
    ExtractFormatError,
    RejectionStats,
)

__all__ = [
    "BAD_ENCODING",
    "IDNPS_MISMATCH",
    "INVALID_IDENTIFIER",
    "MISSING_NAME",
    "UNKNOWN_IDENTIFIER_TYPE",
    "WRONG_COLUMN_COUNT",
    "ExtractDirectory",
    "ExtractFormatError",
    "ImportReport",
    "ImportSuperseded",
    "RejectionStats",
    "current_import_id",
    "import_extract",
]
