"""The National Public Service Portal mock as a client meets it: login, the session and the
dstcode header, dossier create/update with "đã tồn tại", progress under the transition rule,
look-ups, catalogues, date checks, admin routes and fault injection."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest

from mocks.dvcqg import DvcqgSettings, create_app

pytestmark = pytest.mark.anyio

USER, PASSWORD = "lgsp-demo", "dvcqg-demo-password"
AGENCY = "H12.01"
CODE = "G12.34-250101-0001"
OWNER_ID = "001099012345"


class SteppedClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> SteppedClock:
    return SteppedClock()


@pytest.fixture
async def client(clock: SteppedClock) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(DvcqgSettings(session_ttl=1800), clock=clock)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app), base_url="http://dvcqg"
    ) as http:
        yield http


async def login(client: httpx.AsyncClient) -> str:
    reply = await client.post("/login", json={"username": USER, "password": PASSWORD})
    assert reply.status_code == 200
    body = reply.json()
    assert body["error_code"] == 0
    session: str = body["session"]
    return session


def dossier(**changes: Any) -> dict[str, Any]:
    record: dict[str, Any] = {
        "MaHoSo": CODE,
        "MaTTHC": "1.004227",
        "TenTTHC": "Đăng ký biến động quyền sử dụng đất",
        "MaLinhVuc": "DDAI",
        "TenLinhVuc": "Đất đai",
        "KenhThucHien": "2",
        "ChuHoSo": "Nguyễn Văn An",
        "SoGiayToChuHoSo": OWNER_ID,
        "LoaiDoiTuong": "1",
        "TrichYeuHoSo": "Đăng ký biến động do chuyển nhượng",
        "NgayTiepNhan": "20250102093000",
        "NgayHenTra": "20250116170000",
        "TrangThaiHoSo": "2",
        "DonViXuLy": "G12.34",
        "DanhSachLePhi": [{"MaPhiLePhi": "LP", "TenPhiLePhi": "Lệ phí đăng ký", "Gia": 50000}],
        "TaiLieuNop": [{"TenTepDinhKem": "Đơn đăng ký biến động"}],
    }
    record.update(changes)
    return {k: v for k, v in record.items() if v is not None}


def progress(status: str, **changes: Any) -> dict[str, Any]:
    record: dict[str, Any] = {
        "MaHoSo": CODE,
        "NguoiXuLy": "Trần Thị Bình",
        "ThoiDiemXuLy": "20250103080000",
        "NoiDungXuLy": "Xử lý hồ sơ",
        "TrangThai": status,
    }
    record.update(changes)
    return record


Call = Callable[..., Any]


@pytest.fixture
async def call(client: httpx.AsyncClient) -> Call:
    """POST /api with a fresh session; returns the reply body."""
    session = await login(client)

    async def send(service: str, headers: dict[str, str] | None = None, **params: Any) -> Any:
        body = {"session": session, "madonvi": AGENCY, "service": service, **params}
        reply = await client.post(
            "/api", json=body, headers={"dstcode": "DVCQG"} if headers is None else headers
        )
        assert reply.status_code == 200
        result = reply.json()
        assert isinstance(result["error_code"], str)  # always a string on /api
        return result

    return send


async def test_login_opens_a_session(client: httpx.AsyncClient) -> None:
    first, second = await login(client), await login(client)
    assert first
    assert second
    assert first != second
    stats = (await client.get("/__admin/stats")).json()
    assert stats["logins"] == 2


async def test_bad_password_is_error_code_minus_one(client: httpx.AsyncClient) -> None:
    """A wrong password (or unknown account, or no body) is error_code -1, a number, HTTP 200,
    with no session."""
    for body in (
        {"username": USER, "password": "wrong"},
        {"username": "nobody", "password": PASSWORD},
        {"username": USER},
    ):
        reply = await client.post("/login", json=body)
        assert reply.status_code == 200
        assert reply.json()["error_code"] == -1
        assert "session" not in reply.json()
    reply = await client.post("/login", content=b"not json")
    assert reply.json()["error_code"] == -1
    assert (await client.get("/__admin/stats")).json()["failed_logins"] == 4


async def test_missing_dstcode_is_refused(call: Call) -> None:
    reply = await call("LayDanhMucCoQuan", headers={})
    assert reply["error_code"] == "-1"
    assert "dstcode" in reply["message"]
    assert reply["result"] is None


async def test_unknown_or_expired_session(
    client: httpx.AsyncClient, clock: SteppedClock, call: Call
) -> None:
    """An unknown session, one past its lifetime, and one ended by the admin route are -2."""
    reply = await client.post(
        "/api",
        json={"session": "forged", "madonvi": AGENCY, "service": "LayDanhMucCoQuan"},
        headers={"dstcode": "DVCQG"},
    )
    assert reply.json()["error_code"] == "-2"
    assert reply.json()["message"] == "Phiên làm việc hết hạn"
    assert (await call("LayDanhMucCoQuan"))["error_code"] == "0"
    clock.now += 1799
    assert (await call("LayDanhMucCoQuan"))["error_code"] == "0"
    clock.now += 1
    assert (await call("LayDanhMucCoQuan"))["error_code"] == "-2"
    session = await login(client)
    expired = await client.post("/__admin/sessions/expire")
    assert expired.json() == {"expired": 1}
    reply = await client.post(
        "/api",
        json={"session": session, "madonvi": AGENCY, "service": "LayDanhMucCoQuan"},
        headers={"dstcode": "DVCQG"},
    )
    assert reply.json()["error_code"] == "-2"


async def test_madonvi_and_service_are_checked(call: Call, client: httpx.AsyncClient) -> None:
    session = await login(client)
    for body, code, word in (
        ({"session": session, "service": "LayThuTuc"}, "-1", "madonvi"),
        ({"session": session, "madonvi": "X99", "service": "LayThuTuc"}, "-1", "madonvi"),
        ({"session": session, "madonvi": AGENCY, "service": "XoaHoSo"}, "-6", "Dịch vụ"),
        ({"session": session, "madonvi": AGENCY}, "-6", "Dịch vụ"),
    ):
        reply = await client.post("/api", json=body, headers={"dstcode": "DVCQG"})
        assert reply.json()["error_code"] == code
        assert word in reply.json()["message"]
    reply = await client.post("/api", content=b"[1, 2]", headers={"dstcode": "DVCQG"})
    assert reply.json()["error_code"] == "-1"


async def test_create_then_already_exists_then_update(
    call: Call, client: httpx.AsyncClient
) -> None:
    """A create stores the dossier; creating it again is -3 "đã tồn tại"; an update replaces
    it; an update of an unknown dossier is -4."""
    created = await call("DongBoHoSoMC", isUpdating=False, data=[dossier()])
    assert created["error_code"] == "0"
    assert created["result"] == [{"MaHoSo": CODE, "TrangThaiHoSo": "2"}]

    again = await call("DongBoHoSoMC", isUpdating=False, data=[dossier()])
    assert again["error_code"] == "-3"
    assert "đã tồn tại" in again["message"]

    updated = await call("DongBoHoSoMC", isUpdating="True", data=[dossier(TrangThaiHoSo="4")])
    assert updated["error_code"] == "0"
    stored = (await client.get(f"/__admin/dossiers/{CODE}")).json()
    assert stored["dossier"]["TrangThaiHoSo"] == "4"
    assert stored["updates"] == 1

    unknown = await call("DongBoHoSoMC", isUpdating=True, data=[dossier(MaHoSo="G12.34-X")])
    assert unknown["error_code"] == "-4"
    assert (await client.get("/__admin/dossiers/G12.34-X")).status_code == 404


async def test_an_update_may_not_move_the_status_back(call: Call) -> None:
    """An update is held to the transition rule: 2 -> 1 is -5 naming both statuses; the same
    status again is a no-op."""
    await call("DongBoHoSoMC", isUpdating=False, data=[dossier()])
    refused = await call("DongBoHoSoMC", isUpdating=True, data=[dossier(TrangThaiHoSo="1")])
    assert refused["error_code"] == "-5"
    assert "từ 2 sang 1" in refused["message"]
    same = await call("DongBoHoSoMC", isUpdating=True, data=[dossier()])
    assert same["error_code"] == "0"


async def test_a_call_applies_all_its_records_or_none(
    call: Call, client: httpx.AsyncClient
) -> None:
    other = dossier(MaHoSo="G12.34-250101-0002")
    reply = await call("DongBoHoSoMC", data=[other, dossier(), dossier()])
    assert reply["error_code"] == "-3"
    assert (await client.get("/__admin/dossiers/G12.34-250101-0002")).status_code == 404


async def test_progress_follows_the_transition_rule(call: Call, client: httpx.AsyncClient) -> None:
    """2 -> 4 -> 9 -> 10 is accepted and kept in the history; 10 -> 4 is refused; a step sent
    twice is kept once; a step of an unknown dossier is -4."""
    await call("DongBoHoSoMC", isUpdating=False, data=[dossier()])
    for status in ("4", "9", "10"):
        reply = await call("CapNhatTienDoHoSoMC", data=[progress(status)])
        assert reply["error_code"] == "0", reply
        assert reply["result"] == [{"MaHoSo": CODE, "TrangThaiHoSo": status}]
    resent = await call("CapNhatTienDoHoSoMC", data=[progress("10")])
    assert resent["error_code"] == "0"
    refused = await call("CapNhatTienDoHoSoMC", data=[progress("4")])
    assert refused["error_code"] == "-5"
    assert "từ 10 sang 4" in refused["message"]
    stored = (await client.get(f"/__admin/dossiers/{CODE}")).json()
    assert [h["TrangThai"] for h in stored["history"]] == ["4", "9", "10"]
    assert stored["dossier"]["TrangThaiHoSo"] == "10"
    unknown = await call("CapNhatTienDoHoSoMC", data=[progress("4", MaHoSo="nope")])
    assert unknown["error_code"] == "-4"


async def test_a_skipped_step_is_refused(call: Call) -> None:
    await call("DongBoHoSoMC", data=[dossier()])
    reply = await call("CapNhatTienDoHoSoMC", data=[progress("10")])
    assert reply["error_code"] == "-5"
    assert "từ 2 sang 10" in reply["message"]


async def test_tra_cuu_ho_so(call: Call) -> None:
    """The stored dossier with its history, in a list; an unknown code is -4."""
    await call("DongBoHoSoMC", data=[dossier()])
    await call("CapNhatTienDoHoSoMC", data=[progress("4")])
    reply = await call("TraCuuHoSo", mahoso=CODE)
    assert reply["error_code"] == "0"
    [found] = reply["result"]
    assert found["MaHoSo"] == CODE
    assert found["TrangThaiHoSo"] == "4"
    assert found["DanhSachLePhi"][0]["Gia"] == 50000
    assert [h["TrangThai"] for h in found["QuaTrinhXuLy"]] == ["4"]
    missing = await call("TraCuuHoSo", mahoso="G12.34-000")
    assert missing["error_code"] == "-4"
    assert (await call("TraCuuHoSo"))["error_code"] == "-1"


async def test_lay_thu_tuc(call: Call) -> None:
    reply = await call("LayThuTuc", maTTHC="1.004227")
    assert reply["error_code"] == "0"
    [procedure] = reply["result"]
    assert procedure["TENTTHC"].startswith("Đăng ký biến động quyền sử dụng đất")
    assert procedure["LINHVUCTHUCHIEN"] == [{"MALINHVUC": "DDAI", "TENLINHVUC": "Đất đai"}]
    fees = procedure["CACHTHUCTHUCHIEN"][0]["THOIGIAN"][0]["PHILEPHI"]
    assert all(isinstance(f["SOTIEN"], int) for f in fees)
    assert (await call("LayThuTuc", maTTHC="9.999999"))["error_code"] == "-4"


async def test_catalogues(call: Call) -> None:
    agencies = (await call("LayDanhMucCoQuan"))["result"]
    assert {"MADONVI": "G12.34", "TENDONVI": "Văn phòng Đăng ký đất đai tỉnh"} in agencies
    assert {"MADONVI": "H12.01", "TENDONVI": "Trung tâm Phục vụ hành chính công tỉnh"} in agencies
    fields = (await call("LayDanhMucLinhVuc"))["result"]
    assert {"MALINHVUC": "DDAI", "TENLINHVUC": "Đất đai"} in fields
    procedures = (await call("LayDanhSachTTHC"))["result"]
    assert "1.004227" in {p["MATTHC"] for p in procedures}


@pytest.mark.parametrize(
    ("changes", "named"),
    [
        ({"NgayTiepNhan": "2025-01-02 09:30"}, "data[0].NgayTiepNhan"),
        ({"NgayTiepNhan": "20250230093000"}, "data[0].NgayTiepNhan"),  # 30 February
        ({"NgayHenTra": "20250116250000"}, "data[0].NgayHenTra"),  # hour 25
        ({"NgayHenTra": 20250116170000}, "data[0].NgayHenTra"),  # a number
        ({"TrangThaiHoSo": 2}, "data[0].TrangThaiHoSo"),  # codes are strings
        ({"TrangThaiHoSo": "11"}, "data[0].TrangThaiHoSo"),
        ({"LoaiDoiTuong": "5"}, "data[0].LoaiDoiTuong"),
        ({"MaTTHC": "9.999999"}, "data[0].MaTTHC"),
        ({"DonViXuLy": "X99"}, "data[0].DonViXuLy"),
        ({"TrichYeuHoSo": None}, "data[0].TrichYeuHoSo"),
        ({"ChuHoSo": "  "}, "data[0].ChuHoSo"),
        ({"DanhSachLePhi": [{"TenPhiLePhi": "Lệ phí", "Gia": 50000.0}]}, "DanhSachLePhi[0].Gia"),
        ({"DanhSachLePhi": [{"TenPhiLePhi": "Lệ phí", "Gia": "50000"}]}, "DanhSachLePhi[0].Gia"),
        ({"MauSac": "đỏ"}, "data[0].MauSac"),
    ],
)
async def test_invalid_fields_are_named(call: Call, changes: dict[str, Any], named: str) -> None:
    """Bad dates, codes, money and unknown keys are -1 naming the field, never quoting the
    value; nothing is stored."""
    reply = await call("DongBoHoSoMC", data=[dossier(**changes)])
    assert reply["error_code"] == "-1"
    assert named in reply["message"]
    assert OWNER_ID not in reply["message"]


async def test_empty_strings_mean_absent(call: Call, client: httpx.AsyncClient) -> None:
    """Clients send "" for optional fields they do not have; the portal takes it as absent."""
    reply = await call("DongBoHoSoMC", data=[dossier(NgayTra="", Email="", TaiLieuNop=[])])
    assert reply["error_code"] == "0"
    stored = (await client.get(f"/__admin/dossiers/{CODE}")).json()["dossier"]
    assert "NgayTra" not in stored
    assert "Email" not in stored


async def test_a_bad_progress_date_is_refused(call: Call) -> None:
    await call("DongBoHoSoMC", data=[dossier()])
    reply = await call("CapNhatTienDoHoSoMC", data=[progress("4", ThoiDiemXuLy="20251301000000")])
    assert reply["error_code"] == "-1"
    assert "data[0].ThoiDiemXuLy" in reply["message"]
    assert (await call("CapNhatTienDoHoSoMC", data=[]))["error_code"] == "-1"
    assert (await call("DongBoHoSoMC", data=[dossier()], isUpdating="maybe"))["error_code"] == "-1"


async def test_stats_count_calls_per_service(call: Call, client: httpx.AsyncClient) -> None:
    await call("LayDanhMucCoQuan")
    await call("LayDanhMucCoQuan")
    await call("TraCuuHoSo", mahoso="nope")
    stats = (await client.get("/__admin/stats")).json()
    assert stats["calls"] == {"LayDanhMucCoQuan": 2, "TraCuuHoSo": 1}
    assert stats["errors"] == {"-4": 1}
    assert stats["logins"] == 1


async def test_faults_from_the_mocks_own_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    """LGSP_MOCK_FAULTS_DVCQG sets start-up fault rules for this mock."""
    rules = [{"path": "/api", "error_rate": 1, "error_statuses": [503]}]
    monkeypatch.setenv("LGSP_MOCK_FAULTS_DVCQG", json.dumps(rules))
    app = create_app()
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app), base_url="http://dvcqg"
    ) as http:
        assert (await http.post("/api", json={})).status_code == 503
        assert (await http.post("/login", json={})).status_code == 200
        assert (await http.get("/__admin/faults")).json()["rules"][0]["path"] == "/api"
