"""TCP over I6P: ``expose`` makes a local TCP service reachable by peers as a named service;
``forward`` listens on a local TCP port and carries each TCP connection over one stream of
the one session to the exposing peer (no handshake per connection).

The TCP sockets are the engine's and the bytes are copied there (``Stream.splice_tcp``), not
in Python. Both directions are copied with backpressure (a side that stops reading stops the
other's writer); a half-close (EOF) is carried as the end of that direction only, and a reset
on one side (TCP RST, a stream reset, a lost session) resets the other, so the far
application sees ``ConnectionResetError`` rather than a clean end. ``i6p expose`` and
``i6p forward`` are the command line for them. ``splice`` joins any two asyncio-style
(reader, writer) pairs the same way, in Python.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import socket
import stat
import struct
import sys
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from typing import Any

from ._addr import Address
from ._core import TcpConnection, TcpListener
from .errors import I6PError
from .identity import PeerId, PublicKey
from .node import Node
from .rendezvous import RendezvousLink
from .session import Session
from .streams import Server, _session_to, open_connection, start_server
from .transfer import Contact

__all__ = ["Forwarding", "expose", "forward", "pipe", "splice"]

_CHUNK = 1 << 16


async def _pipe(reader: Any, writer: Any) -> None:
    """Copies ``reader`` to ``writer`` until the end, then ends ``writer``'s direction."""
    while data := await reader.read(_CHUNK):
        writer.write(data)
        await writer.drain()
    if writer.can_write_eof():
        writer.write_eof()


def _abort(writer: Any) -> None:
    """Resets a connection: a TCP one with RST (a zero linger first: a plain abort sends FIN
    when nothing is left unread), an I6P stream with RESET_STREAM and STOP_SENDING."""
    with contextlib.suppress(Exception):
        sock = writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        writer.transport.abort()


async def splice(a: tuple[Any, Any], b: tuple[Any, Any]) -> None:
    """Joins two (reader, writer) pairs, asyncio's or i6p's, both ways, until both ends have
    ended; an error on either side aborts both (a reset is carried as a reset)."""
    (a_reader, a_writer), (b_reader, b_writer) = a, b
    pipes = [
        asyncio.ensure_future(_pipe(a_reader, b_writer)),
        asyncio.ensure_future(_pipe(b_reader, a_writer)),
    ]
    try:
        await asyncio.gather(*pipes)
    except Exception:  # anything that breaks the tunnel resets both ends
        for pipe in pipes:
            pipe.cancel()
        _abort(a_writer)
        _abort(b_writer)
        return
    for writer in (a_writer, b_writer):
        writer.close()
        with contextlib.suppress(ConnectionError, OSError, I6PError):
            await writer.wait_closed()


async def _carry(tcp: TcpConnection, writer: Any) -> None:
    """Carries ``tcp`` over the stream of an i6p ``writer`` until both directions ended; a
    failure has reset both by then, so only the outcome is dropped."""
    with contextlib.suppress(I6PError, OSError):
        await writer.get_extra_info("stream").splice_tcp(tcp)


async def expose(
    node: Node,
    port: int,
    service: str = "tcp",
    *,
    host: str = "localhost",
    allow: Iterable[PeerId | str] | None = None,
    max_connections: int | None = 1024,
) -> Server:
    """Serves ``service`` on ``node`` by connecting each incoming stream to ``host:port``
    over TCP (each address ``host`` names in turn). A TCP connect that fails resets the
    stream. At most ``max_connections`` TCP connections at once (``None``: the node's limits
    only); past it peers are refused as busy, so peers cannot take all the service's (or this
    process's) sockets."""

    async def handler(reader: Any, writer: Any) -> None:
        try:
            tcp = await TcpConnection.connect(host, port)
        except OSError:
            _abort(writer)
            return
        await _carry(tcp, writer)

    return await start_server(handler, node, service, allow=allow, max_connections=max_connections)


class Forwarding:
    """A local TCP port carried to a peer's service (what ``forward`` returns), as asyncio's
    ``Server``: ``async with``, ``serve_forever``, ``close``, ``wait_closed``; ``port`` and
    ``addr`` say where it listens. Closing stops taking connections; carried ones go on."""

    def __init__(self, listener: TcpListener, carry: Callable[[TcpConnection], Any]) -> None:
        self._listener = listener
        self._closing = False
        self._connections: set[asyncio.Task[None]] = set()  # held: asyncio's refs are weak
        self._task = asyncio.ensure_future(self._accept(carry))

    @property
    def port(self) -> int:
        return self._listener.port

    @property
    def addr(self) -> str:
        return self._listener.addr

    async def _accept(self, carry: Callable[[TcpConnection], Any]) -> None:
        while not self._closing:
            try:
                tcp = await self._listener.accept()
            except OSError:
                if self._closing:
                    return
                await asyncio.sleep(0.1)  # out of descriptors, say: try again, don't spin
                continue
            task = asyncio.ensure_future(carry(tcp))
            self._connections.add(task)
            task.add_done_callback(self._connections.discard)

    def is_serving(self) -> bool:
        return not self._closing

    def close(self) -> None:
        self._closing = True
        self._listener.close()

    async def wait_closed(self) -> None:
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.shield(self._task)

    async def serve_forever(self) -> None:
        """Serves until cancelled or closed; closes on the way out."""
        try:
            await asyncio.shield(self._task)
        finally:
            self.close()

    async def __aenter__(self) -> Forwarding:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()
        await self.wait_closed()

    def __repr__(self) -> str:
        return f"Forwarding(addr={self.addr})"


