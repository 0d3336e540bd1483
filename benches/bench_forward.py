"""TCP forwarding over I6P (issue 20), as a user runs it: a TCP service, `i6p expose` and
`i6p forward` in processes of their own, and TCP clients in this one, all on ::1.

- Throughput of one connection carrying I6P_BENCH_BYTES (default 1 GiB) to a sink that counts
  what it reads: through the tunnel, straight to the sink over TCP, and over one direct I6P
  stream (`i6p.open_connection` to a sink served with `i6p.start_server` in another process:
  what an application written for I6P gets); the tunnel's CPU (both i6p processes, user +
  system) per GB.
- Latency of a small request (64 bytes, one line) and its answer on a fresh TCP connection
  each time, as curl makes: through the tunnel and straight (p50/p99 of 300).
- 1,000 connections held open at once through the tunnel (one session, a stream each): the
  i6p processes' RSS growth per connection.

Medians of I6P_BENCH_ROUNDS (default 3) for throughput. Run:
    I6P_BENCH_BYTES=$((1<<30)) .venv/bin/python -m pytest benches/bench_forward.py -s
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from .conftest import BENCH_BYTES

ROUNDS = int(os.environ.get("I6P_BENCH_ROUNDS", "3"))
CLI = [sys.executable, "-m", "i6p.cli"]
SERVICE = """
import asyncio
async def handle(reader, writer):
    line = await reader.readline()
    if line.startswith(b"SINK"):
        n = 0
        while chunk := await reader.read(1 << 20):
            n += len(chunk)
        writer.write(n.to_bytes(8, "big"))
    else:
        writer.write(line.upper())
        await reader.read()  # hold the connection until the client ends it
    await writer.drain()
    writer.close()
async def main():
    server = await asyncio.start_server(handle, "::1", 0, backlog=2048)
    print(server.sockets[0].getsockname()[1], flush=True)
    await server.serve_forever()
asyncio.run(main())
"""


# The same sink as an I6P service, for the direct-stream baseline.
I6P_SINK = """
import asyncio, json, i6p
async def handle(reader, writer):
    await reader.readline()
    n = 0
    while chunk := await reader.read(1 << 20):
        n += len(chunk)
    writer.write(n.to_bytes(8, "big"))
    writer.close()
    await writer.wait_closed()
async def main():
    async with await i6p.Node.bind(i6p.Identity.generate(), "[::1]:0") as node:
        server = await i6p.start_server(handle, node, "sink")
        print(json.dumps({"peer": str(node.peer_id), "addr": node.local_addrs[0]}), flush=True)
        await server.serve_forever()
