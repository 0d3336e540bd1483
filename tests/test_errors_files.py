"""One error hierarchy (issue 15): file errors are ``OSError``s with ``errno`` and ``filename``
and also ``I6PError``s; every bad value is an ``I6PError`` too; a closed node raises
``NodeClosed`` for everything; a failed fetch leaves nothing it cannot resume from; progress
starts with the real total."""

from __future__ import annotations

import asyncio
import errno
import glob
import json
import os
import pickle
import subprocess
import sys
import textwrap
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import i6p
import pytest
from i6p import FetchOptions, Identity, Limits, Node, PeerId, Ticket
from i6p._core import testing
from i6p.errors import (
    BlobNotFound,
    ConnectionLost,
    DestinationExists,
    DiskFull,
    FileError,
    FileExists,
    FileNotFound,
    I6PError,
    InsecureKeyFile,
    IntegrityError,
    InvalidArgument,
    IsADirectory,
    NodeClosed,
    NotADirectory,
    PeerIdMismatch,
    PermissionDenied,
    TransferRefused,
    Unreachable,
)

from .conftest import NodeFactory, connect_pair, fetch_until
from .test_transfer import b3_file, write_random

GROUP = 256 * 1024


def names(directory: Path) -> list[str]:
    """Everything in ``directory``."""
    return sorted(p.name for p in directory.iterdir())


def leftovers(directory: Path) -> list[str]:
    """The names in ``directory`` that a fetch made beside its destination."""
    return sorted(p.name for p in directory.iterdir() if ".i6p-" in p.name)


def assert_file_error(
    e: BaseException, cls: type[FileError], code: int, filename: Path | str
) -> None:
    """``e`` is ``cls``, an ``OSError`` and an ``I6PError``, with this errno and filename."""
    assert type(e) is cls, repr(e)
    assert isinstance(e, OSError) and isinstance(e, I6PError)
    assert isinstance(e, FileError)
    assert e.errno == code and e.strerror, (e.errno, e.strerror)
    assert e.filename == str(filename), e.filename
    assert str(filename) in str(e), str(e)


# -- 1. file errors ------------------------------------------------------------------------


def test_file_errors_pick_their_class_by_errno_and_survive_pickling() -> None:
    cases = [
        (errno.ENOENT, FileNotFound, FileNotFoundError),
        (errno.EACCES, PermissionDenied, PermissionError),
        (errno.EPERM, PermissionDenied, PermissionError),
        (errno.ENOTDIR, NotADirectory, NotADirectoryError),
        (errno.EISDIR, IsADirectory, IsADirectoryError),
        (errno.EEXIST, FileExists, FileExistsError),
        (errno.ENOSPC, DiskFull, OSError),
        (errno.EROFS, FileError, OSError),
    ]
    for code, cls, builtin in cases:
        e = FileError(code, os.strerror(code), "/some/path", "cannot do it")
        assert type(e) is cls and isinstance(e, builtin) and isinstance(e, I6PError)
        assert str(e) == f"cannot do it: [Errno {code}] {os.strerror(code)}: '/some/path'"
        again = pickle.loads(pickle.dumps(e))
        assert type(again) is cls and str(again) == str(e) and again.filename == "/some/path"
    # The one Python raised, carried over with its errno and filename.
    with pytest.raises(OSError) as caught:
        open("/nonexistent-i6p-dir/x")
    ours = FileError.of(caught.value, "context")
    assert type(ours) is FileNotFound and ours.filename == "/nonexistent-i6p-dir/x"
    assert issubclass(DestinationExists, FileExistsError)
    assert issubclass(InsecureKeyFile, PermissionError)


async def test_add_path_names_the_path_it_cannot_serve(
    make_node: NodeFactory, tmp_path: Path
) -> None:
    node = await make_node()
    missing = tmp_path / "missing"
    with pytest.raises(FileNotFoundError) as caught:
        await node.add_path(missing)
    assert_file_error(caught.value, FileNotFound, errno.ENOENT, missing)
    assert "cannot add" in str(caught.value)
    with pytest.raises(IsADirectoryError) as caught:
        await node.add_path(tmp_path)
    assert_file_error(caught.value, IsADirectory, errno.EISDIR, tmp_path)
    plain = tmp_path / "plain"
    plain.write_bytes(b"x")
    with pytest.raises(NotADirectoryError) as caught:
        await node.add_path(plain / "below")
    assert_file_error(caught.value, NotADirectory, errno.ENOTDIR, plain / "below")
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)  # opening it to read would wait for a writer forever
    with pytest.raises(FileError) as caught:
        await asyncio.wait_for(node.add_path(fifo), 5)
    assert_file_error(caught.value, FileError, errno.EINVAL, fifo)
    assert "not a regular file" in str(caught.value)


