"""The tax link mock as the province meets it: the notice XML, the notice pushed to the
province's receiver, and the payment voucher with its key check, validation, matching against
the notice and idempotency."""

from __future__ import annotations

import base64
import json
import logging
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import date
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from lxml import etree

from mocks.tax import VOUCHER_PATH, NoticeItem, TaxSettings, create_app, notice_xml

pytestmark = pytest.mark.anyio

KEY = "tax-demo-key"
RECEIVER_URL = "http://bus.test/tax/notices"
DOSSIER = "000.00.01.H29-261105-0042"
TAX_CODE = "8012345678"
PAYER_NAME = "Tran Thi Binh"  # ASCII, so it would show as is in a log line
PAYER_ID = "079188001234"

ITEMS = [
    NoticeItem(
        tax_code=TAX_CODE,
        decision_no="1234/TB-CCT",
        decision_date=date(2026, 11, 5),
        item_name="Tiền sử dụng đất",
        amount=150_000_000,
    ),
    NoticeItem(
        tax_code=TAX_CODE,
        decision_no="1234/TB-CCT",
        decision_date=date(2026, 11, 5),
        item_name="Lệ phí trước bạ",
        amount=2_500_000,
    ),
]
TOTAL = 152_500_000


class Receiver:
    """The province's notice receiver: records each push and answers as told."""

    def __init__(self, status: int = 200, refuse: bool = False) -> None:
        self.status = status
        self.refuse = refuse
        self.received: list[dict[str, Any]] = []

    def handler(self, request: httpx.Request) -> httpx.Response:
        if self.refuse:
            raise httpx.ConnectError("connection refused", request=request)
        assert str(request.url) == RECEIVER_URL
        assert request.headers["content-type"] == "application/json"
        self.received.append(json.loads(request.content))
        return httpx.Response(self.status, json={"Status": "OK", "Message": "đã nhận"})


@asynccontextmanager
async def tax(
    receiver: Receiver | None = None, notice_url: str | None = RECEIVER_URL
) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient, Receiver]]:
    receiver = receiver or Receiver()
    async with httpx.AsyncClient(transport=httpx.MockTransport(receiver.handler)) as http:
        app = create_app(TaxSettings(notice_url=notice_url), http=http)
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app), base_url="http://tax"
            ) as client,
        ):
            yield app, client, receiver


def order(dossier: str = DOSSIER, items: list[NoticeItem] = ITEMS) -> dict[str, Any]:
    return {"dossier_code": dossier, "items": [item.model_dump(mode="json") for item in items]}


def voucher(**changes: Any) -> dict[str, Any]:
    payment = {
        "NoiDungThanhToan": "Nộp tiền sử dụng đất",
        "ThoiGianThanhToan": "20261106101500",
        "MaThongBaoThue": "1234/TB-CCT",
        "TrangThaiThanhToan": 1,
        "SoTien": TOTAL,
        **changes.pop("ThongTinThanhToan", {}),
    }
    return {
        "SecurityKey": KEY,
        "MaHoSo": DOSSIER,
        "MaSoThue": TAX_CODE,
        "HoTenNguoiNopTien": PAYER_NAME,
        "SoCMTNguoiNopTien": PAYER_ID,
        "DiaChiNguoiNopTien": "12 Lê Lợi, phường Bến Nghé",
        "ThongTinThanhToan": payment,
        **changes,
    }


async def issue(client: httpx.AsyncClient, body: dict[str, Any] | None = None) -> None:
    reply = await client.post("/__admin/notices", json=body or order())
    assert reply.status_code == 200, reply.text


# --- the notice ------------------------------------------------------------------------------


def test_notice_xml_shape() -> None:
    data = notice_xml(DOSSIER, ITEMS)
    assert data.startswith(b"<?xml version='1.0' encoding='UTF-8'?>")
    root = etree.fromstring(data)
    assert root.tag == "DATA"
    assert [child.tag for child in root] == ["BODY"]
    [row_list] = root.xpath("/DATA/BODY/ROW_LIST")
    assert [child.tag for child in row_list] == ["MA_HSO", "LIST", "LIST"]
    assert row_list.findtext("MA_HSO") == DOSSIER
    lists = row_list.findall("LIST")
    for element, item in zip(lists, ITEMS, strict=True):
        assert [child.tag for child in element] == [
            "MA_SO_THUE",
            "SO_QUYET_DINH",
            "NGAY_QUYET_DINH",
            "TEN_TIEUMUC",
            "SO_TIEN",
        ]
        assert element.findtext("MA_SO_THUE") == TAX_CODE
        assert element.findtext("SO_QUYET_DINH") == "1234/TB-CCT"
        assert element.findtext("NGAY_QUYET_DINH") == "05/11/2026"
        assert element.findtext("TEN_TIEUMUC") == item.item_name
        assert element.findtext("SO_TIEN") == str(item.amount)
    assert "Tiền sử dụng đất".encode() in data  # UTF-8, not character references


