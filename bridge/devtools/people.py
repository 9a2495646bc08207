"""Made-up directory entries for tests, benchmarks and demos.

A :class:`Practitioner` has eleven required fields, most of which these callers do not
care about; this builds one from the few that matter and fills the rest in one place.
"""

from __future__ import annotations

from bridge.identity.model import Practitioner, profession_label

__all__ = ["practitioner"]


def practitioner(
    n: int,
    *,
    last: str,
    first: str,
    civility: str = "DR",
    profession: str = "10",
) -> Practitioner:
    """An active RPPS practitioner numbered ``n``: RPPS ``10`` + ``n`` on nine digits.

    ``profession`` is a G15 code (``10`` médecin, ``60`` infirmier); its label follows.
    """
    rpps = f"10{n:09d}"
    return Practitioner(
        idnps=f"8{rpps}",
        id_kind="rpps",
        identifier=rpps,
        last_name=last,
        first_name=first,
        civility=civility,
        profession_code=profession,
        profession_label=profession_label(profession),
        specialty_code=None,
        specialty_label=None,
        active=True,
    )
