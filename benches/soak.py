"""Soak: cycles of connect / fetch / kill / reconnect against one provider, with its RSS and
open fds sampled; both must stay flat. Not part of any test run.

    .venv/bin/python -m benches.soak [--minutes 30] [--size 8MiB] [--every 60]

Each cycle: a fresh node fetches the blob whole; a second fetch is killed (its task
cancelled) part way and then resumed by a new node; a session is opened and dropped without
closing; one round of slot hogs hits the provider. The provider runs in a process of its own
(tests/provider_proc.py). Prints one JSON line per sample and a summary at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import tempfile
import time
from pathlib import Path

from i6p import Identity, Node

from tests.abuse import Provider, attacking, peer_ip
from tests.test_transfer import write_random


def _size(text: str) -> int:
    units = {"KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30}
    for unit, factor in units.items():
        if text.endswith(unit):
            return int(float(text[: -len(unit)]) * factor)
    return int(text)


async def _cycle(provider: Provider, tmp: Path, n: int) -> None:
    ticket = provider.loopback_ticket()
    async with await Node.bind(Identity.generate(), f"{peer_ip(n % 200)}:0") as node:
        await node.fetch(ticket, tmp / "whole", overwrite=True)
    # Killed part way, then resumed by another node.
    dest = tmp / "killed"
    async with await Node.bind(Identity.generate(), f"{peer_ip(n % 200 + 1)}:0") as node:
        task = asyncio.create_task(node.fetch(ticket, dest, overwrite=True))
        await asyncio.sleep(random.uniform(0.01, 0.2))
        task.cancel()
        try:
            await task
        except (asyncio.CancelledError, Exception):
            pass
    async with await Node.bind(Identity.generate(), f"{peer_ip(n % 200 + 2)}:0") as node:
        await node.fetch(ticket, dest, overwrite=True)
        # A session dropped without closing.
        await node.connect(provider.peer_id, provider.addr)
    async with attacking(provider, ["slot_hogs"], seconds=1.5):
        await asyncio.sleep(1.5)


async def soak(minutes: float, size: int, every: float) -> None:
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        write_random(tmp / "blob", size)
        async with Provider(tmp / "blob", send_timeout=2.0) as provider:
            samples = []
            end = time.monotonic() + minutes * 60
            next_sample, cycles = time.monotonic(), 0
            while time.monotonic() < end:
                if time.monotonic() >= next_sample:
                    f = await provider.figures()
                    sample = {"t": round(minutes * 60 - (end - time.monotonic())), "cycles": cycles}
                    sample.update({k: f[k] for k in ("rss", "fds", "threads")})
                    samples.append(sample)
                    print(json.dumps(sample), flush=True)
                    next_sample += every
                await _cycle(provider, tmp, cycles)
                cycles += 1
            await asyncio.sleep(12)  # idle blocking threads leave after 10 s
            f = await provider.figures()
            last = {"t": round(minutes * 60), "cycles": cycles}
            last.update({k: f[k] for k in ("rss", "fds", "threads")})
            samples.append(last)
            first = samples[0]
            print(json.dumps({"start": first, "end": last, "peak_rss": f["peak_rss"]}), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=30)
    parser.add_argument("--size", type=_size, default=8 << 20)
    parser.add_argument("--every", type=float, default=60, help="seconds between samples")
    args = parser.parse_args()
    asyncio.run(soak(args.minutes, args.size, args.every))


if __name__ == "__main__":
    main()
