"""The generated references (docs/configuration*.md, docs/commands*.md) follow the code.

They are rebuilt from the settings model and the command registry and compared with the
committed files; a key without a description (English in the model, French in
``bridge.devtools.reference_fr``) or a French text for a key that is gone stops the
generation; and changing the model or a help text changes the output.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import Field

from bot.commands import CommandRegistry, command
from bot.context import CommandContext
from bot.i18n import Translator
from bridge.config import Config, HomeserverConfig
from bridge.devtools import reference_fr
from bridge.devtools.reference import FILES, generate, stale_files
from bridge.devtools.reference_commands import (
    app_registry,
    default_translator,
    groups_of,
    render_commands,
)
from bridge.devtools.reference_config import (
    ReferenceGapError,
    check_catalogs,
    read_sections,
    render_config,
)
from bridge.devtools.reference_md import GENERATOR

ROOT = Path(__file__).resolve().parent.parent


class _DescribedHomeserver(HomeserverConfig):
    extra_key: int = Field(3, ge=2, description="A key added to the model.")


class _WithDescribedKey(Config):
    homeserver: _DescribedHomeserver


class _UndescribedHomeserver(HomeserverConfig):
    extra_key: int = 3


class _WithUndescribedKey(Config):
    homeserver: _UndescribedHomeserver


def _row(doc: str, path: str) -> str:
    rows = [line for line in doc.splitlines() if line.startswith(f"| `{path}`<br>")]
    assert len(rows) == 1, f"{path}: {len(rows)} rows"
    return rows[0]


# --- The committed files -----------------------------------------------------------------


async def test_committed_references_are_what_the_code_generates() -> None:
    generated = await generate()
    assert sorted(generated) == sorted(FILES)
    stale = stale_files(ROOT, generated)
    assert stale == [], f"stale generated docs {stale}: run `{GENERATOR}` and commit them"


def test_check_mode_lists_stale_files_and_exits_1(tmp_path: Path) -> None:
    shutil.copytree(ROOT / "docs", tmp_path / "docs")
    (tmp_path / "docs" / "commands.fr.md").write_text("outdated\n", encoding="utf-8")
    (tmp_path / "docs" / "configuration.md").unlink()
    cmd = [sys.executable, "-m", "bridge.devtools.reference", "--root", str(tmp_path)]
    checked = subprocess.run([*cmd, "--check"], capture_output=True, text=True, cwd=ROOT)
    assert checked.returncode == 1, checked.stderr
    assert "docs/commands.fr.md" in checked.stderr
    assert "docs/configuration.md" in checked.stderr
    assert "docs/commands.md\n" not in checked.stderr
    assert GENERATOR in checked.stderr
    written = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    assert written.returncode == 0, written.stderr
    assert "wrote docs/configuration.md" in written.stdout
    again = subprocess.run([*cmd, "--check"], capture_output=True, text=True, cwd=ROOT)
    assert again.returncode == 0, again.stderr


# --- Configuration -----------------------------------------------------------------------


def test_every_key_of_every_section_is_listed_with_its_environment_variable() -> None:
    doc = render_config(Config, "en")
    for name, section in Config.model_fields.items():
        model = section.annotation
        assert isinstance(model, type)
        assert f"## `{name}`" in doc
        for key in model.model_fields:  # type: ignore[attr-defined]
            env = f"SANTEGUARD_{name.upper()}__{key.upper()}"
            assert f"`{env}`" in _row(doc, f"{name}.{key}")


def test_types_defaults_constraints_and_choices_are_shown() -> None:
    doc = render_config(Config, "en")
    port = _row(doc, "appservice.port")
    assert "integer<br>≥ 1, ≤ 65535" in port and "`29340`" in port
    assert "> 0" in _row(doc, "dispatch.retry_base_seconds")
    assert "one of `normal`, `full`" in _row(doc, "database.sqlite_synchronous")
    assert "**required**" in _row(doc, "homeserver.domain")
    assert "`[]`" in _row(doc, "gate.allowed_servers")
    assert "string or null" in _row(doc, "gate.admin_room") and "`null`" in _row(
        doc, "gate.admin_room"
    )


def test_secrets_show_no_default_and_are_marked() -> None:
    doc = render_config(Config, "en")
    for path in ("antispam.token", "directory.fhir_api_key", "mail.imap_password"):
        row = _row(doc, path)
        assert "| — |" in row and "_(secret, never shown)_" in row
    assert "**required**" in _row(doc, "appservice.as_token")
    assert "_(secret, jamais affiché)_" in _row(render_config(Config, "fr"), "audit.signing_key")


def test_a_key_added_without_description_stops_the_generation() -> None:
    with pytest.raises(ReferenceGapError, match=r"homeserver\.extra_key"):
        read_sections(_WithUndescribedKey)


def test_a_key_added_to_the_model_changes_the_reference(monkeypatch: pytest.MonkeyPatch) -> None:
    # Without its French text, neither reference can be generated.
    with pytest.raises(ReferenceGapError, match=r"missing homeserver\.extra_key"):
        render_config(_WithDescribedKey, "en")
    before = {lang: render_config(Config, lang) for lang in ("en", "fr")}
    french = {**reference_fr.FIELDS, "homeserver.extra_key": "Une clé ajoutée au modèle."}
    monkeypatch.setattr(reference_fr, "FIELDS", french)
    after = {lang: render_config(_WithDescribedKey, lang) for lang in ("en", "fr")}
    assert after["en"] != before["en"] and after["fr"] != before["fr"]
    row = _row(after["en"], "homeserver.extra_key")
    assert "`SANTEGUARD_HOMESERVER__EXTRA_KEY`" in row and "≥ 2" in row and "`3`" in row
    assert "A key added to the model." in row
    assert "Une clé ajoutée au modèle." in _row(after["fr"], "homeserver.extra_key")


def test_the_french_catalog_covers_exactly_the_model() -> None:
    sections = read_sections(Config)
    paths = {k.path for s in sections for k in s.keys}
    assert set(reference_fr.FIELDS) == paths
    assert set(reference_fr.SECTIONS) == {s.name for s in sections}
    english = {k.path: k.description for s in sections for k in s.keys}
    assert [p for p, text in reference_fr.FIELDS.items() if not text.strip()] == []
    assert [p for p, text in reference_fr.FIELDS.items() if text == english[p]] == []
    check_catalogs(sections)


def test_a_french_text_for_a_key_that_is_gone_stops_the_generation(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(
        reference_fr, "FIELDS", {**reference_fr.FIELDS, "homeserver.gone": "Disparue."}
    )
    with pytest.raises(ReferenceGapError, match=r"no such key homeserver\.gone"):
        render_config(Config, "fr")


def test_linked_guides_exist() -> None:
    docs = {f: render_config(Config, "en") for f in ("configuration.md",)}
    docs["configuration.fr.md"] = render_config(Config, "fr")
    for name, text in docs.items():
        for target in re.findall(r"\]\(([^)#]+\.md)", text):
            assert (ROOT / "docs" / target).is_file(), f"{name} links to missing {target}"


# --- Commands ----------------------------------------------------------------------------


async def test_every_registered_command_is_documented_in_both_languages() -> None:
    registry, translator = await app_registry(), default_translator()
    assert {"help", "verify", "room", "mail", "report", "encryption"} <= {
        c.spec.name for c in registry
    }
    for lang in ("en", "fr"):
        doc = render_commands(registry, translator, lang)
        for cmd in registry:
            assert f"### `!sg {cmd.spec.name}`" in doc
            help_text = translator.t(cmd.spec.help_key, lang).split("`")[0].strip()
            assert help_text and help_text in doc, (lang, cmd.spec.name)
            perm = translator.t(f"permission.{cmd.spec.permission}", lang)
            section = doc.split(f"### `!sg {cmd.spec.name}`", 1)[1].split("\n### ", 1)[0]
            assert perm in section
            assert all(f"`{a}`" in section for a in cmd.spec.aliases)
        for target in re.findall(r"\]\(([^)#]+\.md)", doc):
            assert (ROOT / "docs" / target).is_file(), f"{lang}: missing {target}"
    en = render_commands(registry, translator, "en")
    assert "`!sg verify <user> <RPPS/ADELI> [confirmer|confirm]`" in en
    assert "room administrators (power level ≥ 100)" in en.split("### `!sg language`")[1]


async def test_a_changed_help_text_changes_the_reference() -> None:
    registry, translator = await app_registry(), default_translator()
    catalogs = {lang: dict(cat) for lang, cat in translator.catalogs.items()}
    catalogs["en"]["help.description.ping"] = "Mutated help text."
    mutated = Translator(catalogs, strict=True)
    before = render_commands(registry, translator, "en")
    after = render_commands(registry, mutated, "en")
    assert after != before and "Mutated help text." in after


class _Unfiled:
    """A handler defined outside every capability's package."""

    @command("unfiled", "help.description.ping")
    async def unfiled(self, ctx: CommandContext) -> None:
        del ctx


def test_a_command_in_no_group_stops_the_generation() -> None:
    registry = CommandRegistry.from_handlers(_Unfiled())
    with pytest.raises(ReferenceGapError, match="unfiled"):
        groups_of(registry)
