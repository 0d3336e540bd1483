"""One end of the packet-size tests in a namespace, driven line by line over stdin/stdout.

``provide SIZE``: serves SIZE seeded random bytes, prints {"ticket", "hash"}, accepts sessions,
and answers each ``stats`` line with the stats of the one that sent most, and each ``mtu``
line with its sessions' largest MTU once it passes 8,000 (bounded wait), until ``quit``.
``fetch TICKET ADDR DEST``: connects to the ticket's provider at ADDR, waits (bounded) for
its MTU to pass 8,000, reads 4 MiB of the blob (so the provider's discovery runs too) and
prints {"mtu"}, then on ``go`` fetches the blob verified and prints
the result and the session's stats. Every wait is bounded; the process exits on ``quit`` or
end of input.
"""

from __future__ import annotations

import asyncio
import json
import random
import sys
import time
from pathlib import Path

from i6p import Identity, Node, Ticket
from i6p.errors import HandshakeError


def say(obj: object) -> None:
    print(json.dumps(obj), flush=True)


async def line() -> str:
    return (await asyncio.to_thread(sys.stdin.readline)).strip()


async def provide(size: int) -> None:
    src = Path(sys.argv[3])
    await asyncio.to_thread(src.write_bytes, random.Random(7).randbytes(size))
    async with await Node.bind(Identity.generate(), "[::]:0", max_udp_payload="auto") as node:
        blob = await node.add_path(src)
        say({"ticket": str(node.ticket(blob)), "hash": blob.hash, "port": node.port})
        sessions = []

        async def accept() -> None:
            while True:
                sessions.append(await node.accept())

        task = asyncio.ensure_future(accept())
        while (cmd := await line()) not in ("quit", ""):
            if cmd == "stats":
                # The session that carried the fetch (a dial retried leaves an idle one).
                say(max((s.stats() for s in sessions), key=lambda st: st["bytes_sent"]))
            elif cmd == "mtu":
                # Waits (bounded) for this side's own discovery to pass 8,000 as well.
                deadline = time.monotonic() + 10
                while time.monotonic() < deadline:
                    if max((s.stats()["mtu"] for s in sessions), default=0) > 8000:
                        break
                    await asyncio.sleep(0.02)
                say({"mtu": max((s.stats()["mtu"] for s in sessions), default=0)})
        task.cancel()


async def fetch(ticket_text: str, addr: str, dest: str) -> None:
    given = Ticket.parse(ticket_text)
    ticket = Ticket(given.peer_id, [addr], given.hash, given.size)
    async with await Node.bind(Identity.generate(), "[::]:0", max_udp_payload="auto") as node:
        # Right after another test's namespaces are torn down, a first dial through the router
        # has been seen to time out (the kernel dismantles namespaces in the background); a
        # second attempt is part of the procedure, and says so.
        for attempt in (1, 2, 3):
            try:
                session = await node.connect(ticket.peer_id, addr)
                break
            except HandshakeError:
                if attempt == 3:
                    raise
                print(f"dial attempt {attempt} timed out", file=sys.stderr, flush=True)
        deadline = time.monotonic() + 10
        while session.stats()["mtu"] <= 8000 and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.02)
        # A little data from the provider first: its own discovery runs while it sends.
        await asyncio.wait_for(node.read_range(ticket, 0, 4 << 20), 30)
        say({"mtu": session.stats()["mtu"]})
        if await line() != "go":
            return
        result = await asyncio.wait_for(node.fetch(ticket, dest), 90)
        say({"hash": result.hash, "seconds": result.duration_s, "stats": session.stats()})
        await line()


if __name__ == "__main__":
    if sys.argv[1] == "provide":
        asyncio.run(provide(int(sys.argv[2])))
    else:
        asyncio.run(fetch(sys.argv[2], sys.argv[3], sys.argv[4]))
