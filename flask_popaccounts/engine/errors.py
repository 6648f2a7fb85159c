"""Every failure the engine can name, each with a stable ``code`` and plain help.

Pages and the account card show ``title`` and ``help`` (never the server's own text,
which may be hostile); logs may add ``detail`` (server text, already truncated and
stripped of control characters). ``title`` and ``help`` are msgids (:func:`~.texts.N_`):
pages show ``_(err.title)``, ``_(err.help)``. A whole variant of the help that fits the
connection is set on the instance by the raiser, or asked by the card (``help_for``).
``str(err)``: English for logs from the engine; translated when a service raises it.

Exception tree::

    PopAccountsError
     ├── InvalidInput ..................... invalid_input
     │    ├── InvalidAddress .............. invalid_address         (sending)
     │    └── HeaderInjection ............. header_injection        (sending)
     ├── PolicyRefused
     │    ├── AddressNotAllowed ........... address_not_allowed
     │    ├── PortNotAllowed .............. port_not_allowed        (R23)
     │    └── PlaintextNotAllowed ......... plaintext_not_allowed
     ├── ConnectionFailed ................. connection_failed       (R20)   transient
     │    ├── ConnectionTimeout ........... timeout                         transient
     │    │    ├── ServerStoppedAnswering . stopped_answering               transient
     │    │    └── SessionTooLong ......... session_too_long                transient
     │    └── ConnectionLost .............. connection_lost                 transient
     ├── CertificateInvalid ............... certificate_invalid     (R22)
     ├── TLSUnavailable ................... tls_unavailable
     │    ├── SMTPStartTLSUnavailable ..... smtp_tls_unavailable    (R9)
     │    └── TLSInjection ................ tls_injection
     ├── AuthenticationFailed ............. auth_failed             (R21, R24) needs the user
     │    ├── TokenRejected ............... token_rejected          (R13)      needs the user
     │    └── SMTPAuthFailed .............. smtp_auth_failed        (R9, R10)  needs the user
     ├── SendingNotAllowed ................ sending_not_allowed     (R9, R10)
     │    └── RecipientRefused ............ recipient_refused
     ├── ServerBusy
     │    ├── MailboxInUse ................ in_use                            transient
     │    ├── LoginDelay .................. login_delay                       transient
     │    └── ServerUnavailable ........... server_unavailable                transient
     ├── ServerRefused .................... server_refused          ([SYS/PERM])
     ├── ProtocolError .................... protocol_error                    transient
     │    ├── ProtocolOutOfStep ........... out_of_step                     transient
     │    ├── BadServerAnswer ............. bad_answer                      transient
     │    └── MessageSizeMismatch ......... size_mismatch                   transient
     ├── ListingTooLarge .................. listing_too_large
     ├── UIDLUnsupported .................. no_uidl
     ├── UIDLReset ........................ uidl_reset                        needs the user
     └── QuotaExceeded .................... quota_exceeded          (R19)      paused till freed
"""

from __future__ import annotations

from typing import ClassVar

from .texts import N_

_DETAIL_LIMIT = 200


def clean_detail(text: str | bytes | None, limit: int = _DETAIL_LIMIT) -> str:
    """Server text made safe for a log line: printable, one line, truncated."""
    if text is None:
        return ""
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    text = "".join(ch if ch.isprintable() else " " for ch in text).strip()
    return text if len(text) <= limit else text[: limit - 1] + "…"


#: code -> class, filled as classes are defined (see PopAccountsError.__init_subclass__)
_BY_CODE: dict[str, type[PopAccountsError]] = {}