asyncio.run(main())
"""


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


@contextmanager
def tunnel(tmp: Path) -> Iterator[tuple[int, int, list[int]]]:
    """(the service's TCP port, the forward's local port, the two i6p processes' pids)."""
    procs: list[subprocess.Popen[str]] = []
    try:

        def start(args: list[str], home: str) -> Any:
            env = {**os.environ, "I6P_HOME": str(tmp / home), "I6P_MDNS": "0"}
            p = subprocess.Popen(args, stdout=subprocess.PIPE, text=True, env=env)
            procs.append(p)
            assert p.stdout is not None
            return p, p.stdout.readline()

        _, port = start([sys.executable, "-c", SERVICE], "svc")
        exposer, line = start([*CLI, "expose", port.strip(), "--host", "::1", "--json"], "a")
        contact = json.loads(line)["contact"]
        forwarder, line = start([*CLI, "forward", contact, "0", "--json"], "b")
        yield int(port), json.loads(line)["port"], [exposer.pid, forwarder.pid]
    finally:
        for p in procs:
            p.kill()
            p.wait()


@contextmanager
def i6p_sink() -> Iterator[dict[str, str]]:
    """The I6P sink in a process of its own: its peer id and address."""
    sink = subprocess.Popen([sys.executable, "-c", I6P_SINK], stdout=subprocess.PIPE, text=True)
    try:
        assert sink.stdout is not None
        yield json.loads(sink.stdout.readline())
    finally:
        sink.kill()
        sink.wait()


async def send(port: int, size: int) -> float:
    """Seconds to carry `size` bytes to the sink and hear its count back."""
    reader, writer = await asyncio.open_connection("::1", port)
    return await carry(reader, writer, size)


async def send_i6p(sink: dict[str, str], size: int) -> float:
    """`send` over one direct I6P stream to the I6P sink (the session's dial not counted)."""
    import i6p

    async with await i6p.Node.bind(i6p.Identity.generate(), "[::1]:0") as node:
        await node.connect(i6p.PeerId.parse(sink["peer"]), sink["addr"])
        reader, writer = await i6p.open_connection(node, sink["peer"], "sink", sink["addr"])
        return await carry(reader, writer, size)


async def carry(reader: Any, writer: Any, size: int) -> float:
    block = os.urandom(1 << 20)
    start = time.perf_counter()
    writer.write(b"SINK\n")
    left = size
    while left > 0:
        writer.write(block[: min(left, len(block))])
        left -= len(block)
        await writer.drain()
    writer.write_eof()
    assert int.from_bytes(await reader.readexactly(8), "big") == size
    seconds = time.perf_counter() - start
    writer.close()
    return seconds


async def request(port: int) -> float:
    start = time.perf_counter()
    reader, writer = await asyncio.open_connection("::1", port)
    writer.write(b"x" * 63 + b"\n")
    assert len(await reader.readline()) == 64
    seconds = time.perf_counter() - start
    writer.close()
    return seconds


async def hold(port: int, n: int) -> list[asyncio.StreamWriter]:
    writers = []
    for i in range(n):
        reader, writer = await asyncio.open_connection("::1", port)
        writer.write(f"{i}\n".encode())
        line = await asyncio.wait_for(reader.readline(), 10)
        assert line.strip() == str(i).encode(), (i, line)
        writers.append(writer)
    return writers


def pct(values: list[float], p: int) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, len(values) * p // 100)]


def test_forwarded_tcp(tmp_path: Path) -> None:
    with tunnel(tmp_path) as (direct, forwarded, pids), i6p_sink() as sink_at:
        tcp, tun, cpu, i6p_stream = [], [], [], []
        for _ in range(ROUNDS):
            tcp.append(BENCH_BYTES / asyncio.run(send(direct, BENCH_BYTES)))
            i6p_stream.append(BENCH_BYTES / asyncio.run(send_i6p(sink_at, BENCH_BYTES)))
            before = sum(cpu_seconds(p) for p in pids)
            tun.append(BENCH_BYTES / asyncio.run(send(forwarded, BENCH_BYTES)))
            cpu.append((sum(cpu_seconds(p) for p in pids) - before) / (BENCH_BYTES / 1e9))
        lat_direct = [asyncio.run(request(direct)) for _ in range(300)]
        lat_tunnel = [asyncio.run(request(forwarded)) for _ in range(300)]
        # On the same session as the 300 short connections: their streams' credit is back.
        rss_before = sum(rss_bytes(p) for p in pids)

        async def many() -> int:
            writers = await hold(forwarded, 1000)
            grown = sum(rss_bytes(p) for p in pids) - rss_before
            for w in writers:
                w.close()
            return grown

        grown = asyncio.run(many())
    mib = 1 << 20
    t, f, d = statistics.median(tcp), statistics.median(tun), statistics.median(i6p_stream)
    print(
        f"\none connection, {BENCH_BYTES >> 20} MiB, medians of {ROUNDS}:\n"
        f"  plain TCP over ::1        {t / mib:8.1f} MiB/s\n"
        f"  one direct I6P stream     {d / mib:8.1f} MiB/s  ({d / t:.3f}x plain TCP)\n"
        f"  through expose/forward    {f / mib:8.1f} MiB/s  ({f / t:.3f}x plain TCP, "
        f"{f / d:.3f}x the I6P stream), "
        f"{statistics.median(cpu):.2f} CPU-s/GB in the two i6p processes\n"
        f"small request on a fresh TCP connection, 300 each (ms):\n"
        f"  direct   p50 {pct(lat_direct, 50) * 1e3:.2f}  p99 {pct(lat_direct, 99) * 1e3:.2f}\n"
        f"  tunnel   p50 {pct(lat_tunnel, 50) * 1e3:.2f}  p99 {pct(lat_tunnel, 99) * 1e3:.2f}"
        f"  (added p50 {(pct(lat_tunnel, 50) - pct(lat_direct, 50)) * 1e3:.2f})\n"
        f"1,000 forwarded connections held on one session: the i6p processes grew "
        f"{grown / 1000 / 1024:.1f} KiB per connection"
    )
