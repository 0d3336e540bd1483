"""The Python boundary: typed options and results, caller mistakes as ValueError/TypeError,
test hooks kept out of the public module, and the engine's logs in Python's ``logging``."""

from __future__ import annotations

import asyncio
import importlib
import logging
import pickle
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from i6p import FecStats, FetchOptions, FetchResult, Identity, Limits, PeerId, Ticket, _core
from i6p.errors import HandshakeError, I6PError

from .conftest import NodeFactory, loopback, wait_until
from .test_transfer import write_random

# -- FetchOptions ---------------------------------------------------------------------------


def test_fetch_options_are_a_frozen_value_with_the_engine_defaults() -> None:
    o = FetchOptions()
    assert o == FetchOptions() and hash(o) == hash(FetchOptions())
    # The engine's defaults (256 KiB groups, 8 streams, ...), read back through the getters.
    assert (o.group_size, o.streams, o.max_failures, o.mode) == (1 << 18, 8, 3, "plain")
    assert o.fec_shape == (32, 1, 8) and o.shard_size is None and not o.fec_combine
    assert o.request_size == 16 << 20 and o.reconnects == 5 and o.backoff == 0.25
    assert not o.overwrite
    with pytest.raises(AttributeError):
        o.streams = 4  # type: ignore[misc]
    assert repr(o).startswith("FetchOptions(group_size=262144, streams=8,")
    assert "fec_shape=(32, 1, 8)" in repr(o) and "shard_size=None" in repr(o)


def test_fetch_options_replace_changes_only_what_it_names() -> None:
    o = FetchOptions(streams=2, mode="fec", fec_shape=(16, 2, 4))
    p = o.replace(group_size=1 << 16)
    assert (p.streams, p.mode, p.fec_shape, p.group_size) == (2, "fec", (16, 2, 4), 1 << 16)
    assert o.group_size == FetchOptions().group_size  # the original is untouched
    assert p != o and p == FetchOptions(
        streams=2, mode="fec", fec_shape=(16, 2, 4), group_size=1 << 16
    )
    # FEC settings survive a round trip through plain mode.
    assert o.replace(mode="plain").replace(mode="fec") == o
    assert FetchOptions() != "FetchOptions()"
    # Options survive pickling, e.g. on their way to a worker process.
    assert pickle.loads(pickle.dumps(p)) == p
    with pytest.raises(TypeError):
        o.replace(stream=3)  # a typo is not silently ignored


@pytest.mark.parametrize(
    ("changes", "error", "fragment"),
    [
        ({"streams": 0}, ValueError, "streams must be"),
        ({"streams": -1}, ValueError, "streams must be"),
        ({"streams": 1 << 70}, ValueError, "streams must be"),
        ({"streams": "8"}, TypeError, "streams must be an int"),
        ({"group_size": 3000}, ValueError, "power of two"),
        ({"group_size": 8 << 20}, ValueError, "group_size must be"),
        ({"request_size": 1}, ValueError, "request_size must be"),
        ({"max_failures": 0}, ValueError, "max_failures must be"),
        ({"reconnects": -1}, ValueError, "reconnects must be"),
        ({"backoff": -0.5}, ValueError, "backoff must be"),
        ({"backoff": float("nan")}, ValueError, "backoff must be"),
        ({"backoff": "soon"}, TypeError, "backoff must be"),
        ({"overwrite": 1}, TypeError, "overwrite must be a bool"),
        ({"mode": "fast"}, ValueError, "mode must be"),
        ({"fec_shape": (32, 1)}, TypeError, "fec_shape must be"),
        ({"fec_shape": (0, 1, 4)}, ValueError, "FEC options"),
        ({"shard_size": 100}, ValueError, "shard_size must be"),
    ],
)
def test_bad_fetch_options_are_value_or_type_errors(
    changes: dict[str, Any], error: type[Exception], fragment: str
) -> None:
    with pytest.raises(error, match=fragment):
        FetchOptions(**changes)