async def forward(
    node: Node,
    peer: PeerId | PublicKey | str,
    local_port: int,
    service: str = "tcp",
    *,
    addrs: Address | Sequence[Address] | None = None,
    via: Session | PeerId | str | None = None,
    host: str = "::1",
) -> Forwarding:
    """Listens on ``host:local_port`` (0: any free port; ``.port`` tells) and carries each
    TCP connection to ``service`` on ``peer``, over one stream each of the one session to
    it (dialed as ``open_connection`` dials, ``via`` a coordinator). A connection the peer
    refuses (or cannot be reached for) is reset."""

    async def carry(tcp: TcpConnection) -> None:
        try:
            _, writer = await open_connection(node, peer, service, addrs, via=via)
        except (I6PError, OSError):
            tcp.reset()
            return
        await _carry(tcp, writer)

    return Forwarding(await TcpListener.bind(host, local_port), carry)


async def pipe(
    node: Node,
    peer: PeerId | PublicKey | str,
    service: str = "tcp",
    *,
    addrs: Address | Sequence[Address] | None = None,
    via: Session | PeerId | str | None = None,
    stdin: Any = None,
    stdout: Any = None,
) -> None:
    """Carries ``stdin`` (default: this process's) to ``service`` on ``peer`` and what the
    service sends to ``stdout``, until both directions ended: the shape of ssh's
    ``ProxyCommand``. Pipes, sockets and terminals are watched by asyncio; regular files
    (``< input``, ``> output``) are read and written on a worker thread."""
    stdin = stdin or sys.stdin.buffer
    stdout = stdout or sys.stdout.buffer
    loop = asyncio.get_running_loop()
    reader: Any
    writer: Any
    if _is_file(stdin):
        reader = _FileReader(stdin.fileno())
    else:
        reader = asyncio.StreamReader()
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), stdin)
    if _is_file(stdout):
        writer = _FileWriter(stdout.fileno())
    else:
        # A reader's protocol for the writing end too: it has the flow control and the close
        # waiter a StreamWriter needs (nothing is read through it).
        transport, protocol = await loop.connect_write_pipe(
            lambda: asyncio.StreamReaderProtocol(asyncio.StreamReader()), stdout
        )
        writer = asyncio.StreamWriter(transport, protocol, None, loop)
    remote = await open_connection(node, peer, service, addrs, via=via)
    await splice((reader, writer), remote)


def _is_file(f: Any) -> bool:
    return stat.S_ISREG(os.fstat(f.fileno()).st_mode)


class _FileReader:
    """A regular file as ``splice`` reads it (epoll cannot watch one)."""

    def __init__(self, fd: int) -> None:
        self._fd = fd

    async def read(self, n: int) -> bytes:
        return await asyncio.to_thread(os.read, self._fd, n)


class _FileWriter:
    """A regular file as ``splice`` writes it: ``drain`` writes on a worker thread."""

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._pending: list[bytes] = []
        self.transport = self  # abort() is all splice asks of a transport

    def write(self, data: bytes) -> None:
        self._pending.append(data)

    async def drain(self) -> None:
        data, self._pending = b"".join(self._pending), []
        view = memoryview(data)
        while view:
            view = view[await asyncio.to_thread(os.write, self._fd, view) :]

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        """The file ends where the last write did; nothing to send."""

    def close(self) -> None:
        pass

    async def wait_closed(self) -> None:
        await self.drain()

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return default

    def abort(self) -> None:
        self._pending.clear()


# -- command line ---------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def _cli_node(args: argparse.Namespace, links: Sequence[Contact]) -> AsyncIterator[Node]:
    """The command's node, holding a session to each rendezvous node in ``links`` (kept
    open, reconnected), so peers behind firewalls and NATs can be introduced."""
    from .cli import _discovery, _identity, _state_dir

    identity = _identity(args.identity)
    async with (
        await Node.bind(
            identity, args.addr, state_dir=_state_dir(args.identity), **_discovery(args)
        ) as node,
        contextlib.AsyncExitStack() as stack,
    ):
        for contact in links:
            await stack.enter_async_context(RendezvousLink(node, contact))
        yield node


