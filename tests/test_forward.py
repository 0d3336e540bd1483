"""TCP over I6P (issue 20): `forward` on one node, `expose` on another, real TCP on both
ends. 100 concurrent connections with random sizes, every byte checked; half-close carried
one way at a time; a TCP reset carried as a reset; the allow-list refusing a peer; the CLI."""

from __future__ import annotations

import asyncio
import json
import os
import random
import socket
import struct
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from i6p import Node
from i6p.forward import Forwarding, expose, forward

from .conftest import NodeFactory


async def answer_after_eof(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Reads to the client's EOF, then sends back the length and the bytes, then EOF."""
    data = await reader.read()
    writer.write(len(data).to_bytes(8, "big") + data)
    await writer.drain()
    writer.close()
    await writer.wait_closed()


async def reset_at_once(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await reader.readexactly(1)
    sock = writer.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()  # TCP RST (the zero linger makes the close a reset)


async def tcp_server(handler: object) -> tuple[asyncio.Server, int]:
    server = await asyncio.start_server(handler, "::1", 0)  # type: ignore[arg-type]
    return server, server.sockets[0].getsockname()[1]


async def tunnel(
    make_node: NodeFactory, port: int, allow: list[str] | None = None, client: Node | None = None
) -> tuple[Forwarding, int]:
    """expose(port) on one node, forward on another: the forward's local port."""
    exposer = await make_node(addr="[::1]:0")
    await expose(exposer, port, "svc", host="::1", allow=allow)
    client = client or await make_node()
    fwd = await forward(client, exposer.peer_id, 0, "svc", addrs=f"[::1]:{exposer.port}")
    return fwd, fwd.port


@pytest.fixture
async def echo_port() -> AsyncIterator[int]:
    server, port = await tcp_server(answer_after_eof)
    async with server:
        yield port


async def test_a_hundred_tcp_connections_through_the_tunnel(
    make_node: NodeFactory, echo_port: int
) -> None:
    fwd, port = await tunnel(make_node, echo_port)
    rng = random.Random(20)

    async def one(size: int) -> None:
        body = rng.randbytes(size)
        reader, writer = await asyncio.open_connection("::1", port)
        writer.write(body)
        await writer.drain()
        writer.write_eof()  # half-close: the service answers only after it
        got = await reader.read()
        assert got == size.to_bytes(8, "big") + body, (size, len(got))
        writer.close()

    async with fwd:
        sizes = [rng.randrange(0, 1 << 20) for _ in range(100)]
        await asyncio.wait_for(asyncio.gather(*(one(s) for s in sizes)), 180)


async def test_a_tcp_reset_is_carried_as_a_reset(make_node: NodeFactory) -> None:
    server, port = await tcp_server(reset_at_once)
    async with server:
        fwd, local = await tunnel(make_node, port)
        async with fwd:
            reader, writer = await asyncio.open_connection("::1", local)
            writer.write(b"x")
            await writer.drain()
            with pytest.raises(ConnectionResetError):
                await asyncio.wait_for(reader.read(), 20)


async def test_a_peer_not_allowed_is_refused(make_node: NodeFactory, echo_port: int) -> None:
    friend = await make_node()
    fwd, local = await tunnel(make_node, echo_port, allow=[str(friend.peer_id)])
    async with fwd:
        reader, writer = await asyncio.open_connection("::1", local)
        writer.write(b"hello")
        writer.write_eof()
        with pytest.raises(ConnectionResetError):
            await asyncio.wait_for(reader.read(), 20)
    fwd, local = await tunnel(make_node, echo_port, allow=[str(friend.peer_id)], client=friend)
    async with fwd:
        reader, writer = await asyncio.open_connection("::1", local)
        writer.write(b"hello")
        writer.write_eof()
        assert await asyncio.wait_for(reader.read(), 20) == (5).to_bytes(8, "big") + b"hello"


async def test_the_service_half_closes_first(make_node: NodeFactory) -> None:
    """The service ends its side first (a greeting, then EOF) and still reads the client's
    upload to its end: each direction ends on its own."""
    uploaded: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()

    async def greet_then_read(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"hello, send me everything")
        writer.write_eof()
        uploaded.set_result(await reader.read())
        writer.close()

    server, port = await tcp_server(greet_then_read)
    async with server:
        fwd, local = await tunnel(make_node, port)
        async with fwd:
            reader, writer = await asyncio.open_connection("::1", local)
            assert await asyncio.wait_for(reader.read(), 20) == b"hello, send me everything"
            body = os.urandom(3 << 20)  # after the peer's EOF, the other way still carries
            writer.write(body)
            writer.write_eof()
            assert await asyncio.wait_for(uploaded, 30) == body
            writer.close()


async def test_a_service_that_is_not_listening_resets_the_client(make_node: NodeFactory) -> None:
    with socket.socket(socket.AF_INET6) as probe:  # a port nothing listens on
        probe.bind(("::1", 0))
        closed_port = probe.getsockname()[1]
    fwd, local = await tunnel(make_node, closed_port)
    async with fwd:
        reader, writer = await asyncio.open_connection("::1", local)
        writer.write(b"anyone?")
        with pytest.raises(ConnectionResetError):
            await asyncio.wait_for(reader.read(), 20)
        writer.close()


async def test_a_closed_forwarding_refuses_new_connections_and_keeps_old_ones(
    make_node: NodeFactory, echo_port: int
) -> None:
    fwd, local = await tunnel(make_node, echo_port)
    reader, writer = await asyncio.open_connection("::1", local)
    writer.write(b"before")
    await writer.drain()
    await asyncio.sleep(0.2)  # carried: the stream is open
    fwd.close()
    await asyncio.wait_for(fwd.wait_closed(), 10)
    assert not fwd.is_serving()
    with pytest.raises(ConnectionRefusedError):
        await asyncio.open_connection("::1", local)
    writer.write(b" and after")
    writer.write_eof()
    got = await asyncio.wait_for(reader.read(), 20)
    assert got == (16).to_bytes(8, "big") + b"before and after"


def test_the_cli_exposes_and_forwards(tmp_path: Path) -> None:
    """`i6p expose PORT --json` prints a contact; `i6p forward CONTACT 0 --json` its port;
    `i6p pipe CONTACT` carries its stdin and stdout."""
    script = (
        "import asyncio, sys\n"
        "async def h(r, w):\n"
        "    w.write((await r.read()).upper()); await w.drain(); w.close()\n"
        "async def main():\n"
        "    s = await asyncio.start_server(h, '::1', 0)\n"
        "    print(s.sockets[0].getsockname()[1], flush=True)\n"
        "    await s.serve_forever()\n"
        "asyncio.run(main())\n"
    )
    procs = []
    try:
        upper = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
        procs.append(upper)
        assert upper.stdout is not None
        tcp_port = upper.stdout.readline().strip()
        cli = [sys.executable, "-m", "i6p.cli"]
        env = {**os.environ, "I6P_HOME": str(tmp_path / "a")}
        exposer = subprocess.Popen(
            [*cli, "expose", tcp_port, "--host", "::1", "--json", "--addr", "[::1]:0"],
            stdout=subprocess.PIPE, text=True, env=env,
        )  # fmt: skip
        procs.append(exposer)
        assert exposer.stdout is not None
        contact = json.loads(exposer.stdout.readline())["contact"]
        env = {**os.environ, "I6P_HOME": str(tmp_path / "b")}
        forwarder = subprocess.Popen(
            [*cli, "forward", contact, "0", "--json"], stdout=subprocess.PIPE, text=True, env=env
        )
        procs.append(forwarder)
        assert forwarder.stdout is not None
        info = json.loads(forwarder.stdout.readline())
        port = info["port"]
        assert info["route"] == "direct"

        async def ask() -> bytes:
            reader, writer = await asyncio.open_connection("::1", port)
            writer.write(b"through the tunnel")
            writer.write_eof()
            return await asyncio.wait_for(reader.read(), 30)

        assert asyncio.run(ask()) == b"THROUGH THE TUNNEL"
        # `i6p pipe`: stdin to the service, the service to stdout (ssh's ProxyCommand).
        env = {**os.environ, "I6P_HOME": str(tmp_path / "c")}
        piped = subprocess.run(
            [*cli, "pipe", contact], input=b"through a pipe", capture_output=True, env=env,
            timeout=60,
        )  # fmt: skip
        assert piped.returncode == 0, piped.stderr
        assert piped.stdout == b"THROUGH A PIPE"
        # Regular files as stdin and stdout (`< in > out`), which asyncio cannot watch.
        (tmp_path / "in").write_bytes(b"from a file\n" * 50_000)
        with open(tmp_path / "in", "rb") as src, open(tmp_path / "out", "wb") as dst:
            filed = subprocess.run(
                [*cli, "pipe", contact], stdin=src, stdout=dst, stderr=subprocess.PIPE,
                env=env, timeout=60,
            )  # fmt: skip
        assert filed.returncode == 0, filed.stderr
        assert (tmp_path / "out").read_bytes() == b"FROM A FILE\n" * 50_000
    finally:
        for p in procs:
            p.kill()
            p.wait()


def test_the_cli_forwards_to_a_peer_not_reached_yet(tmp_path: Path) -> None:
    """A peer that does not answer when `i6p forward` starts: it says so, keeps listening,
    and each TCP connection dials again (reset while the peer stays away)."""
    from i6p import Contact, Identity

    nobody = Contact(Identity.generate().peer_id, ["[::1]:1"])
    env = {**os.environ, "I6P_HOME": str(tmp_path / "b")}
    forwarder = subprocess.Popen(
        [sys.executable, "-m", "i6p.cli", "forward", str(nobody), "0", "--json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    try:
        assert forwarder.stdout is not None and forwarder.stderr is not None
        info = json.loads(forwarder.stdout.readline())
        assert info["route"] is None
        assert "not reached yet" in forwarder.stderr.readline()

        async def ask() -> bytes:
            reader, writer = await asyncio.open_connection("::1", info["port"])
            writer.write(b"anyone?")
            try:
                return await asyncio.wait_for(reader.read(), 30)
            except ConnectionResetError:
                return b"reset"

        assert asyncio.run(ask()) == b"reset"
    finally:
        forwarder.kill()
        forwarder.wait()
