"""Room rules: `!sg room professions …` and `!sg room protect on|off`.

A change is audited and applied at once: members the new rule no longer admits are
removed by the backstop, and a newly protected room gets encryption switched on.
"""

from __future__ import annotations

from bot.commands import Arg, ArgKind, CommandError, Permission, command
from bot.context import CommandContext
from bridge.core.ports import AuditPort, EncryptionEnforcerPort
from bridge.core.professions import profession_codes, profession_label
from bridge.gate.backstop import Backstop
from bridge.gate.policy import RoomPolicy
from bridge.gate.store import RoomPolicyStore


class RoomCommands:
    def __init__(
        self,
        *,
        store: RoomPolicyStore,
        backstop: Backstop,
        encryption: EncryptionEnforcerPort,
        audit: AuditPort,
        admins: frozenset[str],
    ) -> None:
        self._store = store
        self._backstop = backstop
        self._encryption = encryption
        self._audit = audit
        self._admins = admins

    @command(
        "room",
        "help.description.room",
        args=(
            Arg("action", choices=("professions", "protect"), label_key="arg.action"),
            Arg("values", ArgKind.REST, optional=True, label_key="arg.values"),
        ),
        permission=Permission.ROOM_ADMIN,
        aliases=("salon",),
    )
    async def room(self, ctx: CommandContext, action: str, values: str | None = None) -> None:
        current = self._store.room(ctx.room_id)
        if action == "professions":
            await self._room_professions(ctx, current, values)
        else:
            await self._room_protect(ctx, current, values)

    async def _room_professions(
        self, ctx: CommandContext, current: RoomPolicy, values: str | None
    ) -> None:
        if not values:
            if current.professions:
                names = ", ".join(profession_label(c) or c for c in sorted(current.professions))
                await ctx.reply_t("gate.room_professions", list=names)
            else:
                await ctx.reply_t("gate.room_professions_all")
            return
        tokens = values.split()
        if [t.lower() for t in tokens] in (["aucune"], ["none"], ["toutes"], ["all"]):
            codes: frozenset[str] = frozenset()
        else:
            found: set[str] = set()
            for token in tokens:
                matched = profession_codes(token)
                if not matched or not all(profession_label(c) for c in matched):
                    raise CommandError("gate.room_bad_code", value=token)
                found.update(matched)
            codes = frozenset(found)
        await self._store.set_room(
            ctx.room_id, RoomPolicy(protected=current.protected, professions=codes), ctx.sender
        )
        await self._audit.record(
            ctx.sender,
            "room.professions",
            room_id=ctx.room_id,
            details={"professions": sorted(codes)},
        )
        removed = await self._backstop.enforce_room(
            ctx.room_id, trigger=f"room rule by {ctx.sender}"
        )
        names = ", ".join(profession_label(c) or c for c in sorted(codes)) or "*"
        await ctx.reply_t("gate.room_professions_set", list=names, removed=len(removed))

    async def _room_protect(
        self, ctx: CommandContext, current: RoomPolicy, values: str | None
    ) -> None:
        if ctx.sender not in self._admins:
            raise CommandError("gate.room_needs_admin")
        state = (values or "").strip().lower()
        if state not in ("on", "off"):
            raise CommandError("gate.room_usage", prefix=ctx.prefix)
        protected = state == "on"
        await self._store.set_room(
            ctx.room_id,
            RoomPolicy(protected=protected, professions=current.professions),
            ctx.sender,
        )
        await self._audit.record(
            ctx.sender, "room.protection", room_id=ctx.room_id, details={"protected": protected}
        )
        removed: list[str] = []
        if protected:
            removed = await self._backstop.enforce_room(
                ctx.room_id, trigger=f"protect by {ctx.sender}"
            )
            await self._encryption.ensure_encrypted(ctx.room_id)
        await ctx.reply_t(
            "gate.room_protect",
            state=ctx.t("gate.on" if protected else "gate.off"),
            removed=len(removed),
        )
