"""Canonical dossier models: the status transition rule, aware times shown in +07:00, whole-dong
money, and the owner's id marked for the exchange log's blind index."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from pydantic import ValidationError

from schemas.base import subjects_of
from schemas.dossier import (
    ALLOWED_TRANSITIONS,
    Dossier,
    DossierFee,
    DossierProgress,
    DossierRecord,
    DossierStatus,
    DossierSync,
    OwnerKind,
    ProcedureFee,
    transition_allowed,
)

S = DossierStatus
OWNER_ID = "001099012345"


def dossier(**changes: Any) -> dict[str, Any]:
    values: dict[str, Any] = {
        "code": "G12.34-250101-0001",
        "procedure_code": "1.004227",
        "procedure_name": "Đăng ký biến động quyền sử dụng đất",
        "field_code": "DDAI",
        "field_name": "Đất đai",
        "channel": "online",
        "owner_name": "Nguyễn Văn An",
        "owner_id": OWNER_ID,
        "owner_kind": 1,
        "summary": "Đăng ký biến động do chuyển nhượng",
        "status": 2,
        "received_at": "2025-01-02T09:30:00+07:00",
        "fees": [{"code": "LP", "name": "Lệ phí đăng ký", "amount": 50000}],
    }
    values.update(changes)
    return values


def step(**changes: Any) -> dict[str, Any]:
    values: dict[str, Any] = {
        "dossier_code": "G12.34-250101-0001",
        "officer_name": "Trần Thị Bình",
        "at": "2025-01-03T08:00:00+07:00",
        "note": "Chuyển phòng chuyên môn",
        "previous_status": 2,
        "status": 4,
    }
    values.update(changes)
    return values


def errors(model: type, data: dict[str, Any]) -> dict[str, str]:
    with pytest.raises(ValidationError) as caught:
        model.model_validate(data)
    return {".".join(map(str, e["loc"])): e["msg"] for e in caught.value.errors()}


def test_the_transition_table() -> None:
    """The table's moves are allowed, the same status again is a no-op, final statuses go
    nowhere, and nothing goes back to NEW."""
    assert transition_allowed(S.NEW, S.RECEIVED)
    assert transition_allowed(S.RECEIVED, S.IN_PROGRESS)
    assert transition_allowed(S.IN_PROGRESS, S.PROCESSED)
    assert transition_allowed(S.PROCESSED, S.RESULT_RETURNED)
    assert transition_allowed(S.SUPPLEMENT_REQUESTED, S.IN_PROGRESS)
    for status in S:
        assert transition_allowed(status, status)
        assert not transition_allowed(status, S.NEW) or status == S.NEW
    for final in (S.NOT_RECEIVED, S.WITHDRAWN, S.STOPPED, S.RESULT_RETURNED):
        assert ALLOWED_TRANSITIONS[final] == frozenset()
    assert not transition_allowed(S.RECEIVED, S.RESULT_RETURNED)
    assert not transition_allowed(S.NEW, S.IN_PROGRESS)
    assert not transition_allowed(S.RESULT_RETURNED, S.IN_PROGRESS)
    assert not transition_allowed(0, 1)
    assert not transition_allowed(9, 11)
    assert set(ALLOWED_TRANSITIONS) == set(S)


def test_progress_refuses_an_impossible_transition_on_status() -> None:
    """2 -> 10 is refused on the field status, the message naming both statuses."""
    found = errors(DossierProgress, step(previous_status=2, status=10))
    assert set(found) == {"status"}
    assert "2 (RECEIVED)" in found["status"]
    assert "10 (RESULT_RETURNED)" in found["status"]
    assert DossierProgress.model_validate(step()).status == S.IN_PROGRESS
    assert DossierProgress.model_validate(step(previous_status=4, status=4)).status == 4


def test_naive_datetimes_are_refused_naming_the_field() -> None:
    """A time without an offset is refused, and the message names the field."""
    found = errors(Dossier, dossier(received_at="2025-01-02T09:30:00"))
    assert set(found) == {"received_at"}
    assert "received_at must carry a UTC offset" in found["received_at"]
    found = errors(DossierProgress, step(at=dt.datetime(2025, 1, 3, 8, 0)))
    assert "at must carry a UTC offset" in found["at"]


def test_times_are_shown_in_vietnam() -> None:
    """Any offset is accepted; JSON shows the time in Asia/Ho_Chi_Minh, +07:00."""
    model = Dossier.model_validate(dossier(received_at="2025-01-02T02:30:00Z"))
    assert model.model_dump(mode="json")["received_at"] == "2025-01-02T09:30:00+07:00"
    assert '"received_at":"2025-01-02T09:30:00+07:00"' in model.model_dump_json()
    other = Dossier.model_validate(dossier(received_at="2025-01-01T21:30:00-05:00"))
    assert other.model_dump(mode="json")["received_at"] == "2025-01-02T09:30:00+07:00"
    assert other.received_at == model.received_at


@pytest.mark.parametrize("amount", [50000.0, 50000.5, "50000", True])
def test_money_is_an_int_only(amount: object) -> None:
    """A float (even an integral one), a string or a bool is not a sum of money."""
    assert "amount" in errors(DossierFee, {"name": "Lệ phí", "amount": amount})
    assert "amount" in errors(ProcedureFee, {"amount": amount})


def test_money_is_not_negative() -> None:
    assert "amount" in errors(DossierFee, {"name": "Lệ phí", "amount": -1})
    assert DossierFee(name="Lệ phí", amount=0).amount == 0


def test_money_is_refused_in_json_too() -> None:
    """The bus validates JSON bodies: 50000.0 in JSON is refused as well."""
    with pytest.raises(ValidationError):
        DossierFee.model_validate_json('{"name": "Lệ phí", "amount": 50000.0}')
    assert DossierFee.model_validate_json('{"name": "Lệ phí", "amount": 50000}').amount == 50000


def test_owner_id_is_a_subject() -> None:
    """The owner's id is found by subjects_of, for the exchange log's blind index, in a sync
    input and in a record read back."""
    assert subjects_of(DossierSync.model_validate(dossier())) == {OWNER_ID}
    assert subjects_of(DossierRecord.model_validate(dossier())) == {OWNER_ID}
    assert subjects_of(Dossier.model_validate(dossier(owner_id=None))) == set()


def test_models_are_frozen_and_refuse_unknown_fields() -> None:
    model = Dossier.model_validate(dossier())
    with pytest.raises(ValidationError):
        model.status = S.PROCESSED  # type: ignore[misc]  # the point: frozen models refuse it
    assert "colour" in errors(Dossier, dossier(colour="red"))


def test_enums_and_text() -> None:
    """Owner kind is 1..4; text is NFC with whitespace collapsed."""
    model = Dossier.model_validate(dossier(owner_kind=2, owner_name="  Công   ty  ABC "))
    assert model.owner_kind == OwnerKind.ENTERPRISE
    assert model.owner_name == "Công ty ABC"
    assert "owner_kind" in errors(Dossier, dossier(owner_kind=5))
    assert "status" in errors(Dossier, dossier(status=11))
