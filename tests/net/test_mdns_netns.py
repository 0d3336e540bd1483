"""mDNS discovery between namespaces on one bridge (issue 18): a node announces itself by its
public key, another finds it within seconds and fetches from it by key alone; a node with
discovery off sends nothing to the mDNS group, and `i6p send` with it off sends nothing to a
DHT node either (checked on the wire, next to a node with it on, so the check can fail).

Topology (documentation prefixes only): A and B each have a veth into namespace BR, whose
ends are enslaved to one bridge; A 2001:db8:18::a/64 and 192.0.2.10/24, B 2001:db8:18::b/64
and 192.0.2.11/24. Multicast stays on the bridge; nothing reaches the host's interfaces.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from contextlib import ExitStack
from pathlib import Path

import pytest

from .netns import PeerProc, bridged

PROC = str(Path(__file__).with_name("mdns_peer_proc.py"))
SIZE = 4 << 20

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root for network namespaces"),
    pytest.mark.timeout(120),
]


def test_a_peer_on_the_lan_is_found_by_its_key_and_fetched_from(tmp_path: Path) -> None:
    with bridged() as (a, b), ExitStack() as stack:
        provider = PeerProc(PROC, a, "provide", str(SIZE), str(tmp_path / "src"), "1")
        stack.callback(provider.close)
        offer = provider.read()
        fetcher = PeerProc(
            PROC, b, "fetch", offer["key"], offer["hash"], str(SIZE), str(tmp_path / "d")
        )
        stack.callback(fetcher.close)
        found = fetcher.read()
        result = fetcher.read()
    print(f"\nmDNS: connected by key in {found['seconds']:.3f} s: {found}")
    assert found["seconds"] < 3.0, found
    assert found["mdns"] and found["book"], found
    # The provider's HELLO lists its loopback addresses too: no use to a peer on another host.
    assert not [x for x in found["book"] if x.startswith(("[::1]", "127."))], found
    # Fetched through a key ticket after the book forgot the peer: mDNS found it again.
    assert result["hash"] == offer["hash"] and result["size"] == SIZE, result
    assert result["book"], result


LISTENER = """
import json, socket, struct, sys, time
heard = {"mdns": 0, "dht": 0}
s4 = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s4.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s4.bind(("224.0.0.251", 5353))
s4.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP,
              struct.pack("4s4s", socket.inet_aton("224.0.0.251"), socket.inet_aton("192.0.2.11")))
s6 = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
s6.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s6.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
eth0 = socket.if_nametoindex("eth0")
s6.bind(("ff02::fb", 5353, 0, eth0))
group = socket.inet_pton(socket.AF_INET6, "ff02::fb") + struct.pack("@I", eth0)
s6.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_JOIN_GROUP, group)
dht = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
dht.bind(("192.0.2.11", 6881))
print("ready", flush=True)
end = time.monotonic() + float(sys.argv[1])
for s in (s4, s6, dht):
    s.setblocking(False)
while time.monotonic() < end:
    for what, s in (("mdns", s4), ("mdns", s6), ("dht", dht)):
        try:
            s.recv(9000)
            heard[what] += 1
        except BlockingIOError:
            pass
    time.sleep(0.01)
print(json.dumps(heard), flush=True)
"""
#: Where a node in A is told the DHT is (B's listener); it must send nothing there without
#: --dht, though the address is set in its environment.
DHT_BOOTSTRAP = "192.0.2.11:6881"


def heard_while(a: str, b: str, command: list[str], env: dict[str, str]) -> dict[str, int]:
    """mDNS and DHT datagrams B's eth0 hears while ``command`` runs in A (for about 3 s after
    it prints its first line)."""
    listener = subprocess.Popen(
        ["ip", "netns", "exec", b, sys.executable, "-c", LISTENER, "4"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert listener.stdout is not None
    assert listener.stdout.readline().strip() == "ready", listener.stderr
    node = subprocess.Popen(
        ["ip", "netns", "exec", a, *command],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, **env},
    )  # fmt: skip
    try:
        assert node.stdout is not None
        assert node.stdout.readline(), node.stderr and node.stderr.read()
        out, _ = listener.communicate(timeout=20)
    finally:
        node.kill()
        node.wait(timeout=10)
    heard: dict[str, int] = json.loads(out)
    return heard


def test_a_node_with_discovery_off_sends_nothing_to_the_mdns_group(tmp_path: Path) -> None:
    """Through the library: ``Node.bind(mdns=False)`` (the default) is silent on the LAN."""
    with bridged() as (a, b):
        off, on = (
            heard_while(a, b, [sys.executable, PROC, "provide", "1000", str(tmp_path / m), m], {})
            for m in ("0", "1")
        )
    assert off["mdns"] == 0, f"{off} from a node with mdns off"
    assert on["mdns"] > 0, "the listener heard nothing from a node with mdns on: it is blind"


def test_the_cli_with_discovery_off_sends_nothing(tmp_path: Path) -> None:
    """Through the CLI: `i6p send --no-mdns` without --dht sends nothing to the mDNS group nor
    to the DHT node its environment names; with mDNS on and --dht, both hear from it."""
    src = tmp_path / "file"
    src.write_bytes(b"x" * 1000)
    send = [sys.executable, "-m", "i6p.cli", "send", str(src), "--addr", "[::]:0"]
    env = {"I6P_HOME": str(tmp_path / "home"), "I6P_DHT_BOOTSTRAP": DHT_BOOTSTRAP}
    with bridged() as (a, b):
        off = heard_while(a, b, [*send, "--no-mdns"], env)
        on = heard_while(a, b, [*send, "--dht"], env | {"I6P_MDNS": "1"})
    assert off == {"mdns": 0, "dht": 0}, f"{off} from `i6p send` with discovery off"
    assert on["mdns"] > 0 and on["dht"] > 0, f"the listener is blind: {on}"
