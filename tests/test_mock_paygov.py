"""The PayGov mock as a partner meets it: INIT with either checksum, the error codes, the
payment page, the confirmation callback with its retries and its acknowledgement, QUERY,
GET_BILL's PDF e-receipt, and the admin helpers."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import re
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from adapters.payment.checksum import (
    CALLBACK_FIELDS,
    CALLBACK_REPLY_FIELDS,
    INIT_FIELDS,
    QUERY_FIELDS,
    Algorithm,
    checksum,
    sign,
)
from mocks.paygov import API_PATH, PartnerSettings, PaygovSettings, create_app
from mocks.paygov.receipt import one_page_pdf, pdf_string, to_ascii

pytestmark = pytest.mark.anyio

PARTNER, TOKEN, SECRET = "LGSP_DEMO", "paygov-demo-token", "paygov-demo-secret"
OTHER, OTHER_TOKEN, OTHER_SECRET = "OTHER", "other-token", "other-secret"
CALLBACK_URL = "http://partner.test/paygov/callback"
PAYER_NAME = "Nguyen Van An"  # ASCII, so it would show as is in a log line
PAYER_ID = "001099012345"


def settings(algorithm: Algorithm = "sha256", **changes: Any) -> PaygovSettings:
    partners = {
        PARTNER: PartnerSettings(token=TOKEN, secret=SECRET, callback_url=CALLBACK_URL),
        OTHER: PartnerSettings(token=OTHER_TOKEN, secret=OTHER_SECRET),
    }
    values: dict[str, Any] = {"partners": partners, "checksum": algorithm, **changes}
    return PaygovSettings(**values)


def init_message(
    reference: str = "HS-2026-0001",
    amount: Any = 150000,
    *,
    secret: str = SECRET,
    algorithm: Algorithm = "sha256",
    when: str = "20261105093000",
    **changes: Any,
) -> dict[str, Any]:
    message: dict[str, Any] = {
        "LoaiBanTin": "INIT",
        "PhienBan": "1.0.6",
        "MaDoiTac": PARTNER,
        "MaThamChieu": reference,
        "SoTien": amount,
        "LoaiHinhThanhToan": "PAY",
        "MaKenhThanhToan": "1",
        "MaThietBi": "1",
        "NgonNgu": "vi-VN",
        "MaTienTe": "VND",
        "MaNganHang": "",
        "ThongTinGiaoDich": "Lệ phí hộ tịch (đăng ký khai sinh)",
        "ThoiGianGD": when,
        "Ip": "203.0.113.7",
        "ThongTinBienLai": {
            "MaDVC": "1.001193",
            "TenDVC": "Đăng ký khai sinh",
            "TenDonVi": "UBND phường Bến Nghé",
            "MaHoSo": "000.00.01.H29-261105-0001",
            "HoTenNguoiNop": PAYER_NAME,
            "SoCMNDNguoiNop": PAYER_ID,
            "NoiDungThanhToan": "Nộp lệ phí",
            "PhiLePhi": [
                {
                    "LoaiPhiLePhi": "2",
                    "MaPhiLePhi": "LP01",
                    "TenPhiLePhi": "Lệ phí",
                    "SoTien": 100000,
                }
            ],
            "DSKhoanNop": [{"NoiDung": "Phí bản sao", "SoTien": 50000}],
        },
        **changes,
    }
    # Signed as the text the values show, so that a test can send a wrongly typed one.
    values = ["" if message[name] is None else str(message[name]) for name in INIT_FIELDS]
    message["MaXacThuc"] = checksum(values, secret, algorithm)
    return message


def query_message(
    reference: str,
    kind: str = "QUERY",
    *,
    algorithm: Algorithm = "sha256",
    when: str = "20261105100000",
) -> dict[str, Any]:
    message: dict[str, Any] = {
        "LoaiBanTin": kind,
        "PhienBan": "1.0.6",
        "MaDoiTac": PARTNER,
        "MaThamChieu": reference,
        "ThoiGianGD": when,
    }
    message["MaXacThuc"] = sign(message, QUERY_FIELDS, SECRET, algorithm)
    return message


AUTH = {"Authorization": f"Bearer {TOKEN}"}


class Partner:
    """The partner's callback receiver: answers each callback as scripted, then acknowledges.

    Script steps: "ok" (MaLoi 00, right checksum), "99", "badsum" (00 with a wrong checksum),
    "500", "refused" (connection error)."""

    def __init__(self, *script: str, algorithm: Algorithm = "sha256") -> None:
        self.script = list(script)
        self.algorithm = algorithm
        self.received: list[dict[str, Any]] = []

    def handler(self, request: httpx.Request) -> httpx.Response:
        assert str(request.url) == CALLBACK_URL
        step = self.script.pop(0) if self.script else "ok"
        if step == "refused":
            raise httpx.ConnectError("connection refused", request=request)
        message = json.loads(request.content)
        self.received.append(message)
        code = "99" if step == "99" else "00"
        reply = {
            "MaLoi": code,
            "MoTaLoi": "Thành công" if code == "00" else "Lỗi",
            "MaDoiTac": message["MaDoiTac"],
            "MaThamChieu": message["MaThamChieu"],
            "ThoiGianGD": "20261105100500",
        }
        reply["MaXacThuc"] = sign(reply, CALLBACK_REPLY_FIELDS, SECRET, self.algorithm)
        if step == "badsum":
            reply["MaXacThuc"] = "0" * 64
        return httpx.Response(500 if step == "500" else 200, json=reply)


class Sleeps:
    """An injected sleep that only records how long it was asked to wait."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)


