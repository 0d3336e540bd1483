"""The headline figures: a verified fetch of a file, disk to disk in a tmpfs, through the
Python API, next to the bare-quinn baseline (one connection, one stream, same quinn, rustls
and settings, driven from Rust) and a raw stream through the Python API, all in the same run.

The provider and the receiver each run in a process of their own, so the CPU time and peak
RSS reported for each end are that end's alone; the baseline's CPU is both its ends together
(they share this process). A second test fetches a larger blob (2 GiB by default) once, for
both ends' peak RSS.

It also measures the floor of what a verified fetch must do on top of moving the bytes:
hashing them (BLAKE3, one thread), writing them into a new tmpfs file and reading them back,
in CPU-seconds per GB. When the baseline keeps every core busy, no fetch can beat
cores / (baseline CPU + floor); that bound is printed as a ratio to the baseline.
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

from i6p._core import testing
from i6p.bench import scratch_dir

from .bench_sessions import python_stream
from .conftest import BENCH_BYTES, summary

PEER = str(Path(__file__).with_name("peer.py"))
ROUNDS = int(os.environ.get("I6P_BENCH_ROUNDS", "5"))
RSS_BYTES = int(os.environ.get("I6P_BENCH_RSS_BYTES", str(2 << 30)))
MiB = 1 << 20
# The headline figures are at QUIC's usual packet size (bench_packet_size.py has the large ones).
DEFAULT_PAYLOAD = 1452


def _fill(path: Path, size: int) -> None:
    with path.open("wb") as f:
        for _ in range(size // MiB):
            f.write(os.urandom(MiB))
        f.write(os.urandom(size % MiB))


async def _json_line(stream: asyncio.StreamReader) -> dict[str, Any]:
    line = await asyncio.wait_for(stream.readline(), 600)
    result: dict[str, Any] = json.loads(line)
    return result


async def _fetch_between_processes(
    src: Path, dest: Path, max_udp_payload: int | None = DEFAULT_PAYLOAD
) -> dict[str, Any]:
    """One verified fetch from a provider process to a receiver process, both bound with
    ``max_udp_payload`` (None: the host's bound)."""
    env = dict(os.environ)
    env.pop("I6P_BENCH_MAX_UDP_PAYLOAD", None)
    if max_udp_payload is not None:
        env["I6P_BENCH_MAX_UDP_PAYLOAD"] = str(max_udp_payload)
    provider = await asyncio.create_subprocess_exec(
        sys.executable, PEER, "provide", str(src),
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, env=env,
    )  # fmt: skip
    assert provider.stdout is not None and provider.stdin is not None
    try:
        ticket = (await _json_line(provider.stdout))["ticket"]
        receiver = await asyncio.create_subprocess_exec(
            sys.executable,
            PEER,
            "fetch",
            ticket,
            str(dest),
            stdout=asyncio.subprocess.PIPE,
            env=env,
        )
        out, _ = await asyncio.wait_for(receiver.communicate(), 600)
        assert receiver.returncode == 0
        got: dict[str, Any] = json.loads(out)
        provider.stdin.close()
        served = await _json_line(provider.stdout)
    finally:
        if provider.returncode is None:
            provider.kill()
        await provider.wait()
    os.unlink(dest)
    return {"receiver": got, "provider": served}


async def _floor(tmp: Path, size: int) -> dict[str, float]:
    """The floor (see the module's docstring), measured in a process of its own: its 1 GiB
    of test data must not inflate this process, whose children would inherit its peak RSS."""
    floor = await asyncio.create_subprocess_exec(
        sys.executable, PEER, "floor", str(tmp), str(size), stdout=asyncio.subprocess.PIPE
    )
    out, _ = await asyncio.wait_for(floor.communicate(), 600)
    assert floor.returncode == 0
    result: dict[str, float] = json.loads(out)
    return result


async def _rounds(rounds: int) -> dict[str, list[float]]:
    r: dict[str, list[float]] = {
        k: []
        for k in (
            "baseline", "baseline_cpu", "python_stream", "fetch",
            "fetch_cpu_receiver", "fetch_cpu_provider", "rss_receiver", "rss_provider",
            "floor_hash", "floor_write", "floor_read",
        )
    }  # fmt: skip
    gb = BENCH_BYTES / 1e9
    with tempfile.TemporaryDirectory(dir=scratch_dir()) as tmp:
        src, dest = Path(tmp) / "src", Path(tmp) / "dest"
        _fill(src, BENCH_BYTES)
        for _ in range(rounds):
            cpu = os.times()
            seconds = await testing.bench_raw_quinn(BENCH_BYTES, max_udp_payload=DEFAULT_PAYLOAD)
            after = os.times()
            r["baseline"].append(BENCH_BYTES / seconds)
            r["baseline_cpu"].append((after.user + after.system - cpu.user - cpu.system) / gb)
            r["python_stream"].append(BENCH_BYTES / await python_stream(BENCH_BYTES))
            f = await _fetch_between_processes(src, dest)
            r["fetch"].append(BENCH_BYTES / f["receiver"]["seconds"])
            r["fetch_cpu_receiver"].append(f["receiver"]["cpu_s"] / gb)
            r["fetch_cpu_provider"].append(f["provider"]["cpu_s"] / gb)
            r["rss_receiver"].append(f["receiver"]["peak_rss"])
            r["rss_provider"].append(f["provider"]["peak_rss"])
            for k, v in (await _floor(Path(tmp), BENCH_BYTES)).items():
                r[f"floor_{k}"].append(v)
    return r


def _spread(values: list[float], scale: float, unit: str) -> str:
    return (
        f"{statistics.median(values) / scale:.2f} {unit} "
        f"[{min(values) / scale:.2f}-{max(values) / scale:.2f}]"
    )


def test_verified_fetch_vs_baseline(benchmark: Any) -> None:
    result: list[dict[str, list[float]]] = []
    benchmark.pedantic(lambda: result.append(asyncio.run(_rounds(ROUNDS))), rounds=1)
    r = result[0]
    med = {k: statistics.median(v) for k, v in r.items()}
    fetch_cpu = [
        a + b for a, b in zip(r["fetch_cpu_receiver"], r["fetch_cpu_provider"], strict=True)
    ]
    floor = [
        sum(parts) for parts in zip(r["floor_hash"], r["floor_write"], r["floor_read"], strict=True)
    ]
    cores = os.cpu_count() or 1
    busy = med["baseline"] / 1e9 * med["baseline_cpu"]  # cores the baseline keeps busy
    bound = cores / (med["baseline_cpu"] + statistics.median(floor)) * 1e9 / med["baseline"]
    ratios = {
        "ratio_fetch_to_baseline": med["fetch"] / med["baseline"],
        "ratio_python_stream_to_baseline": med["python_stream"] / med["baseline"],
        "ratio_fetch_cpu_to_baseline_cpu": statistics.median(fetch_cpu) / med["baseline_cpu"],
        "baseline_cores_busy": busy,
        "ratio_bound_from_floor": bound,
    }
    benchmark.extra_info.update(
        bytes=BENCH_BYTES, **{k: summary(v) for k, v in r.items()}, **ratios
    )
    print(
        f"\n{BENCH_BYTES >> 20} MiB over ::1, {ROUNDS} rounds, medians [min-max]:\n"
        f"  bare quinn stream (baseline)  {_spread(r['baseline'], MiB, 'MiB/s')}\n"
        f"  python API stream             {_spread(r['python_stream'], MiB, 'MiB/s')}"
        f"  = {ratios['ratio_python_stream_to_baseline']:.2f}x baseline\n"
        f"  verified fetch (tmpfs->tmpfs) {_spread(r['fetch'], MiB, 'MiB/s')}"
        f"  = {ratios['ratio_fetch_to_baseline']:.2f}x baseline\n"
        f"  CPU s/GB baseline, both ends  {_spread(r['baseline_cpu'], 1, 's')}\n"
        f"  CPU s/GB fetch receiver       {_spread(r['fetch_cpu_receiver'], 1, 's')}\n"
        f"  CPU s/GB fetch provider       {_spread(r['fetch_cpu_provider'], 1, 's')}\n"
        f"  CPU s/GB fetch, both ends     {_spread(fetch_cpu, 1, 's')}"
        f"  = {ratios['ratio_fetch_cpu_to_baseline_cpu']:.2f}x baseline\n"
        f"  peak RSS receiver / provider  {_spread(r['rss_receiver'], MiB, 'MiB')}"
        f" / {_spread(r['rss_provider'], MiB, 'MiB')}\n"
        f"  floor CPU s/GB: hash {_spread(r['floor_hash'], 1, 's')},"
        f" tmpfs write {_spread(r['floor_write'], 1, 's')},"
        f" read {_spread(r['floor_read'], 1, 's')}\n"
        f"  baseline keeps {busy:.2f} of {cores} cores busy; a fetch costing baseline + floor"
        f" CPU could reach at most {bound:.2f}x baseline"
        f"{'' if busy > 0.9 * cores else ' (baseline not CPU-bound: the bound does not apply)'}"
    )


def test_peak_rss_large_fetch(benchmark: Any) -> None:
    result: list[dict[str, Any]] = []

    def run() -> None:
        with tempfile.TemporaryDirectory(dir=scratch_dir()) as tmp:
            src = Path(tmp) / "src"
            _fill(src, RSS_BYTES)
            result.append(asyncio.run(_fetch_between_processes(src, Path(tmp) / "dest")))

    benchmark.pedantic(run, rounds=1)
    rx, tx = result[0]["receiver"]["peak_rss"], result[0]["provider"]["peak_rss"]
    benchmark.extra_info.update(bytes=RSS_BYTES, peak_rss_receiver=rx, peak_rss_provider=tx)
    print(
        f"\n{RSS_BYTES >> 20} MiB fetch: peak RSS receiver {rx / MiB:.0f} MiB, "
        f"provider {tx / MiB:.0f} MiB (each its own process, interpreter included)"
    )