def test_notice_item_amount_is_a_strict_positive_integer() -> None:
    fields = {
        "tax_code": TAX_CODE,
        "decision_no": "1",
        "decision_date": date(2026, 1, 2),
        "item_name": "x",
    }
    for amount in (1.5, "100", 0):
        with pytest.raises(ValueError, match="amount"):
            NoticeItem(**fields, amount=amount)


async def test_notice_is_pushed_with_the_right_json_and_base64() -> None:
    async with tax() as (_, client, receiver):
        reply = await client.post("/__admin/notices", json=order())
        notices = (await client.get("/__admin/notices")).json()
    assert reply.status_code == 200
    assert reply.json() == {"Status": "OK", "Message": "đã nhận"}  # the receiver's own reply
    [push] = receiver.received
    assert set(push) == {"SecurityKey", "Service", "Ngay", "IsUpdating", "Data"}
    assert push["SecurityKey"] == KEY
    assert push["Service"] == "ThongBaoThue"
    assert re.fullmatch(r"20[0-9]{12}", push["Ngay"])
    assert push["IsUpdating"] is False
    assert set(push["Data"]) == {"FileThongBaoThue"}
    assert base64.b64decode(push["Data"]["FileThongBaoThue"]) == notice_xml(DOSSIER, ITEMS)
    [notice] = notices
    assert notice["MaHoSo"] == DOSSIER
    assert notice["MaThongBaoThue"] == "1234/TB-CCT"
    assert notice["TongTien"] == TOTAL
    assert notice["push_status"] == 200


async def test_push_answers_with_the_receivers_status() -> None:
    async with tax(Receiver(status=500)) as (_, client, receiver):
        reply = await client.post("/__admin/notices", json={**order(), "is_updating": True})
    assert reply.status_code == 500
    assert reply.json()["Status"] == "OK"
    assert receiver.received[0]["IsUpdating"] is True


async def test_unreachable_receiver_is_502() -> None:
    async with tax(Receiver(refuse=True)) as (_, client, _receiver):
        reply = await client.post("/__admin/notices", json=order())
        notices = (await client.get("/__admin/notices")).json()
    assert reply.status_code == 502
    assert reply.json()["error"] == "ConnectError"
    assert notices[0]["push_error"] == "ConnectError"


async def test_notice_url_is_set_at_run_time() -> None:
    async with tax(notice_url=None) as (_, client, receiver):
        before = await client.post("/__admin/notices", json=order())
        updated = await client.put("/__admin/settings", json={"notice_url": RECEIVER_URL})
        bad = await client.put("/__admin/settings", json={"url": RECEIVER_URL})
        after = await client.post("/__admin/notices", json=order())
    assert before.status_code == 409
    assert updated.json() == {"notice_url": RECEIVER_URL}
    assert bad.status_code == 400
    assert after.status_code == 200
    assert len(receiver.received) == 1


async def test_invalid_notice_order_is_400() -> None:
    inconsistent = [ITEMS[0], ITEMS[1].model_copy(update={"tax_code": "0101010101"})]
    async with tax() as (_, client, receiver):
        empty = await client.post("/__admin/notices", json={"dossier_code": DOSSIER, "items": []})
        mixed = await client.post("/__admin/notices", json=order(items=inconsistent))
    assert empty.status_code == 400
    assert "items" in empty.json()["error"]
    assert mixed.status_code == 400
    assert receiver.received == []


# --- the voucher -----------------------------------------------------------------------------


async def test_voucher_is_accepted() -> None:
    async with tax() as (_, client, _receiver):
        await issue(client)
        reply = await client.post(VOUCHER_PATH, json=voucher())
        vouchers = (await client.get("/__admin/vouchers")).json()
    assert reply.status_code == 200
    body = reply.json()
    assert body["Status"] == "OK"
    assert body["Message"]
    assert re.fullmatch(r"CT[0-9]{10}", body["MaChungTu"])
    [kept] = vouchers
    assert kept["MaChungTu"] == body["MaChungTu"]
    assert kept["MaHoSo"] == DOSSIER
    assert "SecurityKey" not in kept


@pytest.mark.parametrize("key", ["wrong-key", "", None, 123])
async def test_wrong_or_missing_key_is_401(key: Any) -> None:
    body = voucher()
    if key is None:
        del body["SecurityKey"]
    else:
        body["SecurityKey"] = key
    async with tax() as (_, client, _receiver):
        await issue(client)
        reply = await client.post(VOUCHER_PATH, json=body)
    assert reply.status_code == 401
    assert reply.json() == {"Status": "ERROR", "Message": "Error Security Code"}


async def test_unknown_dossier_or_notice_is_404() -> None:
    async with tax() as (_, client, _receiver):
        await issue(client)
        dossier = await client.post(VOUCHER_PATH, json=voucher(MaHoSo="NO-SUCH-DOSSIER"))
        notice = await client.post(
            VOUCHER_PATH, json=voucher(ThongTinThanhToan={"MaThongBaoThue": "9999/TB"})
        )
    assert dossier.status_code == 404
    assert dossier.json()["Status"] == "ERROR"
    assert "MaHoSo" in dossier.json()["Message"]
    assert notice.status_code == 404
    assert "MaThongBaoThue" in notice.json()["Message"]


