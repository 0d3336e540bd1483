"""The throughput engine's functional side: transport settings, transfers over long, lossy
links through the impairment relay, acknowledged progress on the provider, the partial-file
lock, and ``i6p bench``. Speed itself is measured in benches/, never asserted here."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from i6p import Identity, Node, Ticket
from i6p.errors import FileError, IntegrityError

from .conftest import NodeFactory, connect_pair, wait_until
from .impair_relay import ImpairRelay
from .test_transfer import b3_file, write_random


def through(relay: ImpairRelay, ticket: Ticket) -> Ticket:
    """The same ticket, pointing at the relay in front of its provider."""
    return Ticket(ticket.peer_id, [relay.addr], ticket.hash, ticket.size)


@pytest.mark.parametrize("congestion", ["cubic", "bbr", "bounded", "newreno"])
@pytest.mark.parametrize("window", ["auto", "quinn", str(1 << 20)])
async def test_congestion_and_window_settings_move_data(
    make_node: NodeFactory, congestion: str, window: str
) -> None:
    a = await make_node(congestion=congestion, window=window)
    b = await make_node(congestion=congestion, window=window)
    ours, theirs = await connect_pair(a, b)
    payload = os.urandom(4 << 20)

    async def send() -> None:
        stream = await ours.open_stream()
        await stream.write(payload)
        await stream.finish()

    async def receive() -> bytes:
        incoming = await theirs.accept_stream()
        return await incoming.read()

    _, got = await asyncio.wait_for(asyncio.gather(send(), receive()), 60)
    assert got == payload


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"congestion": "vegas"}, "congestion"),
        ({"window": "huge"}, "window"),
        ({"window": 1000}, "window"),
        ({"max_window": 1 << 40}, "window"),
        ({"window": str(2 << 30)}, "window"),
    ],
)
async def test_bad_transport_settings_are_refused(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        await Node.bind(Identity.generate(), **kwargs)  # type: ignore[arg-type]


async def test_fetch_over_a_long_lossy_reordering_link(
    make_node: NodeFactory, tmp_path: Path
) -> None:
    """20 ms round trip, 1 % loss, reordering, a 50 MB/s bottleneck: the fetch completes and
    verifies, and the provider's acknowledged bytes end at the size."""
    src, dest = tmp_path / "src", tmp_path / "dest"
    size = 8 << 20
    expected = write_random(src, size)
    # The relay stands for an Internet path: Ethernet-sized packets (at 65 KB, 1 % loss of a
    # few hundred packets may drop none).
    provider = await make_node(addr="[::1]:0")
    fetcher = await make_node(addr="[::1]:0", max_udp_payload=1452)
    blob = await provider.add_path(src)
    relay = ImpairRelay(
        f"[::1]:{provider.port}",
        delay_ms=10,
        jitter_ms=1,
        loss=0.01,
        reorder=0.01,
        rate=50e6,
        seed=7,
        max_seconds=120,
    )
    async with relay:
        relayed = through(relay, provider.ticket(blob))
        seen: list[int] = []

        async def watch() -> None:
            while True:
                seen.append(provider.served_bytes(blob))
                await asyncio.sleep(0.02)

        watcher = asyncio.create_task(watch())
        try:
            result = await asyncio.wait_for(fetcher.fetch(relayed, dest), 90)
        finally:
            watcher.cancel()
    assert result.size == size and b3_file(dest) == expected
    assert relay.stats["down"]["dropped_loss"] > 0  # the link really lost packets
    # Acknowledged progress moved in steps while the fetch ran (it was seen between 0 and
    # the size), and ended at the size once everything was acknowledged.
    assert any(0 < s < size for s in seen)
    assert await wait_until(lambda: provider.served_bytes(blob) == size, 10)
    assert provider.served(blob)[fetcher.peer_id] == size


async def test_bounded_bbr_fetches_through_a_shallow_queue_with_random_loss(
    make_node: NodeFactory, tmp_path: Path
) -> None:
    """congestion="bounded" (BBR within a bound learned from queue build-up) behind a
    50 MB/s bottleneck whose queue holds 2 ms, with 2 % random loss: the queue overflows
    and packets are lost at random, and the fetch still completes and verifies."""
    src, dest = tmp_path / "src", tmp_path / "dest"
    size = 16 << 20
    expected = write_random(src, size)
    provider = await make_node(addr="[::1]:0", congestion="bounded")
    fetcher = await make_node(addr="[::1]:0", congestion="bounded")
    blob = await provider.add_path(src)
    relay = ImpairRelay(
        f"[::1]:{provider.port}",
        delay_ms=10,
        loss=0.02,
        rate=50e6,
        queue_bytes=100_000,
        seed=11,
        max_seconds=120,
    )
    async with relay:
        result = await asyncio.wait_for(
            fetcher.fetch(through(relay, provider.ticket(blob)), dest), 90
        )
    assert result.size == size and b3_file(dest) == expected
    down = relay.stats["down"]
    assert down["dropped_loss"] > 0 and down["dropped_queue"] > 0


def _sysctl(name: str) -> int:
    return int(Path("/proc/sys/net/core", name).read_text())