async def test_fetch_takes_options_or_keywords_and_rejects_bad_ones_before_dialing(
    make_node: NodeFactory, tmp_path: Path
) -> None:
    src = tmp_path / "src"
    write_random(src, 300_000)
    provider, fetcher = await make_node(), await make_node()
    ticket = provider.ticket(await provider.add_path(src))
    options = FetchOptions(group_size=1 << 14, streams=2)
    a = await fetcher.fetch(ticket, tmp_path / "a", options=options)
    # Keywords on top of options, and keywords alone, as before FetchOptions existed.
    b = await fetcher.fetch(ticket, tmp_path / "b", options=options, streams=1)
    c = await fetcher.fetch(ticket, tmp_path / "c", group_size=1 << 14)
    assert a.hash == b.hash == c.hash == ticket.hash
    await provider.close()
    # The provider is gone: an engine call would fail to connect, not with ValueError.
    with pytest.raises(ValueError, match="streams"):
        await fetcher.fetch(ticket, tmp_path / "d", streams=0)
    with pytest.raises(TypeError):
        await fetcher.fetch(ticket, tmp_path / "d", options=options, stream=1)  # type: ignore[call-arg]
    assert not (tmp_path / "d").exists() and not (tmp_path / "d.i6p-part").exists()


# -- FetchResult ----------------------------------------------------------------------------


async def test_fetch_result_is_typed_and_keyed_by_peer_id(
    make_node: NodeFactory, tmp_path: Path
) -> None:
    src = tmp_path / "src"
    write_random(src, 200_000)
    provider, fetcher = await make_node(), await make_node()
    ticket = provider.ticket(await provider.add_path(src))
    result = await fetcher.fetch(ticket, tmp_path / "dest")
    assert isinstance(result, FetchResult) and result.fec is None
    assert result.providers == {provider.peer_id: 200_000}
    assert all(isinstance(p, PeerId) for p in result.providers)
    # The provider's view of the same transfer is keyed the same way.
    assert list(provider.served(ticket.hash)) == [fetcher.peer_id]
    assert result.dropped == {} and result.failed_groups == 0
    assert isinstance(result.path, Path) and result.path == tmp_path / "dest"
    assert result.as_dict()["providers"] == {str(provider.peer_id): 200_000}
    with pytest.raises(AttributeError):
        result.size = 1  # type: ignore[misc]
    fec = await fetcher.fetch(ticket, tmp_path / "fec", mode="fec")
    assert isinstance(fec.fec, FecStats) and fec.fec.shards_received > 0
    assert fec.fec == fec.fec and fec.fec.as_dict()["shards_received"] == fec.fec.shards_received
    assert "shards_received=" in repr(fec.fec)
    for name in ("hash", "providers", "dropped", "fec", "duration_s"):
        assert getattr(FetchResult, name).__doc__, name
    for name in ("shards_received", "shards_lost", "stripes_repaired", "loss"):
        assert getattr(FecStats, name).__doc__, name


# -- read_range -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("offset", "length", "error", "fragment"),
    [
        (1000, 1, ValueError, "ends past"),
        (999, 2, ValueError, "ends past"),
        (0, 0, ValueError, "length must be"),
        (0, -5, ValueError, "length must be"),
        (-1, 10, ValueError, "offset must be"),
        (2000, 1, ValueError, "offset must be"),
        (0, 1 << 31, ValueError, "length must be"),
        (0.5, 10, TypeError, "offset must be an int"),
    ],
)
async def test_read_range_mistakes_are_caught_before_the_engine(
    make_node: NodeFactory, offset: Any, length: Any, error: type[Exception], fragment: str
) -> None:
    # Nobody listens at the ticket's address: reaching the engine would be a connect error.
    ticket = Ticket(Identity.generate().peer_id, ["[::1]:9"], "00" * 32, 1000)
    fetcher = await make_node()
    with pytest.raises(error, match=fragment):
        await fetcher.read_range(ticket, offset, length)


# -- the private testing module -------------------------------------------------------------


def test_test_hooks_live_in_a_private_submodule() -> None:
    testing = importlib.import_module("i6p._core.testing")
    assert sys.modules["i6p._core.testing"] is testing is _core.testing
    assert callable(testing.set_provider_faults) and callable(testing.bench_hash)
    assert testing.FLIPPED_DATA != testing.WRONG_PROOF
    public = {name for name in dir(_core) if "bench" in name or "fault" in name}
    assert not public
    assert not [n for n in dir(_core.Node) if n.startswith("_") and not n.startswith("__")]
    assert not [n for n in dir(_core.Session) if n.startswith("_") and not n.startswith("__")]


# -- logs -----------------------------------------------------------------------------------


def engine_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name.startswith("i6p.")]