@asynccontextmanager
async def paygov(
    config: PaygovSettings | None = None,
    partner: Partner | None = None,
    sleep: Callable[[float], Any] | None = None,
) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    """The mock with its lifespan running; callbacks reach ``partner``."""
    receiver = partner or Partner()
    async with httpx.AsyncClient(transport=httpx.MockTransport(receiver.handler)) as http:
        app = create_app(config or settings(), sleep=sleep or Sleeps(), http=http)
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app), base_url="http://paygov"
            ) as client,
        ):
            yield app, client


async def call(
    client: httpx.AsyncClient, message: dict[str, Any], token: str = TOKEN
) -> dict[str, Any]:
    reply = await client.post(API_PATH, json=message, headers={"Authorization": f"Bearer {token}"})
    assert reply.status_code == 200, reply.text
    body: dict[str, Any] = reply.json()
    return body


async def start_payment(client: httpx.AsyncClient, reference: str = "HS-2026-0001") -> str:
    """INIT a payment; its page's path."""
    body = await call(client, init_message(reference))
    assert body["error_code"] == "0", body
    url: str = json.loads(body["message"])["UrlThanhToan"]
    return httpx.URL(url).path


async def complete(
    client: httpx.AsyncClient, reference: str = "HS-2026-0001", **order: str
) -> dict[str, Any]:
    reply = await client.post(f"/__admin/payments/{reference}/complete", json=order or None)
    assert reply.status_code == 200, reply.text
    body: dict[str, Any] = reply.json()
    return body


# --- checksum --------------------------------------------------------------------------------


def test_checksum_algorithms_follow_their_definitions() -> None:
    assert checksum(["INIT", "1.0.6", "150000"], "s3cret", "sha256") == (
        hashlib.sha256(b"INIT|1.0.6|150000|s3cret").hexdigest()
    )
    assert checksum(["INIT", "1.0.6", "150000"], "s3cret", "hmac-sha256") == (
        hmac.new(b"s3cret", b"INIT|1.0.6|150000", hashlib.sha256).hexdigest()
    )
    assert checksum(["Lệ phí"], "k", "sha256") == hashlib.sha256("Lệ phí|k".encode()).hexdigest()


def test_field_orders_are_the_wire_names() -> None:
    assert INIT_FIELDS[:5] == ("LoaiBanTin", "PhienBan", "MaDoiTac", "MaThamChieu", "SoTien")
    assert INIT_FIELDS[-2:] == ("ThoiGianGD", "Ip")
    assert len(INIT_FIELDS) == 14
    assert QUERY_FIELDS == ("LoaiBanTin", "PhienBan", "MaDoiTac", "MaThamChieu", "ThoiGianGD")
    assert CALLBACK_FIELDS[1] == "MaLoi"
    assert CALLBACK_REPLY_FIELDS == ("MaLoi", "MaDoiTac", "MaThamChieu", "ThoiGianGD")


# --- INIT ------------------------------------------------------------------------------------


