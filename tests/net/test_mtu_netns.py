"""Packet sizes across real links in network namespaces: a jumbo-frame link (veth MTU 9,000)
is used at its size, and a path whose middle drops packets above 1,500 bytes still carries a
verified fetch, in small packets.

Topology (documentation prefixes only): A (provider) and B (fetcher), either on one veth pair
(2001:db8:9::/64), or through a router namespace R (A 2001:db8:1::/64 R 2001:db8:2::/64 B);
every veth at MTU 9,000. The router drops what is longer than 1,500 bytes with nftables
(`meta length > 1500 drop`): from the start (discovery must stop below it), or from the
middle of a transfer, after discovery reached 8,952 (black-hole detection must fall back).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import pytest

from .netns import PeerProc, namespace, sh

PROC = str(Path(__file__).with_name("mtu_peer_proc.py"))
JUMBO = "9000"
SIZE = 48 << 20

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root for network namespaces"),
    pytest.mark.timeout(180),
]

DROP_LARGE = """
table inet mtu {
  chain forward {
    type filter hook forward priority 0; policy accept;
    meta length > 1500 counter drop
  }
}
"""


def link(a: str, a_ns: str, a_addr: str, b: str, b_ns: str, b_addr: str) -> None:
    """A veth pair at MTU 9,000 with an address at each end."""
    sh("ip", "link", "add", a, "netns", a_ns, "type", "veth", "peer", "name", b, "netns", b_ns)
    for dev, ns, addr in ((a, a_ns, a_addr), (b, b_ns, b_addr)):
        sh("ip", "link", "set", dev, "mtu", JUMBO, ns=ns)
        sh("ip", "addr", "add", addr, "dev", dev, "nodad", ns=ns)
        sh("ip", "link", "set", dev, "up", ns=ns)


@contextmanager
def pair() -> Iterator[tuple[str, str, str]]:
    """(A's namespace, B's namespace, A's address)."""
    with namespace("mtu-pa") as a, namespace("mtu-pb") as b:
        link("eth0", a, "2001:db8:9::a/64", "eth0", b, "2001:db8:9::b/64")
        yield a, b, "2001:db8:9::a"


@contextmanager
def routed() -> Iterator[tuple[str, str, str, str]]:
    """(A's namespace, B's namespace, R's namespace, A's address)."""
    with ExitStack() as stack:
        a, r, b = (stack.enter_context(namespace(f"mtu-{k}")) for k in ("a", "r", "b"))
        link("eth0", a, "2001:db8:1::a/64", "ra0", r, "2001:db8:1::1/64")
        link("rb0", r, "2001:db8:2::1/64", "eth0", b, "2001:db8:2::b/64")
        sh("sysctl", "-qw", "net.ipv6.conf.all.forwarding=1", ns=r)
        sh("ip", "-6", "route", "add", "default", "via", "2001:db8:1::1", ns=a)
        sh("ip", "-6", "route", "add", "default", "via", "2001:db8:2::1", ns=b)
        # A veth passes a GSO batch on whole, so the router would see one 12 KB "packet" for
        # ten 1,200-byte ones: the hosts cut their batches before the wire, as a NIC does.
        for ns in (a, b):
            sh("ip", "link", "set", "eth0", "gso_max_segs", "1", ns=ns)
        yield a, b, r, "2001:db8:1::a"


def transfer(
    a: str, b: str, addr: str, tmp: Path, middle: str | None = None, drop_at_go: bool = False
) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """Runs one fetch from A to B: (what B saw once connected, B's result, A's session stats
    after it). With ``drop_at_go``, the router ``middle`` starts dropping large packets once
    B's discovery is done, just before the fetch."""
    with ExitStack() as stack:
        provider = PeerProc(PROC, a, "provide", str(SIZE), str(tmp / "src"))
        stack.callback(provider.close)
        offer = provider.read()
        fetcher = PeerProc(
            PROC, b, "fetch", offer["ticket"], f"[{addr}]:{offer['port']}", str(tmp / "d")
        )
        stack.callback(fetcher.close)
        connected = fetcher.read()
        if drop_at_go and middle is not None:
            # The provider sends the data: its own discovery must be up too, or there is no
            # large packet to lose and no black hole to find.
            provider.send("mtu")
            ready = provider.read()
            assert ready["mtu"] > 8000, ready
            sh("nft", "-f", "-", ns=middle, stdin=DROP_LARGE)
        fetcher.send("go")
        result = fetcher.read()
        assert result["hash"] == offer["hash"], result
        provider.send("stats")
        return connected, result, provider.read()


def test_a_jumbo_link_carries_jumbo_packets(tmp_path: Path) -> None:
    with pair() as (a, b, addr):
        connected, _, sent = transfer(a, b, addr, tmp_path)
    # Discovery went past 8,000 on both sides (8,952 is the link's payload), and the data
    # went in packets that large: 48 MiB in well under the 34,000 packets of 1,452 bytes.
    assert 8000 < connected["mtu"] <= 8952, connected
    assert 8000 < sent["mtu"] <= 8952 and sent["black_holes"] == 0, sent
    assert sent["packets_sent"] < SIZE // 5000, sent


def test_a_middle_that_drops_large_packets_keeps_them_small(tmp_path: Path) -> None:
    with routed() as (a, b, r, addr):
        sh("nft", "-f", "-", ns=r, stdin=DROP_LARGE)
        connected, _, sent = transfer(a, b, addr, tmp_path)
        counted = sh("nft", "list", "ruleset", ns=r)
    # Discovery tried above 1,500 (the probes died in the router) and stopped below it.
    assert 1200 <= connected["mtu"] <= 1452, connected
    assert 1200 <= sent["mtu"] <= 1452, sent
    assert "packets 0 " not in counted, counted


def test_a_black_hole_mid_path_falls_back_and_the_fetch_completes(tmp_path: Path) -> None:
    """Discovery reaches 8,952 through the router; then the router starts dropping anything
    over 1,500 bytes. The provider's large packets vanish, quinn takes the path for a black
    hole, falls back to 1,200 bytes, and the verified fetch completes."""
    with routed() as (a, b, r, addr):
        connected, _, sent = transfer(a, b, addr, tmp_path, middle=r, drop_at_go=True)
    assert connected["mtu"] > 8000, connected
    assert sent["black_holes"] >= 1, sent
    assert sent["mtu"] <= 1500, sent
