"""Directories as collections (add_dir / fetch_dir / `i6p send DIR`), blobs that hold no file
descriptor, and a provider that notices its source changed. Real nodes on loopback."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
import struct
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from i6p import Node, Ticket
from i6p.errors import (
    BlobNotFound,
    DestinationExists,
    IntegrityError,
    InvalidCollection,
    InvalidTicket,
    SourceChanged,
    TransferRefused,
)

from tests.conftest import NodeFactory, wait_until

LOOPBACK = "[::1]:0"


def tree(root: Path) -> dict[str, bytes]:
    """Every regular file under ``root`` by relative path (symbolic links not followed)."""
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and not p.is_symlink()
    }


def names(root: Path) -> list[str]:
    """The names of everything under ``root``, sorted."""
    return sorted(p.name for p in root.rglob("*"))


def make_tree(root: Path) -> dict[str, bytes]:
    (root / "sub" / "deeper").mkdir(parents=True)
    (root / "top.txt").write_bytes(b"hello, tree\n")
    (root / "empty").write_bytes(b"")
    (root / "sub" / "big.bin").write_bytes(os.urandom(3 << 20 | 12345))
    (root / "sub" / "deeper" / "été.txt").write_bytes(b"accents too")
    (root / "sub" / "same.txt").write_bytes(b"hello, tree\n")  # same blob as top.txt
    return tree(root)


async def test_a_tree_round_trips_and_a_second_run_keeps_what_is_there(
    make_node: NodeFactory, tmp_path: Path
) -> None:
    src, dest = tmp_path / "src", tmp_path / "dest"
    src.mkdir()
    want = make_tree(src)
    # Links and special files are not part of what is served.
    (src / "link").symlink_to(src / "top.txt")
    (src / "outside").symlink_to("/etc")
    os.mkfifo(src / "fifo")
    provider, fetcher = await make_node(addr=LOOPBACK), await make_node(addr=LOOPBACK)
    collection = await provider.add_dir(src)
    assert (collection.files, collection.bytes) == (len(want), sum(map(len, want.values())))
    assert [e[0] for e in collection.entries] == sorted(want, key=lambda p: p.encode())
    ticket = provider.ticket(collection)
    assert ticket.collection and Ticket.parse(str(ticket)) == ticket
    seen: list[tuple[int, int]] = []
    result = await asyncio.wait_for(
        fetcher.fetch_dir(str(ticket), dest, progress=lambda d, t: seen.append((d, t))), 60
    )
    assert tree(dest) == want
    assert result.size == collection.bytes and result.bytes_fetched == collection.bytes
    assert set(result.files) == set(want) and seen[-1] == (result.size, result.size)
    assert not any(p.name.endswith((".i6p-part", ".i6p-state")) for p in dest.rglob("*"))
    # Again: every file is already there and verified by hash, nothing is fetched.
    again = await asyncio.wait_for(fetcher.fetch_dir(ticket, dest), 60)
    assert again.bytes_fetched == 0 and all(r is None for r in again.files.values())
    # A file changed at the destination is not overwritten unless asked.
    (dest / "top.txt").write_bytes(b"mine now!!!!")
    with pytest.raises(DestinationExists, match=r"top\.txt"):
        await fetcher.fetch_dir(ticket, dest)
    await fetcher.fetch_dir(ticket, dest, overwrite=True)
    assert tree(dest) == want
    # A collection ticket is not a file ticket, and the reverse.
    with pytest.raises(InvalidTicket, match="fetch_dir"):
        await fetcher.fetch(ticket, tmp_path / "x")
    file_ticket = provider.ticket(await provider.add_path(src / "top.txt"))
    with pytest.raises(ValueError, match="not a collection"):
        await fetcher.fetch_dir(file_ticket, tmp_path / "y")


async def test_an_empty_directory_is_an_empty_collection(
    make_node: NodeFactory, tmp_path: Path
) -> None:
    (tmp_path / "src").mkdir()
    provider, fetcher = await make_node(addr=LOOPBACK), await make_node(addr=LOOPBACK)
    collection = await provider.add_dir(tmp_path / "src")
    assert (collection.files, collection.bytes, collection.size) == (0, 0, 12)
    result = await fetcher.fetch_dir(provider.ticket(collection), tmp_path / "dest")
    assert result.files == {} and names(tmp_path / "dest") == []
    (tmp_path / "file").write_bytes(b"x")
    with pytest.raises(OSError, match="not a directory"):
        await provider.add_dir(tmp_path / "file")
    # A name a requester would refuse fails the call, naming the file.
    (tmp_path / "src" / "back\\slash").write_bytes(b"x")
    with pytest.raises(OSError, match=r"back\\slash.*character"):
        await provider.add_dir(tmp_path / "src")


async def test_two_providers_of_one_tree_share_a_ticket(
    make_node: NodeFactory, tmp_path: Path
) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    want = make_tree(a)
    shutil.copytree(a, b)
    p1, p2 = await make_node(addr=LOOPBACK), await make_node(addr=LOOPBACK)
    fetcher = await make_node(addr=LOOPBACK)
    c1, c2 = await p1.add_dir(a), await p2.add_dir(b)
    assert c1.hash == c2.hash, "the listing is deterministic"
    joined = Ticket.join([p1.ticket(c1), p2.ticket(c2)])
    assert all(t.collection for t in Ticket.parse_all(joined))
    await asyncio.wait_for(fetcher.fetch_dir(joined, tmp_path / "dest"), 60)
    assert tree(tmp_path / "dest") == want
    # A removed collection's ticket no longer works; its files are still served.
    first = Ticket.parse_all(joined)[0]
    assert first.peer_id == p1.peer_id and p1.remove(c1)
    with pytest.raises(BlobNotFound):
        await asyncio.wait_for(fetcher.fetch_dir(first, tmp_path / "d2"), 30)
    file_hash = c1.entries[0][2]
    assert p1.ticket(file_hash).hash == file_hash


def raw_listing(entries: list[tuple[str, int, bytes]]) -> bytes:
    """A listing in the wire format, unchecked: what a hostile provider could send."""
    out = b"i6pcoll1" + struct.pack(">I", len(entries))
    for path, size, digest in entries:
        name = path.encode()
        out += struct.pack(">H", len(name)) + name + struct.pack(">Q", size) + digest
    return out


async def serve_listing(provider: Node, path: Path, listing: bytes) -> Ticket:
    """Serves ``listing`` as a collection's listing (as a hostile provider would)."""
    await asyncio.to_thread(path.write_bytes, listing)
    blob = await provider.add_path(path)
    return Ticket(provider.peer_id, [f"[::1]:{provider.port}"], blob.hash, blob.size, True)