@pytest.mark.parametrize("algorithm", ["sha256", "hmac-sha256"])
async def test_init_with_either_checksum(algorithm: Algorithm) -> None:
    async with paygov(settings(algorithm)) as (_, client):
        body = await call(client, init_message(algorithm=algorithm))
        wrong = await call(
            client,
            init_message("HS-2", algorithm="hmac-sha256" if algorithm == "sha256" else "sha256"),
        )
    assert body["error_code"] == "0", body
    assert isinstance(body["message"], str)
    message = json.loads(body["message"])
    assert set(message) == {"MaThamChieu", "MaGiaoDich", "UrlThanhToan"}
    assert message["MaThamChieu"] == "HS-2026-0001"
    assert message["MaGiaoDich"].startswith("PG")
    assert re.fullmatch(r"http://paygov/pay/[A-Za-z0-9_-]{16,}", message["UrlThanhToan"])
    assert wrong["error_code"] == "01"


async def test_public_url_is_the_base_of_the_payment_url() -> None:
    async with paygov(settings(public_url="https://paygov.example/")) as (_, client):
        body = await call(client, init_message())
    assert json.loads(body["message"])["UrlThanhToan"].startswith("https://paygov.example/pay/")


async def test_wrong_checksum_is_01() -> None:
    async with paygov() as (_, client):
        body = await call(client, init_message(secret="not-the-secret"))
        tampered = init_message()
        tampered["SoTien"] = 1000
        second = await call(client, tampered)
        payments = (await client.get("/__admin/payments")).json()
    assert body["error_code"] == "01"
    assert "MaXacThuc" in body["message"]
    assert second["error_code"] == "01"
    assert payments == []


async def test_reference_reused_with_another_amount_is_02() -> None:
    async with paygov() as (_, client):
        first = await call(client, init_message(amount=150000))
        second = await call(client, init_message(amount=200000))
        other_text = await call(client, init_message(ThongTinGiaoDich="Khác"))
        payments = (await client.get("/__admin/payments")).json()
    assert first["error_code"] == "0"
    assert second["error_code"] == "02"
    assert "SoTien" in second["message"]
    assert other_text["error_code"] == "02"
    assert "ThongTinGiaoDich" in other_text["message"]
    assert len(payments) == 1
    assert payments[0]["SoTien"] == 150000


async def test_repeated_init_returns_the_same_payment() -> None:
    """A retried INIT (new time, new checksum) creates nothing and answers the same URL."""
    async with paygov() as (_, client):
        first = await call(client, init_message(when="20261105093000"))
        again = await call(client, init_message(when="20261105093500", Ip="198.51.100.2"))
        payments = (await client.get("/__admin/payments")).json()
    assert first["error_code"] == again["error_code"] == "0"
    assert json.loads(first["message"]) == json.loads(again["message"])
    assert len(payments) == 1
    assert payments[0]["state"] == "pending"


async def test_same_reference_for_two_partners_is_two_payments() -> None:
    async with paygov() as (_, client):
        ours = await call(client, init_message())
        theirs = await call(
            client, init_message(MaDoiTac=OTHER, secret=OTHER_SECRET), token=OTHER_TOKEN
        )
        ambiguous = await client.post("/__admin/payments/HS-2026-0001/complete")
        chosen = await client.post(
            "/__admin/payments/HS-2026-0001/complete", params={"MaDoiTac": OTHER}
        )
    assert ours["error_code"] == theirs["error_code"] == "0"
    assert ambiguous.status_code == 409
    assert chosen.status_code == 200
    assert chosen.json()["MaDoiTac"] == OTHER


@pytest.mark.parametrize("amount", [150000.0, 1500.5, "150000", True, 0, -5, None])
async def test_amount_must_be_a_positive_json_integer(amount: Any) -> None:
    async with paygov() as (_, client):
        body = await call(client, init_message(amount=amount))
    assert body["error_code"] == "04"
    assert body["message"].startswith("SoTien: ")


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"ThoiGianGD": "2026-11-05"}, "ThoiGianGD"),
        ({"ThoiGianGD": "20261305093000"}, "ThoiGianGD"),
        ({"MaTienTe": "USD"}, "MaTienTe"),
        ({"LoaiHinhThanhToan": "REFUND"}, "LoaiHinhThanhToan"),
        ({"Ip": "not-an-ip"}, "Ip"),
        ({"MaThamChieu": ""}, "MaThamChieu"),
        ({"ThongTinBienLai": "x"}, "ThongTinBienLai"),
        (
            {"ThongTinBienLai": {"PhiLePhi": [{"TenPhiLePhi": "x", "SoTien": 1.5}]}},
            "ThongTinBienLai.PhiLePhi[0].SoTien",
        ),
        ({"ThongTinBienLai": {"DSKhoanNop": [{"NoiDung": "x"}]}}, "ThongTinBienLai.DSKhoanNop[0]"),
    ],
)
async def test_invalid_field_is_04_naming_it(changes: dict[str, Any], field: str) -> None:
    async with paygov() as (_, client):
        body = await call(client, init_message(**changes))
    assert body["error_code"] == "04"
    assert body["message"].startswith(field)


