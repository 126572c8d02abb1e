"""PDFs made in the tests, byte by byte: no reportlab, every object under our control.

`text_pdf` makes an ordinary document (Helvetica, one Tj per line); `memory_bomb_pdf` makes a
small file whose pages each decode to a 64 MB inline image, which a text parser must read
(pypdf caps one stream at 75 MB, so every page stays under its own limits; only the child's
memory limit stops it).
"""

import zlib
from dataclasses import dataclass


@dataclass(frozen=True)
class Stream:
    """A content stream; `deflated` holds FlateDecode bytes."""

    deflated: bytes


def _escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")


def text_stream(text: str) -> Stream:
    ops = ["BT", "/F1 11 Tf", "14 TL", "50 780 Td"]
    ops += [f"({_escape(line)}) Tj T*" for line in text.split("\n")]
    ops.append("ET")
    return Stream(zlib.compress("\n".join(ops).encode("latin-1")))


def build_pdf(pages: list[list[Stream]]) -> bytes:
    """A PDF whose page i draws `pages[i]` (each stream its own object) with font /F1."""
    objects: list[bytes] = [b"", b"", b""]  # catalog, page tree, font: filled below
    page_refs: list[int] = []
    for streams in pages:
        refs = []
        for stream in streams:
            objects.append(
                b"<< /Length %d /Filter /FlateDecode >>\nstream\n" % len(stream.deflated)
                + stream.deflated
                + b"\nendstream"
            )
            refs.append(f"{len(objects)} 0 R")
        contents = refs[0] if len(refs) == 1 else "[" + " ".join(refs) + "]"
        objects.append(
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792]"
            b" /Resources << /Font << /F1 3 0 R >> >> /Contents " + contents.encode() + b" >>"
        )
        page_refs.append(len(objects))
    kids = " ".join(f"{n} 0 R" for n in page_refs)
    objects[0] = b"<< /Type /Catalog /Pages 2 0 R >>"
    objects[1] = f"<< /Type /Pages /Kids [{kids}] /Count {len(page_refs)} >>".encode()
    objects[2] = (
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>"
    )
    out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    for offset in offsets:
        out += b"%010d 00000 n \n" % offset
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1,
        xref,
    )
    return bytes(out)


def text_pdf(pages: list[str]) -> bytes:
    """One page per text; lines become lines of the page."""
    return build_pdf([[text_stream(text)] for text in pages])


def memory_bomb_pdf(pages: int = 8, side: int = 8000) -> bytes:
    """About 70 KB per page, each page decoding to a side by side grey inline image (64 MB)."""
    content = b"q BI /W %d /H %d /CS /G /BPC 8 ID " % (side, side)
    content += bytes(side * side) + b" EI Q\n"
    bomb = Stream(zlib.compress(content, 9))
    return build_pdf([[text_stream(f"page {i}"), bomb] for i in range(pages)])
