"""A coordinated simultaneous open through two stateful IPv6 firewalls, in namespaces of the
test's own: A and B each sit behind a router that drops new connections from its WAN side (in
the forward hook and in the input hook), C sits on the "internet" (a bridge). A direct dial
from A to B fails; ``connect(B, via=C)`` gives a punched session over which a fetch from B
is verified. Documentation prefixes only (2001:db8::/32)."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import pytest

from .netns import namespace, sh

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces need root")

PEER = textwrap.dedent(
    """
    import asyncio, json, sys, hashlib
    from i6p import Identity, Node, Ticket
    from i6p.errors import HandshakeError

    def say(**kw):
        print(json.dumps(kw), flush=True)

    async def until_stdin_closes():
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)

    async def coordinator():
        c = await Node.bind(Identity.generate(), "[::]:0")
        say(peer=str(c.peer_id), port=c.port)
        sessions = []
        async def keep():
            async for s in c:
                sessions.append(s)
        task = asyncio.create_task(keep())
        await until_stdin_closes()
        task.cancel()
        await c.close()

    async def target(c_peer, c_addr, path):
        b = await Node.bind(Identity.generate(), "[::]:0")
        bc = await b.connect(c_peer, c_addr)
        ticket = b.ticket(await b.add_path(path))
        sessions = []
        async def keep():
            async for s in b:
                sessions.append(s)
        task = asyncio.create_task(keep())
        say(peer=str(b.peer_id), port=b.port, ticket=str(ticket))
        await until_stdin_closes()
        say(routes=[s.route for s in sessions], via=bc.route)
        task.cancel()
        await b.close()

    async def asker(c_peer, c_addr, b_peer, b_addr, ticket, dest):
        a = await Node.bind(Identity.generate(), "[::]:0", handshake_timeout=2.0)
        out = {}
        try:
            await a.connect(b_peer, b_addr)
            out["direct"] = "connected"
        except HandshakeError as e:
            out["direct"] = type(e).__name__
        ac = await a.connect(c_peer, c_addr)
        loop = asyncio.get_running_loop()
        started = loop.time()
        ab = await a.connect(b_peer, via=ac)
        out["connect_s"] = loop.time() - started
        out["route"] = ab.route
        out["peer_ok"] = ab.remote_peer_id == b_peer
        result = await a.fetch(Ticket.parse(ticket), dest)
        out["size"] = result.size
        out["sha256"] = hashlib.sha256(open(dest, "rb").read()).hexdigest()
        say(**out)
        await a.close()

    role, args = sys.argv[1], sys.argv[2:]
    main = {"c": coordinator, "b": target, "a": asker}[role]
    asyncio.run(main(*args))
    """
)

FIREWALL = """
table inet fw {
    chain forward {
        type filter hook forward priority 0; policy accept;
        ct state established,related accept
        meta l4proto ipv6-icmp accept
        iifname "wan" ct state new drop
    }
    chain input {
        type filter hook input priority 0; policy accept;
        ct state established,related accept
        meta l4proto ipv6-icmp accept
        iifname "wan" ct state new drop
    }
}
"""


def veth(a_ns: str, a_dev: str, b_ns: str, b_dev: str) -> None:
    sh("ip", "link", "add", a_dev, "netns", a_ns, "type", "veth", "peer", "name", b_dev,
       "netns", b_ns)
    for ns, dev in ((a_ns, a_dev), (b_ns, b_dev)):
        sh("ip", "link", "set", dev, "up", ns=ns)


def addr(ns: str, dev: str, cidr: str) -> None:
    sh("ip", "-6", "addr", "add", cidr, "dev", dev, "nodad", ns=ns)


@contextmanager
def firewalled_pair() -> Iterator[dict[str, str]]:
    """inet (bridge + C at 2001:db8::c), routers ra/rb (WAN 2001:db8::a1/::b1), hosts ha/hb
    behind them (2001:db8:a::2, 2001:db8:b::2)."""
    with ExitStack() as stack:
        ns = {tag: stack.enter_context(namespace(f"p{tag}")) for tag in ("in", "ra", "rb", "ha", "hb")}
        sh("ip", "link", "add", "br0", "type", "bridge", ns=ns["in"])
        sh("ip", "link", "set", "br0", "up", ns=ns["in"])
        addr(ns["in"], "br0", "2001:db8::c/64")
        for side in ("a", "b"):
            router, host = ns[f"r{side}"], ns[f"h{side}"]
            veth(router, "wan", ns["in"], f"port-{side}")
            sh("ip", "link", "set", f"port-{side}", "master", "br0", ns=ns["in"])
            addr(router, "wan", f"2001:db8::{side}1/64")
            veth(router, "lan", host, "eth0")
            addr(router, "lan", f"2001:db8:{side}::1/64")
            addr(host, "eth0", f"2001:db8:{side}::2/64")
            sh("ip", "-6", "route", "add", "default", "via", f"2001:db8:{side}::1", ns=host)
            sh("ip", "-6", "route", "add", "default", "via", "2001:db8::c", ns=router)
            sh("ip", "-6", "route", "add", f"2001:db8:{side}::/64", "via",
               f"2001:db8::{side}1", ns=ns["in"])
            sh("sysctl", "-qw", "net.ipv6.conf.all.forwarding=1", ns=router)
            subprocess.run(
                ["ip", "netns", "exec", router, "nft", "-f", "-"],
                input=FIREWALL, text=True, check=True, capture_output=True, timeout=30,
            )
        sh("sysctl", "-qw", "net.ipv6.conf.all.forwarding=1", ns=ns["in"])
        yield ns


def spawn(ns: str, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        ["ip", "netns", "exec", ns, sys.executable, "-c", PEER, *args],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def line(proc: subprocess.Popen[str]) -> dict[str, object]:
    assert proc.stdout is not None
    out = proc.stdout.readline()
    if not out:
        _, err = proc.communicate(timeout=10)
        raise AssertionError(f"peer process ended: {err}")
    return json.loads(out)


def test_punched_through_two_stateful_ipv6_firewalls(tmp_path: Path) -> None:
    data = os.urandom(2 << 20)
    src = tmp_path / "src"
    src.write_bytes(data)
    with firewalled_pair() as ns, ExitStack() as procs:
        c = spawn(ns["in"], "c")
        procs.callback(lambda: c.kill())
        c_info = line(c)
        c_addr = f"[2001:db8::c]:{c_info['port']}"
        b = spawn(ns["hb"], "b", str(c_info["peer"]), c_addr, str(src))
        procs.callback(lambda: b.kill())
        b_info = line(b)
        b_addr = f"[2001:db8:b::2]:{b_info['port']}"
        a = spawn(ns["ha"], "a", str(c_info["peer"]), c_addr, str(b_info["peer"]), b_addr,
                  str(b_info["ticket"]), str(tmp_path / "dest"))
        procs.callback(lambda: a.kill())
        out, err = a.communicate(timeout=90)
        assert a.returncode == 0, err
        result = json.loads(out.strip().splitlines()[-1])
        assert b.stdin is not None
        b.stdin.close()
        b_end = line(b)
        assert c.stdin is not None
        c.stdin.close()
    # The firewall drops the unsolicited dial; the coordinated one gets through.
    assert result["direct"] in ("HandshakeError", "Unreachable"), result
    assert result["route"] == "punched" and result["peer_ok"], result
    assert result["connect_s"] < 10, result
    assert result["size"] == len(data)
    assert result["sha256"] == hashlib.sha256(data).hexdigest()
    assert "punched" in b_end["routes"], b_end