class PopAccountsError(Exception):
    """Base of every named failure.

    ``code`` is stable (stored on the account, used by pages and signals);
    ``title`` and ``help`` are what the user reads; ``detail`` is for logs only.
    """

    code: ClassVar[str] = "error"
    title: str = N_("Something went wrong")
    help: str = N_("Try again in a few minutes.")  #: a variant may be set per instance
    transient: ClassVar[bool] = False  #: the scheduler retries with back-off
    needs_user: ClassVar[bool] = False  #: automatic fetching stops until the user acts

    def __init_subclass__(cls, **kwargs: object) -> None:
        # Every class that names its own code is found again by that code (account
        # cards store only the code), wherever it is defined (engine, services).
        super().__init_subclass__(**kwargs)
        if "code" in cls.__dict__:
            known = _BY_CODE.setdefault(cls.code, cls)
            if known is not cls:
                raise TypeError(f"error code {cls.code!r} is used by {known.__name__} already")

    def __init__(self, message: str | None = None, *, detail: str | bytes | None = None) -> None:
        self.detail = clean_detail(detail)
        super().__init__(message or self.title)

    def explain(self) -> str:
        """The title and help, as one English paragraph (logs, the command line)."""
        return f"{self.title}. {self.help}"


_BY_CODE[PopAccountsError.code] = PopAccountsError


class InvalidInput(PopAccountsError):
    code = "invalid_input"
    title = N_("A field contains characters that are not allowed")
    help = N_("Remove line breaks and control characters from the host, username and password.")


class PolicyRefused(PopAccountsError):
    """The connection was refused here, before any packet left."""

class AddressNotAllowed(PolicyRefused):
    code = "address_not_allowed"
    title = N_("This server address is not allowed")
    help = N_("The host name points to a private, local or reserved network address. Use the "
              "public host name your mail provider gives for POP3.")


class PortNotAllowed(PolicyRefused):
    code = "port_not_allowed"
    title = N_("This port is not allowed")
    help = N_("Only the standard POP3 ports are supported: 995 (SSL) and 110 (STARTTLS or plain).")


class PlaintextNotAllowed(PolicyRefused):
    code = "plaintext_not_allowed"
    title = N_("Unencrypted connections are not allowed")
    help = N_("Choose SSL (port 995) or STARTTLS (port 110); your password would travel in clear.")


class ConnectionFailed(PopAccountsError):
    code = "connection_failed"
    title = N_("Connection failed")
    help = N_("The server cannot be reached at that host name and port. Check the incoming POP "
              "(and outgoing SMTP) host names and port numbers in your mail provider's help "
              "pages.")
    transient = True


class ConnectionTimeout(ConnectionFailed):
    code = "timeout"
    title = N_("The server did not answer in time")
    help = N_("Nothing answered in time at that host name and port. Check the incoming POP (and "
              "outgoing SMTP) host names and port numbers in your mail provider's help pages.")


class ServerStoppedAnswering(ConnectionTimeout):
    code = "stopped_answering"
    title = N_("The server stopped answering")
    help = N_("The server was reached and answered, then stopped answering mid-session (a "
              "problem at the provider, not in your settings). We will try again later.")


class SessionTooLong(ConnectionTimeout):
    code = "session_too_long"
    title = N_("The server sent mail too slowly")
    help = N_("The server answered, but sent mail so slowly that the session ran out of time.")


class ConnectionLost(ConnectionFailed):
    code = "connection_lost"
    title = N_("The server closed the connection")
    help = N_("The server was reached and answered, then closed the connection mid-session (a "
              "problem at the provider or on the network). We will try again later.")


class CertificateInvalid(PopAccountsError):
    code = "certificate_invalid"
    title = N_("Invalid certificate")
    help = N_("The server's certificate is not valid (self-signed, expired, for another host "
              "name or from an unknown authority). Check the host name, or ask your provider "
              "which name it has.")
    #: SSL on port 995 (R22); SSL on another port (465 for SMTP, a host's own); STARTTLS
    #: (110 POP3, 587 SMTP), where no other port is the advice
    HELP_SSL_995: ClassVar[str] = N_("The server's certificate is not valid (self-signed, "
                                     "expired, for another host name or from an unknown "
                                     "authority). Self-signed certificates are refused, so port "
                                     "995 (SSL) works only with a valid certificate. Check the "
                                     "host name, or ask your provider which name it has.")
    HELP_SSL: ClassVar[str] = N_("The server's certificate is not valid (self-signed, expired, "
                                 "for another host name or from an unknown authority). "
                                 "Self-signed certificates are refused, so SSL works only with a "
                                 "valid certificate. Check the host name, or ask your provider "
                                 "which name it has.")
    HELP_STARTTLS: ClassVar[str] = N_("The server agreed to encrypt the connection (STARTTLS), "
                                      "but its certificate is not valid (self-signed, expired, "
                                      "for another host name or from an unknown authority), so "
                                      "we stopped before sending your password. Check the host "
                                      "name, or ask your provider which name it has.")

    @classmethod
    def help_for(cls, security: str | None, port: int | None = None) -> str:
        """The help that fits the connection (``security``: "ssl" / "starttls")."""
        if security == "ssl":
            return cls.HELP_SSL_995 if port == 995 else cls.HELP_SSL
        return cls.HELP_STARTTLS if security == "starttls" else cls.help


