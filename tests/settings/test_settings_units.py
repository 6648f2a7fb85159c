"""The signature block and template rules of services.settings, without servers."""

from __future__ import annotations

from datetime import date

from flask_popaccounts.services import settings
from flask_popaccounts.storage.models import Account, Signature, Template


def sig(**kw: object) -> Signature:
    base: dict[str, object] = dict(text="Ann", html="", placement="below", on_new=True,
                                   on_reply=True, on_forward=True)
    base.update(kw)
    return Signature(**base)


def test_placeholders_are_looked_up_never_evaluated() -> None:
    values = {"recipient_name": "Zoë", "date": "2026-01-02"}
    text = "Hi {recipient_name}, {date} {recipient_name.__class__} {0} {{date}} {nope} {"
    assert settings.render_placeholders(text, values) == (
        "Hi Zoë, 2026-01-02 {recipient_name.__class__} {0} {2026-01-02} {nope} {")
    assert settings.unknown_placeholders(text) == ["{recipient_name.__class__}", "{0}",
                                                   "{nope}"]


def test_placeholder_values_and_apply_template() -> None:
    account = Account(name="Home", email="me@example.com", send_from="")
    row = Template(name="t", subject="Re {recipient_email}", body="Dear {recipient_name},")
    subject, body = settings.apply_template(row, account, to='"Ann B." <ann@example.org>, x@y.z',
                                            subject="", body="\n\n-- \nSig\n",
                                            today=date(2026, 3, 4))
    assert subject == "Re ann@example.org"
    assert body == "Dear Ann B.,\n\n\n-- \nSig\n"
    # a typed subject is kept; no recipient yet leaves empty values
    subject, body = settings.apply_template(row, account, to="", subject="Mine", body="")
    assert (subject, body) == ("Mine", "Dear ,\n")
    assert settings.placeholder_values(account, "")["my_email"] == "me@example.com"


def test_block_per_mode_and_html_only_signature() -> None:
    assert settings.signature_block(sig(on_forward=False), "forward") == ""
    assert settings.signature_block(sig(), "reply") == "-- \nAnn"
    html_only = sig(text="", html="<p><b>Ann</b> &amp; Co</p><p>Line 2</p>")
    assert settings.signature_block(html_only, "new") == "-- \nAnn & Co\nLine 2"
    assert settings.signature_block(None, "new") == ""
    assert settings.clean_signature_html('<b onclick="x()">A</b><script>y()</script>') == "<b>A</b>"


def test_swap_insert_and_remove_keep_the_body() -> None:
    quote = "On 2025 X wrote:\n> hi\n"
    body = settings.insert_block("\n\n" + quote, "-- \nA", "below", 2)
    assert body == "\n\n" + quote + "\n-- \nA\n"
    # swapped to an "above" signature: it moves above the quote
    swapped = settings.swap_signature(body.replace("\n", "\r\n"), old_block="-- \nA",
                                      new_block="-- \nB", placement="above",
                                      quote_start=body.replace("-- \nA", "").find("On 2025"))
    assert swapped.index("-- \nB") < swapped.index("On 2025") and "-- \nA" not in swapped
    # never twice; an unknown old block leaves the body as typed (plus the new one once)
    assert settings.swap_signature(swapped, old_block="", new_block="-- \nB",
                                   placement="above", quote_start=None) == swapped
    edited = settings.swap_signature("text\n\n-- \nA (edited)\n", old_block="-- \nA\n\nx",
                                     new_block="", placement="below", quote_start=None)
    assert edited == "text\n\n-- \nA (edited)\n"


def test_html_body_escapes_the_users_text() -> None:
    out = settings.html_body("<b>me</b> & you\n\n-- \nA\n", "-- \nA", "<i>A</i>")
    assert "&lt;b&gt;me&lt;/b&gt; &amp; you" in out and "<i>A</i>" in out
    assert settings.html_body("no block", "-- \nA", "<i>A</i>") == ""
