"""engine.mimeparts: the MIME tree split by boundaries, without recursion, bounded."""

from __future__ import annotations

from flask_popaccounts.engine.mimeparts import MAX_DEPTH, find, walk
from flask_popaccounts.services.reading import part_download, render_raw
from tests.web.test_hostile_mail import nested
from tests.web.test_reading import MIXED


def test_parts_are_numbered_like_imap_and_are_ranges_of_the_original() -> None:
    tree = walk(MIXED)
    assert [(p.part_id, p.content_type, p.depth) for p in tree.leaves] == [
        ("1.1", "text/plain", 2), ("1.2", "text/html", 2), ("2", "application/pdf", 1)]
    assert not tree.too_deep and tree.omitted == 0
    pdf = find(MIXED, "2")
    assert pdf is not None and pdf.entity(MIXED) in MIXED
    assert pdf.entity(MIXED).endswith(b"JVBERi0xLjQK")  # the CRLF before "--b1--" is not its
    assert walk(b"Subject: x\r\n\r\nplain body").leaves[0].part_id == "1"


def test_bare_lf_preamble_epilogue_and_a_missing_close_delimiter() -> None:
    raw = (b'Content-Type: multipart/mixed; boundary="x"\n\npreamble\n--x\n'
           b"Content-Type: text/plain\n\none\n--x  \n\ntwo, no headers\n--x--\nepilogue\n")
    assert [p.message(raw).get_payload() for p in walk(raw).leaves] == ["one", "two, no headers"]
    unclosed = b'Content-Type: multipart/mixed; boundary="x"\r\n\r\n--x\r\n\r\nlast part\r\n'
    assert [p.message(unclosed).get_payload() for p in walk(unclosed).leaves] == [
        "last part\r\n"]
    looks_like = (b'Content-Type: multipart/mixed; boundary="x"\r\n\r\n--x\r\n\r\n'
                  b"a --x inside a line is text\r\n--xy is another boundary\r\n--x--\r\n")
    [part] = walk(looks_like).leaves
    assert part.message(looks_like).get_payload() == (
        "a --x inside a line is text\r\n--xy is another boundary")


def test_a_thousand_levels_never_recurse_and_the_rest_is_one_part() -> None:
    raw = nested(1000)
    tree = walk(raw)
    [part] = tree.leaves
    assert tree.too_deep and part.opaque and part.depth == MAX_DEPTH
    assert part.part_id == ".".join(["1"] * MAX_DEPTH)
    shown = render_raw(raw)
    assert shown.too_deep and shown.subject == "Deep"
    [att] = shown.attachments
    assert att.nested and att.filename.endswith(".eml") and att.part_id == part.part_id
    download = part_download(raw, att.part_id)
    assert download is not None and download.data == part.entity(raw)
    assert b"At the bottom of the well." in download.data
    # a shallow one is read to the bottom
    assert render_raw(nested(10)).text == "At the bottom of the well."


def test_attached_messages_stay_whole_and_the_part_count_is_bounded() -> None:
    inner = nested(5)
    raw = (b'Content-Type: multipart/mixed; boundary="o"\r\n\r\n--o\r\n'
           b"Content-Type: text/plain\r\n\r\nSee attached.\r\n--o\r\n"
           b"Content-Type: message/rfc822\r\n\r\n" + inner + b"\r\n--o--\r\n")
    shown = render_raw(raw)
    assert shown.text == "See attached."
    [att] = shown.attachments
    assert (att.filename, att.content_type, att.nested) == (
        "forwarded message.eml", "message/rfc822", True)
    download = part_download(raw, "2")
    assert download is not None and inner in download.data
    many = (b'Content-Type: multipart/mixed; boundary="m"\r\n\r\n'
            + b"--m\r\nContent-Type: application/octet-stream\r\n\r\nx\r\n" * 600 + b"--m--\r\n")
    tree = walk(many)
    assert len(tree.leaves) == 500 and tree.omitted == 100
    assert render_raw(many).parts_omitted == 100


def test_attachments_download_decoded() -> None:
    pdf = part_download(MIXED, "2")
    assert pdf is not None and (pdf.filename, pdf.data) == ("agenda.pdf", b"%PDF-1.4\n")
    assert part_download(MIXED, "9") is None
