"""One end of a benchmark transfer in a process of its own, so that its peak RSS and CPU time
are its own. ``python benches/peer.py provide FILE`` prints a ticket line, serves until its
stdin closes, then prints its figures; ``python benches/peer.py fetch TICKET DEST`` fetches
once and prints its figures; ``python benches/peer.py floor DIR SIZE`` prints the CPU-seconds
per GB of hashing SIZE bytes, writing them into a new file in DIR and reading them back.
Figures are one JSON line: cpu_s (process CPU during the
transfer), peak_rss (bytes), and for fetch seconds and hash. I6P_BENCH_MAX_UDP_PAYLOAD sets
both nodes' ``max_udp_payload`` (unset: "auto", the host's bound)."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from pathlib import Path

from i6p import Identity, Node
from i6p._core import testing

MiB = 1 << 20
_PAYLOAD = os.environ.get("I6P_BENCH_MAX_UDP_PAYLOAD")
MAX_UDP_PAYLOAD: int | str = int(_PAYLOAD) if _PAYLOAD else "auto"


def _peak_rss() -> int:
    """VmHWM: ru_maxrss would start from the peak of the process this one was forked from."""
    with open("/proc/self/status") as status:
        line = next(line for line in status if line.startswith("VmHWM:"))
    return int(line.split()[1]) * 1024


async def provide(path: str) -> None:
    async with await Node.bind(
        Identity.generate(), "[::1]:0", max_udp_payload=MAX_UDP_PAYLOAD
    ) as node:
        blob = await node.add_path(path)
        print(json.dumps({"ticket": str(node.ticket(blob))}), flush=True)
        cpu = time.process_time()  # hashing the file is not part of serving it
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, sys.stdin.read)
        cpu = time.process_time() - cpu
    print(json.dumps({"cpu_s": cpu, "peak_rss": _peak_rss()}), flush=True)


async def fetch(ticket: str, dest: str) -> None:
    async with await Node.bind(Identity.generate(), max_udp_payload=MAX_UDP_PAYLOAD) as node:
        cpu = time.process_time()
        result = await node.fetch(ticket, dest, overwrite=True)
        cpu = time.process_time() - cpu
    figures = {"cpu_s": cpu, "peak_rss": _peak_rss(), "seconds": result.duration_s}
    print(json.dumps({**figures, "hash": result.hash}), flush=True)


def _cpu() -> float:
    t = os.times()
    return t.user + t.system


def floor(tmp: Path, size: int) -> None:
    """BLAKE3 over the data on one thread (the receiver's disk stage is one thread), writing
    it into a new file (pages allocated as the receiver's are) and reading it back (the
    provider), each in CPU-seconds per GB."""
    gb = size / 1e9
    hashed = testing.bench_hash(size, 1)["bare_hash"][0] / gb
    block = memoryview(os.urandom(MiB))
    path = tmp / f"floor-{os.getpid()}"
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        start = _cpu()
        for offset in range(0, size, MiB):
            os.pwrite(fd, block[: min(MiB, size - offset)], offset)
        written = (_cpu() - start) / gb
        buf = bytearray(MiB)
        start = _cpu()
        for offset in range(0, size, MiB):
            os.preadv(fd, [buf], offset)
        read = (_cpu() - start) / gb
    finally:
        os.close(fd)
        path.unlink()
    print(json.dumps({"hash": hashed, "write": written, "read": read}), flush=True)


if __name__ == "__main__":
    if sys.argv[1] == "floor":
        floor(Path(sys.argv[2]), int(sys.argv[3]))
    elif sys.argv[1] == "provide":
        asyncio.run(provide(sys.argv[2]))
    else:
        asyncio.run(fetch(sys.argv[2], sys.argv[3]))
