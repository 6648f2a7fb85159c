"""Security headers for every page, and the two responses that carry mail content.

- :func:`add_security_headers`: ``Content-Security-Policy`` (:data:`PAGE_CSP`, or the
  host's ``POPACCOUNTS_CONTENT_SECURITY_POLICY``), ``X-Content-Type-Options: nosniff``
  and ``Referrer-Policy: same-origin`` on every response of the blueprint; a header the
  view (or the host, before us) already set is never replaced.
- :func:`message_body_response`: a message's sanitised HTML as its own document, for a
  ``<iframe sandbox>``, with :data:`MESSAGE_CSP`: no script of any kind, no request
  anywhere (images only as inline ``data:``), no forms, no plugins, sandboxed even when
  opened on its own. Whatever the sanitiser might miss still cannot run.
- :func:`download_response`: an attachment (or the original message) as a download
  that a browser never renders on our origin.

A host uses the last two for its own message page, as the example webmail does.
"""

from __future__ import annotations

from urllib.parse import quote

from flask import Response, current_app

from ..config import DEFAULTS

#: Pages: scripts and styles only from our own static files (no inline script, no
#: inline event handler), images from us or data:, frames only ours, no plugins. The
#: default of ``POPACCOUNTS_CONTENT_SECURITY_POLICY``.
PAGE_CSP: str = DEFAULTS["POPACCOUNTS_CONTENT_SECURITY_POLICY"]

#: The ``sandbox`` of a message body, as the frame's attribute and in its CSP: never
#: ``allow-scripts`` (nor forms, top navigation, plugins); same-origin only so that the
#: page can size the frame (harmless without scripts); links open a normal new window.
FRAME_SANDBOX = "allow-same-origin allow-popups allow-popups-to-escape-sandbox"

#: A message body: nothing but inline images and the document's own style, sandboxed
#: even when opened on its own.
MESSAGE_CSP = ("default-src 'none'; img-src data:; style-src 'unsafe-inline'; "
               "base-uri 'none'; form-action 'none'; frame-ancestors 'self'; "
               f"sandbox {FRAME_SANDBOX}")

_DOWNLOAD_CSP = "default-src 'none'; sandbox"


def _set_default(response: Response, name: str, value: str | None) -> None:
    if value and name not in response.headers:
        response.headers[name] = value


def add_security_headers(response: Response, csp: str | None = None) -> Response:
    """The three headers on ``response`` unless already there (``csp`` None: config)."""
    if csp is None:
        csp = current_app.config.get("POPACCOUNTS_CONTENT_SECURITY_POLICY")
    _set_default(response, "Content-Security-Policy", csp)
    _set_default(response, "X-Content-Type-Options", "nosniff")
    _set_default(response, "Referrer-Policy", "same-origin")
    return response


def message_body_response(document: str) -> Response:
    """``document`` (``services.reading.body_document``) as a sandboxed frame's page."""
    response = Response(document, mimetype="text/html")
    response.headers["Content-Security-Policy"] = MESSAGE_CSP
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers["Cache-Control"] = "private, no-store"
    return response


def download_response(filename: str, data: bytes) -> Response:
    """``data`` as a file named ``filename``, always downloaded, never rendered here.

    Sent as ``application/octet-stream`` with ``Content-Disposition: attachment`` (an
    HTML or SVG attachment opened on our origin could run script), the name in both
    the ASCII and the RFC 5987 form.
    """
    ascii_name = "".join(ch if 32 <= ord(ch) < 127 and ch not in '"\\' else "_"
                         for ch in filename) or "attachment"
    response = Response(data, mimetype="application/octet-stream")
    response.headers["Content-Disposition"] = (
        f'attachment; filename="{ascii_name}"; filename*=UTF-8\'\'{quote(filename, safe="")}')
    response.headers["Content-Security-Policy"] = _DOWNLOAD_CSP
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Cache-Control"] = "private, no-store"
    return response
