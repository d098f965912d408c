"""Upload checks: names without path tricks, types by content, OFD archives that are not zip bombs."""

from __future__ import annotations

import io
import struct
import zipfile

import pytest
from aiohttp import web

from gateway.uploads import check_file, safe_filename
from onestop.routing.v1 import routing_pb2

ANY = routing_pb2.Material(code="APPLICATION")  # no accepted_types: PDF, JPEG, PNG and OFD
PDF_ONLY = routing_pb2.Material(code="SITE-PLAN", accepted_types=["application/pdf"])
PDF = b"%PDF-1.4 test\n%%EOF\n"


def _zip(entries: dict[str, bytes], *, claim_size: int | None = None) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
    raw = bytearray(buffer.getvalue())
    if claim_size is not None:  # lie in the central directory, as a zip bomb does
        at = 0
        while (at := raw.find(b"PK\x01\x02", at)) >= 0:
            struct.pack_into("<I", raw, at + 24, claim_size)
            at += 4
    return bytes(raw)


@pytest.mark.parametrize(
    ("sent", "kept"),
    [
        ("../../etc/passwd", "passwd"),
        ("C:\\Users\\王丽\\扫描件.pdf", "扫描件.pdf"),
        ("..\\..\\boot.ini", "boot.ini"),
        (".htaccess", "htaccess"),
        ("invoice\u202efdp.exe", "invoice_fdp.exe"),
        ("a<b>|c.pdf", "a_b_c.pdf"),
        ("...", "document"),
        ("", "document"),
        ("x" * 300 + ".pdf", "x" * 200),
    ],
)
def test_names_lose_directories_and_odd_characters(sent: str, kept: str) -> None:
    assert safe_filename(sent) == kept


@pytest.mark.parametrize("sent", ["a\x00b.pdf", "a\nb.pdf", "a\rb.pdf", "a\x1bb.pdf", "a\ud800.pdf"])
def test_names_with_control_characters_are_refused(sent: str) -> None:
    with pytest.raises(web.HTTPBadRequest, match="control characters"):
        safe_filename(sent)


def _check(data: bytes, *, name: str = "f", declared: str = "", material: routing_pb2.Material = ANY) -> str:
    checked = check_file(
        io.BytesIO(data), filename=name, declared=declared, material=material, limit=1024 * 1024
    )
    return checked.content_type


def test_the_type_comes_from_the_content_and_must_match_a_specific_declared_type() -> None:
    assert _check(PDF, declared="application/octet-stream") == "application/pdf"
    assert _check(PDF, declared="application/pdf; charset=binary") == "application/pdf"
    with pytest.raises(web.HTTPUnsupportedMediaType, match="sent as PNG but its content is PDF"):
        _check(PDF, declared="image/png")
    with pytest.raises(web.HTTPUnsupportedMediaType, match="accepts PDF files only"):
        _check(b"\x89PNG\r\n\x1a\n....", declared="application/pdf", material=PDF_ONLY)
    with pytest.raises(web.HTTPUnsupportedMediaType):  # a zip that calls itself a PDF
        _check(_zip({"OFD.xml": b"<ofd/>"}), name="scan.pdf", declared="application/pdf")


def test_an_ofd_is_a_zip_with_ofd_xml_that_does_not_explode() -> None:
    assert (
        _check(_zip({"OFD.xml": b"<ofd/>", "Doc_0/Document.xml": b"<d/>"}), name="a.ofd") == "application/ofd"
    )
    assert _check(_zip({"OFD.xml": b"<ofd/>"}), declared="application/ofd") == "application/ofd"
    with pytest.raises(web.HTTPUnsupportedMediaType, match="no OFD.xml"):
        _check(_zip({"word/document.xml": b"<w/>"}), name="a.ofd")
    with pytest.raises(web.HTTPUnsupportedMediaType, match="unpacks to far more"):
        _check(_zip({"OFD.xml": b"<ofd/>", "big": b"\x00" * 64}, claim_size=0xFFFF_FFF0), name="bomb.ofd")
    with pytest.raises(web.HTTPUnsupportedMediaType, match="not a readable OFD"):
        _check(b"PK\x03\x04" + b"\x00" * 64, name="cut.ofd")


def test_a_refused_file_is_closed_and_an_accepted_one_is_rewound() -> None:
    fh = io.BytesIO(b"not a document")
    with pytest.raises(web.HTTPUnsupportedMediaType):
        check_file(fh, filename="a.pdf", declared="", material=ANY)
    assert fh.closed
    checked = check_file(
        io.BytesIO(_zip({"OFD.xml": b"<ofd/>"})), filename="a.ofd", declared="", material=ANY
    )
    assert checked.fh.tell() == 0 and checked.filename == "a.ofd"
