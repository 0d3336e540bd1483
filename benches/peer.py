"""One end of a benchmark transfer in a process of its own, so that its peak RSS and CPU time
are its own. ``python benches/peer.py provide FILE`` prints a ticket line, serves until its
stdin closes, then prints its figures; ``python benches/peer.py fetch TICKET DEST`` fetches
once and prints its figures. Figures are one JSON line: cpu_s (process CPU during the
transfer), peak_rss (bytes), and for fetch seconds and hash."""

from __future__ import annotations

import asyncio
import json
import resource
import sys
import time

from i6p import Identity, Node


def _peak_rss() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


async def provide(path: str) -> None:
    async with await Node.bind(Identity.generate(), "[::1]:0") as node:
        blob = await node.add_path(path)
        print(json.dumps({"ticket": str(node.ticket(blob))}), flush=True)
        cpu = time.process_time()  # hashing the file is not part of serving it
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, sys.stdin.read)
        cpu = time.process_time() - cpu
    print(json.dumps({"cpu_s": cpu, "peak_rss": _peak_rss()}), flush=True)


async def fetch(ticket: str, dest: str) -> None:
    async with await Node.bind(Identity.generate()) as node:
        cpu = time.process_time()
        result = await node.fetch(ticket, dest, overwrite=True)
        cpu = time.process_time() - cpu
    figures = {"cpu_s": cpu, "peak_rss": _peak_rss(), "seconds": result.duration_s}
    print(json.dumps({**figures, "hash": result.hash}), flush=True)


if __name__ == "__main__":
    if sys.argv[1] == "provide":
        asyncio.run(provide(sys.argv[2]))
    else:
        asyncio.run(fetch(sys.argv[2], sys.argv[3]))
