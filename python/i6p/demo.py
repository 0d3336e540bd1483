"""``i6p demo``: the main job on one machine, with no arguments.

Two nodes on ``::1``: one serves a freshly generated file, the other fetches it through a
ticket with a progress bar. Every chunk group is verified against the BLAKE3 root before it is
written; at the end the copy is compared with the original byte for byte (SHA-256 of both).
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import sys
import tempfile
from pathlib import Path

from .identity import Identity
from .node import Node

__all__ = ["run_demo"]

_BLOCK = 1 << 20


def _generate(path: Path, size: int) -> None:
    with path.open("wb") as f:
        left = size
        while left > 0:
            n = min(left, _BLOCK)
            f.write(os.urandom(n))
            left -= n


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(4 * _BLOCK):
            digest.update(block)
    return digest.hexdigest()


async def run_demo(size: int = 256 << 20, show: bool = True) -> dict[str, object]:
    """Generates ``size`` bytes, sends them between two local nodes, and reports."""
    from .cli import _progress_bar

    def say(text: str) -> None:
        if show:
            print(text, file=sys.stderr, flush=True)

    with tempfile.TemporaryDirectory(prefix="i6p-demo-") as tmp:
        source, copy = Path(tmp) / "source.bin", Path(tmp) / "copy.bin"
        say(f"generating {size / 2**20:.0f} MiB of random data in {tmp}")
        await asyncio.to_thread(_generate, source, size)
        async with (
            await Node.bind(Identity.generate(), "[::]:0") as sender,
            await Node.bind(Identity.generate(), "[::]:0") as receiver,
        ):
            blob = await sender.add_path(source)
            ticket = sender.ticket(blob)
            say(f"sender   {sender.peer_id}  blake3 {blob.hash}")
            say(f"receiver {receiver.peer_id}")
            say(f"ticket   {ticket}")
            bar, update = _progress_bar(show, "fetching over ::1")
            with bar:
                result = await receiver.fetch(ticket, copy, progress=update)
        same = await asyncio.to_thread(_sha256, source) == await asyncio.to_thread(_sha256, copy)
    verified = same and result.hash == blob.hash and result.size == size
    rate = result.size / result.duration_s if result.duration_s > 0 else 0.0
    say(
        f"{result.size / 2**20:.0f} MiB in {result.duration_s:.2f} s = {rate / 2**20:.0f} MiB/s, "
        + (
            "verified: BLAKE3 of every chunk group, and the copy equals the original"
            if verified
            else "MISMATCH"
        )
    )
    return {
        "bytes": result.size,
        "seconds": result.duration_s,
        "rate_bytes_per_s": rate,
        "hash": result.hash,
        "verified": verified,
    }