async def test_a_refused_connection_is_logged_under_i6p(
    make_node: NodeFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="i6p")
    listener = await make_node(limits=Limits(max_connections=1))
    first = await make_node()
    held = await first.connect(listener.peer_id, loopback(listener))  # a dropped one closes
    assert await held.ping() > 0
    second = await make_node(handshake_timeout=1.0)
    with pytest.raises(HandshakeError):
        await second.connect(listener.peer_id, loopback(listener))

    def refused() -> list[logging.LogRecord]:
        return [r for r in engine_records(caplog) if "connection refused" in r.getMessage()]

    assert await wait_until(lambda: bool(refused()), 5)
    record = refused()[0]
    # The module path names the logger (the accept loop lives in net's node::accept).
    assert record.name.startswith("i6p.net.node") and record.levelno == logging.DEBUG
    assert record.i6p_target.startswith("i6p_net::node")  # type: ignore[attr-defined]
    assert record.name == "i6p." + record.i6p_target.removeprefix("i6p_").replace("::", ".")  # type: ignore[attr-defined]
    assert "why=" in record.getMessage() and "addr=" in record.getMessage()
    assert record.pathname.endswith(".rs") and record.lineno > 0


async def test_a_wrong_peer_id_is_logged_without_key_material(
    make_node: NodeFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="i6p")
    identity = Identity.generate()
    listener = await make_node(identity)
    dialer = await make_node()
    with pytest.raises(I6PError):
        await dialer.connect(Identity.generate().peer_id, loopback(listener))
    assert await wait_until(
        lambda: any("handshake failed" in r.getMessage() for r in engine_records(caplog)), 5
    )
    secret = identity._core.private_key_pem().splitlines()[1]  # the key's base64
    text = "\n".join(r.getMessage() for r in engine_records(caplog))
    assert text and secret not in text and identity.public_key.hex() not in text


async def test_engine_logs_follow_the_i6p_logger_level(
    make_node: NodeFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="i6p")
    listener = await make_node(limits=Limits(max_connections=1))
    first = await make_node()
    held = await first.connect(listener.peer_id, loopback(listener))  # a dropped one closes
    await held.ping()
    second = await make_node(handshake_timeout=1.0)
    with pytest.raises(HandshakeError):
        await second.connect(listener.peer_id, loopback(listener))
    await asyncio.sleep(0.3)
    assert not [r for r in engine_records(caplog) if r.levelno < logging.WARNING]


async def test_a_clean_small_transfer_says_little_at_info(
    make_node: NodeFactory, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="i6p")
    src = tmp_path / "src"
    write_random(src, 2 << 20)
    provider, fetcher = await make_node(), await make_node()
    ticket = provider.ticket(await provider.add_path(src))
    await fetcher.fetch(ticket, tmp_path / "dest", group_size=1 << 14)
    await fetcher.fetch(ticket, tmp_path / "fec", mode="fec")
    await provider.close()
    await fetcher.close()
    await asyncio.sleep(0.3)
    assert len(engine_records(caplog)) <= 5, [r.getMessage() for r in caplog.records]
    assert _core.testing.log_records_dropped() == 0


async def test_engine_threads_never_wait_for_the_gil_to_log(
    make_node: NodeFactory, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="i6p")
    src = tmp_path / "src"
    write_random(src, 96 << 20)
    provider, fetcher = await make_node(), await make_node()
    ticket = provider.ticket(await provider.add_path(src))
    # FEC mode logs every batch at DEBUG, on engine threads.
    awaitable, live = fetcher._core.fetch([ticket], tmp_path / "dest", FetchOptions(mode="fec"))
    task = asyncio.ensure_future(awaitable)
    assert await wait_until(lambda: live.done > 0, 20, 0.005)
    # Hold the GIL for a second: the log drain cannot run, and a fetch whose threads waited
    # for the GIL to log would stand still.
    interval = sys.getswitchinterval()
    sys.setswitchinterval(30)
    try:
        before, until = live.done, time.monotonic() + 1.0
        while time.monotonic() < until:
            pass
        moved = live.done - before
    finally:
        sys.setswitchinterval(interval)
    assert before < ticket.size, "the fetch ended too early to tell"
    assert moved > 0, (before, moved)
    await task
    assert await wait_until(lambda: any("FEC" in r.getMessage() for r in caplog.records), 5)
