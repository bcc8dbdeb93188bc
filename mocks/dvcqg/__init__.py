"""National Public Service Portal mock (Cổng Dịch vụ công quốc gia, DVCQG): REST JSON with a
login session, as a provincial one-stop-shop system meets it.

``POST /login``  body ``{"username": ..., "password": ...}``
    Success: ``{"error_code": 0, "session": "<opaque>"}``. Wrong account or password, or a body
    that is not a JSON object: ``{"error_code": -1, "message": "Tên đăng nhập hoặc mật khẩu
    không đúng"}``. Always HTTP 200: the portal reports outcomes in the body. Login's
    ``error_code`` is a JSON **number** (0, -1); the reply gives no lifetime. A session lives
    ``DvcqgSettings.session_ttl`` seconds (default 1800) from the login that opened it, whatever
    it is used for; every login opens a new one.

``POST /api``  header ``dstcode`` (routing code; any non-empty value), JSON body::

    {"session": "...", "madonvi": "H12.01", "service": "<name>", ...service parameters}

    Reply, always HTTP 200: ``{"error_code": "<code>", "message": "...", "result": ...}``;
    here ``error_code`` is a JSON **string**, ``"0"`` on success (``result`` then holds the
    answer; on an error it is null). Checks in this order: body, dstcode, session, madonvi,
    service, then the service's parameters and records (the first problem is reported; a
    call's records are applied all together or not at all).

==============  ================================================================================
error_code      meaning (message)
==============  ================================================================================
``"0"``         success ("Thành công")
``"-1"``        invalid or missing field, naming it: "Trường data[0].NgayTiepNhan không hợp lệ:
                ...", "Thiếu trường bắt buộc data[0].MaHoSo", "Thiếu tham số dstcode trong
                header", "Thiếu tham số madonvi"; an unknown madonvi, MaTTHC or DonViXuLy; a key
                the record does not have (stricter than the portal, to catch a client's typos)
``"-2"``        session unknown or expired ("Phiên làm việc hết hạn")
``"-3"``        dossier already exists, on a create ("Hồ sơ <MaHoSo> đã tồn tại trên hệ thống")
``"-4"``        no such dossier (update, progress, TraCuuHoSo) or procedure (LayThuTuc):
                "Không tìm thấy hồ sơ <MaHoSo>" / "Không tìm thấy thủ tục <maTTHC>"
``"-5"``        status transition not allowed: "Hồ sơ <MaHoSo>: không thể chuyển trạng thái từ
                <from> sang <to>"
``"-6"``        unknown or missing service ("Dịch vụ không tồn tại")
==============  ================================================================================

Services:

- ``DongBoHoSoMC``: ``isUpdating`` (JSON bool, or "true"/"false" in any case; absent = false),
  ``data``: 1..100 dossiers. Not updating: each is created, ``-3`` if its MaHoSo exists (at any
  status). Updating: each replaces the stored one, ``-4`` if absent, ``-5`` if its TrangThaiHoSo
  moves the stored status along a transition :data:`schemas.dossier.ALLOWED_TRANSITIONS` does
  not allow (the same status again is allowed). Result: ``[{"MaHoSo", "TrangThaiHoSo"}]``.
- ``CapNhatTienDoHoSoMC``: ``data``: 1..100 progress records (MaHoSo, NguoiXuLy, ChucDanh?,
  ThoiDiemXuLy, PhongBanXuLy?, NoiDungXuLy, TrangThai, NgayBatDau?, NgayKetThucTheoQuyDinh?).
  TrangThai moves the dossier under the same rule; the record is appended to the dossier's
  history unless an identical one is there already (a re-sent update is a no-op).
  Result: ``[{"MaHoSo", "TrangThaiHoSo"}]``.
- ``TraCuuHoSo`` (``mahoso``): ``[dossier + "QuaTrinhXuLy": [progress records]]``.
- ``LayThuTuc`` (``maTTHC``): ``[procedure]`` with upper-case keys: MATTHC, TENTTHC, CAPTHUCHIEN,
  LINHVUCTHUCHIEN[{MALINHVUC, TENLINHVUC}], COQUANTHUCHIEN[{MADONVI, TENDONVI}],
  CACHTHUCTHUCHIEN[{KENH, THOIGIAN[{THOIGIANGIAIQUYET, DONVITINH, MOTA, PHILEPHI[{SOTIEN,
  DONVI, MOTA}]}]}], KETQUATHUCHIEN[{MAKETQUA, TENKETQUA}], YEUCAU, MOTADOITUONGTHUCHIEN.
- ``LayDanhSachTTHC``: ``[{MATTHC, TENTTHC, MALINHVUC, TENLINHVUC}]``;
  ``LayDanhMucCoQuan``: ``[{MADONVI, TENDONVI}]``; ``LayDanhMucLinhVuc``:
  ``[{MALINHVUC, TENLINHVUC}]``.

Dossier fields (``*`` required): MaHoSo*, MaTTHC* (in the catalogue), TenTTHC*, MaLinhVuc*,
TenLinhVuc*, KenhThucHien* ("1" in person, "2" online, "3" postal), ChuHoSo*, SoGiayToChuHoSo,
LoaiDoiTuong* ("1" citizen, "2" enterprise, "3" state agency, "4" other), MaDoiTuong, Email,
SoDienThoai, TrichYeuHoSo*, NgayNopHoSo, NgayTiepNhan, NgayHenTra, TrangThaiHoSo* ("1".."10"),
NgayTra, HinhThuc ("0" at the office, "1" by post), NgayKetThucXuLy, DonViXuLy (an agency code
of the catalogue), NoiNopHoSo, DuocThanhToanTrucTuyen ("0"/"1"), TaiLieuNop[{TepDinhKemId,
TenTepDinhKem*, MaThanhPhanHoSo, DuongDanTaiTepTin, IsDeleted}], DanhSachLePhi[{MaPhiLePhi,
TenPhiLePhi*, Gia* (a JSON integer, whole dong: no float, no string), LoaiPhiLePhi,
HinhThucThu}]. Codes are JSON strings of digits. Dates are ``yyyyMMddHHmmss`` strings, wall
clock in Asia/Ho_Chi_Minh, and must be real dates. ``null`` or ``""`` means "not given".

Admin: ``GET /__admin/dossiers/{mahoso}`` (the stored dossier, its ``history`` and how many
``updates`` it had; 404 if unknown), ``POST /__admin/sessions/expire`` (end every session),
``GET /__admin/stats`` (logins, failed logins, sessions held, calls per service, errors per
error_code), ``GET /health``. Fault injection: ``/__admin/faults`` (see ``mocks.faults``);
start-up rules from ``LGSP_MOCK_FAULTS_DVCQG``, then the shared ``LGSP_MOCK_FAULTS``.

Paths, codes -2..-6 and their messages (but "đã tồn tại") are guesses; nothing is logged.
"""

from mocks.dvcqg._app import FAULTS_ENV_VAR, DvcqgSettings, create_app

__all__ = ["FAULTS_ENV_VAR", "DvcqgSettings", "create_app"]