async def test_bank_device_and_channel_may_be_empty_or_null() -> None:
    """MaNganHang null: the citizen picks a bank on PayGov's page; the checksum reads ""."""
    async with paygov() as (app, client):
        body = await call(client, init_message(MaNganHang=None, MaThietBi=None, MaKenhThanhToan=""))
        state = await complete(client)
        await app.state.callbacks.join()
    assert body["error_code"] == "0", body
    assert state["MaNganHang"] == "VCB"  # the mock's default bank


async def test_missing_field_is_04_naming_it() -> None:
    message = init_message()
    del message["MaKenhThanhToan"]
    async with paygov() as (_, client):
        body = await call(client, message)
        not_json = await client.post(
            API_PATH, content=b"{not json", headers={**AUTH, "Content-Type": "application/json"}
        )
    assert body == {"error_code": "04", "message": "MaKenhThanhToan: Field required"}
    assert not_json.json()["error_code"] == "04"


@pytest.mark.parametrize(
    ("changes", "field"),
    [({"PhienBan": "1.0.5"}, "PhienBan"), ({"LoaiBanTin": "REFUND"}, "LoaiBanTin")],
)
async def test_unsupported_kind_or_version_is_06(changes: dict[str, Any], field: str) -> None:
    async with paygov() as (_, client):
        body = await call(client, init_message(**changes))
    assert body["error_code"] == "06"
    assert body["message"].startswith(field)


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer nope"}, {"Authorization": f"Basic {TOKEN}"}],
)
async def test_missing_or_unknown_bearer_is_401(headers: dict[str, str]) -> None:
    async with paygov() as (_, client):
        reply = await client.post(API_PATH, json=init_message(), headers=headers)
    assert reply.status_code == 401
    assert reply.json()["error_code"] == "401"
    assert reply.json()["message"]


async def test_token_of_another_partner_is_401() -> None:
    async with paygov() as (_, client):
        reply = await client.post(
            API_PATH,
            json=init_message(),
            headers={"Authorization": f"Bearer {OTHER_TOKEN}"},
        )
    assert reply.status_code == 401
    assert reply.json()["error_code"] == "401"


def test_partners_need_distinct_tokens() -> None:
    with pytest.raises(ValueError, match="own token"):
        PaygovSettings(
            partners={
                "A": PartnerSettings(token="t", secret="a"),
                "B": PartnerSettings(token="t", secret="b"),
            }
        )


# --- the payment page ------------------------------------------------------------------------


async def test_page_renders_and_its_button_completes_the_payment() -> None:
    async with paygov() as (_, client):
        path = await start_payment(client)
        page = await client.get(path)
        done = await client.post(f"{path}/complete")
        again = await client.post(f"{path}/complete")
        after = await client.get(path)
        payments = (await client.get("/__admin/payments")).json()
        missing = await client.get("/pay/no-such-page")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    text = page.text
    assert "150.000 VND" in text
    assert "HS-2026-0001" in text
    assert "Đăng ký khai sinh" in text
    assert "Phí bản sao" in text
    assert f'action="{path}/complete"' in text
    assert f'action="{path}/fail"' in text
    assert ">Thanh toán</button>" in text
    assert ">Hủy</button>" in text
    assert done.status_code == 200
    assert "thành công" in done.text
    assert again.status_code == 409
    assert "<form" not in after.text
    assert payments[0]["state"] == "paid"
    assert re.fullmatch(r"[0-9]{14}", payments[0]["ThoiGianGD"])
    assert missing.status_code == 404


