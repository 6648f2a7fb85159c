"""A tiny DNS server on loopback for tests, built with dnspython's message API.

:class:`DNSServer` answers UDP queries on 127.0.0.1 from :attr:`txt` (name -> TXT
strings, e.g. ``"_dmarc.strict.example": ["v=DMARC1; p=reject"]``) with NXDOMAIN for
every other name, and SERVFAIL for the names in :attr:`servfail` (a resolver that is
broken for them). Every question is kept in :attr:`queries` so a test can tell which
names were (or were not) looked up.
"""

from __future__ import annotations

import socket
import threading

import dns.exception
import dns.flags
import dns.message
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset


class DNSServer:
    def __init__(self) -> None:
        self.txt: dict[str, list[str]] = {}
        self.servfail: set[str] = set()
        self.queries: list[str] = []
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._sock.bind(("127.0.0.1", 0))
        self.port = int(self._sock.getsockname()[1])
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="test-dns", daemon=True)
        self._thread.start()

    @property
    def nameserver(self) -> str:
        """For ``POPACCOUNTS_DNS_NAMESERVERS``."""
        return f"127.0.0.1:{self.port}"

    def _answer(self, query: dns.message.Message) -> dns.message.Message:
        response = dns.message.make_response(query)
        response.flags |= dns.flags.AA
        question = query.question[0]
        name = question.name.to_text(omit_final_dot=True).lower()
        self.queries.append(name)
        if name in self.servfail:
            response.set_rcode(dns.rcode.SERVFAIL)
        elif name in self.txt and question.rdtype == dns.rdatatype.TXT:
            response.answer.append(dns.rrset.from_text_list(
                question.name, 60, dns.rdataclass.IN, dns.rdatatype.TXT,
                ['"' + t.replace('"', '\\"') + '"' for t in self.txt[name]]))
        elif name not in self.txt:
            response.set_rcode(dns.rcode.NXDOMAIN)
        return response

    def _serve(self) -> None:
        self._sock.settimeout(0.2)
        while not self._stop.is_set():
            try:
                data, peer = self._sock.recvfrom(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            try:
                query = dns.message.from_wire(data)
            except dns.exception.DNSException:  # not DNS: ignore, like a real server
                continue
            self._sock.sendto(self._answer(query).to_wire(), peer)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        self._sock.close()