async def test_add_path_of_an_unreadable_file_is_a_permission_error(
    make_node: NodeFactory,
) -> None:
    # Tests run as root, who reads any file by its mode bits; sysfs refuses to open its
    # write-only files for reading even to root (EACCES). Nothing is written to it.
    found = glob.glob("/sys/devices/*/*/rescan") + glob.glob("/sys/class/*/hot_remove")
    if not found:
        pytest.skip("no write-only sysfs file to stand for an unreadable one")
    node = await make_node()
    with pytest.raises(PermissionError) as caught:
        await node.add_path(found[0])
    assert_file_error(caught.value, PermissionDenied, errno.EACCES, found[0])


async def test_a_destination_that_cannot_be_written_fails_before_dialing(
    make_node: NodeFactory, tmp_path: Path
) -> None:
    fetcher = await make_node(handshake_timeout=5.0)
    # A provider nobody runs: the fetch must fail on the destination, not on the dial.
    ticket = Ticket(Identity.generate().peer_id, ["[::1]:9"], "ab" * 32, 1000)
    plain = tmp_path / "plain"
    plain.write_bytes(b"x")
    cases = [
        (tmp_path / "missing" / "dest", FileNotFound, errno.ENOENT, tmp_path / "missing"),
        (plain / "dest", NotADirectory, errno.ENOTDIR, plain),
        (tmp_path, IsADirectory, errno.EISDIR, tmp_path),
    ]
    for dest, cls, code, culprit in cases:
        start = time.monotonic()
        with pytest.raises(cls) as caught:
            await fetcher.fetch(ticket, dest, overwrite=True)
        assert time.monotonic() - start < 1.0
        assert_file_error(caught.value, cls, code, culprit)
        assert "cannot fetch into" in str(caught.value)
    assert names(tmp_path) == ["plain"]


async def test_a_state_file_that_cannot_be_written_is_named_and_nothing_else_is_left(
    make_node: NodeFactory, tmp_path: Path
) -> None:
    src, out = tmp_path / "src", tmp_path / "out"
    out.mkdir()
    write_random(src, 3 * GROUP)
    provider, fetcher = await make_node(), await make_node()
    ticket = provider.ticket(await provider.add_path(src))
    spare = out / "dest.i6p-state.tmp"
    spare.mkdir()  # where the state is written before its rename
    with pytest.raises(IsADirectoryError) as caught:
        await fetcher.fetch(ticket, out / "dest")
    assert_file_error(caught.value, IsADirectory, errno.EISDIR, spare)
    # The part file it made is gone; what was planted is not its to remove.
    assert leftovers(out) == ["dest.i6p-state.tmp"] and spare.is_dir()
    spare.rmdir()
    assert (await fetcher.fetch(ticket, out / "dest")).hash == ticket.hash
    assert leftovers(out) == []


def test_key_file_errors_are_typed_and_name_the_file(tmp_path: Path) -> None:
    missing, key = tmp_path / "missing.pem", tmp_path / "key.pem"
    with pytest.raises(FileNotFoundError) as caught:
        Identity.load(missing)
    assert_file_error(caught.value, FileNotFound, errno.ENOENT, missing)
    assert "cannot load the key file" in str(caught.value)
    Identity.generate().save(key)
    key.chmod(0o644)
    with pytest.raises(PermissionError) as caught:
        Identity.load(key)
    assert_file_error(caught.value, InsecureKeyFile, errno.EACCES, key)
    assert "chmod 600" in str(caught.value)
    key.chmod(0o600)
    with pytest.raises(NotADirectoryError) as caught:
        Identity.generate().save(key / "sub" / "below.pem")
    assert_file_error(caught.value, NotADirectory, errno.ENOTDIR, key / "sub")
    assert "cannot save the key file" in str(caught.value)
    with pytest.raises(FileExistsError) as caught:
        Identity.generate().save(key, exist_ok=False)
    assert_file_error(caught.value, FileExists, errno.EEXIST, key)
    assert Identity.load(key).peer_id  # the key itself is untouched and usable


