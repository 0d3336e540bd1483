"""Turning user-supplied addresses into the literal form the engine parses.

The engine takes ``[v6]:port``, ``[v6%scope]:port`` with a numeric scope, and ``v4:port``.
Here interface names in scopes become numbers and host names are resolved (IPv6 first).
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket

from .errors import InvalidAddress

__all__ = ["Address", "resolve"]

Address = str | tuple[str, int]


def _split(addr: Address) -> tuple[str, int]:
    if isinstance(addr, tuple):
        return addr[0].strip("[]"), int(addr[1])
    text = addr.strip()
    if text.startswith("["):
        host, sep, port = text[1:].partition("]:")
        if not sep:
            raise InvalidAddress(f"{addr!r}: expected [host]:port")
    else:
        host, sep, port = text.rpartition(":")
        if not sep or ":" in host:
            raise InvalidAddress(f"{addr!r}: expected host:port, or [ipv6]:port")
    try:
        number = int(port)
    except ValueError:
        raise InvalidAddress(f"{addr!r}: port {port!r} is not a number") from None
    if not 0 <= number <= 65535:
        raise InvalidAddress(f"{addr!r}: port {number} out of range")
    return host, number


def _literal(host: str, port: int) -> str | None:
    ip_text, _, scope = host.partition("%")
    try:
        ip = ipaddress.ip_address(ip_text)
    except ValueError:
        return None
    if ip.version == 4:
        return f"{ip}:{port}"
    if scope and not scope.isdigit():
        try:
            scope = str(socket.if_nametoindex(scope))
        except OSError:
            raise InvalidAddress(f"unknown network interface {scope!r}") from None
    return f"[{ip}%{scope}]:{port}" if scope else f"[{ip}]:{port}"


async def resolve(addr: Address) -> str:
    """The engine form of ``addr``, resolving a host name if needed (IPv6 preferred)."""
    host, port = _split(addr)
    literal = _literal(host, port)
    if literal is not None:
        return literal
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_DGRAM)
    except socket.gaierror as e:
        raise InvalidAddress(f"cannot resolve {host!r}: {e.strerror}") from None
    infos.sort(key=lambda info: info[0] != socket.AF_INET6)
    for _family, _type, _proto, _name, sockaddr in infos:
        found = _literal(str(sockaddr[0]), port)
        if found is not None:
            return found
    raise InvalidAddress(f"no usable address for {host!r}")
