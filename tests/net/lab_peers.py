"""I6P nodes on the lab's hosts, driven through their agents: bind, serve a blob, connect,
fetch and verify. Shared by tests/net/test_lab_matrix.py and benches/reach_lab.py.

Each agent holds at most one node per name (``node`` by default) in its globals, with the
sessions it made in ``sessions`` keyed by the peer's PeerId text. Verification never trusts
the engine: the server hashes the random bytes it wrote with the ``blake3`` package, the
fetcher hashes the file it got the same way, and ``verified_fetch`` compares the two.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .agent_handle import Agent
from .lab import Lab


@dataclass(frozen=True)
class Peer:
    """A node bound in an agent: where it runs, who it is, which UDP port it has."""

    agent: Agent
    var: str
    peer_id: str
    port: int


@dataclass(frozen=True)
class Served:
    ticket: str
    hash: str
    size: int


async def start_node(agent: Agent, var: str = "node", **bind: Any) -> Peer:
    """Binds ``i6p.Node`` on ``[::]:0`` (dual-stack) in the agent, with keyword arguments of
    ``Node.bind`` given as Python literals (``handshake_timeout=2.0``)."""
    kwargs = "".join(f", {k}={v!r}" for k, v in bind.items())
    pid, port = await agent.run(
        f"{var} = await i6p.Node.bind(i6p.Identity.generate(), '[::]:0'{kwargs})\n"
        "sessions = globals().get('sessions', {})\n"
        f"[str({var}.peer_id), {var}.port]",
        timeout=15,
    )
    return Peer(agent, var, pid, port)


async def serve_blob(peer: Peer, size: int) -> Served:
    """Writes ``size`` random bytes to a file on the peer's host and serves it."""
    ticket, digest = await peer.agent.run(
        "import os, tempfile, blake3\n"
        f"data = os.urandom({size})\n"
        "fd, path = tempfile.mkstemp(prefix='i6p-lab-blob-')\n"
        "os.write(fd, data); os.close(fd)\n"
        f"blob = await {peer.var}.add_path(path)\n"
        f"[str({peer.var}.ticket(blob)), blake3.blake3(data).hexdigest()]",
        timeout=20,
    )
    return Served(ticket, digest, size)


async def connect(
    dialer: Peer,
    target: Peer,
    addr: str,
    timeout: float = 10.0,  # noqa: ASYNC109
) -> dict[str, Any]:
    """``dialer`` opens a session to ``target`` at ``addr`` (``host:port`` or
    ``[v6]:port``) and waits for its HELLO exchange: the session's route, the seconds from
    the call to a usable session, and the remote address."""
    result: dict[str, Any] = await dialer.agent.run(
        "import time\nt0 = time.monotonic()\n"
        f"s = await {dialer.var}.connect({target.peer_id!r}, {addr!r})\n"
        "await s.wait_established()\n"
        f"sessions[{target.peer_id!r}] = s\n"
        "{'seconds': time.monotonic() - t0, 'remote': s.remote_addr,\n"
        " 'route': s.route}",
        timeout=timeout,
    )
    return result


async def join(lab: Lab, peer: Peer, coordinator: Peer) -> dict[str, Any]:
    """``peer`` opens a session to ``coordinator`` (on c, public and dual-stack) at c's
    address in a family the peer's host has: the session a coordinated connect rides on."""
    host = lab.public_for(coordinator.agent.name, seen_from=peer.agent.name)
    joined = await connect(peer, coordinator, f"{host}:{coordinator.port}")
    # With one peer no address is trusted yet, so no dial-back runs by itself: ask the
    # coordinator for one, so the node knows whether it is public (reversal, direct dials).
    await peer.agent.run(
        f"try:\n    await sessions[{coordinator.peer_id!r}].dial_back()\n"
        "except i6p.errors.I6PError:\n    pass",
        timeout=10,
    )
    return joined


async def connect_via(
    dialer: Peer,
    target: Peer,
    coordinator: Peer,
    timeout: float = 20.0,  # noqa: ASYNC109
) -> dict[str, Any]:
    """``dialer`` opens a session to ``target`` by PeerId alone, introduced by
    ``coordinator`` (a peer both have sessions with): issue 16's ``node.connect(peer,
    addrs=None, via=...)``. Same result as ``connect``."""
    result: dict[str, Any] = await dialer.agent.run(
        "import time\nt0 = time.monotonic()\n"
        f"s = await {dialer.var}.connect({target.peer_id!r}, via={coordinator.peer_id!r})\n"
        "await s.wait_established()\n"
        f"sessions[{target.peer_id!r}] = s\n"
        "{'seconds': time.monotonic() - t0, 'remote': s.remote_addr, 'route': s.route}",
        timeout=timeout,
    )
    return result


async def ping(dialer: Peer, target: Peer) -> float:
    """The round trip in seconds of an I6P PING on the dialer's session to ``target``."""
    rtt: float = await dialer.agent.run(f"await sessions[{target.peer_id!r}].ping()", timeout=10)
    return rtt


async def verified_fetch(
    fetcher: Peer,
    served: Served,
    timeout: float = 30.0,  # noqa: ASYNC109
) -> dict[str, Any]:
    """Fetches ``served`` by its ticket (riding on a live session to its provider when there
    is one), hashes the file, and raises unless it matches the server's own hash."""
    result: dict[str, Any] = await fetcher.agent.run(
        "import os, tempfile, time, blake3\n"
        "dest = os.path.join(tempfile.mkdtemp(prefix='i6p-lab-get-'), 'blob')\n"
        "t0 = time.monotonic()\n"
        f"r = await {fetcher.var}.fetch({served.ticket!r}, dest)\n"
        "seconds = time.monotonic() - t0\n"
        "got = blake3.blake3(open(dest, 'rb').read()).hexdigest()\n"
        "os.unlink(dest)\n"
        "{'hash': got, 'engine_hash': r.hash, 'bytes_fetched': r.bytes_fetched,\n"
        " 'seconds': seconds}",
        timeout=timeout,
    )
    if result["hash"] != served.hash or result["engine_hash"] != served.hash:
        raise AssertionError(f"fetched {result}, served {served.hash}")
    return result


async def close_node(peer: Peer) -> None:
    await peer.agent.run(f"await {peer.var}.close()", timeout=10)
