"""Restoring a collection (a directory served with ``Node.add_dir``) from its ticket.

The listing comes from a peer and names paths to write, so it is hostile input: the engine
decodes it with every check (``InvalidCollection``: absolute paths, ``..``, empty
components, control characters, backslashes, duplicates, a file that is also a directory,
bounds), and then, before anything is written, every path is checked against the
destination: no component may be a symbolic link or a non-directory, and no file may be
anything but a regular file (``DestinationExists`` otherwise). Files are then fetched one
by one (a few at once), each verified and resumable as ``Node.fetch`` is; a file an
earlier run completed (its hash matches) is kept.

What is checked is the destination as it is when the fetch starts: another user able to
write inside it while the fetch runs could still swap a directory for a link, so fetch into
a directory only you can write to.
"""

from __future__ import annotations

import asyncio
import errno
import os
import stat
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from . import _core
from .errors import DestinationExists, InvalidCollection
from .transfer import CollectionResult, FetchOptions, FetchResult, Ticket

__all__ = ["fetch_tree"]

#: Files fetched at once.
_PARALLEL_FILES = 4

Fetch = Callable[[list[Ticket], Path, Callable[[int, int], object]], Awaitable[FetchResult]]
ReadListing = Callable[[Ticket, int], Awaitable[bytes]]


@dataclass
class _File:
    path: str
    size: int
    hash: str
    done: bool = False


async def fetch_tree(
    tickets: list[Ticket],
    dest: Path,
    read_listing: ReadListing,
    fetch: Fetch,
    options: FetchOptions,
    progress: Callable[[int, int], object] | None,
) -> CollectionResult:
    """Fetches the listing, checks it and the destination, then fetches every file."""
    ticket = tickets[0]
    if not ticket.collection:
        raise ValueError("not a collection ticket: fetch it with Node.fetch")
    if any(t.hash != ticket.hash or not t.collection for t in tickets):
        raise ValueError("the tickets are not all for the same collection")
    if ticket.size > _core.MAX_LISTING or ticket.size == 0:
        raise InvalidCollection(
            f"a listing of {ticket.size} bytes: collection listings hold 12 to "
            f"{_core.MAX_LISTING} bytes"
        )
    listing = await read_listing(ticket, ticket.size)
    files = [_File(path, size, digest) for path, size, digest in _core.decode_listing(listing)]
    # Many lstat calls for a large tree: off the event loop.
    await asyncio.to_thread(_check_destination, dest, files)
    for f in files:
        f.done = await _already_there(dest / f.path, f, options.overwrite)
    total = sum(f.size for f in files)
    done = {f.path: f.size for f in files if f.done}
    results: dict[str, FetchResult | None] = {f.path: None for f in files if f.done}
    # Created only now that every path was checked, without following links.
    await asyncio.to_thread(_make_tree, dest, [f.path for f in files if not f.done])
    slots = asyncio.Semaphore(_PARALLEL_FILES)

    async def one(f: _File) -> None:
        def moved(d: int, _total: int) -> None:
            done[f.path] = d
            if progress is not None:
                progress(sum(done.values()), total)

        async with slots:
            file_tickets = [t.for_blob(f.hash, f.size) for t in tickets]
            results[f.path] = await fetch(file_tickets, dest / f.path, moved)
            done[f.path] = f.size

    if progress is not None:
        progress(sum(done.values()), total)
    await asyncio.gather(*(one(f) for f in files if not f.done))
    if progress is not None:
        progress(total, total)
    ordered = {f.path: results.get(f.path) for f in files}
    return CollectionResult(path=dest, files=ordered, size=total)


def _lstat(path: Path) -> os.stat_result | None:
    try:
        return path.lstat()
    except FileNotFoundError:
        return None


def _in_the_way(path: Path, why: str) -> DestinationExists:
    """Something at ``path`` that restoring the tree must not write over or through."""
    return DestinationExists(errno.EEXIST, why, str(path), "cannot restore the collection")


def _check_destination(dest: Path, files: list[_File]) -> None:
    """Refuses, before anything is written, a destination where a file of the listing would
    go through a symbolic link or a non-directory, or land on something not a regular file."""
    st = _lstat(dest)
    if st is not None and not stat.S_ISDIR(st.st_mode):
        raise _in_the_way(dest, "exists and is not a directory")
    checked: set[str] = set()
    for f in files:
        parts = f.path.split("/")
        for depth in range(1, len(parts)):
            sub = "/".join(parts[:depth])
            if sub in checked:
                continue
            checked.add(sub)
            st = _lstat(dest / sub)
            if st is not None and not stat.S_ISDIR(st.st_mode):
                raise _in_the_way(
                    dest / sub,
                    f"is in the way of {f.path!r}: not a directory (a symbolic link is never "
                    "followed)",
                )
        st = _lstat(dest / f.path)
        if st is not None and not stat.S_ISREG(st.st_mode):
            raise _in_the_way(
                dest / f.path,
                "exists and is not a regular file (a symbolic link is never followed)",
            )


async def _already_there(path: Path, f: _File, overwrite: bool) -> bool:
    """Whether an earlier run completed this file (same size and hash); a different file
    there is refused unless overwriting was asked for."""
    st = _lstat(path)
    if st is None:
        return False
    if st.st_size == f.size and await _core.hash_file(path) == f.hash:
        return True
    if overwrite:
        return False
    raise _in_the_way(
        path, "already exists with other contents (pass overwrite=True to replace it)"
    )


def _make_tree(dest: Path, paths: list[str]) -> None:
    dest.mkdir(parents=True, exist_ok=True)
    for path in paths:
        _make_dirs(dest, path)


def _make_dirs(dest: Path, relative: str) -> None:
    """Creates the directories of ``relative`` under ``dest`` one by one, refusing any that
    is not a real directory (it may have changed since the check)."""
    at = dest
    for part in relative.split("/")[:-1]:
        at = at / part
        try:
            at.mkdir()
        except FileExistsError:
            st = at.lstat()
            if not stat.S_ISDIR(st.st_mode):
                raise _in_the_way(at, "is not a directory") from None
