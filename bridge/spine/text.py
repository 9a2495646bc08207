# ruff: noqa: E501  (message catalogs read best one sentence per line)
"""French and English texts of the spine: what the admins are told about dispatch."""

from __future__ import annotations

from collections.abc import Mapping

CATALOG: Mapping[str, Mapping[str, str]] = {
    "fr": {
        "alert.room_stuck": "Le salon {room} est bloqué : un événement {event_type} échoue depuis le {since} ({error}). Les autres salons sont servis ; ses événements suivants attendent, sans perte, et il reprendra dès que l'erreur cessera.",
    },
    "en": {
        "alert.room_stuck": "Room {room} is stuck: an {event_type} event has been failing since {since} ({error}). Other rooms are served; its next events wait, nothing is lost, and it resumes as soon as the error stops.",
    },
}
