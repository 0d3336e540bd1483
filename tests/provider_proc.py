"""A provider in a process of its own, so abuse tests can read its memory, file descriptors
and threads from /proc without counting the attackers'.

``python tests/provider_proc.py FILE LIMITS_JSON`` binds on ``[::]:0`` (dual-stack), serves
FILE, prints ``{"ticket", "pid"}``, then answers each line on stdin with one JSON line of
figures (``rss``, ``peak_rss``, ``fds``, ``threads``, ``load``); it exits when stdin closes.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys

from i6p import Identity, Limits, Node


def proc_figures() -> dict[str, int]:
    """Resident and peak memory (bytes), open fds and threads of this process."""
    status = {}
    with open("/proc/self/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            status[key] = value.strip()
    kib = lambda key: int(status[key].split()[0]) * 1024  # noqa: E731
    return {
        "rss": kib("VmRSS"),
        "peak_rss": kib("VmHWM"),
        "fds": len(os.listdir("/proc/self/fd")),
        "threads": int(status["Threads"]),
    }


async def main(path: str, limits: dict[str, float]) -> None:
    node = await Node.bind(
        Identity.generate(),
        "[::]:0",
        limits=Limits(**limits),  # type: ignore[arg-type]
        accept_sessions=False,  # it only serves, as `i6p send` does
    )
    async with node:
        blob = await node.add_path(path)
        print(json.dumps({"ticket": str(node.ticket(blob)), "pid": os.getpid()}), flush=True)
        loop = asyncio.get_running_loop()
        while await loop.run_in_executor(None, sys.stdin.readline):
            load = node.load
            figures = {**proc_figures(), "load": list(load), "served": node.served_bytes(blob)}
            print(json.dumps(figures), flush=True)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], json.loads(sys.argv[2])))