MOUNTED = textwrap.dedent(
    """
    import asyncio, errno, json, os, sys
    from i6p import Identity, Node
    from i6p.errors import DiskFull, FileError, I6PError

    src, ro, small = sys.argv[1], sys.argv[2], sys.argv[3]
    async def main():
        provider = await Node.bind(Identity.generate(), "[::1]:0")
        fetcher = await Node.bind(Identity.generate(), "[::1]:0")
        ticket = provider.ticket(await provider.add_path(src))
        out = {}
        try:
            await fetcher.fetch(ticket, os.path.join(ro, "dest"))
        except FileError as e:
            out["ro"] = [type(e).__name__, e.errno, e.filename, isinstance(e, I6PError)]
        try:
            await fetcher.fetch(ticket, os.path.join(small, "dest"))
        except DiskFull as e:
            out["full"] = [e.errno, e.filename, isinstance(e, OSError), str(e)]
        out["left"] = sorted(os.listdir(small))
        await provider.close(); await fetcher.close()
        print(json.dumps(out))
    asyncio.run(main())
    """
)


def test_read_only_and_full_file_systems_are_file_errors(tmp_path: Path) -> None:
    src, ro, small = tmp_path / "src", tmp_path / "ro", tmp_path / "small"
    ro.mkdir()
    small.mkdir()
    write_random(src, 8 << 20)
    # A private mount namespace: a read-only tmpfs and a 2 MiB one; the host's mounts are
    # untouched, and the mounts go away with the namespace.
    script = (
        f"mount -t tmpfs -o ro,size=1m i6p-ro {ro} && "
        f"mount -t tmpfs -o size=2m i6p-small {small} && "
        f"{sys.executable} -c '{MOUNTED}' {src} {ro} {small}"
    )
    run = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "sh", "-c", script],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    out = json.loads(run.stdout)
    assert out["ro"] == ["FileError", errno.EROFS, str(ro), True]
    code, filename, is_os_error, message = out["full"]
    assert code == errno.ENOSPC and is_os_error and "disk full" in message
    assert filename.startswith(str(small)) and ".i6p-" in filename
    # What was verified before the disk filled stays for a resume; the spare never does.
    assert out["left"] == ["dest.i6p-part", "dest.i6p-state"]


# -- 2. every bad value is an I6PError ---------------------------------------------------


async def test_bad_values_are_invalid_arguments_and_wrong_types_type_errors(
    make_node: NodeFactory, tmp_path: Path
) -> None:
    src = tmp_path / "src"
    write_random(src, 1000)
    node = await make_node()
    serving_only = await make_node(accept_sessions=False)
    ticket = node.ticket(await node.add_path(src))
    calls: list[Callable[[], object]] = [
        lambda: FetchOptions(streams=0),
        lambda: FetchOptions(group_size=3000),
        lambda: FetchOptions(mode="carrier-pigeon"),
        lambda: FetchOptions(backoff=-1.0),
        lambda: Limits(send_timeout=0),
        lambda: Limits(max_connections=-1),  # not an OverflowError
        lambda: Limits(read_ahead=1 << 70),
        lambda: node.ticket("ab" * 32),  # a blob this node does not serve
    ]
    for call in calls:
        with pytest.raises(InvalidArgument) as caught:
            call()
        assert isinstance(caught.value, ValueError) and str(caught.value)
    awaited: list[Callable[[], Awaitable[object]]] = [
        lambda: Node.bind(Identity.generate(), "[::1]:0", handshake_timeout=-1),
        lambda: Node.bind(Identity.generate(), "[::1]:0", window="huge"),
        lambda: Node.bind(Identity.generate(), "[::1]:0", max_streams=-1),
        lambda: Node.bind(Identity.generate(), "[::1]:0", max_window=-1),
        lambda: node.read_range(ticket, 0, 0),
        lambda: node.read_range(ticket, 900, 200),
        lambda: serving_only.accept(),
    ]
    for make in awaited:
        with pytest.raises(InvalidArgument):
            await make()
    with pytest.raises(TypeError) as wrong:
        FetchOptions(streams="eight")  # type: ignore[arg-type]
    assert not isinstance(wrong.value, ValueError)
    with pytest.raises(TypeError):
        Limits(max_requests="many")  # type: ignore[arg-type]


