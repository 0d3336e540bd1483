"""One end of the mDNS tests in a namespace, driven over stdin/stdout (JSON lines).

``provide SIZE SRC MDNS``: binds a node (mDNS on if MDNS is "1") serving SIZE seeded random
bytes, prints {"key", "hash", "size"}, accepts sessions until ``quit`` or end of input.
``fetch KEY HASH SIZE DEST``: binds a node with mDNS, connects by KEY alone (no address) and
prints {"seconds", "addr", "book", "mdns"}; then forgets the address book's entry and fetches
the blob through a key ticket (no address: found by mDNS again) and prints {"hash", "size",
"book"}. Every wait is bounded.
"""

from __future__ import annotations

import asyncio
import json
import random
import sys
import time
from pathlib import Path

from i6p import Identity, Node, PublicKey, Ticket


def say(obj: object) -> None:
    print(json.dumps(obj), flush=True)


async def provide(size: int, src: Path, mdns: bool) -> None:
    await asyncio.to_thread(src.write_bytes, random.Random(18).randbytes(size))
    identity = Identity.generate()
    async with await Node.bind(identity, "[::]:0", mdns=mdns) as node:
        blob = await node.add_path(src)
        say({"key": str(identity.key), "hash": blob.hash, "size": blob.size})

        async def accept() -> None:
            while True:
                await node.accept()

        task = asyncio.ensure_future(accept())
        while (await asyncio.to_thread(sys.stdin.readline)).strip() not in ("quit", ""):
            pass
        task.cancel()


async def fetch(key_text: str, blob_hash: str, size: int, dest: str) -> None:
    key = PublicKey.parse(key_text)
    async with await Node.bind(Identity.generate(), "[::]:0", mdns=True) as node:
        start = time.monotonic()
        session = await asyncio.wait_for(node.connect(key), 20)
        seconds = time.monotonic() - start
        found = node.lookup(key)
        say({"seconds": seconds, "addr": session.remote_addr, **found})
        await session.close()
        node.forget_addrs(key)
        ticket = Ticket.by_key(key, blob_hash, size)
        assert ticket.addrs == [] and node.known_addrs(key) == []
        result = await asyncio.wait_for(node.fetch(ticket, dest), 60)
        say({"hash": result.hash, "size": result.size, "book": node.known_addrs(key)})


if __name__ == "__main__":
    if sys.argv[1] == "provide":
        asyncio.run(provide(int(sys.argv[2]), Path(sys.argv[3]), sys.argv[4] == "1"))
    else:
        asyncio.run(fetch(sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5]))
