"""A relay node in a process of its own, so its CPU time is its alone (bench_relay.py).

Prints one JSON line with its PeerId and address, then answers each line on stdin with one
JSON line of its CPU seconds so far (user + system) and the bytes its circuits copied; exits
when stdin closes.
"""

from __future__ import annotations

import asyncio
import json
import resource
import sys

from i6p import Identity, Limits, Node


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


async def main() -> None:
    limits = Limits(relay_circuit_bytes="unlimited", max_relay_circuits_per_peer=16)
    node = await Node.bind(Identity.generate(), "[::1]:0", relay=True, limits=limits)
    print(json.dumps({"peer_id": str(node.peer_id), "addr": node.local_addr}), flush=True)
    held = []

    async def keep() -> None:
        async for session in node:
            held.append(session)

    accepting = asyncio.create_task(keep())
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while await reader.readline():
        print(json.dumps({"cpu_s": _cpu(), "bytes": node.relay_stats[1]}), flush=True)
    accepting.cancel()
    await node.close()


if __name__ == "__main__":
    asyncio.run(main())
