# ruff: noqa: E501  (message catalogs read best one sentence per line)
"""French and English texts of the retention capability (refusals are rendered by the gate,
under ``gate.reason.*``, like every refusal the homeserver shows)."""

from __future__ import annotations

from collections.abc import Mapping

CATALOG: Mapping[str, Mapping[str, str]] = {
    "fr": {
        "gate.reason.retention_missing_max": "Refusé : la politique de conservation d'un salon protégé doit fixer une durée maximale (max_lifetime).",
        "gate.reason.retention_malformed": "Refusé : politique de conservation illisible (max_lifetime et min_lifetime sont des nombres entiers de millisecondes, min ≤ max).",
        "gate.reason.retention_out_of_bounds": "Refusé : une conservation de {value} jours sort des bornes du réseau ({low} à {high} jours).",
    },
    "en": {
        "gate.reason.retention_missing_max": "Refused: a protected room's retention policy must set a maximum lifetime (max_lifetime).",
        "gate.reason.retention_malformed": "Refused: unreadable retention policy (max_lifetime and min_lifetime are whole milliseconds, min ≤ max).",
        "gate.reason.retention_out_of_bounds": "Refused: keeping history {value} days is outside the network's bounds ({low} to {high} days).",
    },
}