async def test_page_escapes_what_the_partner_sent() -> None:
    async with paygov() as (_, client):
        body = await call(client, init_message(ThongTinGiaoDich="<script>alert(1)</script>"))
        page = await client.get(httpx.URL(json.loads(body["message"])["UrlThanhToan"]).path)
    assert "<script>" not in page.text
    assert "&lt;script&gt;" in page.text


async def test_cancel_button_fails_the_payment() -> None:
    partner = Partner()
    async with paygov(partner=partner) as (app, client):
        path = await start_payment(client)
        cancelled = await client.post(f"{path}/fail")
        await app.state.callbacks.join()
        payments = (await client.get("/__admin/payments")).json()
    assert cancelled.status_code == 200
    assert "hủy" in cancelled.text
    assert payments[0]["state"] == "failed"
    assert partner.received[0]["MaLoi"] == "01"


# --- the confirmation callback ---------------------------------------------------------------


@pytest.mark.parametrize("algorithm", ["sha256", "hmac-sha256"])
async def test_callback_is_delivered_with_a_right_checksum(algorithm: Algorithm) -> None:
    partner = Partner(algorithm=algorithm)
    async with paygov(settings(algorithm), partner) as (app, client):
        body = await call(client, init_message(algorithm=algorithm))
        state = await complete(client, bank="BIDV")
        await app.state.callbacks.join()
        attempts = (await client.get("/__admin/callbacks")).json()
    created = json.loads(body["message"])
    assert state["state"] == "paid"
    [message] = partner.received
    assert message["LoaiBanTin"] == "NOTIFY"
    assert message["MaLoi"] == "00"
    assert message["MaDoiTac"] == PARTNER
    assert message["MaThamChieu"] == "HS-2026-0001"
    assert message["SoTien"] == 150000
    assert message["MaTienTe"] == "VND"
    assert message["MaGiaoDich"] == created["MaGiaoDich"]
    assert message["MaNganHang"] == "BIDV"
    assert message["ThoiGianGD"] == state["ThoiGianGD"]
    assert message["ThongTinGiaoDich"] == "Lệ phí hộ tịch (đăng ký khai sinh)"
    assert message["MaXacThuc"] == checksum(
        [str(message[name]) for name in CALLBACK_FIELDS], SECRET, algorithm
    )
    assert len(attempts) == 1
    assert attempts[0]["acknowledged"] is True
    assert attempts[0]["http_status"] == 200
    assert attempts[0]["partner_code"] == "00"


async def test_callback_is_retried_until_acknowledged() -> None:
    """A refused connection, a 500, a "99" and a reply with a wrong checksum are not
    acknowledgements; the fifth attempt is, and the waits follow the backoff."""
    partner = Partner("refused", "500", "99", "badsum", "ok")
    sleeps = Sleeps()
    async with paygov(partner=partner, sleep=sleeps) as (app, client):
        await start_payment(client)
        await complete(client)
        await app.state.callbacks.join()
        attempts = (await client.get("/__admin/callbacks")).json()
    assert [a["attempt"] for a in attempts] == [1, 2, 3, 4, 5]
    assert [a["acknowledged"] for a in attempts] == [False, False, False, False, True]
    assert attempts[0]["error"] == "ConnectError"
    assert attempts[0]["http_status"] is None
    assert attempts[1]["http_status"] == 500
    assert attempts[2]["partner_code"] == "99"
    assert attempts[3]["partner_code"] == "00"
    assert "MaXacThuc" in attempts[3]["error"]
    assert sleeps.delays == [1, 2, 4, 8]
    assert len(partner.received) == 4  # the refused one never arrived
    assert all(m == partner.received[0] for m in partner.received)


async def test_callback_gives_up_after_the_backoff_list() -> None:
    partner = Partner(*["99"] * 10)
    sleeps = Sleeps()
    async with paygov(settings(callback_backoff=[3, 5]), partner, sleeps) as (app, client):
        await start_payment(client)
        await complete(client)
        await app.state.callbacks.join()
        attempts = (await client.get("/__admin/callbacks")).json()
    assert len(attempts) == 3
    assert not any(a["acknowledged"] for a in attempts)
    assert sleeps.delays == [3, 5]


