"""`make demo` runs its whole scenario, in the language asked, and leaves nothing behind."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from bridge.devtools.dovecot import DOVECOT_BIN

pytestmark = pytest.mark.synapse

# The mail part needs Dovecot (`make demo` and `make test` install it); without it the demo
# says it skips that part, and this test checks that instead unless Dovecot is required.
MAIL = DOVECOT_BIN.exists() or os.environ.get("SANTEGUARD_REQUIRE_DOVECOT") == "1"
CORRESPONDENT = "dr.durand@chu-exemple.mssante.test"


def _run_demo(workdir: Path, lang: str, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "bridge.devtools.demo",
            "--once",
            "--lang",
            lang,
            "--workdir",
            str(workdir),
            *extra,
        ],
        capture_output=True,
        text=True,
        timeout=180,
        env={**os.environ},
    )


def _no_process_left(workdir: Path) -> None:
    ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    assert str(workdir) not in ps


def _bot_replies(out: str, marker: str) -> list[str]:
    return [line.split(marker, 1)[1] for line in out.splitlines() if marker in line]


@pytest.mark.parametrize("lang", ["fr", "en"])
def test_demo_runs_once_and_cleans_up(tmp_path: Path, lang: str) -> None:
    workdir = tmp_path / "demo"
    proc = _run_demo(workdir, lang, "--keep")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    if lang == "fr":
        assert "bot : pong" in out
        assert "chaîne de hachage intacte" in out
        # Clear room, invite, join, message, 10-year retention.
        assert out.count("REFUSÉ par le homeserver") == 5
        assert "m.room.retention = 180 jours (bornes du réseau : 1 à 365 jours)" in out
        assert "3650 jours sort des bornes du réseau" in out
        assert "compte de contrôle, aux membres : Politique de conservation" in out
        assert "Point de contrôle signé (Ed25519)" in out
        assert "n'exerce plus selon l'Annuaire Santé" in out
        assert "déchiffrée par le Dr Exemple : **Chiffrement de ce salon**" in out
        assert "ce que le serveur stocke : m.room.encrypted (m.megolm.v1.aes-sha2)" in out
        assert f"Répertoire de travail gardé (--keep) : {workdir}" in out
    else:
        assert "bot: pong" in out
        assert "hash chain intact" in out
        assert out.count("REFUSED by the homeserver") == 5
        assert "m.room.retention = 180 days (network bounds: 1 to 365 days)" in out
        assert "enforcement account, to the members: This room's retention policy" in out
        # The bot answers in the demo's language, not only the narration.
        assert "bot: pong — latency:" in out
        assert "verified: Julien EXEMPLE" in out
        assert "has an invalid check key" in out
        assert "Health directory — 1 result(s)" in out
        assert "decrypted by Dr Exemple: **Encryption of this room**" in out
        assert "what the server stores: m.room.encrypted (m.megolm.v1.aes-sha2)" in out
        # Refusals the homeserver shows are bilingual, the configured language first.
        english = (
            "must be end-to-end encrypted",
            "is not a verified",
            "Message refused",
            "outside the network's bounds",
        )
        for reason in _bot_replies(out, "REFUSED by the homeserver: "):
            assert any(text in reason.split(" / ")[0] for text in english), reason
        assert "reason shown: “@ide.pansement:santeguard.test no longer practises" in out
        for reply in _bot_replies(out, "↳ bot: "):
            for french in ("délai", "vérifié", "clé de contrôle", "résultat", "joignable"):
                assert french not in reply, reply
        assert f"Working directory kept (--keep): {workdir}" in out
    _check_mail_part(out, lang)
    # The DPO report was written, self-contained, in the demo's language.
    report = (workdir / "rapport-dpo.html").read_text(encoding="utf-8")
    assert "RCP oncologie" in report and "<script" not in report
    assert ("Rapport DPO" if lang == "fr" else "DPO report") in report
    # No synapse (nor relay, nor Dovecot) left running from this workdir.
    _no_process_left(workdir)
    log = (workdir / "santeguard.log").read_text()
    registration = (workdir / "registration.yaml").read_text()
    for line in registration.splitlines():
        if line.startswith(("as_token:", "hs_token:")):
            assert line.split(":", 1)[1].strip() not in log


def _check_mail_part(out: str, lang: str) -> None:
    """A room linked to the local mailbox: a mail out, an XDM reply back in, encrypted."""
    if not MAIL:
        assert ("Dovecot n'est pas installé" if lang == "fr" else "Dovecot is not installed") in out
        return
    bot = "bot : " if lang == "fr" else "bot: "
    assert (
        f"tape : !sg mail link {CORRESPONDENT}" in out
        or f"types: !sg mail link {CORRESPONDENT}" in out
    )
    linked = "Salon lié à" if lang == "fr" else "Room linked to"
    assert f"{bot}{linked} {CORRESPONDENT}" in out
    # The relay saw mutual TLS (our client certificate) and a From with name and RPPS.
    relay = [line for line in out.splitlines() if "MAIL FROM cpts@cpts.mssante.test" in line]
    assert len(relay) == 1 and "CN=SantéGuard ORG AUTH_CLI" in relay[0], relay
    assert f"RCPT TO {CORRESPONDENT}" in relay[0]
    sep = " : " if lang == "fr" else ": "
    assert f'From{sep}"Julien EXEMPLE (RPPS 10999990012)" <cpts@cpts.mssante.test>' in out
    assert f"Message-ID{sep}<sg." in out and f"Reply-To{sep}cpts+" in out
    sent = "✓ Envoyé à" if lang == "fr" else "✓ Sent to"
    assert f"{bot}{sent} {CORRESPONDENT}" in out
    # The reply comes back into the room from the correspondent's ghost, decrypted.
    ghost = "@santeguard_mail_dr.durand=40chu-exemple.mssante.test:santeguard.test"
    arrived = [line for line in out.splitlines() if ghost in line]
    assert len(arrived) == 1 and (
        "ECG relu : normal" in arrived[0] or "ECG read: normal" in arrived[0]
    )
    assert out.count("m.room.encrypted (m.megolm.v1.aes-sha2)") == 2  # the bot's, the ghost's
    listing = "Documents IHE XDM reçus (2)" if lang == "fr" else "IHE XDM documents received (2)"
    assert listing in out
    same = "identique au document envoyé" if lang == "fr" else "identical to the document sent"
    for name in ("CR-consultation-cardio.xml", "ECG-repos.pdf"):
        assert any(name in line and line.endswith(same) for line in out.splitlines()), name


@pytest.mark.parametrize("lang", ["fr", "en"])
def test_demo_deletes_its_working_directory(tmp_path: Path, lang: str) -> None:
    """Without --keep, tokens, keys and databases are gone when the demo stops, as it says."""
    workdir = tmp_path / "demo"
    proc = _run_demo(workdir, lang)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    announced, done = {
        "fr": (
            f"Répertoire de travail (jetons, clés, bases, journaux) : {workdir} — "
            "supprimé à l'arrêt de la démo",
            f"Répertoire de travail supprimé : {workdir}",
        ),
        "en": (
            f"Working directory (tokens, keys, databases, logs): {workdir} — "
            "deleted when the demo stops",
            f"Working directory deleted: {workdir}",
        ),
    }[lang]
    assert announced in out
    assert done in out
    assert out.rstrip().endswith(("Terminé.", "Done."))
    assert not workdir.exists()
    assert list(tmp_path.iterdir()) == []
    _no_process_left(workdir)


def test_demo_refuses_to_delete_a_directory_that_is_not_its_own(tmp_path: Path) -> None:
    precious = tmp_path / "precious.txt"
    precious.write_text("not demo data", encoding="utf-8")
    proc = _run_demo(tmp_path, "en")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "is not a demo directory" in proc.stdout
    assert precious.read_text(encoding="utf-8") == "not demo data"
