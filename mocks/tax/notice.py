"""The tax notice (thông báo thuế) file the tax authority pushes: its items and its XML.

Shape (PLATFORMS.md "Tax link for land financial obligations")::

    <?xml version='1.0' encoding='UTF-8'?>
    <DATA>
      <BODY>
        <ROW_LIST>
          <MA_HSO>dossier code</MA_HSO>
          <LIST>                                   one per item
            <MA_SO_THUE>0101234567</MA_SO_THUE>
            <SO_QUYET_DINH>123/TB-CCT</SO_QUYET_DINH>
            <NGAY_QUYET_DINH>05/11/2026</NGAY_QUYET_DINH>   dd/MM/yyyy (guess)
            <TEN_TIEUMUC>Tiền sử dụng đất</TEN_TIEUMUC>
            <SO_TIEN>150000000</SO_TIEN>                  integer VND
          </LIST>
        </ROW_LIST>
      </BODY>
    </DATA>
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from typing import Annotated, Final

from lxml import etree
from pydantic import BaseModel, ConfigDict, Field, StrictInt

__all__ = ["DATE_FORMAT", "NoticeItem", "notice_xml"]

#: NGAY_QUYET_DINH on the wire (a guess: the Vietnamese day-first habit).
DATE_FORMAT: Final = "%d/%m/%Y"


class NoticeItem(BaseModel):
    """One sub-item (tiểu mục) of a tax notice: one ``LIST`` element."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    tax_code: str = Field(min_length=1)  # MA_SO_THUE
    decision_no: str = Field(min_length=1)  # SO_QUYET_DINH, also the notice's identity
    decision_date: date  # NGAY_QUYET_DINH, dd/MM/yyyy on the wire
    item_name: str = Field(min_length=1)  # TEN_TIEUMUC
    amount: Annotated[StrictInt, Field(gt=0)]  # SO_TIEN, VND


def notice_xml(dossier_code: str, items: Sequence[NoticeItem]) -> bytes:
    """``FileThongBaoThue`` before base64: UTF-8 XML with its declaration."""
    root = etree.Element("DATA")
    row_list = etree.SubElement(etree.SubElement(root, "BODY"), "ROW_LIST")
    etree.SubElement(row_list, "MA_HSO").text = dossier_code
    for item in items:
        entry = etree.SubElement(row_list, "LIST")
        for tag, value in (
            ("MA_SO_THUE", item.tax_code),
            ("SO_QUYET_DINH", item.decision_no),
            ("NGAY_QUYET_DINH", item.decision_date.strftime(DATE_FORMAT)),
            ("TEN_TIEUMUC", item.item_name),
            ("SO_TIEN", str(item.amount)),
        ):
            etree.SubElement(entry, tag).text = value
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8", pretty_print=True)
