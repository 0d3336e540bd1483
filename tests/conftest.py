"""Shared fixtures: real nodes on real UDP sockets on loopback."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from i6p import Identity, Node, Session

NodeFactory = Callable[..., Awaitable[Node]]


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
