"""Identity commands: `verify`, `unverify`, `whois`, `annuaire`.

They bind Matrix accounts to directory entries through the one binding path
(:class:`~bridge.identity.bind.Binder`); every change is audited, and an unbinding is
applied at once to existing memberships by the gate (through its port).
"""

from __future__ import annotations

from datetime import datetime
from typing import Protocol

from mautrix.util.async_db import Connection

from bot.commands import Arg, ArgKind, CommandError, Permission, command
from bot.context import CommandContext
from bridge.core.ports import AuditPort, MemberEnforcerPort
from bridge.core.professions import profession_codes, profession_label
from bridge.identity.bind import Binder
from bridge.identity.identifiers import IdentifierError, parse_identifier
from bridge.identity.model import DirectoryUnavailable
from bridge.identity.store import VerificationStore


class ProfilePort(Protocol):
    async def displayname(self, user_id: str) -> str | None: ...


def _date(dt: datetime) -> str:
    return dt.date().isoformat()


class IdentityCommands:
    def __init__(
        self,
        *,
        binder: Binder,
        store: VerificationStore,
        enforcer: MemberEnforcerPort,
        profiles: ProfilePort,
        audit: AuditPort,
    ) -> None:
        self._binder = binder
        self._store = store
        self._enforcer = enforcer
        self._profiles = profiles
        self._audit = audit

    @command(
        "verify",
        "help.description.verify",
        args=(
            Arg("user", ArgKind.MXID, label_key="arg.user"),
            Arg("identifier", label_key="arg.identifier"),
            Arg(
                "confirm", optional=True, choices=("confirmer", "confirm"), label_key="arg.confirm"
            ),
        ),
        permission=Permission.NETWORK_ADMIN,
        aliases=("verifier",),
    )
    async def verify(
        self, ctx: CommandContext, user: str, identifier: str, confirm: str | None = None
    ) -> None:
        try:
            pid = parse_identifier(identifier)
        except IdentifierError as e:
            raise CommandError(e.text_key, **e.text_params) from None
        display = await self._profiles.displayname(user) or ""
        try:
            outcome = await self._binder.verify(
                user,
                pid.idnps,
                source="manual",
                actor=ctx.sender,
                room_id=ctx.room_id,
                display_name=display,
                name_confirmed=confirm is not None,
            )
        except DirectoryUnavailable:
            raise CommandError("identity.directory_down_nothing_changed") from None
        p = outcome.practitioner
        if outcome.status == "not_found" or p is None:
            raise CommandError("identity.not_found", id=pid.label)
        if outcome.status == "inactive":
            raise CommandError("identity.inactive", name=p.full_name, id=pid.label)
        if outcome.status == "name_mismatch":
            raise CommandError(
                "identity.name_mismatch",
                user=user,
                display=display,
                name=p.full_name,
                id=pid.value,
                prefix=ctx.prefix,
            )
        assert outcome.verification is not None
        await ctx.reply_t(
            "identity.verified",
            user=user,
            name=p.full_name,
            profession=p.profession_label or "?",
            id=pid.label,
            source="annuaire",
            until=_date(outcome.verification.valid_until),
        )

    @command(
        "unverify",
        "help.description.unverify",
        args=(Arg("user", ArgKind.MXID, label_key="arg.user"),),
        permission=Permission.NETWORK_ADMIN,
    )
    async def unverify(self, ctx: CommandContext, user: str) -> None:
        """The unbinding and the removals it calls for commit together; the enforcement
        worker then removes the user from each room until the homeserver confirms."""
        if self._store.verification(user) is None:
            raise CommandError("identity.not_bound", user=user)
        rooms: list[str] = []

        async def plan(conn: Connection) -> None:
            rooms.extend(
                await self._enforcer.plan_unbound(conn, user, trigger=f"unverify by {ctx.sender}")
            )

        previous = await self._store.unbind(user, then=plan)
        self._enforcer.wake()
        await self._audit.record(
            ctx.sender,
            "identity.unbound",
            room_id=ctx.room_id,
            subject=user,
            details={"idnps": previous.idnps if previous else None, "rooms": len(rooms)},
        )
        await ctx.reply_t("identity.unverified", user=user, count=len(rooms))

    @command(
        "whois",
        "help.description.whois",
        args=(Arg("user", ArgKind.MXID, label_key="arg.user"),),
        aliases=("qui",),
    )
    async def whois(self, ctx: CommandContext, user: str) -> None:
        v = self._store.verification(user)
        if v is None:
            raise CommandError("identity.not_bound", user=user)
        kind = "RPPS" if v.idnps.startswith("8") else "ADELI"
        await ctx.reply_t(
            "identity.whois",
            user=user,
            name=f"{v.first_name} {v.last_name}".strip(),
            profession=profession_label(v.profession_code) or "?",
            id=f"{kind} {v.idnps[1:]}",
            source=v.source,
            checked=_date(v.checked_at),
            until=_date(v.valid_until),
        )

    @command(
        "annuaire",
        "help.description.annuaire",
        args=(Arg("query", ArgKind.REST, label_key="arg.query"),),
        aliases=("directory",),
    )
    async def annuaire(self, ctx: CommandContext, query: str) -> None:
        tokens = query.split()
        name = tokens[0]
        profession: str | None = None
        city: str | None = None
        rest = tokens[1:]
        if rest and profession_codes(rest[0]):
            profession = rest.pop(0)
        if rest:
            city = " ".join(rest)
        try:
            results = await self._binder.directory.search(name, profession, city, 10)
        except DirectoryUnavailable:
            raise CommandError("identity.directory_down_nothing_changed") from None
        if not results:
            await ctx.reply_t("identity.search_none", query=query)
            return
        lines = [ctx.t("identity.search_header", count=len(results))]
        for p in results:
            mxids = self._store.users_with_idnps(p.idnps)
            matrix = (
                ctx.t("identity.reachable", mxid=", ".join(mxids))
                if mxids
                else ctx.t("identity.unreachable")
            )
            mail = ctx.t("identity.mail", mail=", ".join(p.mailboxes)) if p.mailboxes else ""
            city_txt = f", {p.cities[0]}" if p.cities else ""
            lines.append(
                ctx.t(
                    "identity.search_line",
                    name=f"{p.civility + ' ' if p.civility else ''}{p.full_name}",
                    profession=p.profession_label or "?",
                    city=city_txt,
                    matrix=matrix,
                    mail=mail,
                )
            )
        await ctx.reply("\n".join(lines))
