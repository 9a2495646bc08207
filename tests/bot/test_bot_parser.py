"""Recognising commands in message bodies and reading their arguments."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.commands import Arg, ArgKind, CommandSpec
from bot.parser import (
    ArgumentError,
    Invocation,
    bind_arguments,
    parse_invocation,
    quote_arg,
    split_args,
    strip_reply_fallback,
)


@pytest.mark.parametrize(
    "body",
    [
        "",
        "   ",
        "bonjour",
        "!sgfoo",
        "!sg-status",
        "!sg:ping",
        "!sgping",
        "please run !sg ping",
        "!s",
        "* !sg ping",  # an edit's fallback body
        "> <@alice:hopital.example> !sg ping",  # a quoted command is not a command
        "> <@alice:hopital.example> !sg ping\n\nmerci",
    ],
)
def test_non_commands_return_none(body: str) -> None:
    assert parse_invocation(body) is None


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("!sg ping", Invocation("ping", "")),
        ("!sg", Invocation("", "")),
        ("!sg   ", Invocation("", "")),
        ("  !sg   ping   ", Invocation("ping", "")),
        ("!SG PiNg", Invocation("ping", "")),
        ("!Sg help status", Invocation("help", "status")),
        ("!sg\tping", Invocation("ping", "")),
        ("!sg\u00a0ping", Invocation("ping", "")),  # phones insert no-break spaces
        ("!sg\nhelp\n  language ", Invocation("help", "language ")),
        ('!sg note  "Dr Jean Dupont"  x', Invocation("note", '"Dr Jean Dupont"  x')),
        (
            "> <@alice:hopital.example> qui est de garde ?\n> (urgent)\n\n!sg status",
            Invocation("status", ""),
        ),
    ],
)
def test_commands_are_recognised(body: str, expected: Invocation) -> None:
    assert parse_invocation(body) == expected


def test_custom_prefix() -> None:
    assert parse_invocation("!sante ping", "!sante") == Invocation("ping", "")
    assert parse_invocation("!sg ping", "!sante") is None
    assert parse_invocation("!santeping", "!sante") is None


@pytest.mark.parametrize("prefix", ["", "!s g", " "])
def test_invalid_prefix_is_refused(prefix: str) -> None:
    with pytest.raises(ValueError):
        parse_invocation("x", prefix)


def test_reply_fallback_is_stripped_only_at_the_start() -> None:
    assert strip_reply_fallback("> <@a:b> x\n> y\n\ntext\n> kept") == "text\n> kept"
    assert strip_reply_fallback("no fallback\n> quote") == "no fallback\n> quote"


# Any body that does not start with the prefix word is not a command.
_not_starting_with_prefix = st.text().filter(
    lambda s: not strip_reply_fallback(s).lstrip().casefold().startswith("!sg")
)


@given(_not_starting_with_prefix)
def test_property_unprefixed_bodies_are_not_commands(body: str) -> None:
    assert parse_invocation(body) is None


@given(st.characters().filter(lambda c: not c.isspace()), st.text())
def test_property_prefix_glued_to_a_word_is_not_a_command(glued: str, rest: str) -> None:
    assert parse_invocation("!sg" + glued + rest) is None


@given(st.text(min_size=1).filter(lambda s: not s[0].isspace()), st.text())
def test_property_prefix_after_other_text_is_not_a_command(lead: str, rest: str) -> None:
    body = lead + " !sg " + rest
    if strip_reply_fallback(body).lstrip().casefold().startswith("!sg"):
        return  # lead itself was a quote block or whitespace; covered elsewhere
    assert parse_invocation(body) is None


@given(st.lists(st.text(), max_size=6))
def test_property_quoted_arguments_round_trip(values: list[str]) -> None:
    assert split_args(" ".join(quote_arg(v) for v in values)) == values


@given(st.lists(st.text(), min_size=1, max_size=4))
def test_property_quoted_arguments_round_trip_through_a_command(values: list[str]) -> None:
    spec = CommandSpec("x", "k", args=tuple(Arg(f"a{i}") for i in range(len(values))))
    body = "!sg x " + " ".join(quote_arg(v) for v in values)
    invocation = parse_invocation(body)
    assert invocation is not None
    assert bind_arguments(spec, invocation.arg_text) == {f"a{i}": v for i, v in enumerate(values)}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a b   c", ["a", "b", "c"]),
        ('"Dr Jean Dupont" cardio', ["Dr Jean Dupont", "cardio"]),
        ("“Dr Jean Dupont”", ["Dr Jean Dupont"]),
        ("«\u00a0Dr Jean Dupont\u00a0»", ["Dr Jean Dupont"]),
        ("l'équipe d'astreinte", ["l'équipe", "d'astreinte"]),
        (r'"dit \"bonjour\"" "c:\\temp\\"', ['dit "bonjour"', "c:\\temp\\"]),
        (r'"\n stays"', [r"\n stays"]),
        ('""', [""]),
        ('a"b c', ['a"b', "c"]),
    ],
)
def test_split_args(text: str, expected: list[str]) -> None:
    assert split_args(text) == expected


def test_unclosed_quote_is_an_error() -> None:
    with pytest.raises(ArgumentError) as e:
        split_args('"Dr Jean Dupont')
    assert e.value.key == "error.unclosed_quote"


SPEC = CommandSpec(
    "grant",
    "k",
    args=(
        Arg("user", ArgKind.MXID),
        Arg("days", ArgKind.INT),
        Arg("reason", ArgKind.REST, optional=True),
    ),
)


def test_binds_typed_arguments_and_rest_of_line_verbatim() -> None:
    values = bind_arguments(SPEC, '@dr.dupont:hopital.example 30 garde "de nuit"\n  semaine 12')
    assert values == {
        "user": "@dr.dupont:hopital.example",
        "days": 30,
        "reason": 'garde "de nuit"\n  semaine 12',
    }


def test_rest_that_is_one_quoted_string_is_unquoted() -> None:
    assert bind_arguments(SPEC, '@a:b 1 "Dr Jean Dupont"')["reason"] == "Dr Jean Dupont"
    assert bind_arguments(SPEC, '@a:b 1 "unclosed')["reason"] == '"unclosed'


def test_optional_arguments_may_be_left_out() -> None:
    assert bind_arguments(SPEC, "@a:b -1") == {"user": "@a:b", "days": -1}


@pytest.mark.parametrize(
    ("text", "key", "arg"),
    [
        ("", "error.missing_argument", "user"),
        ("@a:b", "error.missing_argument", "days"),
        ("@a:b trente", "error.invalid_int", "days"),
        ("@a:b 1_000", "error.invalid_int", "days"),
        ("@a:b ٣", "error.invalid_int", "days"),  # non-ASCII digits
        ("@a:b " + "9" * 40, "error.invalid_int", "days"),
        ("@room 1", "error.invalid_mxid", "user"),
        ("alice:hopital.example 1", "error.invalid_mxid", "user"),
        ("@alice 1", "error.invalid_mxid", "user"),
        ("@:hopital.example 1", "error.invalid_mxid", "user"),
        ("@alice:exa_mple 1", "error.invalid_mxid", "user"),
        ('"@alice:hopital 1', "error.unclosed_quote", None),
    ],
)
def test_argument_errors(text: str, key: str, arg: str | None) -> None:
    with pytest.raises(ArgumentError) as e:
        bind_arguments(SPEC, text)
    assert e.value.key == key
    assert (e.value.arg.name if e.value.arg else None) == arg


@pytest.mark.parametrize(
    "mxid", ["@a:b", "@dr.dupont:hopital.example", "@x:[::1]:8448", "@x=2f_y:10.0.0.1:80"]
)
def test_valid_mxids(mxid: str) -> None:
    assert bind_arguments(SPEC, f"{mxid} 1")["user"] == mxid


def test_extra_arguments_are_an_error() -> None:
    spec = CommandSpec("ping", "k")
    assert bind_arguments(spec, "   ") == {}
    with pytest.raises(ArgumentError) as e:
        bind_arguments(spec, 'now "unclosed')
    assert e.value.key == "error.too_many_arguments"


def test_choices_are_case_insensitive_and_canonicalised() -> None:
    spec = CommandSpec("language", "k", args=(Arg("lang", choices=("fr", "en")),))
    assert bind_arguments(spec, "EN") == {"lang": "en"}
    with pytest.raises(ArgumentError) as e:
        bind_arguments(spec, "de")
    assert e.value.key == "error.invalid_choice"
