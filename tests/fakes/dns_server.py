"""A DNS server on 127.0.0.1 for the tests' lookups (dnslib, UDP): it answers the TXT records a
test puts in it, NXDOMAIN for every other name, and SERVFAIL for the names a test makes fail, so
no lookup leaves the machine. One is shared by the whole run (the edge's settings point at it)."""

import threading
from dataclasses import dataclass, field
from typing import Any

from dnslib import QTYPE, RCODE, RR, TXT, DNSRecord
from dnslib.server import BaseResolver, DNSLogger, DNSServer


@dataclass
class Zone:
    """Names (without the final dot, lower case) and their TXT strings; change it freely."""

    txt: dict[str, list[str]] = field(default_factory=dict)
    failing: set[str] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)
    asked: list[str] = field(default_factory=list)


class ZoneResolver(BaseResolver):  # type: ignore[misc]
    def __init__(self, zone: Zone) -> None:
        self.zone = zone

    def resolve(self, request: DNSRecord, handler: Any) -> DNSRecord:
        reply = request.reply()
        name = str(request.q.qname).rstrip(".").lower()
        with self.zone.lock:
            self.zone.asked.append(name)
            failing = name in self.zone.failing
            texts = list(self.zone.txt.get(name, []))
        if failing:
            reply.header.rcode = RCODE.SERVFAIL
        elif not texts:
            reply.header.rcode = RCODE.NXDOMAIN
        elif request.q.qtype == QTYPE.TXT:
            for text in texts:
                reply.add_answer(RR(request.q.qname, QTYPE.TXT, rdata=TXT(text), ttl=60))
        return reply


class DnsFake:
    def __init__(self) -> None:
        self.zone = Zone()
        self.server = DNSServer(
            ZoneResolver(self.zone),
            port=0,
            address="127.0.0.1",
            logger=DNSLogger("-request,-reply,-truncated,-error,-recv,-send,-data"),
        )
        self.server.start_thread()
        self.address = f"127.0.0.1:{self.server.server.server_address[1]}"


_shared: list[DnsFake] = []
_lock = threading.Lock()


def shared_dns() -> DnsFake:
    """The run's DNS server, started on first use."""
    with _lock:
        if not _shared:
            _shared.append(DnsFake())
        return _shared[0]
