"""A relayed fetch against a direct one in the same run: a verified fetch of one blob
(256 MiB by default, I6P_BENCH_RELAY_BYTES) over ::1, first directly from the provider, then
through a relay node (the inner QUIC connection end to end over a circuit), as a ratio
(the issue's target: at least 0.5x), and the relay's CPU seconds per GB relayed.

The relay runs in a process of its own (relay_peer.py), so its CPU time is its alone; the
provider and the fetcher share this process. Each phase uses fresh nodes, so the relayed
fetch cannot ride on the direct phase's session.

Run: .venv/bin/python -m pytest benches/bench_relay.py -s -q
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from i6p import Identity, Node, PeerId
from i6p.bench import scratch_dir

from .conftest import summary

RELAY = str(Path(__file__).with_name("relay_peer.py"))
ROUNDS = int(os.environ.get("I6P_BENCH_ROUNDS", "3"))
SIZE = int(os.environ.get("I6P_BENCH_RELAY_BYTES", str(256 << 20)))
MiB = 1 << 20


def _fill(path: Path, size: int) -> None:
    with path.open("wb") as f:
        for _ in range(size // MiB):
            f.write(os.urandom(MiB))
        f.write(os.urandom(size % MiB))


async def _ask(relay: asyncio.subprocess.Process) -> dict[str, Any]:
    assert relay.stdin is not None and relay.stdout is not None
    relay.stdin.write(b"?\n")
    await relay.stdin.drain()
    line = await asyncio.wait_for(relay.stdout.readline(), 60)
    answer: dict[str, Any] = json.loads(line)
    return answer


async def _direct(src: Path, dest: Path) -> float:
    a = await Node.bind(Identity.generate(), "[::1]:0")
    b = await Node.bind(Identity.generate(), "[::1]:0")
    try:
        blob = await b.add_path(src)
        start = time.perf_counter()
        await a.fetch(b.ticket(blob), dest, overwrite=True)
        return time.perf_counter() - start
    finally:
        await asyncio.gather(a.close(), b.close())


async def _relayed(
    src: Path, dest: Path, relay: asyncio.subprocess.Process, info: dict[str, Any]
) -> tuple[float, float, int]:
    # The relayed session must stay relayed (on ::1 an upgrade always finds a direct path).
    a = await Node.bind(Identity.generate(), "[::1]:0", upgrade=False)
    b = await Node.bind(Identity.generate(), "[::1]:0")
    try:
        r = PeerId.parse(info["peer_id"])
        a_r = await a.connect(r, info["addr"])
        b_r = await b.connect(r, info["addr"])
        ab, ba = await asyncio.gather(a.connect_relayed(b.peer_id, a_r), b.accept())
        assert ab.route == ba.route == "relayed"
        blob = await b.add_path(src)
        before = await _ask(relay)
        start = time.perf_counter()
        await a.fetch(b.ticket(blob), dest, overwrite=True, reconnects=0)
        seconds = time.perf_counter() - start
        after = await _ask(relay)
        copied = after["bytes"] - before["bytes"]
        assert copied >= SIZE, "the fetch did not go through the relay"
        del b_r
        return seconds, after["cpu_s"] - before["cpu_s"], copied
    finally:
        await asyncio.gather(a.close(), b.close())


async def _rounds() -> dict[str, list[float]]:
    r: dict[str, list[float]] = {"direct": [], "relayed": [], "ratio": [], "relay_cpu_s_per_gb": []}
    relay = await asyncio.create_subprocess_exec(
        sys.executable, RELAY, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE
    )
    assert relay.stdout is not None and relay.stdin is not None
    try:
        info = json.loads(await asyncio.wait_for(relay.stdout.readline(), 60))
        with tempfile.TemporaryDirectory(dir=scratch_dir()) as tmp:
            src, dest = Path(tmp) / "src", Path(tmp) / "dest"
            _fill(src, SIZE)
            for _ in range(ROUNDS):
                direct = SIZE / await _direct(src, dest)
                seconds, cpu, copied = await _relayed(src, dest, relay, info)
                relayed = SIZE / seconds
                r["direct"].append(direct)
                r["relayed"].append(relayed)
                r["ratio"].append(relayed / direct)
                r["relay_cpu_s_per_gb"].append(cpu / (copied / 1e9))
    finally:
        relay.stdin.close()
        try:
            await asyncio.wait_for(relay.wait(), 10)
        except TimeoutError:
            relay.kill()
            await relay.wait()
    return r


def test_relayed_fetch_vs_direct(benchmark: Any) -> None:
    result: list[dict[str, list[float]]] = []
    benchmark.pedantic(lambda: result.append(asyncio.run(_rounds())), rounds=1)
    r = result[0]
    benchmark.extra_info.update(bytes=SIZE, **{k: summary(v) for k, v in r.items()})
    med = {k: statistics.median(v) for k, v in r.items()}
    print(
        f"\n{SIZE >> 20} MiB verified fetch over ::1, {ROUNDS} rounds, medians:\n"
        f"  direct   {med['direct'] / MiB:.0f} MiB/s\n"
        f"  relayed  {med['relayed'] / MiB:.0f} MiB/s = {med['ratio']:.2f}x direct\n"
        f"  relay CPU {med['relay_cpu_s_per_gb']:.2f} s/GB relayed"
    )
