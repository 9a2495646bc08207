"""The Annuaire Santé FHIR API as a directory source.

:mod:`.client` does the HTTP (retries, cache, size caps, errors); :mod:`.mapping` turns
FHIR resources into :class:`~bridge.identity.model.Practitioner`, without I/O. Names
with a leading underscore are private to this package, shared between its modules.
"""

from bridge.identity.sources.fhir.client import FhirDirectory, FhirError
from bridge.identity.sources.fhir.mapping import IDNPS_SYSTEM, MSSANTE_EMAIL_TYPE, RPPS_SYSTEMS

__all__ = ["IDNPS_SYSTEM", "MSSANTE_EMAIL_TYPE", "RPPS_SYSTEMS", "FhirDirectory", "FhirError"]