async def test_no_callback_without_a_callback_url_until_one_is_set() -> None:
    partner = Partner()
    config = settings(partners={PARTNER: PartnerSettings(token=TOKEN, secret=SECRET)})
    async with paygov(config, partner) as (app, client):
        await start_payment(client, "A")
        await complete(client, "A")
        await app.state.callbacks.join()
        none_yet = (await client.get("/__admin/callbacks")).json()
        set_url = await client.put(
            f"/__admin/partners/{PARTNER}", json={"callback_url": CALLBACK_URL}
        )
        unknown = await client.put("/__admin/partners/NOPE", json={"callback_url": CALLBACK_URL})
        await start_payment(client, "B")
        await complete(client, "B")
        await app.state.callbacks.join()
        attempts = (await client.get("/__admin/callbacks")).json()
    assert none_yet == []
    assert set_url.status_code == 200
    assert unknown.status_code == 404
    assert [a["reference"] for a in attempts] == ["B"]
    assert [m["MaThamChieu"] for m in partner.received] == ["B"]


async def test_resend_callback_sends_the_same_confirmation_once_more() -> None:
    partner = Partner()
    async with paygov(partner=partner) as (app, client):
        await start_payment(client)
        pending = await client.post("/__admin/payments/HS-2026-0001/resend-callback")
        await complete(client)
        await app.state.callbacks.join()
        resent = await client.post("/__admin/payments/HS-2026-0001/resend-callback")
        attempts = (await client.get("/__admin/callbacks")).json()
        unknown = await client.post("/__admin/payments/NOPE/resend-callback")
    assert pending.status_code == 409
    assert resent.status_code == 200
    assert resent.json()["resend"] is True
    assert resent.json()["attempt"] == 2
    assert resent.json()["acknowledged"] is True
    assert len(attempts) == 2
    assert partner.received[0] == partner.received[1]
    assert unknown.status_code == 404


async def test_completing_twice_is_409() -> None:
    async with paygov() as (app, client):
        await start_payment(client)
        await complete(client, outcome="failed")
        again = await client.post("/__admin/payments/HS-2026-0001/complete")
        bad = await client.post("/__admin/payments/HS-2026-0001/complete", json={"outcome": "x"})
        unknown = await client.post("/__admin/payments/NOPE/complete")
        await app.state.callbacks.join()
    assert again.status_code == 409
    assert again.json()["state"] == "failed"
    assert bad.status_code == 400
    assert unknown.status_code == 404


async def test_shutdown_cancels_callbacks_in_flight() -> None:
    """A callback waiting to be retried does not hold the app's shutdown."""
    never, sleeping = asyncio.Event(), asyncio.Event()

    async def wait_forever(seconds: float) -> None:
        sleeping.set()
        await never.wait()

    async with paygov(partner=Partner("99"), sleep=wait_forever) as (app, client):
        await start_payment(client)
        await complete(client)
        sender = app.state.callbacks
        await sleeping.wait()  # the first attempt is over, the retry waits
    assert len(sender.attempts) == 1
    assert not sender._tasks


# --- QUERY and GET_BILL ----------------------------------------------------------------------


async def test_query_reports_each_state() -> None:
    async with paygov() as (app, client):
        await call(client, init_message("P"))
        await call(client, init_message("F"))
        pending = await call(client, query_message("P"))
        await complete(client, "P", bank="VCB")
        await complete(client, "F", outcome="failed")
        paid = await call(client, query_message("P"))
        failed = await call(client, query_message("F"))
        await app.state.callbacks.join()
    assert pending["error_code"] == "0"
    first = json.loads(pending["message"])
    assert set(first) == {
        "MaThamChieu",
        "MaGiaoDich",
        "SoTien",
        "TrangThaiGD",
        "ThoiGianGD",
        "MaNganHang",
    }
    assert first["TrangThaiGD"] == "01"
    assert first["ThoiGianGD"] is None
    assert first["SoTien"] == 150000
    done = json.loads(paid["message"])
    assert done["TrangThaiGD"] == "00"
    assert re.fullmatch(r"[0-9]{14}", done["ThoiGianGD"])
    assert done["MaNganHang"] == "VCB"
    assert done["MaGiaoDich"] == first["MaGiaoDich"]
    assert json.loads(failed["message"])["TrangThaiGD"] == "02"


@pytest.mark.parametrize("kind", ["QUERY", "GET_BILL"])
async def test_unknown_reference_is_03(kind: str) -> None:
    async with paygov() as (_, client):
        body = await call(client, query_message("NO-SUCH-REF", kind))
    assert body["error_code"] == "03"


