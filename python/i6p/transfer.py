"""Blobs, tickets and fetch results: the Python face of verified, resumable transfers.

A blob is named by its plain BLAKE3 hash (what ``b3sum`` prints). Transfers move in chunk
groups, each verified against that hash before it is written; see docs/PROTOCOL.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal, TypedDict

from . import _core

__all__ = ["Blob", "FecStats", "FetchChanges", "FetchOptions", "FetchResult", "Ticket"]

Ticket = _core.Ticket
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
