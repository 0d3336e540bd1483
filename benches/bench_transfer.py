"""Transfer benchmark: a verified fetch of a file, disk to disk in a tmpfs, through the Python
API, next to the engine's raw one-stream rate measured in the same run; with the receiver's
peak RSS (the receiver runs in its own process so its memory is its own)."""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import sys
import tempfile
import textwrap
from pathlib import Path
from typing import Any

from i6p import Identity, Node, _core

from .conftest import BENCH_BYTES, summary

RECEIVER = textwrap.dedent(
    """
    import asyncio, json, resource, sys
    from i6p import Identity, Node

    async def main():
        async with await Node.bind(Identity.generate()) as node:
            r = await node.fetch(sys.argv[1], sys.argv[2], overwrite=True)
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        print(json.dumps({"seconds": r.duration_s, "hash": r.hash, "peak_rss": rss}))
    asyncio.run(main())
    """
)


def _tmpfs() -> str:
    return "/dev/shm" if os.path.isdir("/dev/shm") else tempfile.gettempdir()


async def _fetch_round(ticket: str, dest: Path) -> dict[str, Any]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", RECEIVER, ticket, str(dest), stdout=asyncio.subprocess.PIPE
    )
    out, _ = await proc.communicate()
    assert proc.returncode == 0
    os.unlink(dest)
    result: dict[str, Any] = json.loads(out)
    return result


async def _rounds(rounds: int) -> tuple[list[float], list[float], list[int]]:
    engine, fetch, rss = [], [], []
    with tempfile.TemporaryDirectory(dir=_tmpfs()) as tmp:
        src = Path(tmp) / "src"
        with src.open("wb") as f:
            for _ in range(BENCH_BYTES >> 20):
                f.write(os.urandom(1 << 20))
        async with await Node.bind(Identity.generate()) as provider:
            blob = await provider.add_path(src)
            ticket = str(provider.ticket(blob))
            for _ in range(rounds):
                engine.append(BENCH_BYTES / await _core._bench_engine_stream(BENCH_BYTES))
                r = await _fetch_round(ticket, Path(tmp) / "dest")
                assert r["hash"] == blob.hash
                fetch.append(BENCH_BYTES / r["seconds"])
                rss.append(r["peak_rss"])
    return engine, fetch, rss


def test_verified_fetch_vs_engine_stream(benchmark: Any) -> None:
    result: list[tuple[list[float], list[float], list[int]]] = []
    benchmark.pedantic(lambda: result.append(asyncio.run(_rounds(5))), rounds=1)
    engine, fetch, rss = result[0]
    ratio = statistics.median(fetch) / statistics.median(engine)
    benchmark.extra_info.update(
        bytes=BENCH_BYTES,
        engine_stream_bytes_per_s=summary(engine),
        verified_fetch_bytes_per_s=summary(fetch),
        ratio_fetch_to_engine_stream=ratio,
        receiver_peak_rss_bytes=summary([float(x) for x in rss]),
    )
    mib = 2**20

    def spread(values: list[float] | list[int]) -> str:
        return (
            f"{statistics.median(values) / mib:.0f} MiB"
            f" [{min(values) / mib:.0f}-{max(values) / mib:.0f}]"
        )

    print(
        f"\nverified fetch {BENCH_BYTES >> 20} MiB tmpfs->tmpfs: {spread(fetch)}/s; "
        f"engine raw stream {spread(engine)}/s; ratio {ratio:.2f}; "
        f"receiver peak RSS {spread(rss)}"
    )
