"""``i6p demo``: the main job on one machine, with no arguments.

Two nodes on ``::1`` open a session and stream data over several QUIC streams; the receiver
checks every byte against the sender's SHA-256 and the rate is reported. (Verified file
transfers replace this stream once the transfer engine lands.)
"""

from __future__ import annotations

import asyncio
import hashlib
import sys
import time
from dataclasses import dataclass

from .identity import Identity
from .node import Node
from .session import Session

__all__ = ["DemoResult", "run_demo"]

_BLOCK = 1 << 20


@dataclass(frozen=True)
class DemoResult:
    """What the demo measured."""

    bytes: int
    seconds: float
    streams: int
    verified: bool

    @property
    def rate(self) -> float:
        """Bytes per second."""
        return self.bytes / self.seconds if self.seconds > 0 else 0.0


def _block(stream_index: int, i: int) -> bytes:
    # Cheap per-block variation so misplaced blocks are caught by the digest.
    head = stream_index.to_bytes(4, "big") + i.to_bytes(8, "big")
    return head + _PATTERN[len(head) :]


_PATTERN = bytes(range(256)) * (_BLOCK // 256)


async def _send(session: Session, index: int, blocks: int) -> bytes:
    stream = await session.open_stream()
    digest = hashlib.sha256()
    for i in range(blocks):
        block = _block(index, i)
        digest.update(block)
        await stream.write(block)
    await stream.finish()
    return digest.digest()


async def _receive(session: Session, progress: list[int]) -> tuple[int, bytes]:
    stream = await session.accept_stream()
    index = int.from_bytes(await stream.readexactly(4), "big")
    digest = hashlib.sha256(index.to_bytes(4, "big"))
    progress[0] += 4
    async for chunk in stream:
        digest.update(chunk)
        progress[0] += len(chunk)
    return index, digest.digest()


async def run_demo(size: int = 256 << 20, streams: int = 4, show: bool = True) -> DemoResult:
    """Streams ``size`` bytes (rounded up to whole MiB per stream) between two local nodes."""
    blocks = max(1, -(-size // (_BLOCK * streams)))
    total = blocks * _BLOCK * streams
    async with (
        await Node.bind(Identity.generate(), "[::]:0") as sender,
        await Node.bind(Identity.generate(), "[::]:0") as receiver,
    ):
        ours, theirs = await asyncio.gather(
            sender.connect(receiver.peer_id, f"[::1]:{receiver.port}"), receiver.accept()
        )
        if show:
            print(f"sender   {sender.peer_id}", file=sys.stderr)
            print(f"receiver {receiver.peer_id} at [::1]:{receiver.port}", file=sys.stderr)
        progress = [0]
        start = time.perf_counter()
        receiving = [asyncio.create_task(_receive(theirs, progress)) for _ in range(streams)]
        sending = [asyncio.create_task(_send(ours, i, blocks)) for i in range(streams)]
        reporter = asyncio.create_task(_report(progress, total, start)) if show else None
        sent = await asyncio.gather(*sending)
        received = dict(await asyncio.gather(*receiving))
        elapsed = time.perf_counter() - start
        if reporter is not None:
            reporter.cancel()
        verified = all(received.get(i) == digest for i, digest in enumerate(sent))
        await ours.close(0, "demo done")
    return DemoResult(bytes=total, seconds=elapsed, streams=streams, verified=verified)


async def _report(progress: list[int], total: int, start: float) -> None:
    while True:
        await asyncio.sleep(0.1)
        done = progress[0]
        rate = done / max(time.perf_counter() - start, 1e-9)
        bar = "#" * int(30 * done / total)
        print(
            f"\r[{bar:<30}] {done / 2**20:8.1f} / {total / 2**20:.0f} MiB  "
            f"{rate / 2**20:8.1f} MiB/s",
            end="",
            file=sys.stderr,
            flush=True,
        )