@pytest.mark.parametrize("kind", ["QUERY", "GET_BILL"])
async def test_query_checksum_is_checked(kind: str) -> None:
    message = query_message("X", kind)
    message["MaThamChieu"] = "Y"
    async with paygov() as (_, client):
        body = await call(client, message)
    assert body["error_code"] == "01"


async def test_get_bill_before_payment_is_05() -> None:
    async with paygov() as (app, client):
        await start_payment(client)
        pending = await call(client, query_message("HS-2026-0001", "GET_BILL"))
        await complete(client, outcome="failed")
        failed = await call(client, query_message("HS-2026-0001", "GET_BILL"))
        await app.state.callbacks.join()
    assert pending["error_code"] == "05"
    assert failed["error_code"] == "05"


def check_pdf(data: bytes) -> None:
    """A PDF whose xref offsets each point at their ``N 0 obj`` and whose stream lengths hold."""
    assert data.startswith(b"%PDF-1.")
    assert data.endswith(b"%%EOF\n")
    start = int(data.rsplit(b"startxref", 1)[1].split()[0])
    assert data[start:].startswith(b"xref\n")
    lines = data[start:].split(b"\n")
    first, count = (int(part) for part in lines[1].split())
    assert first == 0
    entries = data[start + len(lines[0]) + len(lines[1]) + 2 :][: 20 * count]
    assert entries.startswith(b"0000000000 65535 f ")
    for number in range(1, count):
        entry = entries[20 * number : 20 * number + 20]
        assert re.fullmatch(rb"[0-9]{10} 00000 n \n", entry), entry
        offset = int(entry[:10])
        assert data[offset:].startswith(b"%d 0 obj\n" % number), number
    assert b"/Size %d" % count in data[start:]
    assert b"/Root 1 0 R" in data[start:]
    for match in re.finditer(rb"<< /Length (\d+) >>\nstream\n", data):
        end = match.end() + int(match.group(1))
        assert data[end:].startswith(b"\nendstream")


async def test_get_bill_returns_a_pdf_receipt() -> None:
    async with paygov() as (app, client):
        body = await call(client, init_message())
        await complete(client)
        reply = await client.post(
            API_PATH, json=query_message("HS-2026-0001", "GET_BILL"), headers=AUTH
        )
        await app.state.callbacks.join()
    assert reply.status_code == 200
    assert reply.headers["content-type"] == "application/pdf"
    data = reply.content
    assert data.startswith(b"%PDF-")
    check_pdf(data)
    assert json.loads(body["message"])["MaGiaoDich"].encode() in data
    assert b"(Noi dung: Le phi ho tich \\(dang ky khai sinh\\))" in data
    assert b"150.000 VND" in data
    assert b"/BaseFont /Helvetica" in data
    assert data.split(b"\n", 2)[2].isascii()  # after the header's binary comment


def test_pdf_writer_escapes_and_transliterates() -> None:
    assert to_ascii("Đường Trần Hưng Đạo, quận Hoàn Kiếm") == "Duong Tran Hung Dao, quan Hoan Kiem"
    assert pdf_string("a(b)c\\d") == "(a\\(b\\)c\\\\d)"
    data = one_page_pdf([f"Dòng {n} ({n})" for n in range(200)] + ["x" * 500], title="Tiêu đề")
    check_pdf(data)
    assert b"(Tieu de)" in data
    assert b"(Dong 0 \\(0\\)) Tj" in data
    assert b"one page only" in data


# --- privacy ---------------------------------------------------------------------------------


async def test_nothing_personal_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    partner = Partner("99", "ok")
    async with paygov(partner=partner) as (app, client):
        await start_payment(client)
        await call(client, init_message(secret="wrong"))
        await complete(client)
        await app.state.callbacks.join()
        bill = await client.post(
            API_PATH, json=query_message("HS-2026-0001", "GET_BILL"), headers=AUTH
        )
    assert bill.headers["content-type"] == "application/pdf"
    assert caplog.records  # the mock does log: references, codes, error classes
    assert PAYER_NAME not in caplog.text
    assert PAYER_ID not in caplog.text
    assert SECRET not in caplog.text
    assert TOKEN not in caplog.text
