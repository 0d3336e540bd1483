"""mDNS discovery between namespaces on one bridge (issue 18): a node announces itself by its
public key, another finds it within seconds and fetches from it by key alone; a node with
discovery off sends nothing to the mDNS group (checked on the wire, next to a node with it on,
so the check can fail).

Topology (documentation prefixes only): A and B each have a veth into namespace BR, whose
ends are enslaved to one bridge; A 2001:db8:18::a/64 and 192.0.2.10/24, B 2001:db8:18::b/64
and 192.0.2.11/24. Multicast stays on the bridge; nothing reaches the host's interfaces.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import pytest

from .netns import namespace, sh

PROC = str(Path(__file__).with_name("mdns_peer_proc.py"))
SIZE = 4 << 20

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root for network namespaces"),
    pytest.mark.timeout(120),
]


@contextmanager
def bridged() -> Iterator[tuple[str, str]]:
    """(A's namespace, B's namespace), joined by a bridge in a third one."""
    with ExitStack() as stack:
        a, br, b = (stack.enter_context(namespace(f"mdns-{k}")) for k in ("a", "br", "b"))
        sh("ip", "link", "add", "br0", "type", "bridge", ns=br)
        sh("ip", "link", "set", "br0", "up", ns=br)
        for ns, v6, v4, port in ((a, "2001:db8:18::a", "192.0.2.10", "pa"),
                                 (b, "2001:db8:18::b", "192.0.2.11", "pb")):  # fmt: skip
            sh("ip", "link", "add", "eth0", "netns", ns, "type", "veth", "peer", "name", port,
               "netns", br)  # fmt: skip
            sh("ip", "link", "set", port, "master", "br0", ns=br)
            sh("ip", "link", "set", port, "up", ns=br)
            sh("ip", "addr", "add", f"{v6}/64", "dev", "eth0", "nodad", ns=ns)
            sh("ip", "addr", "add", f"{v4}/24", "dev", "eth0", ns=ns)
            sh("ip", "link", "set", "eth0", "up", ns=ns)
        # The link-local addresses mDNS answers from need DAD to finish.
        for ns in (a, b):
            deadline = time.monotonic() + 10
            while "tentative" in sh("ip", "-6", "addr", "show", "dev", "eth0", ns=ns):
                assert time.monotonic() < deadline, "link-local address still tentative"
                time.sleep(0.1)
        yield a, b


class Peer:
    """A peer process in a namespace (every read bounded by the test's timeout)."""

    def __init__(self, ns: str, *args: str) -> None:
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", ns, sys.executable, PROC, *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def read(self) -> Any:
        assert self.proc.stdout is not None
        text = self.proc.stdout.readline()
        if not text:
            self.proc.wait(timeout=10)
            assert self.proc.stderr is not None
            raise AssertionError(f"peer ended: {self.proc.stderr.read()[-3000:]}")
        return json.loads(text)

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                assert self.proc.stdin is not None
                self.proc.stdin.write("quit\n")
                self.proc.stdin.flush()
                self.proc.wait(timeout=15)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait(timeout=10)


def test_a_peer_on_the_lan_is_found_by_its_key_and_fetched_from(tmp_path: Path) -> None:
    with bridged() as (a, b), ExitStack() as stack:
        provider = Peer(a, "provide", str(SIZE), str(tmp_path / "src"), "1")
        stack.callback(provider.close)
        offer = provider.read()
        fetcher = Peer(b, "fetch", offer["key"], offer["hash"], str(SIZE), str(tmp_path / "d"))
        stack.callback(fetcher.close)
        found = fetcher.read()
        result = fetcher.read()
    print(f"\nmDNS: connected by key in {found['seconds']:.3f} s: {found}")
    assert found["seconds"] < 3.0, found
    assert found["mdns"] and found["book"], found
    # The provider's HELLO lists its loopback addresses too: no use to a peer on another host.
    assert not [x for x in found["book"] if x.startswith(("[::1]", "127."))], found
    assert result == {"hash": offer["hash"], "size": SIZE}


LISTENER = """
import socket, struct, sys, time
heard = 0
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
print("ready", flush=True)
end = time.monotonic() + float(sys.argv[1])
for s in (s4, s6):
    s.setblocking(False)
while time.monotonic() < end:
    for s in (s4, s6):
        try:
            s.recv(9000)
            heard += 1
        except BlockingIOError:
            pass
    time.sleep(0.01)
print(heard, flush=True)
"""


def packets_heard_while(a: str, b: str, tmp: Path, mdns: str) -> int:
    """mDNS packets B's eth0 hears while a node runs in A for 3 s."""
    listener = subprocess.Popen(
        ["ip", "netns", "exec", b, sys.executable, "-c", LISTENER, "4"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert listener.stdout is not None
    assert listener.stdout.readline().strip() == "ready", listener.stderr
    node = Peer(a, "provide", "1000", str(tmp / f"src-{mdns}"), mdns)
    try:
        node.read()
        out, _ = listener.communicate(timeout=20)
    finally:
        node.close()
    return int(out.strip() or -1)


def test_a_node_with_discovery_off_sends_nothing_to_the_mdns_group(tmp_path: Path) -> None:
    with bridged() as (a, b):
        off = packets_heard_while(a, b, tmp_path, "0")
        on = packets_heard_while(a, b, tmp_path, "1")
    assert off == 0, f"{off} mDNS packets from a node with mdns off"
    assert on > 0, "the listener heard nothing from a node with mdns on: the check is blind"
