"""Reachability over the namespace lab (tests/net/lab.py): per topology, N tries of "connect,
then a verified fetch of a small blob", with the figures issue 16 asks for. Needs root; not
part of any test run.

    .venv/bin/python -m benches.reach_lab [--tries 20] [--topologies 1,2,3] [--size 65536]
        [--attempts 3] [--dial-timeout 2] [--json results.json]

b serves and a connects and fetches, except in topology 3, where the open side (b) connects
to the firewalled one (a): the case connection reversal is for. Each try uses fresh nodes on
a and b (new identities and ports: no resumption ticket, no conntrack state from the try
before), each with a session to the node on c, the coordinator. The RTT of the coordinator
path is measured per try with I6P PINGs on those sessions (the median of 3 on each; the lab
has no `ping` binary and no netem, so it is the veth's latency plus both engines'
turnaround): a->c plus c->b. Then `connect_step` is tried up to ``--attempts`` times; the
try succeeds when a session is usable (HELLO exchanged) and the blob fetched over it hashes
(blake3, computed by both hosts) to what was served.

Printed per topology: successes, the routes of the sessions (``session.route``), the share
that succeeded on the first attempt, and the connect-to-usable-session time p50/p95 in
milliseconds and in coordinator-path round trips.

The relayed fetch rate as a ratio to direct and the relay's CPU-s/GB are measured by
benches/bench_relay.py (over ::1); the time for a running fetch to move from relayed to
punched by benches/bench_upgrade.py (over ::1).

`connect_step` asks c to introduce the two (``node.connect(peer, via=coordinator)``; c
relays too); on an engine without ``via`` it falls back to a plain dial of the other side's
public address.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import inspect
import json
import math
import statistics
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import i6p

from tests.net.agent_handle import AgentError
from tests.net.lab import TOPOLOGIES, Lab
from tests.net.lab_peers import (
    Peer,
    close_node,
    connect,
    connect_via,
    join,
    ping,
    serve_blob,
    start_node,
    verified_fetch,
)

CAN_PUNCH = "via" in inspect.signature(i6p.Node.connect).parameters
CAN_RELAY = "relay" in inspect.signature(i6p.Node.bind).parameters


@dataclass
class Try:
    """One try: what each attempt raised, and what the successful one measured."""

    ok: bool = False
    attempts: int = 0
    errors: list[str] = field(default_factory=list)
    route: str | None = None
    connect_s: float | None = None
    path_rtt_s: float | None = None
    fetch_s: float | None = None


async def connect_step(
    lab: Lab, dialer: Peer, target: Peer, c: Peer, dial_s: float
) -> dict[str, Any]:
    """``dialer`` opens a usable session to ``target``: THE step the reachability work
    replaces. ``dial_s`` is the nodes' handshake timeout (the agent call gets 10 s more)."""
    if CAN_PUNCH:
        return await connect_via(dialer, target, c, timeout=dial_s + 10)
    host = lab.public_for(target.agent.name, seen_from=dialer.agent.name)
    return await connect(dialer, target, f"{host}:{target.port}", dial_s + 10)


async def one_try(lab: Lab, c: Peer, n: int, args: argparse.Namespace) -> Try:
    extra = {"coordinate": True} if CAN_PUNCH else {}
    a = await start_node(lab.agent("a"), f"a{n}", handshake_timeout=args.dial_timeout, **extra)
    b = await start_node(lab.agent("b"), f"b{n}", handshake_timeout=args.dial_timeout, **extra)
    result = Try()
    try:
        rtts = []
        for side in (a, b):
            await join(lab, side, c)
            rtts.append(statistics.median([await ping(side, c) for _ in range(3)]))
        result.path_rtt_s = sum(rtts)
        # In 3 the open side asks for the firewalled one: the case connection reversal is for.
        dialer, target = (b, a) if lab.topology.number == 3 else (a, b)
        served = await serve_blob(target, args.size)
        for attempt in range(1, args.attempts + 1):
            result.attempts = attempt
            try:
                session = await connect_step(lab, dialer, target, c, args.dial_timeout)
            except AgentError as e:
                result.errors.append(f"{e.type}: {e.remote_message}"[:200])
                continue
            result.route, result.connect_s = session["route"], session["seconds"]
            try:
                fetched = await verified_fetch(dialer, served)
            except (AgentError, AssertionError) as e:  # counted as a failed try, not retried
                result.errors.append(f"fetch: {e}"[:200])
                break
            result.fetch_s, result.ok = fetched["seconds"], True
            break
    finally:
        for peer in (a, b):
            await close_node(peer)
    return result


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (no interpolation: with 20 tries p95 is the 19th value)."""
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1))]


def report(number: int, tries: list[Try]) -> str:
    t = TOPOLOGIES[number]
    ok = [x for x in tries if x.ok]
    routes = collections.Counter(x.route for x in ok)
    first = sum(1 for x in ok if x.attempts == 1)
    line = (
        f"{number} {t.a:>9} vs {t.b:<9} want {t.expected:<8} ok {len(ok):>2}/{len(tries)}"
        f"  routes {dict(routes) or '{}'}  first-attempt {first}/{len(tries)}"
    )
    if ok:
        ms = [1000 * (x.connect_s or 0) for x in ok]
        rtts = [(x.connect_s or 0) / (x.path_rtt_s or 1) for x in ok]
        path_ms = statistics.median(1000 * (x.path_rtt_s or 0) for x in ok)
        line += (
            f"  connect p50 {percentile(ms, 0.5):.1f} ms p95 {percentile(ms, 0.95):.1f} ms"
            f" = {percentile(rtts, 0.5):.1f}/{percentile(rtts, 0.95):.1f} path RTTs"
            f" (path RTT {path_ms:.2f} ms)"
            f"  fetch p50 {statistics.median(1000 * (x.fetch_s or 0) for x in ok):.0f} ms"
        )
    failures = collections.Counter(e.split(":")[0] for x in tries for e in x.errors)
    if failures:
        line += f"  attempt errors {dict(failures)}"
    return line


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tries", type=int, default=20)
    parser.add_argument("--attempts", type=int, default=3)
    parser.add_argument("--topologies", default=",".join(map(str, sorted(TOPOLOGIES))))
    parser.add_argument("--size", type=int, default=64 << 10, help="blob bytes")
    parser.add_argument("--dial-timeout", type=float, default=2.0, help="handshake_timeout")
    parser.add_argument("--json", help="also write every try's record to this file")
    return parser.parse_args()


async def run(args: argparse.Namespace) -> dict[int, list[dict[str, Any]]]:
    how = "connect(via=c)" if CAN_PUNCH else "plain dial to the other side's public address"
    print(f"# connect step: {how}; {args.tries} tries x up to {args.attempts} attempts")
    records: dict[int, list[dict[str, Any]]] = {}
    for number in (int(n) for n in args.topologies.split(",")):
        started = time.monotonic()
        async with Lab(number) as lab:
            extra = {"coordinate": True, "relay": True} if CAN_PUNCH and CAN_RELAY else {}
            c = await start_node(lab.agent("c"), "coordinator", **extra)
            tries = [await one_try(lab, c, n, args) for n in range(args.tries)]
        print(report(number, tries) + f"  [{time.monotonic() - started:.0f} s]", flush=True)
        records[number] = [asdict(x) for x in tries]
    return records


if __name__ == "__main__":
    options = parse_args()
    results = asyncio.run(run(options))
    if options.json:
        with open(options.json, "w") as f:
            json.dump(results, f, indent=1)
