"""Identity end to end: extract import, `!sg verify/whois/annuaire`, re-verification."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import pytest

from bridge.devtools.client import SimpleClient
from bridge.devtools.people import practitioner
from bridge.devtools.stack import DevStack
from bridge.identity.identifiers import luhn_key
from bridge.identity.model import DirectoryUnavailable, Practitioner
from bridge.identity.sources.extract import import_extract
from tests.test_integration_gate import ENCRYPTED, wait_until

pytestmark = pytest.mark.synapse
_n = itertools.count()
SAMPLE = Path(__file__).parent / "data" / "PS_LibreAcces_Personne_activite_sample.txt"


def bot_says(stack: DevStack, fragment: str) -> Any:
    return lambda ev: (
        ev.get("sender") == stack.bot_mxid and fragment in ev.get("content", {}).get("body", "")
    )


async def admin_room(stack: DevStack) -> tuple[SimpleClient, str]:
    """The network admin's clear room with the bot (where admin commands are typed)."""
    _, client = await stack.admin()
    room = await client.create_room(name=f"Admin {next(_n)}", invite=(stack.bot_mxid,))
    assert stack.santeguard is not None and stack.santeguard.gatekeeper is not None
    gk = stack.santeguard.gatekeeper
    await wait_until(lambda: _not_protected(gk, room))
    await client.wait_for_recent(room, bot_says(stack, "salon d'administration"))
    return client, room


async def _not_protected(gk: Any, room: str) -> bool:
    return not gk.is_protected(room)


@pytest.fixture
async def identity_stack(gated_stack: DevStack) -> DevStack:
    sg = gated_stack.santeguard
    assert sg is not None
    await import_extract(sg.db, SAMPLE)
    return gated_stack


async def test_verify_whois_and_annuaire(identity_stack: DevStack) -> None:
    stack = identity_stack
    doc_user, doc = await stack.user(f"julien{next(_n)}", displayname="Dr Julien Exemple")
    other_user, other = await stack.user(f"jean{next(_n)}", displayname="Jean Autre")
    admin, room = await admin_room(stack)
    async with admin, doc, other:
        await admin.send_text(room, f'!sg verify {doc_user.user_id} "109 9999 0012"')
        ok = await admin.wait_for_recent(room, bot_says(stack, "✅ " + doc_user.user_id))
        assert "Julien EXEMPLE" in ok["content"]["body"]
        assert "Médecin" in ok["content"]["body"]

        # Bad check key: precise message, nothing bound.
        await admin.send_text(room, f"!sg verify {other_user.user_id} 10999990013")
        bad = await admin.wait_for_recent(room, bot_says(stack, "clé de contrôle"))
        assert "10999990013" in bad["content"]["body"]

        # Display name does not match the directory: confirmation required.
        await admin.send_text(room, f"!sg verify {other_user.user_id} 10999990020")
        await admin.wait_for_recent(room, bot_says(stack, "ne correspond pas"))
        sg = stack.santeguard
        assert sg is not None
        assert sg.verifications.verification(other_user.user_id) is None
        await admin.send_text(room, f"!sg verify {other_user.user_id} 10999990020 confirmer")
        await admin.wait_for_recent(room, bot_says(stack, "✅ " + other_user.user_id))
        assert sg.verifications.verification(other_user.user_id) is not None

        await admin.send_text(room, f"!sg whois {doc_user.user_id}")
        who = await admin.wait_for_recent(room, bot_says(stack, "source manual"))
        assert "RPPS 10999990012" in who["content"]["body"]

        await admin.send_text(room, "!sg annuaire fictive")
        found = await admin.wait_for_recent(room, bot_says(stack, "Annuaire santé"))
        assert other_user.user_id in found["content"]["body"]
        assert "Nantes" in found["content"]["body"]

        # The verified doctor can now create a protected room; the audit names the binder.
        await doc.create_room(initial_state=ENCRYPTED)
    mine = {doc_user.user_id, other_user.user_id}  # other tests bind people too
    bound = [
        e for e in await sg.audit.recent(200) if e.action == "identity.bound" and e.subject in mine
    ]
    assert {e.subject for e in bound} == mine
    assert all(e.actor == admin.user_id for e in bound)