@pytest.mark.parametrize(
    ("path", "why"),
    [
        ("../escaped", '".."'),
        ("a/../../escaped", '".."'),
        ("/tmp/escaped", "absolute"),
        ("a//b", "empty component"),
        ("a\\..\\escaped", "character"),
        ("a\x00b", "character"),
        ("", "empty component"),
    ],
)
async def test_hostile_listings_are_refused_before_anything_is_written(
    make_node: NodeFactory, tmp_path: Path, path: str, why: str
) -> None:
    provider, fetcher = await make_node(addr=LOOPBACK), await make_node(addr=LOOPBACK)
    real = tmp_path / "real.txt"
    real.write_bytes(b"content")
    digest = (await provider.add_path(real)).hash
    h = bytes.fromhex(digest)
    listing = raw_listing([("fine.txt", 7, h), (path, 7, h)])
    ticket = await serve_listing(provider, tmp_path / "listing", listing)
    dest = tmp_path / "work" / "dest"
    dest.parent.mkdir()
    with pytest.raises(InvalidCollection, match=why):
        await asyncio.wait_for(fetcher.fetch_dir(ticket, dest), 30)
    assert not dest.exists(), "something was written before the listing was refused"
    assert names(tmp_path) == ["listing", "real.txt", "work"]


async def test_duplicates_and_file_directory_clashes_are_refused(
    make_node: NodeFactory, tmp_path: Path
) -> None:
    provider, fetcher = await make_node(addr=LOOPBACK), await make_node(addr=LOOPBACK)
    h = bytes(32)
    for entries, why in [
        ([("a", 1, h), ("a", 1, h)], "twice"),
        ([("b", 1, h), ("a", 1, h)], "out of order"),
        ([("a", 1, h), ("a/b", 1, h)], "also the directory"),
    ]:
        ticket = await serve_listing(provider, tmp_path / "listing", raw_listing(entries))
        with pytest.raises(InvalidCollection, match=why):
            await asyncio.wait_for(fetcher.fetch_dir(ticket, tmp_path / "dest"), 30)
        assert not (tmp_path / "dest").exists()
    # Not a listing at all; a listing too large to be one is refused before it is fetched.
    ticket = await serve_listing(provider, tmp_path / "listing", b"just a file")
    with pytest.raises(InvalidCollection, match="magic"):
        await fetcher.fetch_dir(ticket, tmp_path / "dest")
    huge = Ticket(provider.peer_id, [f"[::1]:{provider.port}"], "00" * 32, 1 << 40, True)
    with pytest.raises(InvalidCollection, match="bytes"):
        await fetcher.fetch_dir(huge, tmp_path / "dest")


