"""Shared fixtures: real nodes on real UDP sockets on loopback."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from i6p import FetchResult, Identity, Node, Session, Ticket

NodeFactory = Callable[..., Awaitable[Node]]

# The CLI announces itself by mDNS unless told not to: tests run it on the host, whose
# interfaces no test traffic may leave by (the mDNS tests run in namespaces of their own).
os.environ["I6P_MDNS"] = "0"


def loopback(node: Node) -> str:
    """The node's address on ::1."""
    return f"[::1]:{node.port}"


async def wait_until(predicate: Callable[[], bool], seconds: float, step: float = 0.05) -> bool:
    """Polls ``predicate`` until it holds or ``seconds`` pass; returns its last value."""
    for _ in range(max(1, int(seconds / step))):
        if predicate():
            return True
        await asyncio.sleep(step)
    return predicate()


async def fetch_until(
    node: Node, ticket: Ticket, dest: object, done: int, **options: object
) -> tuple[asyncio.Task[FetchResult], list[int]]:
    """Starts a fetch and returns once ``done`` bytes are verified on disk: the running
    fetch, and the progress it reported so far (it goes on growing)."""
    seen: list[int] = []
    task = asyncio.create_task(
        node.fetch(ticket, dest, progress=lambda d, t: seen.append(d), **options)  # type: ignore[arg-type]
    )
    finished = await wait_until(lambda: task.done() or (bool(seen) and seen[-1] >= done), 60, 0.01)
    assert finished and not task.done(), "the fetch ended before the point asked for"
    return task, seen


@pytest.fixture
async def make_node() -> AsyncIterator[NodeFactory]:
    """Binds nodes on demand and closes them all at the end of the test."""
    nodes: list[Node] = []

    async def factory(identity: Identity | None = None, **kwargs: object) -> Node:
        node = await Node.bind(identity or Identity.generate(), **kwargs)  # type: ignore[arg-type]
        nodes.append(node)
        return node

    yield factory
    await asyncio.gather(*(n.close() for n in nodes))


async def connect_pair(a: Node, b: Node) -> tuple[Session, Session]:
    """A session from a to b, as seen from both ends."""
    ours, theirs = await asyncio.wait_for(
        asyncio.gather(a.connect(b.peer_id, loopback(b)), b.accept()), timeout=20
    )
    return ours, theirs


@pytest.fixture
async def pair(make_node: NodeFactory) -> tuple[Session, Session]:
    a = await make_node(capabilities={"side": "a"})
    b = await make_node(capabilities={"side": "b"})
    return await connect_pair(a, b)
