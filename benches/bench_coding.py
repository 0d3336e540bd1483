"""Coding benchmarks: the engine's BLAKE3 tree and Reed-Solomon coder against the bare crates.

Each side runs in Rust with the GIL released (``i6p._core.testing.bench_hash``, ``bench_erasure``),
on the same data, alternating which side goes first. Figures are medians over the rounds with
their spread (min-max), and every engine figure comes with its ratio to the bare crate's
(engine throughput / bare throughput: above 1 the engine is faster). Single-thread and rayon
figures are reported separately; each parallel engine path is compared with the bare crate
parallelised over rayon.

BLAKE3: in memory, ``blake3::hash`` and ``update_rayon`` against the engine's tree
(``Outboard::from_bytes`` and ``from_bytes_parallel``: 16 KiB leaf chaining values plus the
subtrees above them, same root); from a file on tmpfs, ``update_mmap`` and
``update_mmap_rayon`` against ``hash_file`` (positioned reads through the page cache).
Reed-Solomon: the crate's ``encode`` / ``reconstruct_data`` on pre-split shards against the
engine's ``Coder`` from a flat buffer, splitting and copying included.

Sizes: I6P_BENCH_BYTES for hashing (default 1 GiB), I6P_BENCH_ERASURE_BYTES for Reed-Solomon
(default 64 MiB, at most I6P_BENCH_BYTES); I6P_BENCH_ROUNDS rounds (default 11: on a small
shared machine fewer rounds leave the medians a few percent apart from run to run).
"""

from __future__ import annotations

import os
import statistics
from typing import Any

import pytest
from i6p._core import testing

from .conftest import BENCH_BYTES, summary

ROUNDS = int(os.environ.get("I6P_BENCH_ROUNDS", "11"))
ERASURE_BYTES = int(os.environ.get("I6P_BENCH_ERASURE_BYTES", str(min(64 << 20, BENCH_BYTES))))


def _tmpfs() -> str | None:
    """A tmpfs directory for the file-hashing figures (so no disk is measured), if any."""
    try:
        with open("/proc/mounts") as f:
            mounts = {line.split()[1]: line.split()[2] for line in f}
    except OSError:
        return None
    return "/dev/shm" if mounts.get("/dev/shm") == "tmpfs" else None


def _compare(
    benchmark: Any,
    label: str,
    size: int,
    figures: dict[str, list[float]],
    pairs: list[tuple[str, str, str]],
) -> None:
    """Prints and records bare and engine throughput for each (title, bare, engine) pair."""
    print(f"\n{label}, {size / 2**20:.0f} MiB, {len(next(iter(figures.values())))} rounds:")
    for title, bare_key, engine_key in pairs:
        if bare_key not in figures or engine_key not in figures:
            continue
        bare = [size / t for t in figures[bare_key]]
        engine = [size / t for t in figures[engine_key]]
        ratio = statistics.median(figures[bare_key]) / statistics.median(figures[engine_key])
        benchmark.extra_info[f"{bare_key}_bytes_per_s"] = summary(bare)
        benchmark.extra_info[f"{engine_key}_bytes_per_s"] = summary(engine)
        benchmark.extra_info[f"ratio_{engine_key}_to_{bare_key}"] = ratio
        print(f"  {title:<28} bare {_rate(bare)}  engine {_rate(engine)}  engine/bare {ratio:.2f}")


def _rate(values: list[float]) -> str:
    mib = [v / 2**20 for v in values]
    return f"{statistics.median(mib):6.0f} MiB/s [{min(mib):.0f}-{max(mib):.0f}]"


def test_blake3_tree_vs_blake3(benchmark: Any) -> None:
    figures: dict[str, list[float]] = {}
    benchmark.pedantic(
        lambda: figures.update(testing.bench_hash(BENCH_BYTES, ROUNDS, _tmpfs())), rounds=1
    )
    benchmark.extra_info.update(bytes=BENCH_BYTES)
    _compare(
        benchmark,
        "BLAKE3",
        BENCH_BYTES,
        figures,
        [
            ("memory, 1 thread", "bare_hash", "engine_outboard"),
            ("memory, rayon", "bare_update_rayon", "engine_outboard_par"),
            ("tmpfs file, 1 thread", "bare_mmap", "engine_hash_file_1t"),
            ("tmpfs file, rayon", "bare_mmap_rayon", "engine_hash_file"),
        ],
    )


@pytest.mark.parametrize("k,m", [(10, 4), (32, 8)], ids=["10+4", "32+8"])
def test_reed_solomon_vs_crate(benchmark: Any, k: int, m: int) -> None:
    figures: dict[str, list[float]] = {}
    benchmark.pedantic(
        lambda: figures.update(testing.bench_erasure(k, m, ERASURE_BYTES, ROUNDS)), rounds=1
    )
    benchmark.extra_info.update(bytes=ERASURE_BYTES, data_shards=k, parity_shards=m)
    _compare(
        benchmark,
        f"Reed-Solomon {k}+{m} ({m} data shards lost for reconstruct)",
        ERASURE_BYTES,
        figures,
        [
            ("encode, 1 thread", "bare_encode", "engine_encode"),
            ("encode, rayon", "bare_encode_par", "engine_encode_par"),
            ("reconstruct, 1 thread", "bare_reconstruct", "engine_reconstruct"),
            ("reconstruct, rayon", "bare_reconstruct_par", "engine_reconstruct_par"),
        ],
    )


@pytest.mark.parametrize("shard_len", [1200, 64 << 10], ids=["1200B", "64KiB"])
@pytest.mark.parametrize("k,m", [(10, 4), (32, 8)], ids=["10+4", "32+8"])
def test_reed_solomon_stripes_vs_crate(benchmark: Any, k: int, m: int, shard_len: int) -> None:
    """FEC mode's coding: many stripes of k shards of ``shard_len`` bytes, one at a time."""
    figures: dict[str, list[float]] = {}
    stripe = k * shard_len
    size = ERASURE_BYTES // stripe * stripe
    benchmark.pedantic(
        lambda: figures.update(
            testing.bench_erasure_stripes(k, m, shard_len, ERASURE_BYTES, ROUNDS)
        ),
        rounds=1,
    )
    benchmark.extra_info.update(bytes=size, data_shards=k, parity_shards=m, shard_len=shard_len)
    _compare(
        benchmark,
        f"Reed-Solomon {k}+{m}, {shard_len}-byte shards, stripe by stripe ({m} lost each)",
        size,
        figures,
        [
            ("encode, 1 thread", "bare_stripes_encode", "engine_stripes_encode"),
            ("reconstruct, 1 thread", "bare_stripes_reconstruct", "engine_stripes_reconstruct"),
        ],
    )
