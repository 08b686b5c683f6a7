"""The grammar of every value a person or a scheduler writes for a launch, in one place.

BUILD attributes (checked at build time by `settings.build_check`), PET_* variables (checked by
`settings.checks`) and cluster descriptions (read by `cluster`) all parse through these functions,
so one value gets one verdict wherever it is written. Each raises ValueError whose message is the
fix, for the caller to prefix with the value and where it came from.
"""

import ipaddress
import math
import re

# A host name or an IPv4 address; IPv6 addresses are checked by `ipaddress`.
_HOST_NAME = re.compile(r"[A-Za-z0-9._-]+")
_PORT_MAX = 65535
ENDPOINT_FIX = "use HOST, HOST:PORT or [IPv6]:PORT, with PORT in 1..65535"
NNODES_FIX = 'use N or "MIN:MAX" with 0 < MIN <= MAX'


def is_number(text: str) -> bool:
    """ASCII digits only: str.isdigit() takes "²" and other scripts' digits, which int() refuses
    or no scheduler writes."""
    return text.isascii() and text.isdecimal()


def seconds(text: str) -> float:
    """A length of time in seconds: a finite number >= 0 ("90", "1.5")."""
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 <= value < math.inf:
        raise ValueError("use a number of seconds")
    return value


def port(text: str) -> int:
    """A TCP port other machines can reach: 1..65535."""
    if not (is_number(text) and 0 < int(text) <= _PORT_MAX):
        raise ValueError("use a port in 1..65535")
    return int(text)


def endpoint(text: str) -> tuple[str, int | None]:
    """ "host", "host:port", "1.2.3.4:port", "[v6]:port", "[v6]" or a bare "v6" -> (host, port)."""
    host, port_text = text, None
    if text.startswith("["):
        host, bracket, rest = text[1:].partition("]")
        if not bracket or (rest and not rest.startswith(":")) or not _is_ipv6(host):
            raise ValueError(ENDPOINT_FIX)
        port_text = rest[1:] if rest else None
    elif text.count(":") == 1:
        host, _, port_text = text.partition(":")
    elif ":" in text and not _is_ipv6(text):
        raise ValueError(ENDPOINT_FIX)
    if not (_HOST_NAME.fullmatch(host) or _is_ipv6(host)):
        raise ValueError(ENDPOINT_FIX)
    if port_text is None:
        return host, None
    try:
        return host, port(port_text)
    except ValueError:
        raise ValueError(ENDPOINT_FIX) from None


def join_endpoint(host: str, port_number: int) -> str:
    """`endpoint`'s inverse: IPv6 hosts in brackets."""
    return f"[{host}]:{port_number}" if ":" in host else f"{host}:{port_number}"


def nnodes(text: str) -> tuple[int, int]:
    """torchrun's --nnodes: "N" or "MIN:MAX" -> (MIN, MAX)."""
    bounds = text.split(":")
    if len(bounds) <= 2 and all(is_number(b) and int(b) > 0 for b in bounds):
        low, high = int(bounds[0]), int(bounds[-1])
        if low <= high:
            return low, high
    raise ValueError(NNODES_FIX)


def _is_ipv6(text: str) -> bool:
    try:
        return isinstance(ipaddress.ip_address(text), ipaddress.IPv6Address)
    except ValueError:
        return False