class TLSUnavailable(PopAccountsError):
    code = "tls_unavailable"
    title = N_("The server does not offer STARTTLS")
    help = N_("The server did not agree to encrypt the connection on port 110, so we did not "
              "send your password. Use SSL on port 995 if your provider offers it.")


class TLSInjection(TLSUnavailable):
    code = "tls_injection"
    title = N_("Unencrypted data was slipped in before encryption started")
    help = N_("Right after the server agreed to encrypt, unencrypted data arrived: how an "
              "attacker on the network injects answers. We stopped without sending your password.")
    transient = True


class AuthenticationFailed(PopAccountsError):
    code = "auth_failed"
    title = N_("Authentication failed")
    help = N_("The server was reached but refused the username or password, or the password was "
              "changed at the provider. Check the username format (some providers want the full "
              "email address, others domain\\username), update the password here, and check that "
              "POP access is enabled at your provider (some require it to be switched on, or an "
              "app password) and that your administrator allows POP retrieval.")
    #: R14: Google takes only an app password over POP
    HELP_GMAIL: ClassVar[str] = N_("Gmail was reached but refused the username or password. It "
                                   "accepts an app password here, not your Google password: "
                                   "create one in your Google account's security settings "
                                   "(2-Step Verification must be on), enter it as the password "
                                   "with your full Gmail address as the username, and check that "
                                   "POP is enabled in Gmail's settings.")
    needs_user = True

    @classmethod
    def help_for(cls, provider: str | None) -> str:
        """The help for an account of ``provider`` ("gmail" has its own)."""
        return cls.HELP_GMAIL if provider == "gmail" and cls is AuthenticationFailed else cls.help


class TokenRejected(AuthenticationFailed):
    code = "token_rejected"
    title = N_("Re-authentication needed")
    help = N_("The provider no longer accepts this account's authorization (it was revoked, "
              "expired, or the provider moved to OAuth). Click Authenticate and sign in again.")


class ServerBusy(PopAccountsError):
    transient = True  # the server asked us to come back later


class MailboxInUse(ServerBusy):
    code = "in_use"
    title = N_("The mailbox is in use")
    help = N_("Another program is reading this mailbox right now. We will try again shortly.")


class LoginDelay(ServerBusy):
    code = "login_delay"
    title = N_("The server asks us to wait between checks")
    help = N_("Your provider limits how often mail can be checked. We will try again later.")
    seconds: int | None = None  #: the wait the server announced (CAPA LOGIN-DELAY), if any


class ServerUnavailable(ServerBusy):
    code = "server_unavailable"
    title = N_("The server is temporarily unavailable")
    help = N_("The mail server reported a temporary problem. We will try again later.")


class ServerRefused(PopAccountsError):
    code = "server_refused"
    title = N_("The server refused access")
    help = N_("The mail server reported a permanent problem with this mailbox. Check with your "
              "provider that the account is active and allows POP retrieval.")


class ProtocolError(PopAccountsError):
    code = "protocol_error"
    title = N_("The server answered in a way we did not understand")
    help = N_("Check that the host and port are those of a POP3 server. We will try again later.")
    transient = True


class ProtocolOutOfStep(ProtocolError):
    code = "out_of_step"
    title = N_("The server's answers got out of step")
    help = N_("The server sent data no command asked for, or an answer that does not fit its "
              "command. We stopped before deleting anything, keeping nothing from that point; we "
              "try again later.")