async def _expose_cli(args: argparse.Namespace) -> int:
    links = [Contact.parse(c) for c in args.rendezvous or []]
    async with _cli_node(args, links) as node:
        server = await expose(
            node,
            args.port,
            args.service,
            host=args.host,
            allow=args.allow,
            max_connections=args.max_connections,
        )
        contact = str(Contact(node.peer_id, node.local_addrs[:16], via=links[:4]))
        if args.json:
            info = {"contact": contact, "service": args.service, "via": [str(c) for c in links]}
            print(json.dumps(info), flush=True)
        else:
            print(f"exposing {args.host}:{args.port} as service {args.service!r}", file=sys.stderr)
            print(f"i6p forward {contact} LOCAL_PORT --service {args.service}", flush=True)
        await server.serve_forever()
    return 0


def _peer_and_via(args: argparse.Namespace) -> tuple[Contact, Contact | None]:
    """The peer's contact, and the rendezvous node to dial it through: ``--via``, else the
    first its contact names."""
    contact = Contact.parse(args.contact)
    if args.via:
        return contact, Contact.parse(args.via)
    return contact, next(iter(contact.via), None)


async def _forward_cli(args: argparse.Namespace) -> int:
    contact, via = _peer_and_via(args)
    async with _cli_node(args, [via] if via else []) as node:
        server = await forward(
            node,
            contact.peer_id,
            args.port,
            args.service,
            addrs=contact.addrs,
            via=via.peer_id if via else None,
            host=args.listen,
        )
        port = server.port
        # Dialed now, so the user learns at once whether (and how) the peer is reached; the
        # connections share this session. A peer not reached yet is dialed again by each.
        try:
            dial_via = via.peer_id if via else None
            session = await _session_to(node, contact.peer_id, contact.addrs, dial_via)
            route: str | None = session.route
        except I6PError as e:
            route = None
            print(f"peer not reached yet ({e}); each connection tries again", file=sys.stderr)
        if args.json:
            listen = f"[{args.listen}]:{port}"
            print(json.dumps({"listen": listen, "port": port, "route": route}), flush=True)
        else:
            how = f" ({route})" if route else ""
            print(f"forwarding {args.listen} port {port} to {args.service!r}{how}", flush=True)
        async with server:
            await server.serve_forever()
    return 0


async def _pipe_cli(args: argparse.Namespace) -> int:
    contact, via = _peer_and_via(args)
    async with _cli_node(args, [via] if via else []) as node:
        await pipe(
            node,
            contact.peer_id,
            args.service,
            addrs=contact.addrs,
            via=via.peer_id if via else None,
        )
    return 0


def _to_a_peer(parser: argparse.ArgumentParser) -> None:
    """The options of a command that reaches an exposed service: its contact, a rendezvous."""
    parser.add_argument("contact", help="the contact `i6p expose` printed")
    parser.add_argument(
        "--via",
        metavar="CONTACT",
        help="a rendezvous node the exposing peer keeps a session to: dial through it "
        "(default: the first its contact names)",
    )


def add_commands(sub: Any, *extras: Callable[[argparse.ArgumentParser], None]) -> None:
    """``i6p expose``, ``i6p forward`` and ``i6p pipe``; ``extras`` add the shared options
    (identity, discovery)."""
    p = sub.add_parser("expose", help="make a local TCP port reachable by peers, as a service")
    p.add_argument("port", type=int, help="the local TCP port")
    p.add_argument("--host", default="localhost", help="where the TCP service listens")
    p.add_argument("--allow", nargs="+", metavar="PEERID", help="only these peers")
    p.add_argument(
        "--max-connections",
        type=int,
        default=1024,
        metavar="N",
        help="TCP connections at once, from all peers (default 1024); more are refused",
    )
    p.add_argument(
        "--rendezvous",
        action="append",
        metavar="CONTACT",
        help="keep a session to this rendezvous node (`i6p rendezvous`), through which peers "
        "behind firewalls and NATs are introduced (repeatable)",
    )
    p.add_argument("--json", action="store_true", help="print the contact as JSON")
    p.set_defaults(func=lambda a: asyncio.run(_expose_cli(a)))
    q = sub.add_parser("forward", help="carry a local TCP port to a peer's exposed service")
    _to_a_peer(q)
    q.add_argument("port", type=int, help="the local TCP port to listen on (0: any)")
    q.add_argument("--listen", default="::1", help="the local address to listen on")
    q.add_argument("--json", action="store_true", help="print the local port as JSON")
    q.set_defaults(func=lambda a: asyncio.run(_forward_cli(a)))
    r = sub.add_parser(
        "pipe", help="carry stdin and stdout to a peer's exposed service (an ssh ProxyCommand)"
    )
    _to_a_peer(r)
    r.set_defaults(func=lambda a: asyncio.run(_pipe_cli(a)))
    for parser in (p, q, r):
        parser.add_argument("--service", default="tcp", help="the service name (default tcp)")
        parser.add_argument("--addr", default="[::]:0", help="the node's UDP address")
        for extra in extras:
            extra(parser)
