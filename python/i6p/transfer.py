"""Blobs, tickets and fetch results: the Python face of verified, resumable transfers.

A blob is named by its plain BLAKE3 hash (what ``b3sum`` prints). Transfers move in chunk
groups, each verified against that hash before it is written; see docs/PROTOCOL.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal, TypedDict

from . import _core

__all__ = [
    "Blob",
    "Collection",
    "CollectionResult",
    "Contact",
    "FecStats",
    "FetchChanges",
    "FetchOptions",
    "FetchResult",
    "Ticket",
]

Ticket = _core.Ticket
Contact = _core.Contact
#: How a fetch runs: a frozen value whose defaults are the engine's (``FetchOptions()``).
FetchOptions = _core.FetchOptions
#: What a completed fetch did (``Node.fetch`` returns it).
FetchResult = _core.FetchResult
#: What the shards of a FEC-mode fetch did (``FetchResult.fec``).
FecStats = _core.FecStats


@dataclass(frozen=True)
class Blob:
    """A blob this node serves."""

    #: BLAKE3 hash, 64 hex characters.
    hash: str
    #: Size in bytes.
    size: int
    #: The file it is served from.
    path: Path


@dataclass(frozen=True)
class Collection:
    """A directory this node serves as one collection (``Node.add_dir``): its listing is a
    blob like any other, and ``Node.ticket(collection)`` names the whole tree."""

    #: BLAKE3 hash of the listing, 64 hex characters.
    hash: str
    #: Size of the listing in bytes.
    size: int
    #: The directory it is served from.
    path: Path
    #: How many files it holds.
    files: int
    #: Bytes of all its files.
    bytes: int
    #: Its files as (relative path, size, hash), in listing order.
    entries: tuple[tuple[str, int, str], ...] = ()


@dataclass(frozen=True)
class CollectionResult:
    """What ``Node.fetch_dir`` did."""

    #: The directory the tree was restored into.
    path: Path
    #: Each file's fetch, by relative path (``None`` for a file an earlier run completed).
    files: dict[str, FetchResult | None]
    #: Bytes of all the files.
    size: int

    @property
    def bytes_fetched(self) -> int:
        """Bytes fetched from providers in this run."""
        return sum(r.bytes_fetched for r in self.files.values() if r is not None)


class FetchChanges(TypedDict, total=False):
    """Fields of ``FetchOptions`` that ``Node.fetch`` takes as keyword arguments (each one
    left out keeps the value of ``options``, by default the engine's)."""

    group_size: int
    streams: int
    request_size: int
    max_failures: int
    overwrite: bool
    reconnects: int
    backoff: float
    mode: Literal["plain", "fec"]
    fec_shape: tuple[int, int, int]
    shard_size: int | None
    fec_combine: bool
