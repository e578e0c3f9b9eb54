"""source-network-not-allowed: third-party activity from outside its networks.

Watches every third-party record whose party lists `networks`; each IPv4 or IPv6
address in `sourceIPAddress` must fall in one of them. A service name, "AWS
Internal" or no address at all is not an address outside.
"""

from __future__ import annotations

import ipaddress

from detectors.attribution import Attribution, AttributionKind
from detectors.detector import Finding
from detectors.findings import make_finding
from detectors.third_parties import Policy
from service.records import CloudTrailRecord, IPAddress

_Networks = tuple[tuple[ipaddress.IPv4Network, ...], tuple[ipaddress.IPv6Network, ...]]


class SourceNetworkNotAllowed:
    id = "source-network-not-allowed"
    watches: AttributionKind = "third_party"

    def __init__(self, policy: Policy) -> None:
        self.severity = policy.detectors.severity(self.id)
        self._networks: dict[str, _Networks] = {}
        for party in policy.third_parties:
            if party.networks:
                v4 = tuple(
                    n for n in party.networks if isinstance(n, ipaddress.IPv4Network)
                )
                v6 = tuple(
                    n for n in party.networks if isinstance(n, ipaddress.IPv6Network)
                )
                self._networks[party.id] = (v4, v6)

    def check(
        self, record: CloudTrailRecord, attribution: Attribution
    ) -> list[Finding]:
        party = attribution.third_party
        if party is None or not record.source_addresses:
            return []
        networks = self._networks.get(party.id)
        if networks is None:
            return []

        outside = [str(a) for a in record.source_addresses if not _inside(a, networks)]
        if not outside:
            return []
        return [
            make_finding(
                self.id,
                self.severity,
                record,
                attribution,
                title=(
                    f"{party.display_name} called {record.action} "
                    f"from {', '.join(outside)}"
                ),
                distinct=",".join(outside),
                details={
                    "outside_addresses": outside,
                    "allowed_networks": [str(n) for n in party.networks],
                },
            )
        ]


def _inside(address: IPAddress, networks: _Networks) -> bool:
    if isinstance(address, ipaddress.IPv4Address):
        return any(address in network for network in networks[0])
    # An IPv4-mapped IPv6 address (::ffff:a.b.c.d) is checked as the IPv4 it is.
    mapped = address.ipv4_mapped
    if mapped is not None:
        return any(mapped in network for network in networks[0])
    return any(address in network for network in networks[1])