async def test_wrong_amount_or_tax_code_is_422() -> None:
    async with tax() as (_, client, _receiver):
        await issue(client)
        amount = await client.post(
            VOUCHER_PATH, json=voucher(ThongTinThanhToan={"SoTien": TOTAL - 1})
        )
        tax_code = await client.post(VOUCHER_PATH, json=voucher(MaSoThue="0101010101"))
        vouchers = (await client.get("/__admin/vouchers")).json()
    assert amount.status_code == 422
    assert amount.json()["Status"] == "ERROR"
    assert "SoTien" in amount.json()["Message"]
    assert tax_code.status_code == 422
    assert "MaSoThue" in tax_code.json()["Message"]
    assert vouchers == []


async def test_each_decision_is_its_own_notice() -> None:
    other = NoticeItem(
        tax_code=TAX_CODE,
        decision_no="5678/TB-CCT",
        decision_date=date(2026, 11, 6),
        item_name="Thuế thu nhập cá nhân",
        amount=3_000_000,
    )
    async with tax() as (_, client, _receiver):
        await issue(client, order(items=[*ITEMS, other]))
        first = await client.post(VOUCHER_PATH, json=voucher())
        second = await client.post(
            VOUCHER_PATH,
            json=voucher(ThongTinThanhToan={"MaThongBaoThue": "5678/TB-CCT", "SoTien": 3_000_000}),
        )
        notices = (await client.get("/__admin/notices")).json()
    assert {n["MaThongBaoThue"]: n["TongTien"] for n in notices} == {
        "1234/TB-CCT": TOTAL,
        "5678/TB-CCT": 3_000_000,
    }
    assert first.status_code == second.status_code == 200
    assert first.json()["MaChungTu"] != second.json()["MaChungTu"]


async def test_repeated_voucher_is_idempotent() -> None:
    async with tax() as (_, client, _receiver):
        await issue(client)
        first = await client.post(VOUCHER_PATH, json=voucher())
        again = await client.post(
            VOUCHER_PATH, json=voucher(ThongTinThanhToan={"ThoiGianThanhToan": "20261106101600"})
        )
        vouchers = (await client.get("/__admin/vouchers")).json()
    assert first.status_code == again.status_code == 200
    assert again.json()["Status"] == "OK"
    assert again.json()["MaChungTu"] == first.json()["MaChungTu"]
    assert len(vouchers) == 1


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"ThongTinThanhToan": {"SoTien": 152500000.0}}, "ThongTinThanhToan.SoTien"),
        ({"ThongTinThanhToan": {"SoTien": "152500000"}}, "ThongTinThanhToan.SoTien"),
        ({"ThongTinThanhToan": {"ThoiGianThanhToan": "06/11/2026"}}, "ThongTinThanhToan.ThoiGian"),
        ({"ThongTinThanhToan": {"TrangThaiThanhToan": 0}}, "ThongTinThanhToan.TrangThai"),
        ({"ThongTinThanhToan": {"MaThongBaoThue": ""}}, "ThongTinThanhToan.MaThongBaoThue"),
        ({"MaHoSo": ""}, "MaHoSo"),
        ({"MaSoThue": 8012345678}, "MaSoThue"),
        ({"SoCMTNguoiNopTien": "12345"}, "SoCMTNguoiNopTien"),
        ({"ThongTinThanhToan": None}, "ThongTinThanhToan"),
    ],
)
async def test_invalid_field_is_400_naming_it(changes: dict[str, Any], field: str) -> None:
    body = voucher(**{k: v for k, v in changes.items() if k != "ThongTinThanhToan"})
    if "ThongTinThanhToan" in changes:
        replacement = changes["ThongTinThanhToan"]
        body["ThongTinThanhToan"] = (
            None if replacement is None else {**body["ThongTinThanhToan"], **replacement}
        )
    async with tax() as (_, client, _receiver):
        await issue(client)
        reply = await client.post(VOUCHER_PATH, json=body)
    assert reply.status_code == 400
    assert reply.json()["Status"] == "ERROR"
    assert reply.json()["Message"].startswith(field)


async def test_missing_field_and_non_json_are_400() -> None:
    body = voucher()
    del body["HoTenNguoiNopTien"]
    async with tax() as (_, client, _receiver):
        missing = await client.post(VOUCHER_PATH, json=body)
        not_json = await client.post(
            VOUCHER_PATH, content=b"<xml/>", headers={"Content-Type": "application/json"}
        )
    assert missing.status_code == 400
    assert missing.json()["Message"] == "HoTenNguoiNopTien: Field required"
    assert not_json.status_code == 400


async def test_nothing_personal_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    async with tax() as (_, client, _receiver):
        await issue(client)
        await client.post(VOUCHER_PATH, json=voucher())
        await client.post(VOUCHER_PATH, json=voucher(SecurityKey="wrong"))
    assert PAYER_NAME not in caplog.text
    assert PAYER_ID not in caplog.text
    assert KEY not in caplog.text