async def test_windows_and_socket_buffers_grow_on_a_long_fat_link(
    make_node: NodeFactory, tmp_path: Path
) -> None:
    """100 ms round trip at 100 MB/s: bandwidth x RTT is 10 MB, so the receive window (8 MiB
    at first) grows to about twice that, and the socket buffers follow."""
    src, dest = tmp_path / "src", tmp_path / "dest"
    size = 96 << 20
    expected = write_random(src, size)
    provider, fetcher = await make_node(addr="[::1]:0"), await make_node(addr="[::1]:0")
    blob = await provider.add_path(src)
    before = fetcher.socket_buffers
    async with ImpairRelay(
        f"[::1]:{provider.port}", delay_ms=50, rate=100e6, queue_bytes=5_000_000, max_seconds=90
    ) as relay:
        relayed = through(relay, provider.ticket(blob))
        result = await asyncio.wait_for(fetcher.fetch(relayed, dest), 80)
    assert result.size == size and b3_file(dest) == expected
    after = fetcher.socket_buffers
    # Past the kernel's rmem_max only a privileged process can go (SO_RCVBUFFORCE).
    if os.geteuid() == 0 or 2 * _sysctl("rmem_max") > before[0]:
        assert after[0] > before[0] and after[1] > before[1]
    else:
        assert after == before


async def test_served_counts_each_peer_separately(make_node: NodeFactory, tmp_path: Path) -> None:
    src = tmp_path / "src"
    size = 3 << 20
    write_random(src, size)
    provider = await make_node()
    blob = await provider.add_path(src)
    one, two = await make_node(), await make_node()
    await one.fetch(provider.ticket(blob), tmp_path / "one")
    assert await wait_until(lambda: provider.served(blob).get(one.peer_id) == size, 10)
    assert two.peer_id not in provider.served(blob)
    await two.read_range(provider.ticket(blob), 0, 1000)
    # A range read acknowledges only the chunk groups it asked for.
    assert await wait_until(lambda: provider.served(blob).get(two.peer_id) == 16 << 10, 10)
    assert provider.served(blob)[one.peer_id] == size


async def test_two_fetches_into_one_destination_do_not_mix(
    make_node: NodeFactory, tmp_path: Path
) -> None:
    src, dest = tmp_path / "src", tmp_path / "dest"
    size = 64 << 20
    expected = write_random(src, size)
    provider = await make_node(addr="[::1]:0")
    blob = await provider.add_path(src)
    slow = ImpairRelay(f"[::1]:{provider.port}", rate=20e6, max_seconds=60)
    async with slow:
        ticket = provider.ticket(blob)
        relayed = through(slow, ticket)
        first = asyncio.create_task((await make_node()).fetch(relayed, dest))
        await wait_until(lambda: (tmp_path / "dest.i6p-state").exists(), 10)
        with pytest.raises(FileError, match="another fetch is writing"):
            await (await make_node()).fetch(ticket, dest)
        first.cancel()
        with pytest.raises(asyncio.CancelledError):
            await first
    # Once the first is gone, a fetch resumes where it stopped.
    result = await (await make_node()).fetch(provider.ticket(blob), dest)
    assert result.bytes_reused > 0 and b3_file(dest) == expected


async def test_a_tampered_partial_file_is_caught_on_resume(
    make_node: NodeFactory, tmp_path: Path
) -> None:
    src, dest = tmp_path / "src", tmp_path / "dest"
    size = 64 << 20
    expected = write_random(src, size)
    provider = await make_node(addr="[::1]:0")
    blob = await provider.add_path(src)
    ticket = provider.ticket(blob)
    fetcher = await make_node()
    done: list[int] = []
    # Through a 40 MB/s bottleneck, so the fetch is surely still running when cancelled.
    async with ImpairRelay(f"[::1]:{provider.port}", rate=40e6, max_seconds=60) as slow:
        relayed = through(slow, ticket)
        task = asyncio.create_task(
            fetcher.fetch(relayed, dest, progress=lambda d, t: done.append(d), group_size=64 << 10)
        )
        assert await wait_until(lambda: bool(done) and done[-1] >= size // 4, 60, step=0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    part = tmp_path / "dest.i6p-part"
    with part.open("r+b") as f:  # flip a bit inside the first group, which is verified
        first = f.read(1)
        f.seek(0)
        f.write(bytes([first[0] ^ 1]))
    with pytest.raises(IntegrityError, match="does not match"):
        await fetcher.fetch(ticket, dest)
    assert not dest.exists()
    result = await fetcher.fetch(ticket, dest)  # starts over and is exact
    assert result.bytes_reused == 0 and b3_file(dest) == expected


def test_bench_cli_reports_and_tunes(tmp_path: Path) -> None:
    env = {**os.environ, "I6P_HOME": str(tmp_path / "home")}
    args = ["--size", "8MiB", "--rounds", "1", "--dir", str(tmp_path), "--json"]
    out = subprocess.run(
        [sys.executable, "-m", "i6p.cli", "bench", *args, "--tune", "--tune-size", "4MiB"],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    names = {f["name"] for f in report["figures"]}
    assert {"raw quinn stream", "verified fetch", "connect + first ping"} <= names
    assert all(f["median"] > 0 for f in report["figures"])
    assert 0 < report["ratio_fetch_to_baseline"] < 100
    # The baseline moves the packets a default node's fetch does (loopback's 65 KB ones), not
    # QUIC's usual 1,452-byte ones, with which any fetch would look several times cheaper.
    assert report["max_udp_payload"] == 65_488
    tune = report["tune"]
    tried = {(t["settings"]["streams"], t["settings"]["group_size"]) for t in tune["tried"]}
    assert {(1, 256 << 10), (16, 256 << 10)} <= tried and len(tune["tried"]) >= 10
    best = next(t for t in tune["tried"] if t["settings"] == tune["best"])
    assert best["rate"]["median"] == max(t["rate"]["median"] for t in tune["tried"])
    assert not list(tmp_path.glob("i6p-bench-*"))  # scratch files are removed