async def test_a_negative_readexactly_is_an_invalid_argument(make_node: NodeFactory) -> None:
    ours, _ = await connect_pair(await make_node(), await make_node())
    stream = await ours.open_stream()
    with pytest.raises(InvalidArgument):
        await stream.readexactly(-1)


# -- 3. closed means closed --------------------------------------------------------------


async def test_every_operation_of_a_closed_node_and_its_sessions_raises_node_closed(
    make_node: NodeFactory, tmp_path: Path
) -> None:
    src = tmp_path / "src"
    write_random(src, 1000)
    node, peer = await make_node(addr="[::1]:0"), await make_node(addr="[::1]:0")
    blob = await node.add_path(src)
    ticket = peer.ticket(await peer.add_path(src))
    session, _ = await connect_pair(node, peer)
    stream = await session.open_stream()
    await stream.write(b"x")
    await node.close()
    other = Identity.generate().peer_id
    operations: dict[str, Callable[[], object]] = {
        "connect": lambda: node.connect(peer.peer_id, f"[::1]:{peer.port}"),
        "connect to a stranger": lambda: node.connect(other, "[::1]:9"),
        "accept": lambda: node.accept(),
        "fetch": lambda: node.fetch(ticket, tmp_path / "dest"),
        "read_range": lambda: node.read_range(ticket, 0, 10),
        "served": lambda: node.served(blob),
        "served_bytes": lambda: node.served_bytes(blob),
        "rebind": lambda: node.rebind("[::1]:0"),
        "add_path": lambda: node.add_path(src),
        "remove": lambda: node.remove(blob),
        "ticket": lambda: node.ticket(blob),
        "allow_peers": lambda: node.allow_peers([other]),
        "open_stream": lambda: session.open_stream(),
        "accept_stream": lambda: session.accept_stream(),
        "ping": lambda: session.ping(),
        "write": lambda: stream.write(b"more"),
        "read": lambda: stream.read(),
    }
    wrong: dict[str, str] = {}
    for name, operation in operations.items():
        try:
            result = operation()
            if asyncio.iscoroutine(result) or isinstance(result, asyncio.Future):
                await asyncio.wait_for(result, 5)
        except NodeClosed as e:
            # A session's caller that catches ConnectionLost still does.
            assert isinstance(e, ConnectionLost) and not e.by_peer
            continue
        except Exception as e:  # collected, so that one run names every miss
            wrong[name] = repr(e)
            continue
        wrong[name] = "no error"
    assert wrong == {}
    assert not (tmp_path / "dest").exists() and leftovers(tmp_path) == []
    # What describes the node still answers.
    assert node.closed and node.peer_id == node.identity.peer_id
    assert node.load is not None and node.limits is not None


# -- 4. fetch tidiness -------------------------------------------------------------------


async def test_permanent_failures_leave_nothing_behind(
    make_node: NodeFactory, tmp_path: Path
) -> None:
    src, out = tmp_path / "src", tmp_path / "out"
    out.mkdir()
    write_random(src, 6 * GROUP + 5)
    provider, fetcher = await make_node(addr="[::1]:0"), await make_node(handshake_timeout=1.0)
    blob = await provider.add_path(src)
    ticket = provider.ticket(blob)
    # Refused: the provider allows someone else.
    provider.allow_peers([Identity.generate().peer_id])
    with pytest.raises(TransferRefused):
        await fetcher.fetch(ticket, out / "refused")
    provider.allow_peers(None)
    # Not found, peer id mismatch, unreachable.
    unknown = Ticket(ticket.peer_id, ticket.addrs, "ab" * 32, 1000)
    impostor = Ticket(Identity.generate().peer_id, ticket.addrs, ticket.hash, ticket.size)
    # Another identity: transfers to the provider's own PeerId would ride on its live session.
    nobody = Ticket(Identity.generate().peer_id, ["[::1]:9"], ticket.hash, ticket.size)
    failures: list[tuple[str, type[Exception], Ticket]] = [
        ("not-found", BlobNotFound, unknown),
        ("mismatch", PeerIdMismatch, impostor),
        ("unreachable", Unreachable, nobody),
    ]
    for name, error, bad in failures:
        with pytest.raises(error):
            await asyncio.wait_for(fetcher.fetch(bad, out / name, reconnects=0), 20)
    # Verification failing beyond max_failures: every group is a lie.
    testing.set_provider_faults(provider._core, testing.FLIPPED_DATA)
    with pytest.raises(IntegrityError):
        await fetcher.fetch(ticket, out / "lies")
    testing.set_provider_faults(provider._core, 0)
    assert names(out) == []