class BadServerAnswer(ProtocolError):
    code = "bad_answer"
    title = N_("The server sent an answer that breaks the POP3 rules")
    help = N_("The server greeted us as a POP3 server, then sent a malformed answer. Nothing was "
              "deleted; we will try again later. If it keeps happening, tell your provider.")


class MessageSizeMismatch(ProtocolError):
    code = "size_mismatch"
    title = N_("A message is much larger than the server said")
    help = N_("The server kept sending far more data for a message than it announced, so we "
              "stopped reading it and deleted nothing. We will try again later.")


class ListingTooLarge(PopAccountsError):
    code = "listing_too_large"
    title = N_("The server lists more messages than this site fetches at once")
    help = N_("The mailbox on the server holds more messages than this site handles at once, so "
              "nothing was fetched. Delete or archive old mail at the provider, or ask the "
              "site's administrator to raise the limit.")


class UIDLUnsupported(PopAccountsError):
    code = "no_uidl"
    title = N_("The server cannot identify messages")
    help = N_("This POP3 server does not support UIDL, so we cannot tell new mail from mail "
              "already fetched. To avoid duplicates we do not fetch from it.")


class UIDLReset(PopAccountsError):
    code = "uidl_reset"
    title = N_("The server renumbered every message")
    help = N_("None of the messages on the server match what was fetched before, which usually "
              "means the provider rebuilt the mailbox. Nothing was imported, so you get no "
              "duplicates. If you want everything on the server fetched again, confirm it on the "
              "account page.")
    needs_user = True


class QuotaExceeded(PopAccountsError):
    """The owner's storage quota would be crossed by the next message (R19).

    Raised by the quota-guarded sink before anything of that message is staged; the
    engine rolls back what was staged, keeps what was committed and sends no DELE for
    the rest, which waits on the server until space is freed.
    """

    code = "quota_exceeded"
    title = N_("Your mail storage is full")
    help = N_("Fetching is paused: the mail already fetched is kept, and the rest waits on the "
              "server (nothing was deleted there that is not stored here). Free space on the "
              "Storage page (empty Trash, delete old mail); fetching resumes by itself.")


class InvalidAddress(InvalidInput):
    code = "invalid_address"
    title = N_("An email address is not valid")
    help = N_("Check the addresses: each one must look like name@example.com, optionally with a "
              "display name (\"Ann Example\" <ann@example.com>), separated by commas.")


class HeaderInjection(InvalidInput):
    code = "header_injection"
    title = N_("A field contains a line break")
    help = N_("Line breaks and control characters are not allowed in addresses or the subject "
              "(they could add hidden headers to the message). Remove them and send again.")
    field = ""  #: the header it was bound for, in a form's words ("Subject"): engine.safety


class SMTPStartTLSUnavailable(TLSUnavailable):
    code = "smtp_tls_unavailable"
    title = N_("The outgoing server does not offer STARTTLS")
    help = N_("The server did not agree to encrypt the connection, so we did not send your "
              "password or any mail. Use port 465 (SSL) if your provider offers it, or check the "
              "outgoing server name and port.")


class SMTPAuthFailed(AuthenticationFailed):
    code = "smtp_auth_failed"
    title = N_("Authentication failed")
    help = N_("The outgoing (SMTP) server was reached but refused the username or password. "
              "Check the username format (often the full email address), the password (some "
              "providers need an app password for SMTP) and that SMTP sending is enabled for the "
              "account at your provider.")


class SendingNotAllowed(PopAccountsError):
    code = "sending_not_allowed"
    title = N_("Sending not allowed")
    help = N_("The outgoing server accepted the connection but does not let this account send "
              "mail from this address (or offers no way to sign in). Check with your provider "
              "that this address may send through this server, or skip the custom server and "
              "verify the address instead.")


class RecipientRefused(SendingNotAllowed):
    code = "recipient_refused"
    title = N_("The outgoing server refused the recipients")
    help = N_("Check the recipients' addresses; nothing was sent.")


def error_for_code(code: str) -> type[PopAccountsError]:
    """The class behind a stored code (unknown codes map to the base class)."""
    return _BY_CODE.get(code, PopAccountsError)


def registered_codes() -> dict[str, type[PopAccountsError]]:
    """Every named error known so far, by code (a copy)."""
    return dict(_BY_CODE)
