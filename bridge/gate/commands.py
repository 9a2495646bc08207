"""Room rules: `!sg room professions …` and `!sg room protect on|off`.

A change is audited and applied at once: the removal of members the new rule no longer
admits is written with the rule (the enforcement worker carries it out), and a newly
protected room gets encryption switched on.
"""

from __future__ import annotations

from mautrix.util.async_db import Connection

from bot.commands import Arg, ArgKind, CommandError, Permission, command
from bot.context import CommandContext
from bridge.core.ports import AuditPort, EncryptionEnforcerPort
from bridge.core.professions import profession_codes, profession_label
from bridge.gate.enforce import Enforcer
from bridge.gate.policy import RoomPolicy
from bridge.gate.store import RoomPolicyStore


class RoomCommands:
    def __init__(
        self,
        *,
        store: RoomPolicyStore,
        enforcer: Enforcer,
        encryption: EncryptionEnforcerPort,
        audit: AuditPort,
        admins: frozenset[str],
    ) -> None:
        self._store = store
        self._enforcer = enforcer
        self._encryption = encryption
        self._audit = audit
        self._admins = admins

    async def _apply(self, ctx: CommandContext, new: RoomPolicy, *, trigger: str) -> list[str]:
        """Store the rule and the removals it calls for in one transaction."""
        removed: list[str] = []

        async def plan(conn: Connection) -> None:
            removed.extend(await self._enforcer.plan_room(conn, ctx.room_id, new, trigger=trigger))

        await self._store.set_room(ctx.room_id, new, ctx.sender, then=plan)
        self._enforcer.wake()
        return removed

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
        new = RoomPolicy(
            protected=current.protected, professions=codes, admin_room=current.admin_room
        )
        removed = await self._apply(ctx, new, trigger=f"room rule by {ctx.sender}")
        await self._audit.record(
            ctx.sender,
            "room.professions",
            room_id=ctx.room_id,
            details={"professions": sorted(codes), "removals": len(removed)},
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
        # Protecting an admin room makes it a practitioners' room (closed admin rooms
        # are not protected rooms); unprotecting one leaves it an admin room.
        new = RoomPolicy(
            protected=protected,
            professions=current.professions,
            admin_room=current.admin_room and not protected,
        )
        removed = await self._apply(ctx, new, trigger=f"protect by {ctx.sender}")
        await self._audit.record(
            ctx.sender,
            "room.protection",
            room_id=ctx.room_id,
            details={"protected": protected, "removals": len(removed)},
        )
        if protected:
            await self._encryption.ensure_encrypted(ctx.room_id)
        await ctx.reply_t(
            "gate.room_protect",
            state=ctx.t("gate.on" if protected else "gate.off"),
            removed=len(removed),
        )
