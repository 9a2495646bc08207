"""RPPS/ADELI validation. Keys are computed here with an independent Luhn (the one in
the reference note), not with the module under test."""

from __future__ import annotations

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from bridge.app.wiring import build_translator
from bridge.identity.identifiers import (
    IdentifierError,
    PractitionerId,
    check_number,
    luhn_key,
    luhn_valid,
    normalise_idnps,
    parse_adeli,
    parse_identifier,
    parse_rpps,
)
from bridge.identity.model import DirectoryUnavailable

TEXTS = build_translator(strict=True)


def message(error: IdentifierError | DirectoryUnavailable, lang: str = "fr") -> str:
    """The user-facing text of an error, from the one text catalog."""
    if isinstance(error, IdentifierError):
        return TEXTS.t(error.text_key, lang, **error.text_params)
    return TEXTS.t(error.TEXT_KEY, lang)


def ref_luhn_ok(s: str) -> bool:
    t = 0
    for i, c in enumerate(reversed(s)):
        d = int(c) * (2 if i % 2 else 1)
        t += d - 9 if d > 9 else d
    return t % 10 == 0


def ref_key(payload: str) -> str:
    keys = [k for k in "0123456789" if ref_luhn_ok(payload + k)]
    assert len(keys) == 1
    return keys[0]


digits = st.text(alphabet="0123456789", min_size=1, max_size=20)
ten_digits = st.text(alphabet="0123456789", min_size=10, max_size=10)
eight_digits = st.text(alphabet="0123456789", min_size=8, max_size=8)


@pytest.mark.parametrize(
    "rpps",
    ["10000001916", "10001045367", "10000013994", "10006122583", "10005173140", "10001766673"],
)
def test_real_rpps_numbers_pass(rpps: str) -> None:
    pid = parse_rpps(rpps)
    assert (pid.kind, pid.value, pid.idnps) == ("rpps", rpps, "8" + rpps)


@pytest.mark.parametrize("fake", ["10102727017", "10101201234", "10003456789", "10007654321"])
def test_ig_example_numbers_fail_luhn(fake: str) -> None:
    with pytest.raises(IdentifierError) as e:
        parse_identifier(fake)
    assert e.value.code == "bad_check_key"


@pytest.mark.parametrize("adeli", ["012600631", "759124159", "629400748"])
def test_real_adeli_numbers_pass(adeli: str) -> None:
    pid = parse_identifier(adeli)
    assert (pid.kind, pid.idnps) == ("adeli", "0" + adeli)


@given(ten_digits)
def test_any_ten_digits_plus_key_is_a_valid_rpps(payload: str) -> None:
    rpps = payload + ref_key(payload)
    pid = parse_identifier(rpps)
    assert pid == PractitionerId("rpps", rpps)
    assert pid.idnps == "8" + rpps
    assert parse_identifier(pid.idnps) == pid  # IDNPS form round-trips


@given(eight_digits)
def test_any_eight_digits_plus_key_is_a_valid_adeli(payload: str) -> None:
    adeli = payload + ref_key(payload)
    pid = parse_identifier(adeli)
    assert (pid.kind, pid.value, pid.idnps) == ("adeli", adeli, "0" + adeli)
    assert parse_identifier("0" + adeli) == pid


@given(ten_digits, st.integers(0, 10), st.integers(1, 9))
def test_changing_one_digit_invalidates(payload: str, pos: int, delta: int) -> None:
    rpps = payload + ref_key(payload)
    changed = rpps[:pos] + str((int(rpps[pos]) + delta) % 10) + rpps[pos + 1 :]
    with pytest.raises(IdentifierError) as e:
        parse_rpps(changed)
    assert e.value.code == "bad_check_key"
    assert changed in message(e.value, "fr")


