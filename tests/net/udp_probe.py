"""Plain UDP for proving the lab's middleboxes (no i6p): a reflector that answers each
datagram with the address it came from, and a probe socket. Used inside lab agents::

    from tests.net import udp_probe
    await udp_probe.reflector(3478)                  # on c: runs until the agent exits
    probe = udp_probe.Probe()                        # on a: dual-stack, ephemeral port
    await probe.observe("203.0.113.3", 3478)         # -> "203.0.113.11:40000"

Sockets are dual-stack IPv6 (as i6p's are): IPv4 addresses are used and reported in their
plain dotted form, never as ``::ffff:`` mapped addresses.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import socket

_servers: list[asyncio.DatagramTransport] = []


def plain(host: str) -> str:
    """``::ffff:1.2.3.4`` -> ``1.2.3.4``; anything else as given."""
    with contextlib.suppress(ValueError):
        mapped = ipaddress.ip_address(host)
        if isinstance(mapped, ipaddress.IPv6Address) and mapped.ipv4_mapped:
            return str(mapped.ipv4_mapped)
    return host


def on_socket(host: str) -> str:
    """The form of ``host`` a dual-stack IPv6 socket sends to."""
    return f"::ffff:{host}" if ipaddress.ip_address(host).version == 4 else host


def endpoint(host: str, port: int) -> str:
    host = plain(host)
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def dual_stack_socket(port: int = 0) -> socket.socket:
    sock = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    sock.bind(("::", port))
    sock.setblocking(False)
    return sock


class _Reflect(asyncio.DatagramProtocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport: asyncio.DatagramTransport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.transport.sendto(json.dumps({"seen": endpoint(addr[0], addr[1])}).encode(), addr)


async def reflector(port: int) -> None:
    """Answers every datagram to ``port`` with ``{"seen": "host:port"}``, its source."""
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(_Reflect, sock=dual_stack_socket(port))
    _servers.append(transport)


class Probe:
    """One UDP socket: what it sends, and what reaches it."""

    def __init__(self, port: int = 0) -> None:
        self.sock = dual_stack_socket(port)
        self.port: int = self.sock.getsockname()[1]

    def send(self, host: str, port: int, payload: bytes = b"probe") -> None:
        self.sock.sendto(payload, (on_socket(host), port))

    async def receive(self, seconds: float, first: bool = False) -> list[tuple[str, bytes]]:
        """Every datagram that arrives within ``seconds`` (with ``first``: until one does):
        (sender endpoint, payload)."""
        loop = asyncio.get_running_loop()
        got: list[tuple[str, bytes]] = []
        deadline = loop.time() + seconds
        while (left := deadline - loop.time()) > 0:
            try:
                data, addr = await asyncio.wait_for(loop.sock_recvfrom(self.sock, 2048), left)
            except TimeoutError:
                break
            got.append((endpoint(addr[0], addr[1]), data))
            if first:
                break
        return got

    async def observe(self, host: str, port: int, seconds: float = 2.0) -> str | None:
        """This socket's address as the reflector at ``host:port`` sees it (None: no
        answer). Sent three times, 0.2 s apart, so a lost datagram does not decide it."""
        for _ in range(3):
            self.send(host, port, b"observe")
            for sender, data in await self.receive(seconds / 3, first=True):
                if sender == endpoint(host, port):
                    seen: str = json.loads(data)["seen"]
                    return seen
        return None

    async def punch(self, host: str, port: int, count: int = 10, gap: float = 0.05) -> int:
        """Sends ``count`` datagrams to ``host:port``, ``gap`` seconds apart (a hole punch);
        returns how many the OS took (none when it has no route to that family)."""
        sent = 0
        for i in range(count):
            try:
                self.send(host, port, f"punch {i}".encode())
                sent += 1
            except OSError:
                pass
            await asyncio.sleep(gap)
        return sent

    def close(self) -> None:
        self.sock.close()


def split(endpoint_text: str) -> tuple[str, int]:
    """``"[2001:db8::1]:5"`` or ``"1.2.3.4:5"`` -> (host, port)."""
    host, _, port = endpoint_text.rpartition(":")
    return host.strip("[]"), int(port)
