"""The message catalog: both languages complete and consistent, lookups and fallbacks."""

from __future__ import annotations

import pytest

from bot.i18n import (
    DEFAULT_CATALOGS,
    SUPPORTED_LANGUAGES,
    MissingTranslationError,
    Translator,
    placeholders,
)


def test_every_supported_language_has_a_catalog() -> None:
    assert set(DEFAULT_CATALOGS) == set(SUPPORTED_LANGUAGES)


def test_languages_have_the_same_keys() -> None:
    fr, en = DEFAULT_CATALOGS["fr"], DEFAULT_CATALOGS["en"]
    assert sorted(fr.keys() - en.keys()) == []
    assert sorted(en.keys() - fr.keys()) == []


@pytest.mark.parametrize("key", sorted(DEFAULT_CATALOGS["fr"]))
def test_languages_have_the_same_placeholders(key: str) -> None:
    assert placeholders(DEFAULT_CATALOGS["en"][key]) == placeholders(DEFAULT_CATALOGS["fr"][key])


def test_placeholders_parses_format_fields() -> None:
    assert placeholders("a {x} b {y!r} {z:>3} {{literal}}") == {"x", "y", "z"}


def test_translates_with_parameters() -> None:
    t = Translator(strict=True)
    assert t.t("pong", "fr", rtt_ms=12) == "pong — délai : 12 ms"
    assert t.t("pong", "en", rtt_ms=12) == "pong — latency: 12 ms"


def test_english_falls_back_to_french_key_by_key() -> None:
    t = Translator({"fr": {"a": "A-fr", "b": "B-fr"}, "en": {"a": "A-en"}}, strict=True)
    assert t.t("a", "en") == "A-en"
    assert t.t("b", "en") == "B-fr"


def test_unknown_language_falls_back_to_french() -> None:
    assert Translator(strict=True).t("usage", "de", usage="x") == "Usage : `x`"


def test_missing_key_raises_when_strict() -> None:
    with pytest.raises(MissingTranslationError):
        Translator(strict=True).t("no.such.key", "fr")


def test_missing_key_shows_the_key_when_lenient() -> None:
    assert Translator().t("no.such.key", "en") == "no.such.key"


def test_missing_parameter_raises_when_strict() -> None:
    with pytest.raises(KeyError):
        Translator(strict=True).t("pong", "fr")


def test_parameter_values_are_not_reinterpreted_as_templates() -> None:
    assert Translator(strict=True).t("usage", "en", usage="{secret}") == "Usage: `{secret}`"


def test_require_fails_fast_on_missing_keys() -> None:
    t = Translator()
    t.require("pong", "usage")
    with pytest.raises(MissingTranslationError, match="nope"):
        t.require("pong", "nope")


def test_merged_adds_keys_and_refuses_redefinitions() -> None:
    base = Translator(strict=True)
    extended = base.merged({"fr": {"x.hello": "bonjour"}, "en": {"x.hello": "hello"}})
    assert extended.t("x.hello", "en") == "hello"
    assert extended.strict
    assert not base.has("x.hello")
    with pytest.raises(ValueError, match="pong"):
        base.merged({"fr": {"pong": "autre"}})
