"""DMARC (RFC 7489): may the site's own mailer send with a user's address in From?

Mail sent through the host's system relay carries the user's address in From while it
leaves from the site's servers. A domain whose DMARC policy is ``p=reject`` or
``p=quarantine`` (yahoo.com and aol.com publish ``p=reject``) tells receivers to bounce
or spam-file exactly that, so the relay is refused for such a From
(:class:`RelayRefusedByDmarc`, with the way out: the provider's own SMTP server),
both when the user chooses "Send through this site's mail server" and when a message
would leave that way later.

The policy is the ``_dmarc.<domain>`` TXT record; without one, that of the
organizational domain (approximated as the last two labels: no public-suffix list
here), whose ``sp=`` applies to subdomains. Several DMARC records count as none
(RFC 7489 6.6.3). Look-ups use ``POPACCOUNTS_DNS_NAMESERVERS`` (``"ip"`` or
``"ip:port"``; the system's resolvers when unset), bounded by the connect timeout (5 s
at most). A look-up that fails (timeout, SERVFAIL) does not block anything: mail is
sent, and the failure logged. Mail through the user's own server is never looked up.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

import dns.exception
import dns.nameserver
import dns.resolver

from ..engine.errors import PopAccountsError
from ..i18n import N_, isolate
from ..i18n import gettext as _

if TYPE_CHECKING:
    from flask import Flask

log = logging.getLogger("flask_popaccounts.services.dmarc")

STRICT = ("reject", "quarantine")


class RelayRefusedByDmarc(PopAccountsError):
    code = "dmarc_refuses_relay"
    title = N_("Mail from this address cannot go through this site's mail server")
    help = N_(
        "The address's domain publishes a DMARC policy that tells other mail servers to "
        "reject (or treat as spam) mail sent for it from servers it does not list, and "
        "this site's server is not one of them: your mail would bounce. Use a custom "
        "SMTP server instead: your provider's own outgoing server, with your address "
        "and password."
    )


class DmarcLookupFailed(PopAccountsError):
    code = "dmarc_lookup_failed"
    title = N_("The DMARC policy could not be looked up")
    transient = True


@dataclass(frozen=True)
class Policy:
    domain: str  #: where the record was found
    policy: str  #: "none" | "quarantine" | "reject" (for the address's own domain)
    record: str


def _nameserver(text: str) -> dns.nameserver.Nameserver:
    text = str(text).strip()
    host, port = text, 53
    if text.startswith("["):  # [v6]:port
        host, _, rest = text[1:].partition("]")
        port = int(rest[1:]) if rest.startswith(":") else 53
    elif text.count(":") == 1:
        host, _, p = text.partition(":")
        port = int(p)
    return dns.nameserver.Do53Nameserver(host, port)


def resolver_for(app: Flask) -> dns.resolver.Resolver:
    """A resolver per ``POPACCOUNTS_DNS_NAMESERVERS`` (else the system's)."""
    servers = app.config.get("POPACCOUNTS_DNS_NAMESERVERS")
    if servers:
        resolver = dns.resolver.Resolver(configure=False)
        resolver.nameservers = [_nameserver(s) for s in servers]
    else:
        resolver = dns.resolver.Resolver()
    resolver.timeout = resolver.lifetime = min(
        5.0, float(app.config.get("POPACCOUNTS_CONNECT_TIMEOUT") or 5.0))
    return resolver


def _record(resolver: dns.resolver.Resolver, domain: str) -> str | None:
    try:
        answer = resolver.resolve(f"_dmarc.{domain}.", "TXT", search=False)
    except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
        return None
    except dns.exception.DNSException as exc:
        raise DmarcLookupFailed(detail=f"_dmarc.{domain}: {type(exc).__name__}") from None
    texts = [b"".join(r.strings).decode("ascii", "replace") for r in answer]
    found = [t.strip() for t in texts if t.strip().lower().startswith("v=dmarc1")]
    return found[0] if len(found) == 1 else None


def _tags(record: str) -> dict[str, str]:
    out = {}
    for part in record.split(";"):
        key, sep, value = part.partition("=")
        if sep:
            out[key.strip().lower()] = value.strip().lower()
    return out


def lookup(app: Flask, domain: str) -> Policy | None:
    """The DMARC policy that applies to mail From ``domain`` (None: it publishes none).

    Raises :class:`DmarcLookupFailed` when DNS does not answer.
    """
    domain = domain.strip().rstrip(".").lower()
    resolver = resolver_for(app)
    record = _record(resolver, domain)
    if record is not None:
        return Policy(domain, _tags(record).get("p", "none"), record)
    labels = domain.split(".")
    if len(labels) <= 2:
        return None
    org = ".".join(labels[-2:])
    record = _record(resolver, org)
    if record is None:
        return None
    tags = _tags(record)
    return Policy(org, tags.get("sp", tags.get("p", "none")), record)


def check_relay_allowed(app: Flask, address: str) -> None:
    """Raise :class:`RelayRefusedByDmarc` when ``address``'s domain forbids mail sent
    for it by other servers; a failed look-up lets the mail go (and is logged)."""
    domain = address.rpartition("@")[2]
    if not domain:
        return
    try:
        policy = lookup(app, domain)
    except DmarcLookupFailed as exc:
        log.warning("DMARC look-up for %s failed (%s): sending anyway", domain, exc.detail)
        return
    if policy is not None and policy.policy in STRICT:
        raise RelayRefusedByDmarc(
            _("Mail from %(address)s cannot go through this site's mail server: %(domain)s "
              "publishes a DMARC policy of %(policy)s", address=isolate(address),
              domain=isolate(domain), policy=isolate(f"p={policy.policy}")),
            detail=f"{policy.domain}: {policy.record}")


__all__ = ["DmarcLookupFailed", "Policy", "RelayRefusedByDmarc", "check_relay_allowed",
           "lookup", "resolver_for"]
