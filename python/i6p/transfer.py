"""Blobs, tickets and fetch results: the Python face of verified, resumable transfers.

A blob is named by its plain BLAKE3 hash (what ``b3sum`` prints). Transfers move in chunk
groups, each verified against that hash before it is written; see docs/PROTOCOL.md.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from . import _core

__all__ = ["Blob", "FetchResult", "Ticket"]

Ticket = _core.Ticket


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
class FetchResult:
    """What a completed fetch did."""

    #: BLAKE3 hash of the blob (verified).
    hash: str
    #: Size in bytes.
    size: int
    #: Bytes of chunk-group data received over the network in this run.
    bytes_fetched: int
    #: Bytes found already verified on disk from an earlier, interrupted run.
    bytes_reused: int
    #: Wall time of this run, in seconds.
    duration_s: float
    #: Chunk groups that failed verification and were fetched again.
    failed_groups: int
    #: The finished file.
    path: Path
    #: Bytes of chunk-group data received from each provider, by PeerId text.
    providers: dict[str, int] = field(default_factory=dict)
    #: Providers dropped from the fetch, by PeerId text, with why: unreachable, gone
    #: mid-transfer, or serving data that failed verification.
    dropped: dict[str, str] = field(default_factory=dict)
    #: FEC mode only: ``shards_received``, ``shards_lost``, ``stripes_repaired`` (asked for
    #: again over the stream), ``stripes_combined`` (rebuilt from the shards of several
    #: providers) and ``loss`` (the final shard loss estimate).
    fec: dict[str, float] | None = None

    def as_dict(self) -> dict[str, object]:
        """The fields as JSON-ready values."""
        return {
            "hash": self.hash,
            "size": self.size,
            "bytes_fetched": self.bytes_fetched,
            "bytes_reused": self.bytes_reused,
            "duration_s": self.duration_s,
            "failed_groups": self.failed_groups,
            "path": str(self.path),
            "providers": dict(self.providers),
            "dropped": dict(self.dropped),
            "fec": None if self.fec is None else dict(self.fec),
        }
