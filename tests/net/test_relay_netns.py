"""A relayed fetch across two NATs that no direct path crosses, in network namespaces.

Topology (documentation prefixes only): A and B each sit behind a NAT44 router that
translates with `masquerade random` (endpoint-dependent mapping) and drops new packets from
its WAN side in both the forward and the input hooks; the routers' WAN ends and the relay R
share a bridge, the "internet" (203.0.113.0/24). A's LAN is 198.51.100.0/25, B's
198.51.100.128/25; R has no route to either. A dials B directly at every address it could
know (B's LAN address and B's router's WAN address, at B's port): each fails; then A reaches
B through R and fetches a 4 MiB blob, verified, whose bytes match B's.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import pytest

from .netns import namespace, sh

PROC = str(Path(__file__).with_name("relay_peer_proc.py"))

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root for network namespaces"),
    pytest.mark.timeout(120),
]

ROUTER_RULES = """
table ip nat {{
  chain postrouting {{
    type nat hook postrouting priority 100;
    oifname "wan" masquerade random
  }}
}}
table inet filter {{
  chain forward {{
    type filter hook forward priority 0; policy accept;
    iifname "wan" ct state new drop
  }}
  chain input {{
    type filter hook input priority 0; policy accept;
    iifname "wan" ct state new drop
  }}
}}
"""


def veth(a: str, a_ns: str, b: str, b_ns: str) -> None:
    sh("ip", "link", "add", a, "netns", a_ns, "type", "veth", "peer", "name", b, "netns", b_ns)
    sh("ip", "link", "set", a, "up", ns=a_ns)
    sh("ip", "link", "set", b, "up", ns=b_ns)


def router(ns: str, wan: str, lan: str) -> None:
    sh("ip", "addr", "add", wan, "dev", "wan", ns=ns)
    sh("ip", "addr", "add", lan, "dev", "lan", ns=ns)
    sh("sysctl", "-qw", "net.ipv4.ip_forward=1", ns=ns)
    nft = subprocess.run(
        ["ip", "netns", "exec", ns, "nft", "-f", "-"],
        input=ROUTER_RULES.format(),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert nft.returncode == 0, nft.stderr


@contextmanager
def lab() -> Iterator[dict[str, str]]:
    with ExitStack() as stack:
        ns = {
            k: stack.enter_context(namespace(f"relay-{k}")) for k in ("net", "ra", "rb", "a", "b")
        }
        sh("ip", "link", "add", "br0", "type", "bridge", ns=ns["net"])
        sh("ip", "addr", "add", "203.0.113.10/24", "dev", "br0", ns=ns["net"])
        sh("ip", "link", "set", "br0", "up", ns=ns["net"])
        for side, lan_net, host in (("a", "198.51.100.1/25", "198.51.100.10/25"),
                                    ("b", "198.51.100.129/25", "198.51.100.130/25")):  # fmt: skip
            r = ns[f"r{side}"]
            veth("wan", r, f"port{side}", ns["net"])
            sh("ip", "link", "set", f"port{side}", "master", "br0", ns=ns["net"])
            veth("lan", r, "eth0", ns[side])
            wan = "203.0.113.1/24" if side == "a" else "203.0.113.2/24"
            router(r, wan, lan_net)
            sh("ip", "addr", "add", host, "dev", "eth0", ns=ns[side])
            sh("ip", "route", "add", "default", "via", lan_net.split("/")[0], ns=ns[side])
        yield ns


def start(ns: str, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        ["ip", "netns", "exec", ns, sys.executable, PROC, *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )


def line(proc: subprocess.Popen[str]) -> dict[str, object]:
    assert proc.stdout is not None
    text = proc.stdout.readline()
    assert text, f"process {proc.args} ended without output"
    out: dict[str, object] = json.loads(text)
    return out


def test_a_relayed_fetch_crosses_two_edm_nats_that_no_direct_dial_crosses() -> None:
    with lab() as ns:
        relay = start(ns["net"], "relay")
        target = None
        try:
            relay_id = str(line(relay)["peer_id"])
            relay_addr = "203.0.113.10:7000"
            target = start(ns["b"], "target", relay_id, relay_addr)
            b = line(target)
            port = b["port"]
            direct = [f"198.51.100.130:{port}", f"203.0.113.2:{port}"]
            fetcher = subprocess.run(
                ["ip", "netns", "exec", ns["a"], sys.executable, PROC, "fetcher",
                 relay_id, relay_addr, str(b["ticket"]), *direct],
                capture_output=True, text=True, timeout=90,
            )  # fmt: skip
            assert fetcher.returncode == 0, fetcher.stderr
            got = json.loads(fetcher.stdout.splitlines()[-1])
            assert len(got["direct"]) == 2, got
            assert all(v == "HandshakeError" for v in got["direct"].values()), got
            assert got["route"] == "relayed"
            assert got["size"] == 4 << 20
            assert got["sha256"] == b["sha256"]
        finally:
            for proc in (relay, target):
                if proc is not None and proc.stdin is not None:
                    proc.stdin.close()
                    try:
                        proc.wait(10)
                    except subprocess.TimeoutExpired:
                        proc.kill()
                        proc.wait()
