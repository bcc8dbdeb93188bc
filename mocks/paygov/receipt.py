"""A minimal, hand-written PDF 1.4 writer for PayGov's e-receipt (no PDF library needed).

``one_page_pdf(lines, title=...)`` gives one A4 page of Helvetica text: a catalog, a page tree
with one page, the standard Type 1 font (no embedding), one uncompressed content stream, an
information dictionary, an xref table whose offsets point at each ``N 0 obj`` and a trailer.

The standard fonts carry no Vietnamese glyphs, so text is transliterated to ASCII first
(``to_ascii``: NFD, combining marks dropped, đ/Đ -> d/D, anything else non-ASCII -> ``?``).
Lines longer than the page is wide are wrapped; lines beyond the page's end are cut, the last
one saying so.
"""

from __future__ import annotations

import textwrap
import unicodedata
from collections.abc import Sequence
from typing import Final

__all__ = ["one_page_pdf", "pdf_string", "to_ascii"]

PAGE_WIDTH: Final = 595  # A4, points
PAGE_HEIGHT: Final = 842
MARGIN: Final = 50
TITLE_SIZE: Final = 14
FONT_SIZE: Final = 10
LEADING: Final = 14
WRAP_AT: Final = 85  # characters of Helvetica 10pt in the 495pt between margins, for mixed text
MAX_LINES: Final = (PAGE_HEIGHT - 2 * MARGIN - 2 * LEADING) // LEADING


def to_ascii(text: str) -> str:
    """Vietnamese (or any Latin) text as printable ASCII: ``Đường`` -> ``Duong``."""
    text = text.replace("đ", "d").replace("Đ", "D")
    stripped = "".join(
        char for char in unicodedata.normalize("NFD", text) if not unicodedata.combining(char)
    )
    printable = "".join(char if char.isprintable() else " " for char in stripped)
    return printable.encode("ascii", "replace").decode("ascii")


def pdf_string(text: str) -> str:
    """A PDF literal string: ``(text)`` with ``\\``, ``(`` and ``)`` escaped, ASCII only."""
    escaped = to_ascii(text).replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")
    return f"({escaped})"


def _page_lines(lines: Sequence[str]) -> list[str]:
    wrapped: list[str] = []
    for line in lines:
        wrapped.extend(textwrap.wrap(to_ascii(line), WRAP_AT, subsequent_indent="  ") or [""])
    if len(wrapped) > MAX_LINES:
        wrapped = [*wrapped[: MAX_LINES - 1], "... (cut: one page only)"]
    return wrapped


def _content(title: str, lines: Sequence[str]) -> bytes:
    top = PAGE_HEIGHT - MARGIN - TITLE_SIZE
    ops = [
        "BT",
        f"/F1 {TITLE_SIZE} Tf",
        f"{LEADING} TL",
        f"{MARGIN} {top} Td",
        f"{pdf_string(title)} Tj",
        f"/F1 {FONT_SIZE} Tf",
        "T*",
    ]
    for line in _page_lines(lines):
        ops += ["T*", f"{pdf_string(line)} Tj"]
    ops.append("ET")
    return "\n".join(ops).encode("ascii")


def one_page_pdf(lines: Sequence[str], *, title: str = "", producer: str = "mock") -> bytes:
    """A one-page PDF 1.4 document showing ``title`` then ``lines``."""
    content = _content(title, lines)
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        (
            f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 {PAGE_WIDTH} {PAGE_HEIGHT}] "
            "/Resources << /Font << /F1 4 0 R >> >> /Contents 5 0 R >>"
        ).encode("ascii"),
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>",
        b"<< /Length %d >>\nstream\n" % len(content) + content + b"\nendstream",
        f"<< /Title {pdf_string(title)} /Producer {pdf_string(producer)} >>".encode("ascii"),
    ]
    # A binary comment after the header tells transfer programs the file is not text.
    out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref_at = len(out)
    out += b"xref\n0 %d\n" % (len(objects) + 1)
    out += b"0000000000 65535 f \n"  # each entry is exactly 20 bytes, the EOL included
    for offset in offsets:
        out += b"%010d 00000 n \n" % offset
    out += b"trailer\n<< /Size %d /Root 1 0 R /Info 6 0 R >>\n" % (len(objects) + 1)
    out += b"startxref\n%d\n%%%%EOF\n" % xref_at
    return bytes(out)
