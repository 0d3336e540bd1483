"""Time from `i6p get KEY-TICKET` to the first verified byte, per discovery source (issue 18):
the address book (the getter met the sender before), mDNS (the getter in another namespace
on one bridge, a fresh home each run) and the Mainline DHT (a local testnet of 20 nodes, a
fresh home each run, with mainline's 2 s request timeout and with `--dht-timeout 0.3`).

Each run is one `i6p get --json` process; the figures are its `first_byte_s` (from the
fetch's start, discovery and dialing included, to the first verified group written) and
the process's wall time (interpreter start and node bind included). Medians of
I6P_BENCH_ROUNDS (default 7) runs of a 1 MiB file. Needs root for the mDNS namespaces; all
traffic stays on loopback or in them.

Run: .venv/bin/python -m pytest benches/bench_discovery.py -s
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from i6p import DhtTestnet, Identity, Node, PublicKey, Ticket

from tests.net.netns import bridged

from .conftest import summary

ROUNDS = int(os.environ.get("I6P_BENCH_ROUNDS", "7"))
CLI = [sys.executable, "-m", "i6p.cli"]


@contextmanager
def sender(src: Path, home: Path, *extra: str, ns: str | None = None) -> Iterator[dict[str, Any]]:
    """`i6p send SRC --json` running (in namespace `ns` if given); yields its JSON with the
    key ticket added as `by_key`."""
    prefix = ["ip", "netns", "exec", ns] if ns else []
    env = {**os.environ, "I6P_HOME": str(home), "I6P_MDNS": "1" if ns else "0"}
    proc = subprocess.Popen(
        [*prefix, *CLI, "send", str(src), "--json", *extra],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line, proc.stderr and proc.stderr.read()
        info = json.loads(line)
        key = PublicKey.parse(info["key"])
        yield info | {"by_key": str(Ticket.by_key(key, info["hash"], info["size"]))}
    finally:
        proc.kill()
        proc.wait(timeout=10)


def get(ticket: str, dest: Path, home: Path, *extra: str, ns: str | None = None) -> dict[str, Any]:
    """One `i6p get TICKET --json`: its JSON, with the process's wall time as `wall_s`."""
    prefix = ["ip", "netns", "exec", ns] if ns else []
    env = {**os.environ, "I6P_HOME": str(home), "I6P_MDNS": "1" if ns else "0"}
    start = time.monotonic()
    out = subprocess.run(
        [*prefix, *CLI, "get", ticket, "-o", str(dest), "--json", *extra],
        capture_output=True, text=True, env=env, timeout=120,
    )  # fmt: skip
    wall = time.monotonic() - start
    assert out.returncode == 0, out.stderr
    result: dict[str, Any] = json.loads(out.stdout)
    assert result["first_byte_s"] is not None, result
    return result | {"wall_s": wall}


def runs(one: Callable[[int], dict[str, Any]]) -> dict[str, dict[str, float]]:
    """`one(i)` ROUNDS times: summaries of first_byte_s and wall_s."""
    results = [one(i) for i in range(ROUNDS)]
    return {k: summary([r[k] for r in results]) for k in ("first_byte_s", "wall_s")}


def book_source(src: Path, tmp: Path) -> dict[str, dict[str, float]]:
    """The getter fetched once by the address ticket, so its book knows the sender."""
    with sender(src, tmp / "s-book", "--addr", "[::1]:0") as offer:
        home = tmp / "g-book"
        get(offer["ticket"], tmp / "book-warm", home)
        return runs(lambda i: get(offer["by_key"], tmp / f"book-{i}", home))


def dht_source(src: Path, tmp: Path, timeout: str | None) -> dict[str, dict[str, float]]:
    """A fresh getter each run, finding the sender's record in a testnet of 20."""
    testnet = DhtTestnet(20)
    dht = ["--dht", "--dht-bootstrap", ",".join(testnet.bootstrap)]
    dht += ["--dht-timeout", timeout] if timeout else []
    send = [*dht, "--publish-addrs", "--addr", "[::1]:0"]
    with sender(src, tmp / f"s-dht-{timeout}", *send) as offer:
        key = PublicKey.parse(offer["key"])

        async def published() -> None:
            node = await Node.bind(Identity.generate(), dht=True, dht_bootstrap=testnet.bootstrap)
            async with node:
                for _ in range(30):
                    if await node.dht_lookup(key) is not None:
                        return
                raise AssertionError("the sender's record never appeared")

        asyncio.run(published())
        return runs(
            lambda i: get(
                offer["by_key"], tmp / f"dht-{timeout}-{i}", tmp / f"g-dht-{i}-{timeout}", *dht
            )
        )


def mdns_source(src: Path, tmp: Path) -> dict[str, dict[str, float]]:
    """A fresh getter each run in namespace B, the sender in A, one bridge between them."""
    with bridged() as (a, b), sender(src, tmp / "s-mdns", "--addr", "[::]:0", ns=a) as offer:
        return runs(lambda i: get(offer["by_key"], tmp / f"mdns-{i}", tmp / f"g-mdns-{i}", ns=b))


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root for the mDNS namespaces")
def test_first_byte_per_discovery_source(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.write_bytes(os.urandom(1 << 20))
    figures = {
        "book": book_source(src, tmp_path),
        "mdns": mdns_source(src, tmp_path),
        "dht (2 s request timeout)": dht_source(src, tmp_path, None),
        "dht (--dht-timeout 0.3)": dht_source(src, tmp_path, "0.3"),
    }
    print(f"\n`i6p get KEY-TICKET` of 1 MiB, medians of {ROUNDS} runs (min-max):")
    for source, f in figures.items():
        fb, wall = f["first_byte_s"], f["wall_s"]
        print(
            f"  {source:28} first byte {fb['median']:.3f} s ({fb['min']:.3f}-{fb['max']:.3f}), "
            f"process {wall['median']:.3f} s ({wall['min']:.3f}-{wall['max']:.3f})"
        )
