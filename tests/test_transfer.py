"""Verified, resumable transfers between real nodes on loopback."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import re
import time
from pathlib import Path

import blake3
import pytest
from i6p import Identity, Node, Session, Ticket
from i6p._core import testing
from i6p.errors import (
    BlobNotFound,
    ConnectionLost,
    DestinationExists,
    IntegrityError,
    StreamReset,
    TransferRefused,
)

from .conftest import NodeFactory, fetch_until

GROUP = 256 * 1024


def write_random(path: Path, size: int) -> str:
    """Writes ``size`` random bytes; returns their BLAKE3 (computed here, independently)."""
    hasher = blake3.blake3()
    with path.open("wb") as f:
        left = size
        while left > 0:
            block = os.urandom(min(left, 1 << 20))
            hasher.update(block)
            f.write(block)
            left -= len(block)
    return hasher.hexdigest()


def b3_file(path: Path) -> str:
    hasher = blake3.blake3()
    with path.open("rb") as f:
        while block := f.read(1 << 22):
            hasher.update(block)
    return hasher.hexdigest()


@pytest.mark.parametrize(
    "size",
    [0, 1, GROUP - 1, GROUP, GROUP + 1, 16 * 1024 + 7, 300 << 20],
    ids=["0", "1", "group-1", "group", "group+1", "odd", "300MiB"],
)
async def test_round_trip(make_node: NodeFactory, tmp_path: Path, size: int) -> None:
    src, dest = tmp_path / "src", tmp_path / "out" / "dest"
    dest.parent.mkdir()
    expected = write_random(src, size)
    provider, fetcher = await make_node(), await make_node()
    blob = await provider.add_path(src)
    assert (blob.hash, blob.size) == (expected, size)
    ticket = provider.ticket(blob)
    assert Ticket.parse(str(ticket)) == ticket
    result = await fetcher.fetch(str(ticket), dest)
    assert (result.hash, result.size, result.path) == (expected, size, dest)
    assert result.bytes_fetched == size and result.bytes_reused == 0
    assert b3_file(dest) == expected
    assert sorted(p.name for p in dest.parent.iterdir()) == ["dest"]  # no partial files left


async def test_group_sizes_and_streams(make_node: NodeFactory, tmp_path: Path) -> None:
    src = tmp_path / "src"
    expected = write_random(src, 5 * (1 << 20) + 12345)
    provider, fetcher = await make_node(), await make_node()
    ticket = provider.ticket(await provider.add_path(src))
    for i, (group, streams) in enumerate([(16 << 10, 1), (64 << 10, 3), (4 << 20, 8)]):
        out = tmp_path / f"out{i}"
        result = await fetcher.fetch(ticket, out, group_size=group, streams=streams)
        assert result.hash == expected == b3_file(out)
    with pytest.raises(ValueError, match="power of two"):
        await fetcher.fetch(ticket, tmp_path / "x", group_size=3000)


async def test_read_range_fetches_only_what_it_needs(
    make_node: NodeFactory, tmp_path: Path
) -> None:
    src = tmp_path / "src"
    write_random(src, 3 << 20)
    data = src.read_bytes()
    provider, fetcher = await make_node(), await make_node()
    blob = await provider.add_path(src)
    ticket = provider.ticket(blob)
    for offset, length in [(0, 1), (16383, 2), (1 << 20, 100_000), (len(data) - 5, 5)]:
        assert await fetcher.read_range(ticket, offset, length) == data[offset : offset + length]
    assert provider.served_bytes(blob) < 1 << 20  # a few 16 KiB groups, not the file
    with pytest.raises(ValueError, match="ends past"):
        await fetcher.read_range(ticket, len(data) - 1, 2)


async def test_progress_is_bounded_in_rate(make_node: NodeFactory, tmp_path: Path) -> None:
    src = tmp_path / "src"
    write_random(src, 64 << 20)
    provider, fetcher = await make_node(), await make_node()
    ticket = provider.ticket(await provider.add_path(src))
    calls: list[tuple[float, int, int]] = []
    start = time.monotonic()
    result = await fetcher.fetch(
        ticket,
        tmp_path / "out",
        progress=lambda done, total: calls.append((time.monotonic(), done, total)),
        group_size=16 << 10,
        streams=1,
    )
    elapsed = time.monotonic() - start
    assert calls[-1][1:] == (result.size, result.size)
    assert len(calls) <= 10 * elapsed + 2
    assert all(b[1] >= a[1] for a, b in itertools.pairwise(calls))


async def test_existing_destination_is_kept_unless_overwrite(
    make_node: NodeFactory, tmp_path: Path
) -> None:
    src, dest = tmp_path / "src", tmp_path / "dest"
    expected = write_random(src, 100_000)
    dest.write_bytes(b"precious")
    provider, fetcher = await make_node(), await make_node()
    ticket = provider.ticket(await provider.add_path(src))
    with pytest.raises(DestinationExists):
        await fetcher.fetch(ticket, dest)
    assert dest.read_bytes() == b"precious"
    await fetcher.fetch(ticket, dest, overwrite=True)
    assert b3_file(dest) == expected


async def test_unknown_blob_is_not_found(make_node: NodeFactory, tmp_path: Path) -> None:
    src = tmp_path / "src"
    write_random(src, 1000)
    provider, fetcher = await make_node(), await make_node()
    real = provider.ticket(await provider.add_path(src))
    fake = Ticket(real.peer_id, real.addrs, "ab" * 32, 1000)
    with pytest.raises(BlobNotFound, match="does not have"):
        await asyncio.wait_for(fetcher.fetch(fake, tmp_path / "out"), 10)
    provider.remove(real.hash)
    with pytest.raises(BlobNotFound):
        await asyncio.wait_for(fetcher.fetch(real, tmp_path / "out2"), 10)


async def test_allow_list(make_node: NodeFactory, tmp_path: Path) -> None:
    src = tmp_path / "src"
    expected = write_random(src, 50_000)
    provider, friend, stranger = await make_node(), await make_node(), await make_node()
    ticket = provider.ticket(await provider.add_path(src))
    provider.allow_peers([str(friend.peer_id)])
    with pytest.raises(TransferRefused) as info:
        await stranger.fetch(ticket, tmp_path / "no")
    assert info.value.code == 2 and "allow-list" in info.value.reason
    assert not (tmp_path / "no").exists()
    assert (await friend.fetch(ticket, tmp_path / "yes")).hash == expected
    provider.allow_peers(None)
    assert (await stranger.fetch(ticket, tmp_path / "now")).hash == expected


def corrupt_in_place(path: Path, offset: int) -> bytes:
    """Flips one bit on disk, keeping size and times, so the provider cannot notice."""
    stat = path.stat()
    with path.open("r+b") as f:
        f.seek(offset)
        original = f.read(1)
        f.seek(offset)
        f.write(bytes([original[0] ^ 0x01]))
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    return original


async def test_corrupt_provider_is_caught_and_named(make_node: NodeFactory, tmp_path: Path) -> None:
    src, dest = tmp_path / "src", tmp_path / "dest"
    size = 40 * GROUP
    expected = write_random(src, size)
    bad, fetcher = await make_node(), await make_node()
    ticket = bad.ticket(await bad.add_path(src))
    original = corrupt_in_place(src, 17 * GROUP + 5)  # after hashing: served data is wrong
    with pytest.raises(IntegrityError) as info:
        await fetcher.fetch(ticket, dest, streams=1)
    assert info.value.provider == str(bad.peer_id)
    assert info.value.failures == 3
    assert not dest.exists()
    # Every group the partial file holds is verified, and only the bad group is missing: an
    # honest provider completes the fetch with that one group, and the result is exact.
    src.write_bytes(
        src.read_bytes()[: 17 * GROUP + 5] + original + src.read_bytes()[17 * GROUP + 6 :]
    )
    honest = await make_node()
    blob = await honest.add_path(src)
    assert blob.hash == expected
    result = await fetcher.fetch(honest.ticket(blob), dest, streams=1)
    assert result.bytes_reused == size - GROUP
    assert result.bytes_fetched == GROUP
    assert b3_file(dest) == expected


async def test_a_reused_group_damaged_on_disk_is_caught_before_the_file_is_placed(
    make_node: NodeFactory, tmp_path: Path
) -> None:
    src, dest = tmp_path / "src", tmp_path / "dest"
    size = 40 * GROUP
    expected = write_random(src, size)
    provider, fetcher = await make_node(), await make_node()
    ticket = provider.ticket(await provider.add_path(src))
    # A first fetch keeps every group but one (the provider serves group 17 wrong).
    original = corrupt_in_place(src, 17 * GROUP + 5)
    with pytest.raises(IntegrityError):
        await fetcher.fetch(ticket, dest, streams=1)
    corrupt_in_place(src, 17 * GROUP + 5)
    assert src.read_bytes()[17 * GROUP + 5] == original[0]
    # A verified group in the partial file changes on disk before the fetch resumes: the
    # resumed fetch reads the groups it took over again, and refuses to place the file.
    corrupt_in_place(dest.with_name("dest.i6p-part"), 3 * GROUP + 1)
    with pytest.raises(IntegrityError) as info:
        await fetcher.fetch(ticket, dest)
    assert "does not match the blob's hash" in info.value.detail
    assert not dest.exists()
    # Nothing of the damaged run is trusted again: the next fetch starts over and is exact.
    result = await fetcher.fetch(ticket, dest)
    assert result.bytes_reused == 0 and result.bytes_fetched == size
    assert b3_file(dest) == expected


async def test_dropped_provider_then_resume(tmp_path: Path) -> None:
    src, dest = tmp_path / "src", tmp_path / "dest"
    size = 200 << 20
    expected = write_random(src, size)
    identity = Identity.generate()
    provider = await Node.bind(identity, "[::]:0")
    port = provider.port
    ticket = provider.ticket(await provider.add_path(src))
    fetcher = await Node.bind(Identity.generate())
    # Served slowly, so the drop lands mid-fetch however fast this machine is.
    testing.set_provider_faults(provider._core, testing.SLOW)
    # reconnects=0: fail at the drop; a later fetch resumes.
    fetching, seen = await fetch_until(
        fetcher, ticket, dest, size // 4, group_size=16 << 10, reconnects=0
    )
    await provider.close()  # the link drops mid-transfer
    with pytest.raises(ConnectionLost):
        await fetching
    durable = seen[-1]
    assert 0 < durable < size and not dest.exists()
    # The provider comes back on the same address with the same identity.
    provider = await Node.bind(identity, f"[::]:{port}")
    await provider.add_path(src)
    result = await fetcher.fetch(ticket, dest)
    assert result.bytes_reused >= durable
    assert result.bytes_fetched + result.bytes_reused == size
    assert b3_file(dest) == expected
    await provider.close()
    await fetcher.close()


@pytest.mark.parametrize(
    ("faults", "fragment"),
    [
        (testing.WRONG_PROOF, "hash mismatch"),
        (testing.WRONG_INDEX, "expected group"),
        (testing.WRONG_SIZE, "bytes, the ticket"),
        (testing.FLIPPED_DATA, "hash mismatch"),
    ],
    ids=["wrong-proof", "wrong-index", "wrong-size", "flipped-data"],
)
async def test_lying_provider_is_caught(
    make_node: NodeFactory, tmp_path: Path, faults: int, fragment: str
) -> None:
    src, dest = tmp_path / "src", tmp_path / "dest"
    expected = write_random(src, 10 * GROUP + 999)
    liar, fetcher = await make_node(), await make_node()
    ticket = liar.ticket(await liar.add_path(src))
    testing.set_provider_faults(liar._core, faults)
    with pytest.raises(IntegrityError) as info:
        await fetcher.fetch(ticket, dest)
    assert info.value.provider == str(liar.peer_id)
    assert fragment in info.value.detail, info.value.detail
    assert not dest.exists()
    # Nothing unverified was kept: once honest, the provider completes the same download.
    testing.set_provider_faults(liar._core, 0)
    result = await fetcher.fetch(ticket, dest)
    assert result.bytes_reused + result.bytes_fetched == result.size
    assert b3_file(dest) == expected
    testing.set_provider_faults(liar._core, faults)
    with pytest.raises(IntegrityError, match=re.escape(fragment)):
        await fetcher.read_range(ticket, 0, 100)


async def raw_provider_session(make_node: NodeFactory) -> Session:
    """A raw session to a fresh provider, past the handshake, to send it hand-made frames."""
    from .test_protocol import handshake, raw_session

    a, provider = await make_node(), await make_node()
    raw = await raw_session(a, provider)
    await (
        await handshake(raw)
    ).finish()  # done with it: ended, not dropped (a dropped stream is reset)
    return raw


async def assert_refused(raw: Session, cases: list[tuple[bytes, str]]) -> None:
    """Each request, on a blob stream of its own, gets an ERROR whose message has its fragment."""
    from .test_protocol import read_frame

    for data, fragment in cases:
        stream = await raw.open_stream()
        await stream.write(b"\x01" + data)
        with contextlib.suppress(StreamReset):  # the provider may stop reading once it refused
            await stream.finish()
        kind, payload = await asyncio.wait_for(read_frame(stream), 10)
        assert kind == 0x12, (kind, payload)
        message = payload[4:].decode()
        assert fragment in message, message


async def test_malformed_get_requests_get_clear_refusals(make_node: NodeFactory) -> None:
    from .test_protocol import frame

    raw = await raw_provider_session(make_node)
    cases = [
        (frame(0x10, b"short"), "truncated get"),
        (frame(0x10, bytes(32) + b"\x17" + b"\x00\x01" + bytes(16)), "outside"),
        (frame(0x10, bytes(32) + b"\x12" + b"\x00\x00"), "0 ranges"),
        (frame(0x10, bytes(32) + b"\x12\x00\x01" + (1).to_bytes(8, "big") * 2), "does not have"),
        (frame(0x42, b""), "expected a GET"),
        (b"\x10\x80\x00\x00\x00", "frame too large"),
    ]
    await assert_refused(raw, cases)
    # The provider still serves: an unknown stream kind is refused, the session lives on.
    odd = await raw.open_stream()
    await odd.write(b"\x07hello")
    with pytest.raises(Exception, match="reset"):
        await asyncio.wait_for(odd.read(), 10)


async def test_offline_provider_is_a_clear_timeout(make_node: NodeFactory, tmp_path: Path) -> None:
    import socket

    from i6p.errors import HandshakeError

    silent = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    silent.bind(("::1", 0))  # a port where nobody answers
    try:
        fetcher = await make_node(handshake_timeout=1.0)
        ticket = Ticket(
            Identity.generate().peer_id, [f"[::1]:{silent.getsockname()[1]}"], "cd" * 32, 5
        )
        start = time.monotonic()
        with pytest.raises(HandshakeError, match=r"did not answer|within"):
            await fetcher.fetch(ticket, tmp_path / "never")
        assert time.monotonic() - start < 5
        assert not (tmp_path / "never").exists()
    finally:
        silent.close()


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("", "start with"),
        ("hello", "start with"),
        ("i6p", "too short"),
        ("i6p!!!", "not base32"),
        ("i6paaaaaaaa", "checksum"),
    ],
)
def test_bad_tickets_are_clear_value_errors(text: str, fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment):
        Ticket.parse(text)


async def test_a_typo_in_a_real_ticket_is_caught(make_node: NodeFactory, tmp_path: Path) -> None:
    src = tmp_path / "src"
    write_random(src, 1000)
    provider = await make_node()
    text = str(provider.ticket(await provider.add_path(src)))
    typo = text[:20] + ("a" if text[20] != "a" else "b") + text[21:]
    with pytest.raises(ValueError, match="checksum"):
        Ticket.parse(typo)
    assert Ticket.parse(text.upper()) == Ticket.parse(text)


async def test_cancelling_a_fetch_stops_it(make_node: NodeFactory, tmp_path: Path) -> None:
    src, dest = tmp_path / "src", tmp_path / "dest"
    size = 128 << 20
    expected = write_random(src, size)
    provider, fetcher = await make_node(), await make_node()
    blob = await provider.add_path(src)
    ticket = provider.ticket(blob)
    # Served slowly, so the cancel lands mid-fetch however fast this machine is.
    testing.set_provider_faults(provider._core, testing.SLOW)
    task, _ = await fetch_until(fetcher, ticket, dest, size // 8, group_size=16 << 10)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    testing.set_provider_faults(provider._core, 0)
    await asyncio.sleep(0.3)
    part = tmp_path / "dest.i6p-part"
    served, written = provider.served_bytes(blob), part.stat().st_size
    await asyncio.sleep(0.7)
    # Nothing moves any more: no worker kept fetching or writing behind the caller's back.
    assert provider.served_bytes(blob) == served
    assert part.stat().st_size == written
    result = await fetcher.fetch(ticket, dest)
    assert result.bytes_reused > 0 and b3_file(dest) == expected
