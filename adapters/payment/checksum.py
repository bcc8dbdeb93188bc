"""PayGov's per-message checksum ``MaXacThuc``, and the field order of each message.

The bus's PayGov adapter and the PayGov mock both use this module (a mock may use an adapter's
pure helpers; an adapter never imports a mock), so the two cannot drift apart.

A checksum is computed over the values of a message's fields, in the order its ``*_FIELDS``
tuple gives, joined with ``|``. Two public clients disagree on what happens next (PLATFORMS.md),
so the algorithm is a setting on both sides:

``sha256``
    lower-case hex of SHA-256 over ``f1|f2|...|fn|secret`` (UTF-8).
``hmac-sha256``
    lower-case hex of HMAC-SHA256 keyed with ``secret`` over ``f1|f2|...|fn`` (UTF-8).

A value is written as it travels: strings as they are, integers (``SoTien``) in decimal, a
missing or ``null`` field as the empty string.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping, Sequence
from typing import Final, Literal

__all__ = [
    "ALGORITHMS",
    "CALLBACK_FIELDS",
    "CALLBACK_REPLY_FIELDS",
    "INIT_FIELDS",
    "QUERY_FIELDS",
    "Algorithm",
    "checksum",
    "field_values",
    "sign",
    "verify",
]

Algorithm = Literal["sha256", "hmac-sha256"]
#: What joins the values. A value holding it is refused on both sides: otherwise one signed
#: text could be split into another message's fields (a reply read as a callback, say).
SEPARATOR: Final = "|"
ALGORITHMS: Final[tuple[Algorithm, ...]] = ("sha256", "hmac-sha256")

#: ``INIT`` (start a payment), partner -> PayGov.
INIT_FIELDS: Final[tuple[str, ...]] = (
    "LoaiBanTin",
    "PhienBan",
    "MaDoiTac",
    "MaThamChieu",
    "SoTien",
    "LoaiHinhThanhToan",
    "MaKenhThanhToan",
    "MaThietBi",
    "NgonNgu",
    "MaTienTe",
    "MaNganHang",
    "ThongTinGiaoDich",
    "ThoiGianGD",
    "Ip",
)
#: ``QUERY`` (status) and ``GET_BILL`` (e-receipt), partner -> PayGov.
QUERY_FIELDS: Final[tuple[str, ...]] = (
    "LoaiBanTin",
    "PhienBan",
    "MaDoiTac",
    "MaThamChieu",
    "ThoiGianGD",
)
#: The confirmation callback, PayGov -> partner.
CALLBACK_FIELDS: Final[tuple[str, ...]] = (
    "LoaiBanTin",
    "MaLoi",
    "MaDoiTac",
    "MaThamChieu",
    "SoTien",
    "MaTienTe",
    "MaGiaoDich",
    "MaNganHang",
    "ThoiGianGD",
    "ThongTinGiaoDich",
)
#: The partner's reply to the callback.
CALLBACK_REPLY_FIELDS: Final[tuple[str, ...]] = ("MaLoi", "MaDoiTac", "MaThamChieu", "ThoiGianGD")


def checksum(values: Sequence[str], secret: str, algorithm: Algorithm) -> str:
    """``MaXacThuc`` over ``values`` (already in the message's field order)."""
    joined = SEPARATOR.join(values)
    if algorithm == "sha256":
        return hashlib.sha256(f"{joined}|{secret}".encode()).hexdigest()
    if algorithm == "hmac-sha256":
        return hmac.new(secret.encode(), joined.encode(), hashlib.sha256).hexdigest()
    raise ValueError(f"unknown checksum algorithm {algorithm!r}; expected one of {ALGORITHMS}")


def field_values(message: Mapping[str, object], fields: Sequence[str]) -> list[str]:
    """The values of ``fields`` in ``message`` as the checksum reads them."""
    values = []
    for name in fields:
        value = message.get(name)
        if value is None:
            values.append("")
        elif isinstance(value, str):
            if SEPARATOR in value:  # "a|b" in one field would sign as two fields
                raise TypeError(f"{name}: a value may not contain {SEPARATOR!r}")
            values.append(value)
        elif isinstance(value, int) and not isinstance(value, bool):
            values.append(str(value))
        else:
            raise TypeError(f"{name}: a checksum covers strings and integers, not {type(value)}")
    return values


def sign(
    message: Mapping[str, object], fields: Sequence[str], secret: str, algorithm: Algorithm
) -> str:
    """``MaXacThuc`` for ``message`` over ``fields``."""
    return checksum(field_values(message, fields), secret, algorithm)


def verify(
    message: Mapping[str, object], fields: Sequence[str], secret: str, algorithm: Algorithm
) -> bool:
    """Whether ``message["MaXacThuc"]`` is right (hex compared without regard to case)."""
    given = message.get("MaXacThuc")
    if not isinstance(given, str):
        return False
    try:
        expected = sign(message, fields, secret, algorithm)
    except TypeError:
        return False  # a field of another type cannot have been signed as the wire carries it
    return hmac.compare_digest(expected.encode(), given.lower().encode())
