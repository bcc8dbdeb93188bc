"""Canonical citizen inputs: NFC and whitespace normalisation, id checks before any call."""

from __future__ import annotations

import unicodedata

import pytest
from pydantic import ValidationError

from schemas.citizen import (
    CitizenLookup,
    CitizenVerification,
    Gender,
    HouseholdQuery,
    id_gender_and_century,
    normalise_text,
)

#: "001203004567" in full-width digits, which str.isdigit() accepts.
FULL_WIDTH = "".join(chr(0xFF10 + int(d)) for d in "001203004567")


def errors(model: type, data: dict[str, object]) -> dict[str, str]:
    with pytest.raises(ValidationError) as caught:
        model.model_validate(data)
    return {".".join(map(str, e["loc"])): e["msg"] for e in caught.value.errors()}


def test_nfd_name_becomes_nfc_and_whitespace_is_collapsed() -> None:
    """A name typed on an old system in NFD, with stray spaces, equals the NFC record."""
    nfd = unicodedata.normalize("NFD", "  Nguyễn   Thị\tHương ")
    query = CitizenLookup(personal_id="001303004567", full_name=nfd)
    assert query.full_name == "Nguyễn Thị Hương"
    assert unicodedata.is_normalized("NFC", query.full_name)


@pytest.mark.parametrize("bad", ["00120300456", "0012030045678", "00120300456a", FULL_WIDTH])
def test_personal_id_must_be_12_ascii_digits(bad: str) -> None:
    """Wrong length, letters or full-width digits are refused, naming personal_id."""
    assert "12 digits" in errors(CitizenLookup, {"personal_id": bad})["personal_id"]


def test_old_id_must_be_9_digits() -> None:
    """The old identity card number is 9 digits."""
    assert "9 digits" in errors(CitizenLookup, {"old_id": "12345678"})["old_id"]
    assert CitizenLookup(old_id=" 123456789 ").old_id == "123456789"


def test_an_id_is_required() -> None:
    """A lookup with no id at all is refused with a reason."""
    assert "personal_id" in errors(CitizenLookup, {"full_name": "An"})["old_id"]


def test_birth_year_must_agree_with_the_id() -> None:
    """Digits 4-6 encode century and year: a contradicting birth date or year is refused."""
    # 0 0 1 | 2 (male, 2000s) | 03 -> born 2003
    assert (
        "contradicts"
        in errors(CitizenLookup, {"personal_id": "001203004567", "birth_year": 1903})["birth_year"]
    )
    assert (
        "contradicts"
        in errors(CitizenLookup, {"personal_id": "001203004567", "birth_date": "2004-01-01"})[
            "birth_date"
        ]
    )
    ok = CitizenLookup(personal_id="001203004567", birth_date="2003-05-01", birth_year=2003)
    assert ok.birth_year == 2003


def test_gender_must_agree_with_the_id() -> None:
    """An odd 4th digit is a woman: claiming male for it is refused before any call."""
    assert id_gender_and_century("001303004567") == (Gender.FEMALE, 2000)
    assert id_gender_and_century("079085001234") == (Gender.MALE, 1900)
    assert (
        "contradicts"
        in errors(CitizenVerification, {"personal_id": "001303004567", "gender": "male"})["gender"]
    )


def test_unknown_fields_are_refused() -> None:
    """A misspelt field is an error, not silently ignored."""
    assert errors(HouseholdQuery, {"personal_id": "001203004567", "ho_ten": "x"})["ho_ten"]


def test_normalise_text_leaves_non_strings() -> None:
    assert normalise_text(5) == 5


def test_shipped_wsdl_is_the_platform_contract() -> None:
    """The adapter's fallback WSDL is the same contract the population mock publishes."""
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    shipped = root / "adapters" / "population" / "wsdl" / "dancu.wsdl"
    published = root / "mocks" / "population" / "wsdl" / "dancu.wsdl"
    assert shipped.read_bytes() == published.read_bytes()
