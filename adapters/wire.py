"""Wire conventions shared by the Vietnamese platforms' adapters.

Times travel as ``yyyyMMddHHmmss``, wall clock in Asia/Ho_Chi_Minh (PayGov's ``ThoiGianGD``, the
portal's dossier dates, the tax link's ``Ngay`` and ``ThoiGianThanhToan``).
"""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

__all__ = ["VIETNAM", "WIRE_TIME", "from_wire_time", "to_wire_time"]

VIETNAM = ZoneInfo("Asia/Ho_Chi_Minh")
WIRE_TIME = "%Y%m%d%H%M%S"


def to_wire_time(when: datetime) -> str:
    """An aware time as ``yyyyMMddHHmmss`` in Vietnam (anything finer than a second dropped)."""
    return when.astimezone(VIETNAM).strftime(WIRE_TIME)


def from_wire_time(text: str) -> datetime:
    """``yyyyMMddHHmmss`` in Vietnam as an aware time; ``ValueError`` if it is not one."""
    if len(text) != 14 or not text.isascii() or not text.isdigit():
        raise ValueError("not a yyyyMMddHHmmss time")
    return datetime.strptime(text, WIRE_TIME).replace(tzinfo=VIETNAM)