async def test_a_symbolic_link_in_the_destination_is_never_followed(
    make_node: NodeFactory, tmp_path: Path
) -> None:
    src, dest, elsewhere = tmp_path / "src", tmp_path / "dest", tmp_path / "elsewhere"
    (src / "d").mkdir(parents=True)
    (src / "d" / "x").write_bytes(b"payload")
    (src / "y").write_bytes(b"other")
    elsewhere.mkdir()
    provider, fetcher = await make_node(addr=LOOPBACK), await make_node(addr=LOOPBACK)
    ticket = provider.ticket(await provider.add_dir(src))
    dest.mkdir()
    # A directory of the tree is a link out of the destination...
    (dest / "d").symlink_to(elsewhere)
    with pytest.raises(DestinationExists, match="symbolic link"):
        await fetcher.fetch_dir(ticket, dest)
    # ... or a file of the tree is a link: refused, and nothing written anywhere.
    (dest / "d").unlink()
    (dest / "y").symlink_to(elsewhere / "target")
    with pytest.raises(DestinationExists, match="symbolic link"):
        await fetcher.fetch_dir(ticket, dest)
    assert list(elsewhere.iterdir()) == []
    assert sorted(p.name for p in dest.iterdir()) == ["y"]


async def test_a_changed_source_is_refused_clearly_and_the_provider_says_which(
    make_node: NodeFactory, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="i6p")
    provider, fetcher = await make_node(addr=LOOPBACK), await make_node(addr=LOOPBACK)
    edited, renamed, deleted = (tmp_path / n for n in ("edited", "renamed", "deleted"))
    for p in (edited, renamed, deleted):
        p.write_bytes(os.urandom(1 << 20))
    tickets = {p: provider.ticket(await provider.add_path(p)) for p in (edited, renamed, deleted)}
    # Edited in place (size and time change), replaced by rename with the same size, deleted.
    with edited.open("ab") as f:
        f.write(b"more")
    spare = tmp_path / "spare"
    spare.write_bytes(os.urandom(1 << 20))
    spare.rename(renamed)
    deleted.unlink()
    for p, ticket in tickets.items():
        dest = tmp_path / f"{p.name}.copy"
        with pytest.raises(SourceChanged, match="source changed since it was added") as e:
            await asyncio.wait_for(fetcher.fetch(ticket, dest), 30)
        assert isinstance(e.value, TransferRefused) and not isinstance(e.value, IntegrityError)
        assert str(p) not in str(e.value), "the provider's paths are not the requester's business"
        assert not dest.exists()
        # Still refused (the blob is stale), and the provider warned once, naming the file.
        with pytest.raises(SourceChanged):
            await asyncio.wait_for(fetcher.fetch(ticket, dest), 30)
    warned = lambda: [r for r in caplog.records if "changed since it was added" in r.getMessage()]  # noqa: E731
    assert await wait_until(lambda: len(warned()) >= 3, 5)
    assert len(warned()) == 3
    for p in tickets:
        assert sum(str(p) in r.getMessage() for r in warned()) == 1
    # Added again, the file is served with its new contents under its new hash.
    new = provider.ticket(await provider.add_path(edited))
    await asyncio.wait_for(fetcher.fetch(new, tmp_path / "fresh"), 30)
    assert (tmp_path / "fresh").read_bytes() == edited.read_bytes()


