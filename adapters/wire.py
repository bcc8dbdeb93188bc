"""Wire conventions shared by the Vietnamese platforms' adapters.

Times travel as ``yyyyMMddHHmmss``, wall clock in Asia/Ho_Chi_Minh (PayGov's ``ThoiGianGD``, the
portal's dossier dates, the tax link's ``Ngay`` and ``ThoiGianThanhToan``). XML from a platform
(edXML, the tax notice) is read with :func:`safe_xml_parser`. The mocks use these helpers too (a
mock may use an adapter's pure helpers; an adapter never imports a mock).
"""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from lxml import etree

__all__ = [
    "VIETNAM",
    "WIRE_TIME",
    "check_wire_time",
    "from_wire_time",
    "safe_xml_parser",
    "to_wire_time",
]

VIETNAM = ZoneInfo("Asia/Ho_Chi_Minh")
WIRE_TIME = "%Y%m%d%H%M%S"


def to_wire_time(when: datetime) -> str:
    """An aware time as ``yyyyMMddHHmmss`` in Vietnam (anything finer than a second dropped)."""
    return when.astimezone(VIETNAM).strftime(WIRE_TIME)


def check_wire_time(text: str) -> str:
    """``text`` if it is a real ``yyyyMMddHHmmss`` date and time, else ``ValueError``."""
    if len(text) != 14 or not text.isascii() or not text.isdigit():
        raise ValueError("must be yyyyMMddHHmmss")
    try:
        datetime.strptime(text, WIRE_TIME)
    except ValueError:
        raise ValueError("must be a real date and time, yyyyMMddHHmmss") from None
    return text


def from_wire_time(text: str) -> datetime:
    """``yyyyMMddHHmmss`` in Vietnam as an aware time; ``ValueError`` if it is not one."""
    return datetime.strptime(check_wire_time(text), WIRE_TIME).replace(tzinfo=VIETNAM)


def safe_xml_parser() -> etree.XMLParser:
    """A parser that loads no DTD, resolves no entity, fetches nothing and refuses huge trees;
    comments and processing instructions are dropped. Refuse a DOCTYPE as well where entity
    references would change the values read."""
    return etree.XMLParser(
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        dtd_validation=False,
        huge_tree=False,
        remove_comments=True,
        remove_pis=True,
    )
