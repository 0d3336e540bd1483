"""A short check of an installed wheel, run from outside the source tree: the version agrees
with the wheel's metadata, two nodes on ::1 fetch a file through a ticket and verify it, and
Reed-Solomon coding (the C kernels the wheel was built with) rebuilds lost shards.
`wheel_smoke.py erasure` runs only the coding (for an emulated CPU without AVX2)."""

from __future__ import annotations

import asyncio
import importlib.metadata
import os
import sys
import tempfile
from pathlib import Path

import i6p
from i6p import Identity, Node, erasure


async def fetch_once(tmp: Path) -> None:
    src = tmp / "src"
    src.write_bytes(os.urandom(4 << 20))
    async with await Node.bind(Identity.generate(), "[::1]:0") as provider:
        async with await Node.bind(Identity.generate(), "[::1]:0") as fetcher:
            blob = await provider.add_path(src)
            result = await asyncio.wait_for(fetcher.fetch(provider.ticket(blob), tmp / "d"), 60)
            assert result.hash == blob.hash and (tmp / "d").read_bytes() == src.read_bytes()
            # The FEC mode: shards in datagrams, Reed-Solomon in the engine.
            fec = await asyncio.wait_for(
                fetcher.fetch(provider.ticket(blob), tmp / "f", mode="fec"), 60
            )
            assert fec.hash == blob.hash and (tmp / "f").read_bytes() == src.read_bytes()


def code() -> None:
    """Reed-Solomon through the wheel's C kernels: encode, lose 4 of 20 shards, rebuild."""
    data = os.urandom(1 << 20)
    shards: list[bytes | None] = list(erasure.encode(data, 16, 4))
    for lost in (0, 5, 9, 17):
        shards[lost] = None
    assert erasure.reconstruct(shards, 16, 4, size=len(data)) == data


def main() -> None:
    if sys.argv[1:] == ["erasure"]:  # alone, under an emulated older CPU
        code()
        print(f"erasure ok, kernels built for {erasure.KERNEL_ARCH}")
        return
    assert importlib.metadata.version("i6p") == i6p.__version__, i6p.__version__
    code()
    with tempfile.TemporaryDirectory() as tmp:
        asyncio.run(fetch_once(Path(tmp)))
    print(f"smoke: i6p {i6p.__version__} (protocol {i6p.PROTOCOL_VERSION}): fetch, FEC, erasure ok")


if __name__ == "__main__":
    main()
