"""What both bare proxies leave out when they forward a request's headers."""

from __future__ import annotations

#: Headers that concern one connection (RFC 9110 §7.6.1) or that the client library sets itself.
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "host",
        "content-length",
    }
)
