"""Who called: client id resolution (header, forwarded-for, peer) and user-agent families."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from functools import lru_cache

__all__ = [
    "MAX_CLIENT_ID_CHARS",
    "MAX_USER_AGENT_CHARS",
    "TrustedProxies",
    "parse_user_agent",
    "resolve_client_id",
]

MAX_CLIENT_ID_CHARS = 256
MAX_USER_AGENT_CHARS = 512
_MAX_FORWARDED_HOPS = 32  # a longer X-Forwarded-For is read only up to this many hops from the right


class TrustedProxies:
    """The set of proxy addresses (exact addresses or CIDR networks) whose X-Forwarded-For we believe."""

    __slots__ = ("_exact", "_networks", "contains")

    def __init__(self, entries: Iterable[str]) -> None:
        exact: set[str] = set()
        networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
        for entry in entries:
            entry = entry.strip()
            if "/" in entry:
                networks.append(ipaddress.ip_network(entry, strict=False))
            elif entry:
                exact.add(entry)
        self._exact = frozenset(exact)
        self._networks = tuple(networks)
        # One cache per instance: addresses repeat, and tests build many configs.
        self.contains = lru_cache(maxsize=1024)(self._contains)

    def __bool__(self) -> bool:
        return bool(self._exact or self._networks)

    def _contains(self, address: str) -> bool:
        if address in self._exact:
            return True
        if not self._networks:
            return False
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in net for net in self._networks)


def resolve_client_id(
    peer: str,
    header_value: str | None,
    forwarded_for: str | None,
    trusted: TrustedProxies,
) -> str:
    """Return the client id: the configured header, else the forwarded client, else the peer.

    ``X-Forwarded-For`` is read only when the peer is a trusted proxy. Its hops are walked from
    the right (the hop nearest to us) past every trusted proxy; the first untrusted one is the
    client. Anything to its left was written by that client and may be forged.
    """
    if header_value:
        return header_value.strip()[:MAX_CLIENT_ID_CHARS]
    if forwarded_for and trusted and trusted.contains(peer):
        hops = forwarded_for[-4096:].split(",")[-_MAX_FORWARDED_HOPS:]
        candidate = ""
        for hop in reversed(hops):
            hop = hop.strip()
            if not hop:
                continue
            candidate = hop
            if not trusted.contains(hop):
                break
        if candidate:
            return candidate[:MAX_CLIENT_ID_CHARS]
    return peer[:MAX_CLIENT_ID_CHARS]


# (family, regex whose group 1 is the version). Order matters: Edge and Chrome UAs also say
# "Safari", Edge's also says "Chrome".
_AGENTS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("curl", re.compile(r"^curl/([\w.\-]+)")),
    ("python-httpx", re.compile(r"^python-httpx/([\w.\-]+)")),
    ("python-requests", re.compile(r"^python-requests/([\w.\-]+)")),
    ("Go-http-client", re.compile(r"^Go-http-client/([\w.\-]+)")),
    ("okhttp", re.compile(r"^okhttp/([\w.\-]+)")),
    ("PostmanRuntime", re.compile(r"^PostmanRuntime/([\w.\-]+)")),
    ("k6", re.compile(r"^k6/([\w.\-]+)")),
    ("wrk", re.compile(r"^wrk(?:/([\w.\-]+))?")),
    ("Edge", re.compile(r"\bEdg(?:e|A|iOS)?/([\d.]+)")),
    ("Firefox", re.compile(r"\bFirefox/([\d.]+)")),
    ("Chrome", re.compile(r"\b(?:Chrome|CriOS)/([\d.]+)")),
    ("Safari", re.compile(r"\bVersion/([\d.]+).*\bSafari/")),
)


@lru_cache(maxsize=1024)
def parse_user_agent(user_agent: str) -> tuple[str, str]:
    """Return (family, version) of a user agent; ('other', '') when unknown, ('', '') when empty."""
    if not user_agent:
        return "", ""
    ua = user_agent[:MAX_USER_AGENT_CHARS]
    for family, pattern in _AGENTS:
        m = pattern.search(ua)
        if m:
            return family, (m.group(1) or "")[:32]
    if "Safari/" in ua and "Chrome" not in ua:
        return "Safari", ""
    return "other", ""
