"""Canonical citizen models: what callers of ``citizen.lookup``, ``citizen.verify`` and
``household.members`` send and receive, in English, whatever the population database speaks.

Text is normalised the way real provincial data needs: Unicode NFC (old systems send NFD, which
must match NFC records), surrounding whitespace removed and inner runs collapsed. Personal id
numbers are checked before any upstream call: 12 digits whose 4th digit (gender and century) and
5th-6th digits (birth year) agree with the birth date and gender when those are given; or the old
9-digit id. The mapping to the wire (``adapters/population``) is documented in the README.
"""

from __future__ import annotations

import datetime as dt
import unicodedata
from enum import StrEnum
from typing import Annotated

from pydantic import AfterValidator, BeforeValidator, Field, ValidationInfo, field_validator

from schemas.base import CanonicalModel, CitizenRef, Subject

__all__ = [
    "Address",
    "BirthDate",
    "Citizen",
    "CitizenLookup",
    "CitizenLookupResult",
    "CitizenVerification",
    "Gender",
    "HouseholdMember",
    "HouseholdQuery",
    "HouseholdRelation",
    "HouseholdResult",
    "MaritalStatus",
    "PersonName",
    "RelatedPerson",
    "VerificationResult",
    "id_gender_and_century",
    "normalise_text",
]


def normalise_text(value: object) -> object:
    """NFC, trimmed, inner whitespace runs collapsed to one space; non-strings pass through."""
    if not isinstance(value, str):
        return value
    return " ".join(unicodedata.normalize("NFC", value).split())


Text = Annotated[str, BeforeValidator(normalise_text)]
Name = Annotated[str, BeforeValidator(normalise_text), Field(min_length=1, max_length=100)]


class Gender(StrEnum):
    MALE = "male"
    FEMALE = "female"


class MaritalStatus(StrEnum):
    SINGLE = "single"
    MARRIED = "married"
    DIVORCED = "divorced"
    WIDOWED = "widowed"


class HouseholdRelation(StrEnum):
    """Relation to the head of household (wire codes CH01..CH06, CH99)."""

    HEAD = "head"
    SPOUSE = "spouse"
    CHILD = "child"
    PARENT = "parent"
    SIBLING = "sibling"
    GRANDCHILD = "grandchild"
    OTHER = "other"


def _digits(length: int, label: str) -> AfterValidator:
    def check(value: str) -> str:
        if len(value) != length or not value.isascii() or not value.isdigit():
            raise ValueError(f"{label} must be exactly {length} digits")
        return value

    return AfterValidator(check)


PersonalId = Annotated[
    str,
    BeforeValidator(normalise_text),
    _digits(12, "a personal id number"),
    Field(description="12-digit personal id number (số định danh cá nhân)."),
    Subject(),
]
OldId = Annotated[
    str,
    BeforeValidator(normalise_text),
    _digits(9, "an old id card number"),
    Field(description="Old 9-digit identity card number (số CMND)."),
    Subject(),
]


