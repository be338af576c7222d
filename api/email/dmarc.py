"""DMARC of a sending domain, from DNS: SES does not report it, and Gmail and Yahoo refuse bulk
mail whose From domain publishes no DMARC record (at least `p=none`).

The record is the TXT record at `_dmarc.<domain>` that starts with `v=DMARC1`. A domain without
one falls under the nearest parent domain's record (DMARCbis's tree walk, which needs no public
suffix list; a top-level domain alone is never asked), whose `sp=` (else `p=`) then applies.
`adkim=s` asks for strict DKIM alignment: the DKIM signing domain must be the From domain itself,
not only share its organisation. A lookup that fails (timeout, SERVFAIL) is said as such, never
taken as a missing record.
"""

from dataclasses import dataclass
from typing import Any

import dns.exception
import dns.resolver

POLICIES = frozenset({"none", "quarantine", "reject"})
# How long one query may take, and the most parent domains asked.
TIMEOUT_SECONDS = 3.0
MOST_LABELS = 8


@dataclass(frozen=True)
class Dmarc:
    """What DNS says: `status` found, missing or unknown (the lookup failed)."""

    status: str
    domain: str | None = None
    policy: str | None = None
    subdomain_policy: str | None = None
    adkim: str = "r"
    aspf: str = "r"
    record: str | None = None
    error: str | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "domain": self.domain,
            "policy": self.policy,
            "subdomain_policy": self.subdomain_policy,
            "adkim": self.adkim,
            "aspf": self.aspf,
            "record": self.record,
            "error": self.error,
        }


def parse(record: str) -> dict[str, str] | None:
    """The tags of a DMARC record (lower-cased), or None when it is not one."""
    tags: dict[str, str] = {}
    for part in record.split(";"):
        name, _, value = part.partition("=")
        if name.strip():
            tags[name.strip().lower()] = value.strip()
    if tags.get("v") != "DMARC1":
        return None
    return {name: value.lower() for name, value in tags.items() if name != "v"}


def candidates(domain: str) -> list[str]:
    """The domain, then each parent down to two labels (the tree walk, at most 8 labels)."""
    labels = domain.strip(".").lower().split(".")[-MOST_LABELS:]
    return [".".join(labels[i:]) for i in range(len(labels) - 1)]


class DmarcLookup:
    """Looks DMARC records up through the configured resolver (`host` or `host:port`), else
    the system's."""

    def __init__(self, resolver_address: str | None) -> None:
        try:
            self.resolver = dns.resolver.Resolver(configure=resolver_address is None)
        except dns.resolver.NoResolverConfiguration:
            # No system resolver here: every lookup answers `unknown` (the edge still starts).
            self.resolver = dns.resolver.Resolver(configure=False)
        if resolver_address:
            host, _, port = resolver_address.partition(":")
            self.resolver.nameservers = [host]
            self.resolver.port = int(port or 53)
        self.resolver.lifetime = TIMEOUT_SECONDS

    def records(self, domain: str) -> list[str]:
        """The TXT strings at `_dmarc.<domain>` ([] when none: NXDOMAIN or no TXT)."""
        try:
            answer = self.resolver.resolve(f"_dmarc.{domain}", "TXT")
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            return []
        return [b"".join(item.strings).decode("utf-8", "replace") for item in answer]

    def lookup(self, domain: str) -> Dmarc:
        try:
            for candidate in candidates(domain):
                for record in self.records(candidate):
                    tags = parse(record)
                    if tags is None:
                        continue
                    policy = tags.get("p")
                    return Dmarc(
                        status="found",
                        domain=candidate,
                        # An invalid or absent p= is read as none (RFC 7489, 6.6.3).
                        policy=policy if policy in POLICIES else "none",
                        subdomain_policy=tags.get("sp") if tags.get("sp") in POLICIES else None,
                        adkim="s" if tags.get("adkim") == "s" else "r",
                        aspf="s" if tags.get("aspf") == "s" else "r",
                        record=record[:1000],
                    )
        except dns.exception.DNSException as error:
            return Dmarc(status="unknown", error=f"{type(error).__name__}: {error}"[:500])
        return Dmarc(status="missing")
