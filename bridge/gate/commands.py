# ruff: noqa: E501  (message catalogs read best one sentence per line)
"""Identity and room-policy commands: verify, unverify, whois, room, annuaire.

They bind Matrix accounts to directory entries and set per-room rules; every change is
audited (who, when, source) and applied at once to existing members by the gatekeeper.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Protocol

from bot.commands import Arg, ArgKind, CommandError, Permission, command
from bot.context import CommandContext
from bridge.core.ports import AuditPort
from bridge.gate.policy import RoomPolicy
from bridge.identity.identifiers import IdentifierError, parse_identifier
from bridge.identity.model import (
    DirectoryLookup,
    DirectoryUnavailable,
    Practitioner,
    Verification,
    name_matches,
    profession_codes,
    profession_label,
)

CATALOG: Mapping[str, Mapping[str, str]] = {
    "fr": {
        "help.description.verify": "Associe un compte à un professionnel de l'annuaire (RPPS/ADELI).",
        "help.description.unverify": "Retire la vérification d'un compte (il quitte les salons protégés).",
        "help.description.whois": "Affiche la vérification d'un compte.",
        "help.description.room": "Règles du salon : `professions <codes…|aucune>`, `protect on|off`.",
        "help.description.annuaire": "Cherche un professionnel dans l'annuaire : nom [profession] [ville].",
        "arg.user": "utilisateur",
        "arg.identifier": "RPPS/ADELI",
        "arg.confirm": "confirmer",
        "arg.action": "action",
        "arg.values": "valeurs",
        "arg.query": "recherche",
        "gate.bad_identifier": "{message}",
        "gate.directory_down": "L'annuaire santé est injoignable ; rien n'a été modifié. Réessayez plus tard.",
        "gate.not_found": "Aucun professionnel actif avec l'identifiant {id} dans l'annuaire.",
        "gate.inactive": "{name} ({id}) n'exerce plus selon l'annuaire : vérification refusée.",
        "gate.name_mismatch": "Le nom affiché de {user} (« {display} ») ne correspond pas à {name} "
        "({id}). Si c'est bien la même personne, relancez avec `{prefix} verify {user} {id} confirmer`.",
        "gate.verified": "✅ {user} vérifié : {name}, {profession} ({id}), source {source}, "
        "valable jusqu'au {until}.",
        "gate.unverified": "{user} n'est plus vérifié ; retiré de {count} salon(s) protégé(s).",
        "gate.not_bound": "{user} n'est pas vérifié.",
        "gate.whois": "{user} : {name}, {profession} ({id}) — source {source}, vérifié le {checked}, "
        "valable jusqu'au {until}.",
        "gate.room_professions": "Professions admises dans ce salon : {list}.",
        "gate.room_professions_all": "Toutes les professions vérifiées sont admises dans ce salon.",
        "gate.room_professions_set": "Professions admises : {list}. Membres retirés : {removed}.",
        "gate.room_bad_code": "Profession inconnue : {value}.",
        "gate.room_protect": "Protection du salon : {state}. Membres retirés : {removed}.",
        "gate.room_usage": "Usage : `{prefix} room professions <codes…|aucune>` ou `{prefix} room protect on|off`.",
        "gate.room_needs_admin": "Seuls les administrateurs du réseau peuvent changer la protection d'un salon.",
        "gate.on": "activée",
        "gate.off": "désactivée",
        "gate.search_none": "Aucun professionnel trouvé pour « {query} ».",
        "gate.search_header": "Annuaire santé — {count} résultat(s) :",
        "gate.search_line": "- {name}, {profession}{city} — {matrix}{mail}",
        "gate.reachable": "joignable ici : {mxid}",
        "gate.unreachable": "pas encore sur ce réseau",
        "gate.mail": " — messagerie sécurisée : {mail}",
        "gate.search_usage": "Usage : `{prefix} annuaire <nom> [profession] [ville]`.",
    },
    "en": {
        "help.description.verify": "Bind an account to a directory practitioner (RPPS/ADELI).",
        "help.description.unverify": "Remove an account's verification (it leaves protected rooms).",
        "help.description.whois": "Show an account's verification.",
        "help.description.room": "Room rules: `professions <codes…|none>`, `protect on|off`.",
        "help.description.annuaire": "Search the health directory: name [profession] [city].",
        "arg.user": "user",
        "arg.identifier": "RPPS/ADELI",
        "arg.confirm": "confirm",
        "arg.action": "action",
        "arg.values": "values",
        "arg.query": "query",
        "gate.bad_identifier": "{message}",
        "gate.directory_down": "The health directory cannot be reached; nothing was changed. Try again later.",
        "gate.not_found": "No active practitioner with identifier {id} in the directory.",
        "gate.inactive": "{name} ({id}) no longer practises according to the directory: not verified.",
        "gate.name_mismatch": "{user}'s display name (“{display}”) does not match {name} ({id}). "
        "If this is the same person, run `{prefix} verify {user} {id} confirm`.",
        "gate.verified": "✅ {user} verified: {name}, {profession} ({id}), source {source}, "
        "valid until {until}.",
        "gate.unverified": "{user} is no longer verified; removed from {count} protected room(s).",
        "gate.not_bound": "{user} is not verified.",
        "gate.whois": "{user}: {name}, {profession} ({id}) — source {source}, checked {checked}, "
        "valid until {until}.",
        "gate.room_professions": "Professions admitted in this room: {list}.",
        "gate.room_professions_all": "Every verified profession is admitted in this room.",
        "gate.room_professions_set": "Professions admitted: {list}. Members removed: {removed}.",
        "gate.room_bad_code": "Unknown profession: {value}.",
        "gate.room_protect": "Room protection: {state}. Members removed: {removed}.",
        "gate.room_usage": "Usage: `{prefix} room professions <codes…|none>` or `{prefix} room protect on|off`.",
        "gate.room_needs_admin": "Only network admins can change a room's protection.",
        "gate.on": "on",
        "gate.off": "off",
        "gate.search_none": "No practitioner found for “{query}”.",
        "gate.search_header": "Health directory — {count} result(s):",
        "gate.search_line": "- {name}, {profession}{city} — {matrix}{mail}",
        "gate.reachable": "reachable here: {mxid}",
        "gate.unreachable": "not on this network yet",
        "gate.mail": " — secure mail: {mail}",
        "gate.search_usage": "Usage: `{prefix} annuaire <name> [profession] [city]`.",
    },
}


class GateStorePort(Protocol):
    def verification(self, user_id: str) -> Verification | None: ...
    def users_with_idnps(self, idnps: str) -> list[str]: ...
    def room(self, room_id: str) -> RoomPolicy: ...
    async def bind(self, user_id: str, verification: Verification, bound_by: str) -> None: ...
    async def unbind(self, user_id: str) -> Verification | None: ...
    async def set_room(self, room_id: str, policy: RoomPolicy, updated_by: str) -> None: ...


class EnforcerPort(Protocol):
    async def enforce_user(
        self, user_id: str, *, trigger: str, reason: str | None = None
    ) -> list[str]: ...
    async def enforce_room(self, room_id: str, *, trigger: str) -> list[str]: ...
    async def ensure_encrypted(self, room_id: str) -> bool: ...


class ProfilePort(Protocol):
    async def displayname(self, user_id: str) -> str | None: ...


def _date(dt: datetime) -> str:
    return dt.date().isoformat()


class GateCommands:
    def __init__(
        self,
        *,
        store: GateStorePort,
        enforcer: EnforcerPort,
        directory: DirectoryLookup,
        profiles: ProfilePort,
        audit: AuditPort,
        admins: frozenset[str],
        verification_days: int,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._store = store
        self._enforcer = enforcer
        self._directory = directory
        self._profiles = profiles
        self._audit = audit
        self._admins = admins
        self._ttl = timedelta(days=verification_days)
        self._clock = clock

    async def _lookup(self, idnps: str) -> Practitioner | None:
        try:
            return await self._directory.lookup(idnps)
        except DirectoryUnavailable:
            raise CommandError("gate.directory_down") from None

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
            raise CommandError("gate.bad_identifier", message=e.message(ctx.language)) from None
        practitioner = await self._lookup(pid.idnps)
        if practitioner is None:
            raise CommandError("gate.not_found", id=pid.label)
        if not practitioner.active:
            raise CommandError("gate.inactive", name=practitioner.full_name, id=pid.label)
        display = await self._profiles.displayname(user) or ""
        if confirm is None and not name_matches(display, practitioner):
            raise CommandError(
                "gate.name_mismatch",
                user=user,
                display=display,
                name=practitioner.full_name,
                id=pid.value,
                prefix=ctx.prefix,
            )
        verification = Verification.of(practitioner, "manual", self._clock(), self._ttl)
        await self._store.bind(user, verification, bound_by=ctx.sender)
        await self._audit.record(
            ctx.sender,
            "identity.bound",
            room_id=ctx.room_id,
            subject=user,
            details={
                "idnps": practitioner.idnps,
                "source": "manual",
                "directory_check": True,
                "name_confirmed": confirm is not None,
            },
        )
        await ctx.reply_t(
            "gate.verified",
            user=user,
            name=practitioner.full_name,
            profession=practitioner.profession_label or "?",
            id=pid.label,
            source="annuaire",
            until=_date(verification.valid_until),
        )

    @command(
        "unverify",
        "help.description.unverify",
        args=(Arg("user", ArgKind.MXID, label_key="arg.user"),),
        permission=Permission.NETWORK_ADMIN,
    )
    async def unverify(self, ctx: CommandContext, user: str) -> None:
        previous = await self._store.unbind(user)
        if previous is None:
            raise CommandError("gate.not_bound", user=user)
        await self._audit.record(
            ctx.sender,
            "identity.unbound",
            room_id=ctx.room_id,
            subject=user,
            details={"idnps": previous.idnps},
        )
        removed = await self._enforcer.enforce_user(user, trigger=f"unverify by {ctx.sender}")
        await ctx.reply_t("gate.unverified", user=user, count=len(removed))

    @command(
        "whois",
        "help.description.whois",
        args=(Arg("user", ArgKind.MXID, label_key="arg.user"),),
        aliases=("qui",),
    )
    async def whois(self, ctx: CommandContext, user: str) -> None:
        v = self._store.verification(user)
        if v is None:
            raise CommandError("gate.not_bound", user=user)
        kind = "RPPS" if v.idnps.startswith("8") else "ADELI"
        await ctx.reply_t(
            "gate.whois",
            user=user,
            name=f"{v.first_name} {v.last_name}".strip(),
            profession=profession_label(v.profession_code) or "?",
            id=f"{kind} {v.idnps[1:]}",
            source=v.source,
            checked=_date(v.checked_at),
            until=_date(v.valid_until),
        )

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
        removed = await self._enforcer.enforce_room(
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
            removed = await self._enforcer.enforce_room(
                ctx.room_id, trigger=f"protect by {ctx.sender}"
            )
            await self._enforcer.ensure_encrypted(ctx.room_id)
        await ctx.reply_t(
            "gate.room_protect",
            state=ctx.t("gate.on" if protected else "gate.off"),
            removed=len(removed),
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
            results = await self._directory.search(name, profession, city, 10)
        except DirectoryUnavailable:
            raise CommandError("gate.directory_down") from None
        if not results:
            await ctx.reply_t("gate.search_none", query=query)
            return
        lines = [ctx.t("gate.search_header", count=len(results))]
        for p in results:
            mxids = self._store.users_with_idnps(p.idnps)
            matrix = (
                ctx.t("gate.reachable", mxid=", ".join(mxids))
                if mxids
                else ctx.t("gate.unreachable")
            )
            mail = ctx.t("gate.mail", mail=", ".join(p.mailboxes)) if p.mailboxes else ""
            city_txt = f", {p.cities[0]}" if p.cities else ""
            lines.append(
                ctx.t(
                    "gate.search_line",
                    name=f"{p.civility + ' ' if p.civility else ''}{p.full_name}",
                    profession=p.profession_label or "?",
                    city=city_txt,
                    matrix=matrix,
                    mail=mail,
                )
            )
        await ctx.reply("\n".join(lines))