@given(ten_digits, st.data())
def test_separators_are_accepted(payload: str, data: st.DataObject) -> None:
    rpps = payload + ref_key(payload)
    seps = data.draw(
        st.lists(
            st.sampled_from(["", " ", "  ", ".", "-", "\u00a0", "\t"]), min_size=11, max_size=11
        )
    )
    typed = "".join(c + s for c, s in zip(rpps, seps, strict=True))
    typed = data.draw(st.sampled_from(["", " "])) + typed
    assert parse_identifier(typed).value == rpps
    assert normalise_idnps(typed) == "8" + rpps


@given(digits)
def test_wrong_lengths_are_rejected_with_wrong_length(number: str) -> None:
    n = len(number)
    assume(n not in (9, 11))
    assume(not (n == 10 and number[0] == "0"))
    assume(not (n == 12 and number[0] == "8"))
    with pytest.raises(IdentifierError) as e:
        parse_identifier(number)
    assert e.value.code == "wrong_length"
    assert str(n) in message(e.value, "fr") and str(n) in message(e.value, "en")


@given(digits)
def test_luhn_matches_reference(number: str) -> None:
    assert luhn_valid(number) == ref_luhn_ok(number)
    assert luhn_key(number) == ref_key(number)


@given(st.text(min_size=1, max_size=15))
def test_anything_else_is_rejected_or_consistent(text: str) -> None:
    # Whatever is typed, either a valid id comes out or a coded error: never a crash.
    try:
        pid = parse_identifier(text)
    except IdentifierError as e:
        assert e.code in ("wrong_length", "not_digits", "bad_check_key", "empty")
        assert message(e, "fr") and message(e, "en")
    else:
        assert ref_luhn_ok(pid.value)


@pytest.mark.parametrize("text", ["", "   ", " . - "])
def test_empty(text: str) -> None:
    with pytest.raises(IdentifierError) as e:
        parse_identifier(text)
    assert e.value.code == "empty"


@pytest.mark.parametrize("text", ["1099999001a", "RPPS10999990012", "١٠٩٩٩٩٩٠٠١٢", "10999990012²"])
def test_not_digits_including_unicode_digits(text: str) -> None:
    with pytest.raises(IdentifierError) as e:
        parse_identifier(text)
    assert e.value.code == "not_digits"


def test_messages_french_and_english() -> None:
    with pytest.raises(IdentifierError) as e:
        parse_identifier("10999990013")
    assert message(e.value, "fr") == (
        "Le numéro RPPS 10999990013 a une clé de contrôle invalide (dernier chiffre)."
    )
    assert (
        message(e.value, "en") == "RPPS number 10999990013 has an invalid check key (last digit)."
    )
    assert message(e.value, "fr-FR") == message(e.value)
    with pytest.raises(IdentifierError) as e:
        parse_rpps("012600631")
    assert e.value.code == "wrong_length"
    assert (
        message(e.value, "fr") == "Le numéro RPPS 012600631 doit comporter 11 chiffres, il en a 9."
    )
    assert message(e.value, "en") == "RPPS number 012600631 must have 11 digits, it has 9."


def test_kind_restriction() -> None:
    assert parse_adeli("0 12 60 0631").idnps == "0012600631"
    with pytest.raises(IdentifierError) as e:
        parse_adeli("10999990012")
    assert e.value.code == "wrong_length" and e.value.kind == "adeli"
    # A 10-digit number not starting with 0 is no IDNPS.
    with pytest.raises(IdentifierError) as e:
        parse_identifier("1999990012")
    assert e.value.code == "wrong_length"


def test_long_input_is_truncated_in_messages() -> None:
    with pytest.raises(IdentifierError) as e:
        parse_identifier("x" * 10_000)
    assert len(message(e.value, "fr")) < 200


def test_practitioner_id_validates_on_construction() -> None:
    assert PractitionerId("adeli", "012600631").label == "ADELI 012600631"
    with pytest.raises(IdentifierError):
        PractitionerId("rpps", "10999990013")
    with pytest.raises(IdentifierError):
        PractitionerId("rpps", "012600631")
    with pytest.raises(IdentifierError):
        check_number("adeli", " 012600631")
