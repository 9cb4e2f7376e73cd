"""Host names, ``host:port`` and host ranges, parsed the way Ansible parses them.

Both inventory formats (INI host lines, YAML ``hosts:`` keys) accept the same
``web[01:20]:2222`` syntax, and host patterns must tell an IPv6 address (one part) from a
``a:b`` union (two parts), so the address grammar lives here, once, for all three readers.
It mirrors ``ansible.parsing.utils.addresses.parse_address`` and
``ansible.inventory.helpers``' range expansion.
"""

from __future__ import annotations

import re
import string
from collections.abc import Iterable

# A [begin:end(:step)] range as Ansible accepts it inside a hostname label.
_ALNUM_RANGE = r"\[(?:[a-z]:[a-z]|[0-9]+:[0-9]+)(?::[0-9]+)?\]"
_NUM_RANGE = r"\[[0-9]+:[0-9]+(?::[0-9]+)?\]"
_HEX_RANGE = re.compile(r"\[[0-9a-f]+:[0-9a-f]+(?::[0-9]+)?\]", re.I)
_LABEL = rf"(?:\w|{_ALNUM_RANGE})(?:[\w-]|{_ALNUM_RANGE})*(?<![_-])"
_HOSTNAME = re.compile(rf"^{_LABEL}(?:\.{_LABEL})*$", re.I)
_IPV4_PART = rf"(?:25[0-5]|2[0-4][0-9]|[01]?[0-9]{{1,2}}|{_NUM_RANGE})"
_IPV4 = re.compile(rf"^(?:{_IPV4_PART}\.){{3}}{_IPV4_PART}$")
_BRACKETED_HOSTPORT = re.compile(r"^\[(.+)\]:([0-9]+)$")
# host:port where the host part may contain complete [..] range expressions.
_HOSTPORT = re.compile(r"^((?:[^:\[\]]|\[[^\]]*\])*):([0-9]+)$")
_DIGITS = re.compile(r"^[0-9]+$")  # str.isdigit() would also accept "²"


def _is_ipv6(address: str) -> bool:
    if ":" not in address or "%" in address:
        return False
    import ipaddress  # only for the rare IPv6 host; keeps module import cheap

    try:
        ipaddress.IPv6Address(_HEX_RANGE.sub("0", address))
    except ValueError:
        return False
    return True


def split_address(address: str) -> tuple[str, int | None]:
    """Split ``host[:port]`` the way Ansible's parse_address does; ValueError if not a host."""
    port: int | None = None
    m = _BRACKETED_HOSTPORT.match(address)
    if m:
        address, port = m.group(1), int(m.group(2))
    m = _HOSTPORT.match(address)
    if m:
        address, port = m.group(1), int(m.group(2))
    if not (_IPV4.match(address) or _is_ipv6(address) or _HOSTNAME.match(address)):
        raise ValueError(f"not a valid network hostname: {address}")
    return address, port


def _expand_ranges(name: str) -> list[str]:
    """Expand the first ``[a:b(:step)]`` in ``name`` and recurse for later ones.

    Deliberately stricter than Ansible in one place: a range whose begin is after its end
    is an error here, where Ansible silently produces no hosts at all.
    """
    start, end_ = name.find("["), name.find("]")
    if end_ < start or "|" in name:
        raise ValueError(f"malformed host range in {name!r}")
    head, body, tail = name[:start], name[start + 1 : end_], name[end_ + 1 :]
    bounds = body.split(":")
    if len(bounds) not in (2, 3):
        raise ValueError(f"host range must be begin:end or begin:end:step, got [{body}]")
    beg, end = bounds[0] or "0", bounds[1]
    if not end:
        raise ValueError(f"host range must specify end value, got [{body}]")
    step_text = bounds[2] if len(bounds) == 3 else "1"
    if not _DIGITS.match(step_text) or int(step_text) < 1:
        raise ValueError(f"host range step must be a positive integer, got [{body}]")
    step = int(step_text)
    width = 0
    if beg[0] == "0" and len(beg) > 1:  # zero padding is kept, so both ends must agree on it
        width = len(beg)
        if len(end) != width:
            raise ValueError(f"host range must specify equal-length begin and end formats, got [{body}]")
    items: Iterable[str]
    letters = string.ascii_letters
    if len(beg) == 1 and len(end) == 1 and beg in letters and end in letters:
        i_beg, i_end = letters.index(beg), letters.index(end)
        if i_beg > i_end:
            raise ValueError(f"host range must have begin <= end, got [{body}]")
        items = letters[i_beg : i_end + 1 : step]
    elif _DIGITS.match(beg) and _DIGITS.match(end):
        if int(beg) > int(end):
            raise ValueError(f"host range must have begin <= end, got [{body}]")
        items = (str(i).zfill(width) for i in range(int(beg), int(end) + 1, step))
    else:
        raise ValueError(f"host range must be numeric or single letters, got [{body}]")
    out: list[str] = []
    for item in items:
        expanded = f"{head}{item}{tail}"
        out.extend(_expand_ranges(expanded) if "[" in expanded else [expanded])
    return out


def expand_hostpattern(pattern: str) -> tuple[list[str], int | None]:
    """``web[01:03]:2222`` -> (['web01', 'web02', 'web03'], 2222)."""
    try:
        name, port = split_address(pattern)
    except ValueError:
        # Ansible keeps going with the raw text: odd names are allowed, only ranges matter.
        name, port = pattern, None
    return (_expand_ranges(name) if "[" in name else [name]), port