async def test_a_transient_failure_after_verified_data_keeps_what_resumes(
    make_node: NodeFactory, tmp_path: Path
) -> None:
    src, dest = tmp_path / "src", tmp_path / "dest"
    size = 64 << 20
    expected = write_random(src, size)
    identity = Identity.generate()
    provider = await Node.bind(identity, "[::1]:0")
    port = provider.port
    ticket = provider.ticket(await provider.add_path(src))
    fetcher = await make_node()
    # Served slowly, so the drop lands mid-fetch however fast this machine is.
    testing.set_provider_faults(provider._core, testing.SLOW)
    fetching, seen = await fetch_until(
        fetcher, ticket, dest, size // 4, group_size=16 << 10, reconnects=0
    )
    await provider.close()  # the provider goes away mid-transfer
    with pytest.raises(ConnectionLost) as lost:
        await fetching
    assert not isinstance(lost.value, NodeClosed)  # the fetcher's node is fine
    assert leftovers(tmp_path) == ["dest.i6p-part", "dest.i6p-state"]  # no spare
    provider = await Node.bind(identity, f"[::1]:{port}")
    try:
        await provider.add_path(src)
        result = await fetcher.fetch(ticket, dest)
    finally:
        await provider.close()
    assert result.bytes_reused >= seen[-1] > 0
    assert b3_file(dest) == expected and leftovers(tmp_path) == []


async def test_a_cancelled_fetch_leaves_no_spare(make_node: NodeFactory, tmp_path: Path) -> None:
    src, dest = tmp_path / "src", tmp_path / "dest"
    size = 32 << 20
    write_random(src, size)
    provider, fetcher = await make_node(), await make_node()
    ticket = provider.ticket(await provider.add_path(src))
    # Served slowly, so the cancel lands mid-fetch however fast this machine is.
    testing.set_provider_faults(provider._core, testing.SLOW)
    task, _ = await fetch_until(fetcher, ticket, dest, size // 8, group_size=16 << 10)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    # The engine lets go of the files a moment after the caller moved on.
    for _ in range(50):
        if ".i6p-state.tmp" not in "".join(leftovers(tmp_path)):
            break
        await asyncio.sleep(0.1)
    assert leftovers(tmp_path) == ["dest.i6p-part", "dest.i6p-state"]


async def test_a_refused_overwrite_keeps_the_destination_and_names_it(
    make_node: NodeFactory, tmp_path: Path
) -> None:
    src, dest = tmp_path / "src", tmp_path / "dest"
    write_random(src, 1000)
    dest.write_bytes(b"precious")
    provider, fetcher = await make_node(), await make_node()
    ticket = provider.ticket(await provider.add_path(src))
    with pytest.raises(FileExistsError) as caught:
        await fetcher.fetch(ticket, dest)
    assert_file_error(caught.value, DestinationExists, errno.EEXIST, dest)
    assert "overwrite=True" in str(caught.value)
    assert dest.read_bytes() == b"precious" and leftovers(tmp_path) == []


# -- 5. progress --------------------------------------------------------------------------


async def test_progress_starts_with_the_real_total(make_node: NodeFactory, tmp_path: Path) -> None:
    src, dest = tmp_path / "src", tmp_path / "dest"
    size = 3 * GROUP + 7
    write_random(src, size)
    provider, fetcher = await make_node(), await make_node()
    ticket = provider.ticket(await provider.add_path(src))
    calls: list[tuple[int, int]] = []

    def record(done: int, total: int) -> None:
        calls.append((done, total))

    progress: i6p.Progress = record
    await fetcher.fetch(ticket, dest, progress=progress)
    assert calls and all(total == size for _, total in calls), calls[:3]
    assert calls[-1] == (size, size)
    assert "Progress" in i6p.__all__ and i6p.Progress is i6p.node.Progress
    assert PeerId is i6p.PeerId  # the package's names stay where they were
