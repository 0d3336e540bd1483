"""Cancellation from asyncio, and no leaked threads or file descriptors."""

from __future__ import annotations

import asyncio
import gc
import os
import socket
import time

import pytest
from i6p import Identity, Node

from .conftest import NodeFactory, connect_pair, wait_until


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def threads() -> int:
    return len(os.listdir("/proc/self/task"))


async def cancel_soon(task: asyncio.Task[object], delay: float = 0.1) -> float:
    await asyncio.sleep(delay)
    start = time.monotonic()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    return time.monotonic() - start


async def test_cancelled_read_leaves_the_stream_usable(make_node: NodeFactory) -> None:
    a, b = await make_node(), await make_node()
    ours, theirs = await connect_pair(a, b)
    stream = await ours.open_stream()
    await stream.write(b"hi")
    incoming = await theirs.accept_stream()
    assert await incoming.read(2) == b"hi"
    reading = asyncio.create_task(incoming.read())
    assert await cancel_soon(reading) < 1
    await stream.write(b"after the cancel")
    await stream.finish()
    assert await asyncio.wait_for(incoming.read(), 10) == b"after the cancel"


async def test_cancelled_accept_leaves_the_node_usable(make_node: NodeFactory) -> None:
    a, b = await make_node(), await make_node()
    accepting = asyncio.create_task(b.accept())
    assert await cancel_soon(accepting) < 1
    ours, theirs = await connect_pair(a, b)
    assert theirs.remote_peer_id == a.peer_id
    stream_wait = asyncio.create_task(ours.accept_stream())
    assert await cancel_soon(stream_wait) < 1
    assert await ours.ping() > 0


async def test_cancelled_connect_stops_dialing(make_node: NodeFactory) -> None:
    a = await make_node(handshake_timeout=60)
    # A UDP port that never answers: the dial would otherwise run for a minute.
    silent = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    silent.bind(("::1", 0))
    try:
        target = f"[::1]:{silent.getsockname()[1]}"
        dialing = asyncio.create_task(a.connect(Identity.generate().peer_id, target))
        assert await cancel_soon(dialing, 0.3) < 1
    finally:
        silent.close()
    assert [t for t in asyncio.all_tasks() if t is not asyncio.current_task()] == []


async def _cycle(count: int) -> None:
    for _ in range(count):
        node = await Node.bind(Identity.generate())
        await node.close()
        del node


async def test_200_nodes_leak_no_threads_or_fds() -> None:
    # Warm up: the engine's runtime and a few pooled threads exist after the first nodes.
    await _cycle(5)
    gc.collect()
    await asyncio.sleep(0.2)
    fds_before, threads_before = open_fds(), threads()
    await _cycle(200)
    # Also sessions: nodes that talked to each other.
    for _ in range(20):
        a = await Node.bind(Identity.generate())
        b = await Node.bind(Identity.generate())
        ours, _theirs = await connect_pair(a, b)
        await ours.ping()
        await a.close()
        await b.close()
        del a, b, ours, _theirs
    gc.collect()
    # Pooled threads finish 5 s after their last task; sockets close when the endpoint stops.
    await wait_until(lambda: open_fds() <= fds_before and threads() <= threads_before, 15)
    assert open_fds() <= fds_before, (fds_before, open_fds())
    assert threads() <= threads_before, (threads_before, threads())


async def test_dropping_a_node_without_close_releases_its_socket() -> None:
    await _cycle(1)
    gc.collect()
    await asyncio.sleep(0.2)
    before = open_fds()
    for _ in range(20):
        node = await Node.bind(Identity.generate())
        assert node.port > 0
        del node
    gc.collect()

    def released() -> bool:
        # PyO3 defers a decref made on an engine thread until the next call into the engine
        # takes the GIL; the last node can wait there, so each poll makes one such call.
        Identity.generate()
        return open_fds() <= before

    await wait_until(released, 10)
    assert open_fds() <= before


async def _one_session() -> float:
    a = await Node.bind(Identity.generate())
    b = await Node.bind(Identity.generate())
    try:
        ours, _ = await connect_pair(a, b)
        return await ours.ping()
    finally:
        await a.close()
        await b.close()


def test_the_engine_serves_successive_event_loops() -> None:
    assert asyncio.run(_one_session()) > 0
    assert asyncio.run(_one_session()) > 0


def test_a_forked_child_gets_its_own_runtime() -> None:
    assert asyncio.run(_one_session()) > 0  # the parent's runtime is running now
    pid = os.fork()
    if pid == 0:  # child: tokio's threads did not survive the fork; the engine rebuilds
        code = 1
        try:
            code = 0 if asyncio.run(asyncio.wait_for(_one_session(), 30)) > 0 else 1
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert asyncio.run(_one_session()) > 0
