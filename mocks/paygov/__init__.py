"""PayGov mock: the national online payment platform as a partner (the provincial bus) meets it.

Wire shapes follow shared PLATFORMS.md "PayGov"; everything marked (guess) is this mock's
choice where the platform publishes nothing.

``POST /api/v1/payment`` (the path is a guess)
    One endpoint for every partner message, told apart by ``LoaiBanTin``: ``INIT``, ``QUERY``
    or ``GET_BILL``. Checked in this order:

    1. ``Authorization: Bearer <token>``: the token names the partner
       (``PaygovSettings.partners[MaDoiTac].token``). Missing or unknown, or the message's
       ``MaDoiTac`` is another partner's: HTTP 401 ``{"error_code": "401", "message": ...}``.
    2. The body is a JSON object with ``LoaiBanTin`` in INIT/QUERY/GET_BILL and ``PhienBan``
       "1.0.6".
    3. Every field, strictly typed (``SoTien`` a JSON integer > 0: ``1000.0`` and ``"1000"``
       are refused). Unknown fields are ignored.
    4. ``MaXacThuc`` over the message's fields (``checksum.INIT_FIELDS``, or ``QUERY_FIELDS``
       for QUERY and GET_BILL) with the partner's secret and ``PaygovSettings.checksum``
       (``sha256`` or ``hmac-sha256``, see ``adapters.payment.checksum``).

    Replies are HTTP 200 ``{"error_code": "<code>", "message": "<string>"}``; on success the
    code is "0" and ``message`` is a JSON text. Error codes (a guess, each distinct):

    ====  ==================================================================================
    0     success
    01    ``MaXacThuc`` is wrong
    02    INIT: ``MaThamChieu`` already used by this partner with another SoTien, MaTienTe,
          LoaiHinhThanhToan, ThongTinGiaoDich or ThongTinBienLai (the message names them)
    03    QUERY/GET_BILL: ``MaThamChieu`` unknown (for this partner)
    04    a field missing or invalid, or the body not a JSON object; the message names each
          field: ``SoTien: Input should be a valid integer``
    05    GET_BILL: the payment is not paid (pending or failed)
    06    ``LoaiBanTin`` or ``PhienBan`` not supported
    ====  ==================================================================================

    INIT fields: those of ``INIT_FIELDS`` plus ``MaXacThuc`` and ``ThongTinBienLai`` (an object;
    all its fields optional but typed; ``PhiLePhi[].SoTien`` and ``DSKhoanNop[].SoTien`` JSON
    integers >= 0; their sum is not checked against SoTien). Fixed values:
    ``LoaiHinhThanhToan`` "PAY", ``MaTienTe`` "VND", ``NgonNgu`` "vi-VN" or "en-US" (guess),
    ``ThoiGianGD`` yyyyMMddHHmmss, ``Ip`` an IPv4/IPv6 address (guess); ``MaNganHang``,
    ``MaKenhThanhToan`` and ``MaThietBi`` are required but may be empty or null (the checksum
    reads null as ""). Success message::

        {"MaThamChieu": "...", "MaGiaoDich": "PG2026...", "UrlThanhToan": "<base>/pay/<id>"}

    ``<base>`` is ``PaygovSettings.public_url``, or the URL the request came to. The same INIT
    repeated (same reference and substance, whatever its ThoiGianGD, Ip or checksum) answers
    the same payment, whatever its state, and creates nothing.

    QUERY success message: ``{"MaThamChieu", "MaGiaoDich", "SoTien", "TrangThaiGD",
    "ThoiGianGD" (completion, or null), "MaNganHang"}``; TrangThaiGD (guess): "00" paid,
    "01" pending, "02" failed. GET_BILL of a paid payment: HTTP 200 ``application/pdf``, a
    one-page PDF 1.4 e-receipt (``mocks.paygov.receipt``, text in ASCII).

``GET /pay/{id}``, ``POST /pay/{id}/complete``, ``POST /pay/{id}/fail``
    The payment page (HTML): amount, reference, receipt summary, buttons "Thanh toán" and
    "Hủy". The two posts answer a small HTML page; on a payment already completed, 409.

Confirmation callback, PayGov -> partner (on completion, if the partner has a callback_url)
    POST JSON ``{LoaiBanTin: "NOTIFY" (guess), MaLoi: "00" paid | "01" failed or cancelled,
    MaDoiTac, MaThamChieu, SoTien, MaTienTe, MaGiaoDich, MaNganHang, ThoiGianGD (completion,
    yyyyMMddHHmmss, Asia/Ho_Chi_Minh), ThongTinGiaoDich, MaXacThuc}`` (over
    ``CALLBACK_FIELDS``). Acknowledged only by an HTTP 2xx JSON reply ``{MaLoi: "00", MoTaLoi,
    MaDoiTac, MaThamChieu, ThoiGianGD, MaXacThuc}`` whose MaXacThuc (over
    ``CALLBACK_REPLY_FIELDS``, same secret and algorithm) is right and whose MaDoiTac and
    MaThamChieu are the callback's. Otherwise (error status, "99", bad checksum, connection
    error, ``callback_timeout``) it is sent again after ``callback_backoff[i]`` seconds (guess:
    1, 2, 4, 8, 16), at most ``len(callback_backoff) + 1`` times. Each delivery is a background
    task of the app, sent with the one client its lifespan opens, cancelled at shutdown.

Admin
    ``GET /__admin/payments``                          payments (state pending|paid|failed)
    ``POST /__admin/payments/{ref}/complete``          body ``{"outcome": "paid"|"failed",
                                                       "bank": "..."}`` (optional; paid); the
                                                       payment as JSON; 409 if not pending
    ``POST /__admin/payments/{ref}/resend-callback``   one more callback, now; the attempt
    ``GET /__admin/callbacks``                         every attempt: reference, partner,
                                                       attempt, resend, url, http_status,
                                                       error, partner_code (the reply's
                                                       MaLoi), acknowledged
    ``PUT /__admin/partners/{code}``                   body ``{"callback_url": "..."|null}``
    ``/__admin/faults``                                fault injection (``mocks.faults``),
                                                       start-up rules from
                                                       ``LGSP_MOCK_FAULTS_PAYGOV``, then
                                                       ``LGSP_MOCK_FAULTS``
    The ``{ref}`` routes take ``?MaDoiTac=`` when two partners used the same reference.

MaGiaoDich is ``PG`` + the date + a sequence number (guess). Nothing personal is logged: only
partner codes, references, codes, statuses and error classes.
"""

from mocks.paygov._app import (
    API_PATH,
    DEMO_PARTNER,
    FAULTS_ENV_VAR,
    PartnerSettings,
    PaygovSettings,
    create_app,
)

__all__ = [
    "API_PATH",
    "DEMO_PARTNER",
    "FAULTS_ENV_VAR",
    "PartnerSettings",
    "PaygovSettings",
    "create_app",
]
