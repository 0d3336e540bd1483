"""One node of the relay namespace test, run inside its namespace (test_relay_netns.py).

Roles: ``relay`` (binds with relay=True, holds every session), ``target`` (connects to the
relay, serves a blob, holds every session), ``fetcher`` (connects to the relay, tries the
target directly, then through the relay, fetches the blob). Each prints JSON lines; the
relay and the target run until stdin closes.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import sys
import tempfile
import time
from pathlib import Path

from i6p import Identity, Node, PeerId, Ticket
from i6p.errors import I6PError


def say(**fields: object) -> None:
    print(json.dumps(fields), flush=True)


async def until_stdin_closes() -> None:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while await reader.readline():
        pass


async def hold_sessions(node: Node, held: list[object]) -> None:
    async for session in node:
        held.append(session)


async def relay() -> None:
    node = await Node.bind(Identity.generate(), "0.0.0.0:7000", relay=True)
    held: list[object] = []
    task = asyncio.create_task(hold_sessions(node, held))
    say(peer_id=str(node.peer_id))
    await until_stdin_closes()
    task.cancel()
    await node.close()


async def target(relay_id: str, relay_addr: str) -> None:
    node = await Node.bind(Identity.generate(), "0.0.0.0:0")
    held: list[object] = [await node.connect(PeerId.parse(relay_id), relay_addr)]
    path = Path(tempfile.mkdtemp()) / "blob"
    data = os.urandom(4 << 20)
    path.write_bytes(data)
    blob = await node.add_path(path)
    task = asyncio.create_task(hold_sessions(node, held))
    say(
        peer_id=str(node.peer_id),
        ticket=str(node.ticket(blob)),
        port=node.port,
        sha256=hashlib.sha256(data).hexdigest(),
    )
    await until_stdin_closes()
    task.cancel()
    await node.close()


async def fetcher(relay_id: str, relay_addr: str, ticket_text: str, direct: list[str]) -> None:
    # Measures the relay itself: the session must not move to a direct path meanwhile.
    node = await Node.bind(Identity.generate(), "0.0.0.0:0", handshake_timeout=3.0, upgrade=False)
    to_relay = await node.connect(PeerId.parse(relay_id), relay_addr)
    ticket = Ticket.parse(ticket_text)
    peer = ticket.peer_id
    tried = {}
    for addr in direct:
        try:
            await node.connect(peer, addr)
            tried[addr] = "connected"
        except I6PError as e:
            tried[addr] = type(e).__name__
    start = time.monotonic()
    session = await node.connect_relayed(peer, to_relay)
    dest = Path(tempfile.mkdtemp()) / "got"
    result = await node.fetch(ticket, dest, reconnects=0)
    digest = hashlib.sha256(dest.read_bytes()).hexdigest()
    say(
        direct=tried,
        route=session.route,
        size=result.size,
        sha256=digest,
        seconds=time.monotonic() - start,
    )
    await node.close()


if __name__ == "__main__":
    role, *args = sys.argv[1:]
    if role == "relay":
        asyncio.run(relay())
    elif role == "target":
        asyncio.run(target(*args))
    else:
        asyncio.run(fetcher(args[0], args[1], args[2], args[3:]))
