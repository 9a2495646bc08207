"""FHIR resources (Practitioner, PractitionerRole, Organization) → :class:`Practitioner`.

Pure functions over parsed JSON. Every field is read defensively: a hostile or odd
shape means "absent", never an exception.

Profession codes are looked up in ``Practitioner.qualification`` and in
``PractitionerRole.code``, since API versions differ on where they put them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from types import MappingProxyType
from typing import Any

from bridge.identity.identifiers import PractitionerId, parse_identifier
from bridge.identity.model import G15_OID, Practitioner, fold, profession_label

IDNPS_SYSTEM = "urn:oid:1.2.250.1.71.4.2.1"
RPPS_SYSTEMS = ("https://rpps.esante.gouv.fr", "http://rpps.fr")
MSSANTE_EMAIL_TYPE = (
    "https://hl7.fr/ig/fhir/core/StructureDefinition/fr-core-contact-point-email-type"
)
_CIVILITIES: Mapping[str, str] = MappingProxyType(
    {"DR": "Docteur", "PR": "Professeur", "M": "Monsieur", "MME": "Madame", "MLLE": "Mademoiselle"}
)


def _is_g15(system: str) -> bool:
    return "TRE_G15" in system or "TRE-G15" in system or system.endswith(G15_OID)


def _is_r38(system: str) -> bool:
    return "TRE_R38" in system or "TRE-R38" in system


def _dicts(value: Any) -> list[dict[str, Any]]:
    """The dict items of a JSON list; anything else is treated as absent."""
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


def _obj(value: Any) -> dict[str, Any]:
    """A JSON object, or an empty one for anything else (hostile shapes never crash)."""
    return value if isinstance(value, dict) else {}


def _strs(value: Any) -> list[str]:
    """The non-empty strings of a JSON list."""
    if not isinstance(value, list):
        return []
    return [v.strip() for v in value if isinstance(v, str) and v.strip()]


def _text(value: Any) -> str | None:
    return value.strip() or None if isinstance(value, str) else None


def _codings(concepts: Any) -> Iterable[dict[str, Any]]:
    for concept in _dicts(concepts):
        yield from _dicts(concept.get("coding"))


def _in_city(p: Practitioner, city: str) -> bool:
    wanted = fold(city)
    return any(fold(c).startswith(wanted) for c in p.cities)


def _identifiers(resource: Mapping[str, Any]) -> Iterable[tuple[str, str, set[str]]]:
    for ident in _dicts(resource.get("identifier")):
        system, value = ident.get("system"), ident.get("value")
        if isinstance(system, str) and isinstance(value, str):
            types = {
                str(c["code"])
                for c in _dicts(_obj(ident.get("type")).get("coding"))
                if isinstance(c.get("code"), str)
            }
            yield system, value.strip(), types


def _practitioner_id(resource: Mapping[str, Any]) -> PractitionerId | None:
    """The RPPS/ADELI of a Practitioner resource, from its IDNPS or RPPS identifier."""
    for system, value, types in _identifiers(resource):
        if system == IDNPS_SYSTEM or "IDNPS" in types:
            try:
                return parse_identifier(value)
            except ValueError:
                continue
    for system, value, types in _identifiers(resource):
        if system in RPPS_SYSTEMS or "RPPS" in types:
            try:
                return parse_identifier(value, "rpps")
            except ValueError:
                continue
    return None


def _matching_practitioner(bundle: Mapping[str, Any], pid: PractitionerId) -> dict[str, Any] | None:
    """The Practitioner entry carrying this very identifier (never trust the filter)."""
    for entry in _dicts(bundle.get("entry")):
        resource = entry.get("resource")
        if isinstance(resource, dict) and resource.get("resourceType") == "Practitioner":
            if _practitioner_id(resource) == pid:
                return resource
    return None


def _mailboxes(telecoms: Any) -> list[str]:
    out = []
    for t in _dicts(telecoms):
        if t.get("system") != "email" or not isinstance(t.get("value"), str):
            continue
        for ext in _dicts(t.get("extension")):
            coding = ext.get("valueCoding")
            if (
                ext.get("url") == MSSANTE_EMAIL_TYPE
                and isinstance(coding, dict)
                and coding.get("code") == "MSSANTE"
            ):
                out.append(t["value"].strip().lower())
    return out


def _to_practitioner(
    pid: PractitionerId, resource: Mapping[str, Any], roles: Mapping[str, Any] | None
) -> Practitioner:
    names = _dicts(resource.get("name"))
    name = next((n for n in names if n.get("use") in ("official", "usual")), None)
    name = name or (names[0] if names else {})
    given = _strs(name.get("given"))
    # Practice civility (suffix, e.g. DR) before civility (prefix, e.g. MME).
    titles = [t.upper() for t in _strs(name.get("suffix")) + _strs(name.get("prefix"))]
    civility = _CIVILITIES.get(titles[0], titles[0]) if titles else None

    profession: tuple[str, str | None] | None = None
    specialty: tuple[str, str | None] | None = None
    for coding in _codings([q.get("code") for q in _dicts(resource.get("qualification"))]):
        system, code = str(coding.get("system", "")), _text(coding.get("code"))
        if code and _is_g15(system) and profession is None:
            profession = (code, _text(coding.get("display")))
        elif code and _is_r38(system) and specialty is None:
            specialty = (code, _text(coding.get("display")))

    mailboxes = _mailboxes(resource.get("telecom"))
    cities: list[str] = []
    if roles is not None:
        organizations = {}
        role_list = []
        for entry in _dicts(roles.get("entry")):
            r = entry.get("resource")
            if not isinstance(r, dict):
                continue
            if r.get("resourceType") == "Organization" and isinstance(r.get("id"), str):
                organizations[f"Organization/{r['id']}"] = r
            elif r.get("resourceType") == "PractitionerRole" and r.get("active") is not False:
                role_list.append(r)
        for role in role_list:
            for coding in _codings(role.get("code")):
                code = _text(coding.get("code"))
                if code and profession is None and _is_g15(str(coding.get("system", ""))):
                    profession = (code, _text(coding.get("display")))
            for coding in _codings(role.get("specialty")):
                code = _text(coding.get("code"))
                if code and specialty is None and _is_r38(str(coding.get("system", ""))):
                    specialty = (code, _text(coding.get("display")))
            mailboxes.extend(_mailboxes(role.get("telecom")))
            ref = _obj(role.get("organization")).get("reference")
            org = organizations.get(ref) if isinstance(ref, str) else None
            for address in _dicts(org.get("address")) if org else []:
                city = _text(address.get("city"))
                if city and city not in cities:
                    cities.append(city)

    code = profession[0] if profession else None
    return Practitioner(
        idnps=pid.idnps,
        id_kind=pid.kind,
        identifier=pid.value,
        last_name=_text(name.get("family")) or "",
        first_name=" ".join(given),
        civility=civility,
        profession_code=code,
        profession_label=profession_label(code) or (profession[1] if profession else None),
        specialty_code=specialty[0] if specialty else None,
        specialty_label=specialty[1] if specialty else None,
        active=resource.get("active") is not False,
        cities=tuple(cities),
        mailboxes=tuple(dict.fromkeys(mailboxes)),
    )
