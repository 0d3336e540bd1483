"""FEC mode: blobs fetched as erasure-coded shards in QUIC datagrams, through loss."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import pytest
from i6p import Ticket
from i6p._core import testing
from i6p.errors import IntegrityError

from .conftest import NodeFactory
from .impair_relay import ImpairRelay
from .test_transfer import GROUP, assert_refused, b3_file, raw_provider_session, write_random

# An Ethernet-sized packet bound: the impair relay on ::1 stands for an Internet path, whose
# packets (and so FEC shards) are this size, not loopback's.
ORDINARY = 1452


@pytest.mark.parametrize(
    "size", [1, GROUP - 1, GROUP + 1, 5 * GROUP + 12345], ids=["1", "group-1", "group+1", "odd"]
)
async def test_fec_round_trip_on_loopback(
    make_node: NodeFactory, tmp_path: Path, size: int
) -> None:
    src, dest = tmp_path / "src", tmp_path / "dest"
    expected = write_random(src, size)
    provider, fetcher = await make_node(), await make_node()
    ticket = provider.ticket(await provider.add_path(src))
    result = await fetcher.fetch(ticket, dest, mode="fec")
    assert (result.hash, result.size) == (expected, size)
    assert b3_file(dest) == expected
    assert result.fec is not None and result.fec.shards_received > 0


async def test_fec_fetch_through_five_percent_loss(make_node: NodeFactory, tmp_path: Path) -> None:
    src, dest = tmp_path / "src", tmp_path / "dest"
    size = 24 << 20
    expected = write_random(src, size)
    # BBR: CUBIC takes random loss for congestion and crawls at 5 % in either mode. The
    # fetcher advertises an Ethernet-sized bound: the relay stands for an Internet path.
    provider = await make_node(congestion="bbr")
    fetcher = await make_node(congestion="bbr", max_udp_payload=ORDINARY)
    blob = await provider.add_path(src)
    async with ImpairRelay(
        f"[::1]:{provider.port}", delay_ms=5, loss=0.05, seed=7, max_seconds=120
    ) as relay:
        ticket = Ticket(provider.peer_id, [relay.addr], blob.hash, blob.size)
        result = await fetcher.fetch(ticket, dest, mode="fec")
    assert result.hash == expected and b3_file(dest) == expected
    # Shards were lost on the way (5 % of datagrams), and the fetch still got everything.
    assert relay.stats["up"]["dropped_loss"] + relay.stats["down"]["dropped_loss"] > 0
    fec = result.fec
    assert fec is not None and fec.shards_received > size // 2000
    # The receiver saw the loss and reported it: about 5 % (the relay's random loss).
    lost = fec.shards_lost / (fec.shards_received + fec.shards_lost)
    assert 0.02 < lost < 0.15, fec
    assert 0.01 < fec.loss < 0.2, fec


@pytest.mark.parametrize("mode", ["plain", "fec", "fec-combined"])
async def test_three_providers_one_killed_one_corrupt(
    make_node: NodeFactory, tmp_path: Path, mode: str
) -> None:
    """One provider dies at 30 %, another serves flipped bits: the third finishes the fetch,
    the result is exact, and the corrupt provider is named in the result. Combining, the
    three first share every stripe; the corrupt shards spoil combined groups, which names
    nobody, so the fetch stops combining and the batches that follow name the liar."""
    src, dest = tmp_path / "src", tmp_path / "dest"
    size = 32 << 20
    expected = write_random(src, size)
    honest, doomed, liar = await make_node(), await make_node(), await make_node()
    fetcher = await make_node(max_udp_payload=ORDINARY)
    testing.set_provider_faults(liar._core, testing.FLIPPED_DATA)
    killed: list[asyncio.Task[None]] = []

    def progress(done: int, total: int) -> None:
        if not killed and total and done >= 0.3 * total:
            killed.append(asyncio.ensure_future(doomed.close()))

    # Each provider behind a relay limited to 8 MB/s, so the kill lands mid-transfer.
    async with contextlib.AsyncExitStack() as stack:
        tickets = []
        for node in (honest, doomed, liar):
            blob = await node.add_path(src)
            relay = await stack.enter_async_context(
                ImpairRelay(f"[::1]:{node.port}", rate=8_000_000, max_seconds=120)
            )
            tickets.append(Ticket(node.peer_id, [relay.addr], blob.hash, blob.size))
        # Small requests, so that every provider gets many.
        result = await fetcher.fetch(
            tickets,
            dest,
            mode="plain" if mode == "plain" else "fec",
            fec_combine=mode == "fec-combined",
            progress=progress,
            request_size=1 << 20,
            max_failures=2,
        )
    assert killed, "the fetch finished before the kill"
    await killed[0]
    assert result.hash == expected and b3_file(dest) == expected
    assert set(result.providers) == {n.peer_id for n in (honest, doomed, liar)}
    assert liar.peer_id in result.dropped
    assert "hash mismatch" in result.dropped[liar.peer_id]
    assert doomed.peer_id in result.dropped
    assert 0 < result.providers[doomed.peer_id] < size
    assert honest.peer_id not in result.dropped
    assert result.providers[honest.peer_id] > size // 2
    assert result.bytes_fetched == sum(result.providers.values())
    if mode == "fec-combined":
        assert result.fec is not None and result.fec.stripes_combined > 0, result.fec


@pytest.mark.parametrize("mode", ["plain", "fec"])
async def test_a_fast_provider_takes_over_a_slow_ones_batches(
    make_node: NodeFactory, tmp_path: Path, mode: str
) -> None:
    """Once the queue is empty, a provider that has delivered more takes over the second half
    of what a slower one has left of its batch, again and again: the slow provider's first
    batches do not hold up the fetch, and nothing is fetched twice (beyond a group or two in
    flight when the half is taken)."""
    src, dest = tmp_path / "src", tmp_path / "dest"
    size = 16 << 20
    expected = write_random(src, size)
    fast, slow = await make_node(), await make_node()
    fetcher = await make_node(max_udp_payload=ORDINARY)
    async with contextlib.AsyncExitStack() as stack:
        tickets = [fast.ticket(await fast.add_path(src))]
        blob = await slow.add_path(src)
        relay = await stack.enter_async_context(
            ImpairRelay(f"[::1]:{slow.port}", rate=2_000_000, max_seconds=120)
        )
        tickets.append(Ticket(slow.peer_id, [relay.addr], blob.hash, blob.size))
        result = await fetcher.fetch(tickets, dest, mode=mode, request_size=2 << 20)
    assert result.hash == expected and b3_file(dest) == expected
    assert not result.dropped
    # Half the batches were the slow provider's at first; it delivered far less than that.
    slow_bytes = result.providers[slow.peer_id]
    assert 0 < slow_bytes < size // 4, result.providers
    assert result.bytes_fetched <= size + 8 * GROUP, result.providers


async def test_any_k_shards_from_several_providers_rebuild_a_stripe(
    make_node: NodeFactory, tmp_path: Path
) -> None:
    """Two providers behind lossy links each send a share of every stripe (half its data
    shards and their own parity, fewer than k): each stripe rebuilt from shards needed both,
    and the losses of either link are covered by the parity of both."""
    src, dest = tmp_path / "src", tmp_path / "dest"
    size = 12 << 20
    expected = write_random(src, size)
    one, two = await make_node(congestion="bbr"), await make_node(congestion="bbr")
    fetcher = await make_node(congestion="bbr", max_udp_payload=ORDINARY)
    async with contextlib.AsyncExitStack() as stack:
        tickets = []
        for seed, node in enumerate((one, two)):
            blob = await node.add_path(src)
            relay = await stack.enter_async_context(
                ImpairRelay(
                    f"[::1]:{node.port}", delay_ms=5, loss=0.03, seed=seed + 1, max_seconds=120
                )
            )
            tickets.append(Ticket(node.peer_id, [relay.addr], blob.hash, blob.size))
        result = await fetcher.fetch(tickets, dest, mode="fec", fec_combine=True)
    assert result.hash == expected and b3_file(dest) == expected
    assert not result.dropped and result.failed_groups == 0
    fec = result.fec
    assert fec is not None and fec.shards_lost > 0, fec
    # Every stripe not repaired whole was rebuilt from both providers' shards.
    stripes = -(-size // (32 * 1104))
    assert fec.stripes_combined + fec.stripes_repaired >= stripes * 0.95, fec
    assert fec.stripes_combined > stripes // 2, fec
    for node in (one, two):
        assert result.providers[node.peer_id] > size // 4, result.providers
    assert result.bytes_fetched == sum(result.providers.values())


@pytest.mark.parametrize("combine", [False, True], ids=["one-provider", "combined"])
async def test_forged_shards_are_dropped(
    make_node: NodeFactory, tmp_path: Path, combine: bool
) -> None:
    """A provider that sends forged SHARD datagrams (wrong index, size, shape, tag, transfer,
    a stripe beyond the blob, and, when stripes are shared, a shard of the other provider's
    share) ahead of its real ones: every forgery is dropped, so no group fails verification
    and the fetch is exact."""
    src, dest = tmp_path / "src", tmp_path / "dest"
    expected = write_random(src, 6 * GROUP + 777)
    forger, honest, fetcher = await make_node(), await make_node(), await make_node()
    testing.set_provider_faults(forger._core, testing.FORGED_SHARDS)
    providers = [forger, honest] if combine else [forger]
    tickets = [n.ticket(await n.add_path(src)) for n in providers]
    result = await fetcher.fetch(tickets, dest, mode="fec", fec_combine=combine)
    assert b3_file(dest) == expected
    assert result.failed_groups == 0 and not result.dropped
    fec = result.fec
    assert fec is not None
    if combine:
        assert fec.stripes_combined > 0, fec
    assert result.providers[forger.peer_id] > 0


async def test_unreachable_provider_is_reported_and_skipped(
    make_node: NodeFactory, tmp_path: Path
) -> None:
    src, dest = tmp_path / "src", tmp_path / "dest"
    expected = write_random(src, 3 * GROUP)
    good, gone, fetcher = await make_node(), await make_node(), await make_node()
    tickets = [n.ticket(await n.add_path(src)) for n in (good, gone)]
    await gone.close()
    result = await fetcher.fetch(tickets, dest)
    assert b3_file(dest) == expected
    assert list(result.dropped) == [gone.peer_id]
    assert result.providers[good.peer_id] == 3 * GROUP


async def test_one_ticket_listing_several_providers(make_node: NodeFactory, tmp_path: Path) -> None:
    """Ticket.join writes the providers of several tickets as one string; a fetch given that
    string uses them all, and a one-provider parse of it says to read it with parse_all."""
    src, dest = tmp_path / "src", tmp_path / "dest"
    expected = write_random(src, 3 * GROUP + 5)
    one, two, fetcher = await make_node(), await make_node(), await make_node()
    tickets = [n.ticket(await n.add_path(src)) for n in (one, two)]
    text = Ticket.join(tickets)
    assert Ticket.parse_all(text) == tickets
    with pytest.raises(ValueError, match="parse_all"):
        Ticket.parse(text)
    with pytest.raises(ValueError, match="twice"):
        Ticket.join([tickets[0], tickets[0]])
    result = await fetcher.fetch(text, dest, request_size=GROUP)
    assert b3_file(dest) == expected
    assert set(result.providers) == {one.peer_id, two.peer_id}


async def test_tickets_for_different_blobs_are_refused(
    make_node: NodeFactory, tmp_path: Path
) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    write_random(a, 1000)
    write_random(b, 1000)
    provider, fetcher = await make_node(), await make_node()
    tickets = [provider.ticket(await provider.add_path(p)) for p in (a, b)]
    with pytest.raises(ValueError, match="different blobs"):
        await fetcher.fetch(tickets, tmp_path / "dest")


@pytest.mark.parametrize(
    ("faults", "fragment"),
    [(testing.WRONG_PROOF, "hash mismatch"), (testing.FLIPPED_DATA, "hash mismatch")],
    ids=["wrong-proof", "flipped-data"],
)
async def test_lying_fec_provider_is_caught(
    make_node: NodeFactory, tmp_path: Path, faults: int, fragment: str
) -> None:
    """Rebuilt data is verified before it is written: a provider whose shards rebuild wrong
    groups is caught and named, and nothing unverified is kept."""
    src, dest = tmp_path / "src", tmp_path / "dest"
    expected = write_random(src, 10 * GROUP + 999)
    liar, fetcher = await make_node(), await make_node()
    ticket = liar.ticket(await liar.add_path(src))
    testing.set_provider_faults(liar._core, faults)
    with pytest.raises(IntegrityError) as info:
        await fetcher.fetch(ticket, dest, mode="fec")
    assert info.value.provider == str(liar.peer_id)
    assert fragment in info.value.detail, info.value.detail
    testing.set_provider_faults(liar._core, 0)
    result = await fetcher.fetch(ticket, dest, mode="fec")
    assert result.bytes_reused + result.bytes_fetched == result.size
    assert b3_file(dest) == expected


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"mode": "fast"}, "mode must be"),
        ({"mode": "fec", "fec_shape": (0, 1, 4)}, "FEC options"),
        ({"mode": "fec", "fec_shape": (32, 0, 4)}, "FEC options"),
        ({"mode": "fec", "fec_shape": (32, 5, 4)}, "FEC options"),
        ({"mode": "fec", "fec_shape": (250, 1, 10)}, "FEC options"),
        ({"mode": "fec", "shard_size": 100}, "shard_size must be"),
    ],
)
async def test_bad_fec_options_are_clear_errors(
    make_node: NodeFactory, tmp_path: Path, kwargs: dict[str, object], fragment: str
) -> None:
    provider, fetcher = await make_node(), await make_node()
    src = tmp_path / "src"
    write_random(src, 1000)
    ticket = provider.ticket(await provider.add_path(src))
    with pytest.raises(ValueError, match=fragment):
        await fetcher.fetch(ticket, tmp_path / "dest", **kwargs)  # type: ignore[arg-type]


def _fec_get(
    shard_len: int = 1200,
    k: int = 32,
    min_m: int = 1,
    max_m: int = 8,
    target: int = 1000,
    share: tuple[int, int, int, int] | None = None,
) -> bytes:
    head = (7).to_bytes(4, "big") + shard_len.to_bytes(2, "big") + bytes([k, min_m, max_m])
    share_bytes = bytes(share if share is not None else (0, k, 0, 1))
    get = bytes(32) + b"\x12\x00\x01" + (0).to_bytes(8, "big") + (1).to_bytes(8, "big")
    return head + target.to_bytes(4, "big") + (0).to_bytes(4, "big") + share_bytes + get


async def test_malformed_fec_requests_get_clear_refusals(make_node: NodeFactory) -> None:
    from .test_protocol import frame

    raw = await raw_provider_session(make_node)
    cases = [
        (frame(0x13, b"short"), "truncated fec get"),
        (frame(0x13, _fec_get(shard_len=100)), "shard size 100"),
        (frame(0x13, _fec_get(shard_len=60_000, k=20)), "exceed"),
        (frame(0x13, _fec_get(k=0)), "invalid"),
        (frame(0x13, _fec_get(min_m=9, max_m=8)), "not a valid range"),
        (frame(0x13, _fec_get(k=250, max_m=10)), "invalid"),
        (frame(0x13, _fec_get(target=0)), "target 0 ppm"),
        (frame(0x13, _fec_get(share=(0, 0, 0, 1))), "not a run inside"),
        (frame(0x13, _fec_get(share=(30, 3, 0, 1))), "not a run inside"),
        (frame(0x13, _fec_get(share=(0, 32, 2, 2))), "not a share"),
        (frame(0x13, _fec_get(share=(0, 32, 0, 0))), "not a share"),
        (frame(0x13, _fec_get(share=(0, 32, 5, 3))), "not a share"),
        (frame(0x13, _fec_get()[:-3]), "truncated get"),
        (frame(0x13, _fec_get()), "does not have"),
    ]
    await assert_refused(raw, cases)