class DownDirectory:
    async def lookup(self, idnps: str) -> Practitioner | None:
        raise DirectoryUnavailable("connection refused (test)")

    async def search(self, *a: Any) -> list[Practitioner]:
        raise DirectoryUnavailable("connection refused (test)")


async def test_reverification_removes_deactivated_and_never_on_outage(
    identity_stack: DevStack, tmp_path: Path
) -> None:
    stack = identity_stack
    sg = stack.santeguard
    assert sg is not None and sg.reverifier is not None
    directory = await sg.directory.lookup("810999990053")  # Bernard ANCIEN
    assert directory is not None
    _, doc = await stack.practitioner(f"idoc{next(_n)}", directory)
    leaver_user, leaver = await stack.practitioner(f"ancien{next(_n)}", directory)
    async with doc, leaver:
        room = await doc.create_room(initial_state=ENCRYPTED)
        await doc.invite(room, leaver_user.user_id)
        await leaver.join(room)
        await wait_until(lambda: _member(sg, room, leaver_user.user_id))

        # Directory down: nobody is removed, an alert is recorded.
        real = sg.binder._directory
        sg.binder._directory = DownDirectory()
        report = await sg.reverifier.run_once()
        sg.binder._directory = real
        assert report.unreachable and report.deactivated == []
        assert leaver_user.user_id in await doc.joined_members(room)
        actions = [e.action for e in await sg.audit.recent(10)]
        assert "reverify.directory_unreachable" in actions

        # A new extract without Bernard ANCIEN: he is unbound and removed everywhere.
        lines = SAMPLE.read_text(encoding="utf-8").splitlines(keepends=True)
        new = tmp_path / "extract.txt"
        new.write_text("".join(line for line in lines if "|10999990053|" not in line))
        await import_extract(sg.db, new)
        report = await sg.reverifier.run_once()
        assert leaver_user.user_id in report.deactivated
        assert room in report.removed_from[leaver_user.user_id]
        assert sg.verifications.verification(leaver_user.user_id) is None
        # The removal was planned durably with the unbinding; the worker carries it out.
        await wait_until(lambda: _gone(doc, room, leaver_user.user_id))
    await import_extract(sg.db, SAMPLE)  # restore for other tests


async def _gone(client: SimpleClient, room: str, user: str) -> bool:
    return user not in await client.joined_members(room)


async def _member(sg: Any, room: str, user: str) -> bool:
    return user in await sg.room_policies.members_of(room)


async def test_pro_sante_connect_binds_at_first_gate_check(identity_stack: DevStack) -> None:
    """An account whose Synapse login came from PSC (external id = IDNPS) is verified
    without any admin command, the first time the gate meets it; a PSC id the
    directory does not know verifies nobody."""
    stack = identity_stack
    sg = stack.santeguard
    assert sg is not None
    token = await stack.synapse.admin_token()
    _, doc = await stack.practitioner(f"pdoc{next(_n)}", _directory_entry_placeholder())
    psc_user, psc = await stack.user(f"psc{next(_n)}")
    ghost_user, _ = await stack.user(f"ghost{next(_n)}")
    unknown = "8" + "1099999999" + luhn_key("1099999999")  # valid key, not in the directory
    for user, ext in ((psc_user, "810999990061"), (ghost_user, unknown)):
        await stack.synapse.request(
            "PUT",
            f"/_synapse/admin/v2/users/{user.user_id}",
            token=token,
            json={"external_ids": [{"auth_provider": "oidc-psc", "external_id": ext}]},
        )
    async with doc, psc:
        room = await doc.create_room(initial_state=ENCRYPTED)
        await doc.invite(room, psc_user.user_id)  # gate: unverified → PSC → TEMOIN Sophie
        await psc.join(room)
        v = sg.verifications.verification(psc_user.user_id)
        assert v is not None and v.source == "psc" and v.last_name == "TEMOIN"
        from bridge.devtools.client import MatrixError

        with pytest.raises(MatrixError) as err:
            await doc.invite(room, ghost_user.user_id)
        assert err.value.status == 403
    actions = {(e.action, e.subject) for e in await sg.audit.recent(30)}
    assert ("identity.bound", psc_user.user_id) in actions
    assert ("identity.psc_refused", ghost_user.user_id) in actions


def _directory_entry_placeholder() -> Practitioner:
    return practitioner(999_990_038, last="MODELE", first="Antoine", civility="PR")