async def test_an_edit_that_keeps_size_and_time_is_caught_by_verification(
    make_node: NodeFactory, tmp_path: Path
) -> None:
    provider, fetcher = await make_node(addr=LOOPBACK), await make_node(addr=LOOPBACK)
    src = tmp_path / "src"
    src.write_bytes(os.urandom(1 << 20))
    ticket = provider.ticket(await provider.add_path(src))
    before = src.stat()
    src.write_bytes(os.urandom(1 << 20))  # same inode, same size
    os.utime(src, ns=(before.st_atime_ns, before.st_mtime_ns))
    # The provider cannot tell; the requester's verification can, and says what it is.
    with pytest.raises(IntegrityError, match="hash mismatch") as e:
        await asyncio.wait_for(fetcher.fetch(ticket, tmp_path / "copy"), 30)
    assert "signature" not in str(e.value) + e.value.detail
    assert not (tmp_path / "copy").exists()


FD_SCRIPT = textwrap.dedent(
    """
    import asyncio, os, resource, sys
    from pathlib import Path
    from i6p import Identity, Node

    resource.setrlimit(resource.RLIMIT_NOFILE, (200, 200))
    work = Path(sys.argv[1])

    async def main():
        provider = await Node.bind(Identity.generate(), "[::1]:0")
        fetcher = await Node.bind(Identity.generate(), "[::1]:0")
        blobs = []
        for i in range(300):
            p = work / f"blob{i}"
            p.write_bytes(os.urandom(100) + i.to_bytes(4, "big"))
            blobs.append(await provider.add_path(p))
        open_fds = len(os.listdir("/proc/self/fd"))
        session = await asyncio.wait_for(
            fetcher.connect(provider.peer_id, f"[::1]:{provider.port}"), 10
        )
        await session.ping()
        for i in (0, 150, 299):
            dest = work / f"copy{i}"
            await asyncio.wait_for(fetcher.fetch(provider.ticket(blobs[i]), dest), 20)
            assert dest.read_bytes() == (work / f"blob{i}").read_bytes()
        print(open_fds, len(os.listdir("/proc/self/fd")), flush=True)
        await fetcher.close()
        await provider.close()

    asyncio.run(main())
    """
)


def test_blobs_hold_no_file_descriptor_each(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-c", FD_SCRIPT, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    after_adding, after_fetching = map(int, done.stdout.split())
    # Two nodes' sockets, the runtime and Python's own: far below one per blob.
    assert after_adding < 100 and after_fetching < 100, done.stdout


def test_cli_sends_a_directory_and_gets_it_back(tmp_path: Path) -> None:
    src, dest = tmp_path / "src", tmp_path / "dest"
    src.mkdir()
    want = make_tree(src)
    cli = [sys.executable, "-m", "i6p.cli"]
    sender = subprocess.Popen(
        [*cli, "send", str(src), "--once", "--json", "--addr", LOOPBACK],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "I6P_HOME": str(tmp_path / "home")},
    )
    try:
        assert sender.stdout is not None
        info = json.loads(sender.stdout.readline())
        assert info["collection"] is True and info["files"] == len(want)
        got = subprocess.run(
            [*cli, "get", info["ticket"], str(dest), "--json", "--addr", LOOPBACK],
            capture_output=True,
            text=True,
            timeout=120,
            env={**os.environ, "I6P_HOME": str(tmp_path / "h2")},
        )
        assert got.returncode == 0, got.stderr
        result = json.loads(got.stdout)
        assert result["files"] == len(want) and result["size"] == sum(map(len, want.values()))
        assert tree(dest) == want
        assert sender.wait(timeout=30) == 0  # --once: every file was acknowledged
    finally:
        sender.kill()
        sender.wait()
    # A hostile or broken ticket fails in one line, with a non-zero exit.
    bad = subprocess.run(
        [*cli, "get", info["ticket"][:-3] + "aaa", str(tmp_path / "d2")],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "I6P_HOME": str(tmp_path / "h3")},
    )
    assert bad.returncode != 0 and len(bad.stderr.strip().splitlines()) == 1
