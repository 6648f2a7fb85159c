"""Fixtures for the per-account settings tests (signatures, templates, storage).

A plain host app for the service-level quota tests, and the sending fixtures
(aiosmtpd servers, the example webmail able to reach them and Dovecot) for the pages.
"""

from __future__ import annotations

from tests.sending.conftest import dns_server, send_app, smtp_user, smtpd  # noqa: F401 (fixtures)


