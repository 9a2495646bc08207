"""The ``!sg audit`` reply: a purge-proof audit run in the reader's language (texts
under ``retention.audit.*`` in :mod:`bridge.retention.text`)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from bridge.retention.audit import AuditRun, RoomResult


def render(run: AuditRun, t: Callable[..., str], lang: str, *, max_rooms: int = 15) -> str:
    """The ``!sg audit`` reply: the run's verdict, counts, then the rooms needing a look
    (violations with evidence, unproven, policy problems). ``t`` is ``TextPort.t``."""
    s = run.summary()
    lines = [t(f"retention.audit.verdict.{s['verdict']}", lang)]
    if s["reason"]:
        lines.append(t(f"retention.audit.reason.{s['reason']}", lang))
    lines.append(t("retention.audit.counts", lang, **s))
    if run.media is not None:
        lines.append(t("retention.audit.media", lang, **s))
    flagged: Sequence[RoomResult] = [
        r for r in run.rooms if r.result.verdict != "proven" or r.result.policy_state != "ok"
    ]
    for r in flagged[:max_rooms]:
        v = r.result
        line = t(f"retention.audit.room.{v.verdict}", lang, room=r.room_id, **v.row())
        if v.reason and v.verdict == "cannot_prove":
            line += " " + t(f"retention.audit.reason.{v.reason}", lang)
        if v.policy_state != "ok":
            line += " " + t(f"retention.audit.policy.{v.policy_state}", lang)
        if v.evidence:
            line += " " + t(
                "retention.audit.evidence", lang, ids=", ".join(v.evidence[:5]), count=v.present
            )
        lines.append(line)
    if len(flagged) > max_rooms:
        lines.append(t("retention.audit.more_rooms", lang, count=len(flagged) - max_rooms))
    return "\n".join(lines)
