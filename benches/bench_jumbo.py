"""Large packets on a jumbo-frame path (issue 17, item 1): the rounds of bench_packet_size run
in a network namespace of their own whose loopback has MTU 9,000, so a node's default packets
are 8,952-byte payloads (the route's MTU bounds its discovery), next to bare quinn at 1,452
bytes and bare quinn allowed the same 8,952, and the fetch at 1,452 bytes; medians of
I6P_BENCH_ROUNDS (default 3) rounds, all in one run. Needs root (a namespace); the traffic
never leaves it.

Run: I6P_BENCH_BYTES=$((512<<20)) .venv/bin/python -m pytest benches/bench_jumbo.py -s
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.net.netns import namespace, sh

from .bench_packet_size import report
from .conftest import BENCH_BYTES

ROUNDS = int(os.environ.get("I6P_BENCH_ROUNDS", "3"))
MiB = 1 << 20
ROOT = str(Path(__file__).resolve().parent.parent)

# Inside the namespace: bench_packet_size's rounds, printed as JSON on the last line.
ROUNDS_SCRIPT = f"""
import asyncio, json, sys
sys.path.insert(0, {ROOT!r})
from benches.bench_packet_size import _rounds
print(json.dumps(asyncio.run(_rounds({ROUNDS}))))
"""


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root for a network namespace")
def test_large_packets_on_a_jumbo_frame_path(benchmark: Any) -> None:
    result: list[dict[str, list[float]]] = []

    def run() -> None:
        with namespace("jumbo") as ns:
            sh("ip", "link", "set", "lo", "mtu", "9000", ns=ns)
            out = subprocess.run(
                ["ip", "netns", "exec", ns, sys.executable, "-c", ROUNDS_SCRIPT],
                capture_output=True,
                text=True,
                timeout=1800,
                env={**os.environ, "I6P_BENCH_BYTES": str(BENCH_BYTES)},
            )
            assert out.returncode == 0, out.stderr[-3000:]
            result.append(json.loads(out.stdout.strip().splitlines()[-1]))

    benchmark.pedantic(run, rounds=1)
    report(benchmark, result[0], "over a 9,000-byte-MTU path", "8,952-byte payloads")
