"""NETWORK_INFO for the machine the connector runs on (hub-protocol.md §5.4.2).

A Hub reports its interfaces once per control channel; the Hub API has no route for them, so
the connector (which runs beside the Hub) reports its own machine's. Linux only (sysfs,
/proc/net/if_inet6 and the SIOCGIFADDR ioctls); anywhere else, or on any failure, the list is
simply shorter: this is informational and must never cost the tunnel.
"""

from __future__ import annotations

import contextlib
import ipaddress
import socket
import struct
from pathlib import Path
from typing import Any

__all__ = ["network_info"]

_SIOCGIFADDR = 0x8915
_SIOCGIFNETMASK = 0x891B
_SYS_NET = Path("/sys/class/net")
_IF_INET6 = Path("/proc/net/if_inet6")


def network_info() -> list[dict[str, Any]]:
    """One entry per interface that has a MAC: first IPv4 and IPv6, subnets in CIDR."""
    try:
        names = sorted(p.name for p in _SYS_NET.iterdir())
    except OSError:
        return []
    v6 = _ipv6_by_interface()
    out: list[dict[str, Any]] = []
    for name in names:
        try:
            mac = (_SYS_NET / name / "address").read_text().strip()
        except OSError:
            continue
        entry: dict[str, Any] = {"iface": name, "ifaceName": name, "mac": mac, "dhcp": False}
        ip4 = _ipv4(name)
        if ip4 is not None:
            entry["ip4"], entry["ip4subnet"] = ip4
        if name in v6:
            entry["ip6"], entry["ip6subnet"] = v6[name]
        out.append(entry)
    return out


def _ipv4(name: str) -> tuple[str, str] | None:
    try:
        import fcntl
    except ImportError:  # not on this platform
        return None
    packed = struct.pack("256s", name.encode()[:15])
    with contextlib.suppress(OSError), socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        addr = socket.inet_ntoa(fcntl.ioctl(s.fileno(), _SIOCGIFADDR, packed)[20:24])
        mask = socket.inet_ntoa(fcntl.ioctl(s.fileno(), _SIOCGIFNETMASK, packed)[20:24])
        prefix = ipaddress.IPv4Network(f"0.0.0.0/{mask}").prefixlen
        return addr, f"{addr}/{prefix}"
    return None


def _ipv6_by_interface() -> dict[str, tuple[str, str]]:
    out: dict[str, tuple[str, str]] = {}
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in _IF_INET6.read_text().splitlines():
            fields = line.split()
            addr = str(ipaddress.IPv6Address(bytes.fromhex(fields[0])))
            name = fields[5]
            out.setdefault(name, (addr, f"{addr}/{int(fields[2], 16)}"))
    return out