def id_gender_and_century(personal_id: str) -> tuple[Gender, int]:
    """The gender and first birth year of the century encoded in a personal id's 4th digit:
    0/1 = male/female born 1900-1999, 2/3 = 2000-2099, 4/5 = 2100-2199 ..."""
    code = int(personal_id[3])
    return (Gender.MALE if code % 2 == 0 else Gender.FEMALE), 1900 + 100 * (code // 2)


def _id_birth_year(personal_id: str) -> int:
    _, century = id_gender_and_century(personal_id)
    return century + int(personal_id[4:6])


class _IdentifiedQuery(CanonicalModel):
    """Fields shared by queries that name a citizen, with the id/fact consistency checks."""

    personal_id: PersonalId | None = None
    old_id: OldId | None = Field(default=None, validate_default=True)
    full_name: Name | None = Field(default=None, description="Full name, any Unicode form.")
    birth_date: dt.date | None = None
    birth_year: int | None = Field(default=None, ge=1880, le=2100)

    @field_validator("old_id")
    @classmethod
    def _one_id(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None and info.data.get("personal_id") is None:
            raise ValueError("give personal_id (12 digits) or old_id (9 digits)")
        return value

    @field_validator("birth_date")
    @classmethod
    def _date_matches_id(cls, value: dt.date | None, info: ValidationInfo) -> dt.date | None:
        pid = info.data.get("personal_id")
        if value is not None and pid is not None and _id_birth_year(pid) != value.year:
            raise ValueError("the birth year contradicts the personal id number")
        return value

    @field_validator("birth_year")
    @classmethod
    def _year_matches(cls, value: int | None, info: ValidationInfo) -> int | None:
        if value is None:
            return None
        pid = info.data.get("personal_id")
        if pid is not None and _id_birth_year(pid) != value:
            raise ValueError("the birth year contradicts the personal id number")
        born = info.data.get("birth_date")
        if born is not None and born.year != value:
            raise ValueError("birth_year differs from the year of birth_date")
        return value


class CitizenLookup(_IdentifiedQuery):
    """Look a citizen up by personal id (or old id), optionally confirmed by name and birth."""

    service_code: Text | None = Field(
        default=None, max_length=50, description="Public-service code the lookup is for (MaDVC)."
    )


class CitizenVerification(_IdentifiedQuery):
    """Facts to check against the population database; only the given ones are checked."""

    personal_id: PersonalId
    gender: Gender | None = None

    @field_validator("gender")
    @classmethod
    def _gender_matches_id(cls, value: Gender | None, info: ValidationInfo) -> Gender | None:
        pid = info.data.get("personal_id")
        if value is not None and pid is not None and id_gender_and_century(pid)[0] != value:
            raise ValueError("the gender contradicts the personal id number")
        return value


class HouseholdQuery(CanonicalModel):
    personal_id: PersonalId = Field(description="Personal id of any member of the household.")


class PersonName(CanonicalModel):
    full: Text = Field(description="Family, middle and given names in order (HoVaTen).")
    family: Text = Field(description="Họ")
    middle: Text | None = Field(default=None, description="Chữ đệm")
    given: Text = Field(description="Tên")


class BirthDate(CanonicalModel):
    date: dt.date | None = Field(description="ISO date, or null when only the year is known.")
    year: int


class Address(CanonicalModel):
    province_code: str | None = Field(default=None, description="MaTinhThanh")
    district_code: str | None = Field(default=None, description="MaQuanHuyen")
    ward_code: str | None = Field(default=None, description="MaPhuongXa")
    detail: Text | None = Field(default=None, description="ChiTiet: street, number, hamlet")
    country: str | None = Field(default=None, description="QuocGia")


class RelatedPerson(CanonicalModel):
    full_name: Text
    nationality: str | None = None
    personal_id: CitizenRef | None = None
    old_id: CitizenRef | None = None


class Citizen(CanonicalModel):
    personal_id: CitizenRef
    old_id: CitizenRef | None = None
    name: PersonName
    gender: Gender | None
    birth: BirthDate
    ethnicity_code: str | None = Field(default=None, description="DanToc, e.g. 01 = Kinh")
    religion_code: str | None = Field(default=None, description="TonGiao, 00 = none")
    marital_status: MaritalStatus | None = None
    blood_type: str | None = None
    nationality: str | None = None
    birth_registration_place: Address | None = None
    hometown: Address | None = None
    permanent_address: Address | None = None
    current_address: Address | None = None
    father: RelatedPerson | None = None
    mother: RelatedPerson | None = None
    spouse: RelatedPerson | None = None
    representative: RelatedPerson | None = None
    household_relation: HouseholdRelation | None = None
    household_head_id: CitizenRef | None = None
    household_book: str | None = Field(default=None, description="SoSoHoKhau")


class CitizenLookupResult(CanonicalModel):
    found: bool = Field(description="False when the database holds no matching citizen.")
    citizen: Citizen | None = None
    data_as_of: str | None = Field(default=None, description="ThoiDiemDuLieu of the database.")
    note: str | None = Field(default=None, description="The database's remark (GhiChu).")


class VerificationResult(CanonicalModel):
    match: bool = Field(description="True when every given fact matches the database.")
    mismatched_fields: list[str] = Field(
        default_factory=list, description="The given fields that do not match, when match is false."
    )


class HouseholdMember(CanonicalModel):
    relation: HouseholdRelation | None
    citizen: Citizen


class HouseholdResult(CanonicalModel):
    found: bool
    household_book: str | None = None
    head: Citizen | None = None
    members: list[HouseholdMember] = Field(default_factory=list)
