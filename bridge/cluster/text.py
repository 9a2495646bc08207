# ruff: noqa: E501  (message catalogs read best one sentence per line)
"""French and English texts of the cluster: the refusal a replica gives when stale."""

from __future__ import annotations

from collections.abc import Mapping

CATALOG: Mapping[str, Mapping[str, str]] = {
    "fr": {
        "cluster.stale": "SantéGuard ne peut pas confirmer que ses règles sont à jour (base de données injoignable depuis {seconds} s) : action refusée par précaution. Réessayez dans un instant.",
    },
    "en": {
        "cluster.stale": "SantéGuard cannot confirm its rules are up to date (database unreachable for {seconds} s): action refused as a precaution. Try again in a moment.",
    },
}
