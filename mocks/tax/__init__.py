"""Tax link mock: the tax authority's side of land financial obligations.

Wire shapes follow shared PLATFORMS.md "Tax link for land financial obligations"; what is
marked (guess) is this mock's choice where the platform publishes nothing.

Tax notice, tax authority -> province
    ``POST /__admin/notices`` with ``{"dossier_code": "...", "items": [{"tax_code",
    "decision_no", "decision_date" (ISO yyyy-mm-dd), "item_name", "amount" (integer > 0)}],
    "is_updating": false}`` issues the notice and POSTs to ``notice_url`` (``TaxSettings``, or
    ``PUT /__admin/settings {"notice_url": "..."}`` at run time)::

        {"SecurityKey": "<security_key>", "Service": "ThongBaoThue" (guess),
         "Ngay": "yyyyMMddHHmmss" (Asia/Ho_Chi_Minh), "IsUpdating": false,
         "Data": {"FileThongBaoThue": "<base64 of notice_xml(dossier_code, items)>"}}

    The XML is ``/DATA/BODY/ROW_LIST{MA_HSO, LIST{MA_SO_THUE, SO_QUYET_DINH, NGAY_QUYET_DINH,
    TEN_TIEUMUC, SO_TIEN}}``, one ``LIST`` per item, UTF-8 with its declaration,
    NGAY_QUYET_DINH as dd/MM/yyyy (guess); see ``mocks.tax.notice``. The admin call answers
    with the receiver's status and body as they came; 502 ``{"error": "<exception class>"}``
    when the receiver cannot be reached (or does not answer within ``push_timeout``); 409 when
    no notice_url is set; 400 for an invalid order.

    PLATFORMS.md gives a notice no identifier of its own, so (guess) a notice is the set of a
    dossier's items sharing one SO_QUYET_DINH, and that SO_QUYET_DINH is its
    ``MaThongBaoThue``; its total is the sum of their SO_TIEN. Items of one SO_QUYET_DINH must
    share tax_code and decision_date. Pushing the same dossier and SO_QUYET_DINH again
    replaces the notice.

Payment voucher, province -> tax authority: ``POST /api/v1/chungtu`` (the path is a guess)
    ``{"SecurityKey", "MaHoSo", "MaSoThue", "HoTenNguoiNopTien", "SoCMTNguoiNopTien" (9 or 12
    digits, guess), "DiaChiNguoiNopTien", "ThongTinThanhToan": {"NoiDungThanhToan",
    "ThoiGianThanhToan" (yyyyMMddHHmmss), "MaThongBaoThue", "TrangThaiThanhToan" (1 = paid,
    the only value accepted), "SoTien" (JSON integer)}}``; unknown fields are ignored.
    Replies ``{"Status": "OK"|"ERROR", "Message": "..."}``, checked in this order:

    ====  ====================================================================================
    400   body not a JSON object, or a field missing or invalid: Message ``<field>: <reason>``
          (``ThongTinThanhToan.SoTien: Input should be a valid integer``)
    401   SecurityKey missing or wrong: Message ``Error Security Code``
    404   no notice was issued for MaHoSo, or none with that MaThongBaoThue
    422   MaSoThue is not the notice's, or SoTien is not the notice's total
    200   accepted: ``{"Status": "OK", "Message": ..., "MaChungTu": "CT0000000001"}``; the same
          voucher again (same MaHoSo and MaThongBaoThue) gets the same MaChungTu
    ====  ====================================================================================

    (A body that is not JSON cannot carry a key, so it gets 400 before the key is checked.)

Admin: ``GET /__admin/notices``, ``GET /__admin/vouchers`` (the vouchers as received, the
payer's details included: it is a mock), ``GET|PUT /__admin/settings``, ``/__admin/faults``
(``mocks.faults``; start-up rules from ``LGSP_MOCK_FAULTS_TAX``, then ``LGSP_MOCK_FAULTS``).

One ``httpx.AsyncClient``, opened by the app's lifespan, pushes every notice. Nothing
personal is logged: only dossier codes, notice and voucher ids and error classes.
"""

from mocks.tax._app import FAULTS_ENV_VAR, SERVICE, VOUCHER_PATH, TaxSettings, create_app
from mocks.tax.notice import NoticeItem, notice_xml

__all__ = [
    "FAULTS_ENV_VAR",
    "SERVICE",
    "VOUCHER_PATH",
    "NoticeItem",
    "TaxSettings",
    "create_app",
    "notice_xml",
]
