"""A running fetch moving from a relayed session to a direct one (issue 16), on ::1.

    .venv/bin/python -m benches.bench_upgrade [--rounds 5] [--size-mib 256]

Each round: A, relay R and B on ::1 (fresh nodes), A relayed to B through R, a fetch of a
blob from B started over the relayed session; once it has verified its first bytes, A asks
for the upgrade (``Node.upgrade``: R introduces the two again and they punch). Printed per
round, then as medians:
- ``punch``: how long the upgrade took (introduction + punch + HELLO), ms;
- ``first``: from the direct session being up to its first 64 KiB received, ms (the fetch's
  next request going there);
- ``drained``: from the direct session being up until the relay has copied all but the last
  64 KiB of what it copies for the fetch (the relayed stream's groups up to the boundary, the
  data already in flight after it; acknowledgements and the close trickle on), ms;
- ``relayed``: the share of the blob's bytes the relay copied;
- ``twice``: bytes the fetch received beyond the blob's size (groups fetched again).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
from pathlib import Path

from i6p import Identity, Node


async def one_round(src: Path, size: int, dest: Path) -> dict[str, float]:
    bind = {"dial_back": False}
    a = await Node.bind(Identity.generate(), "[::1]:0", upgrade=False, **bind)
    b = await Node.bind(Identity.generate(), "[::1]:0", **bind)
    r = await Node.bind(Identity.generate(), "[::1]:0", relay=True, **bind)
    held = []
    try:
        for x in (a, b):
            s, t = await asyncio.gather(x.connect(r.peer_id, f"[::1]:{r.port}"), r.accept())
            held += [s, t]
        ab, ba = await asyncio.gather(a.connect_relayed(b.peer_id, held[0]), b.accept())
        held += [ab, ba]
        blob = await b.add_path(src)
        copied0 = r.relay_stats[1]
        started = asyncio.Event()
        fetch = asyncio.create_task(
            a.fetch(
                b.ticket(blob),
                dest,
                progress=lambda d, _t: d > 0 and started.set(),
                reconnects=0,
                overwrite=True,
            )
        )
        await started.wait()
        t0 = time.perf_counter()
        await a.upgrade(ab)
        up = time.perf_counter()
        base = ab.stats()["bytes_received"]
        first = None
        timeline = [(up, r.relay_stats[1])]
        while not fetch.done():
            await asyncio.sleep(0.002)
            now = time.perf_counter()
            if first is None and ab.stats()["bytes_received"] - base > 64 << 10:
                first = now
            timeline.append((now, r.relay_stats[1]))
        result = await fetch
        copied = timeline[-1][1]
        drained = next(t for t, c in timeline if c >= copied - (64 << 10))
        return {
            "punch": 1000 * (up - t0),
            "first": 1000 * ((first or up) - up),
            "drained": 1000 * (drained - up),
            "relayed": (copied - copied0) / size,
            "twice": float(result.bytes_fetched - size),
        }
    finally:
        held.clear()
        await asyncio.gather(a.close(), b.close(), r.close())


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--size-mib", type=int, default=256)
    args = parser.parse_args()
    size = args.size_mib << 20
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "src.bin"
        src.write_bytes(os.urandom(size))
        rounds = []
        for n in range(args.rounds):
            row = await one_round(src, size, Path(tmp) / "got.bin")
            rounds.append(row)
            print(f"round {n + 1}: " + "  ".join(f"{k} {v:.3g}" for k, v in row.items()))
    medians = {k: statistics.median(r[k] for r in rounds) for k in rounds[0]}
    print("median:  " + "  ".join(f"{k} {v:.3g}" for k, v in medians.items()))


if __name__ == "__main__":
    asyncio.run(main())
