"""A coordinated simultaneous open through two stateful IPv6 firewalls, in namespaces of the
test's own: A and B each sit behind a router that drops new connections from its WAN side (in
the forward hook and in the input hook), C sits on the "internet" (a bridge). A direct dial
from A to B fails; ``connect(B, via=C)`` gives a punched session over which a fetch from B
is verified. Documentation prefixes only (2001:db8::/32)."""

from __future__ import annotations

import hashlib
import json
import os
import select
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
        out["peer_ok"] = str(ab.remote_peer_id) == b_peer
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

# Masquerade keeps a socket's mapping for every destination (endpoint-independent mapping)
# while the filter above lets in only replies (port-restricted filtering).
NAT44 = """
table ip nat {
    chain postrouting {
        type nat hook postrouting priority 100; policy accept;
        oifname "wan" masquerade
    }
}
"""

# Per topology: the coordinator's address on the "internet" bridge, and per side (a, b): the
# router's WAN address, its LAN address, the host's address, the prefix lengths.
PLANS = {
    "ipv6-firewall": {
        "family": "-6",
        "c": "2001:db8::c",
        "wan_len": 64,
        "lan_len": 64,
        "a": ("2001:db8::a1", "2001:db8:a::1", "2001:db8:a::2", "2001:db8:a::/64"),
        "b": ("2001:db8::b1", "2001:db8:b::1", "2001:db8:b::2", "2001:db8:b::/64"),
        "rules": FIREWALL,
    },
    "nat44": {
        "family": "-4",
        "c": "203.0.113.1",
        "wan_len": 24,
        "lan_len": 25,
        "a": ("203.0.113.10", "198.51.100.1", "198.51.100.2", None),
        "b": ("203.0.113.20", "198.51.100.129", "198.51.100.130", None),
        "rules": FIREWALL + NAT44,
    },
}


def veth(a_ns: str, a_dev: str, b_ns: str, b_dev: str) -> None:
    sh(
        "ip",
        "link",
        "add",
        a_dev,
        "netns",
        a_ns,
        "type",
        "veth",
        "peer",
        "name",
        b_dev,
        "netns",
        b_ns,
    )
    for ns, dev in ((a_ns, a_dev), (b_ns, b_dev)):
        sh("ip", "link", "set", dev, "up", ns=ns)


def addr(ns: str, family: str, dev: str, cidr: str) -> None:
    extra = ["nodad"] if family == "-6" else []
    sh("ip", family, "addr", "add", cidr, "dev", dev, *extra, ns=ns)


@contextmanager
def behind_routers(kind: str) -> Iterator[dict[str, str]]:
    """inet (a bridge, with C on it), routers ra/rb (WAN on the bridge, LAN to their host),
    hosts ha/hb behind them; the routers run the plan's nftables rules."""
    plan = PLANS[kind]
    fam = str(plan["family"])
    forwarding = "net.ipv6.conf.all.forwarding=1" if fam == "-6" else "net.ipv4.ip_forward=1"
    with ExitStack() as stack:
        tags = ("in", "ra", "rb", "ha", "hb")
        ns = {tag: stack.enter_context(namespace(f"p{tag}")) for tag in tags}
        sh("ip", "link", "add", "br0", "type", "bridge", ns=ns["in"])
        sh("ip", "link", "set", "br0", "up", ns=ns["in"])
        addr(ns["in"], fam, "br0", f"{plan['c']}/{plan['wan_len']}")
        sh("sysctl", "-qw", forwarding, ns=ns["in"])
        for side in ("a", "b"):
            wan, lan, host_ip, routed = plan[side]  # type: ignore[misc]
            router, host = ns[f"r{side}"], ns[f"h{side}"]
            veth(router, "wan", ns["in"], f"port-{side}")
            sh("ip", "link", "set", f"port-{side}", "master", "br0", ns=ns["in"])
            addr(router, fam, "wan", f"{wan}/{plan['wan_len']}")
            veth(router, "lan", host, "eth0")
            addr(router, fam, "lan", f"{lan}/{plan['lan_len']}")
            addr(host, fam, "eth0", f"{host_ip}/{plan['lan_len']}")
            sh("ip", fam, "route", "add", "default", "via", lan, ns=host)
            sh("ip", fam, "route", "add", "default", "via", str(plan["c"]), ns=router)
            if routed:
                sh("ip", fam, "route", "add", routed, "via", wan, ns=ns["in"])
            sh("sysctl", "-qw", forwarding, ns=router)
            subprocess.run(
                ["ip", "netns", "exec", router, "nft", "-f", "-"],
                input=str(plan["rules"]),
                text=True,
                check=True,
                capture_output=True,
                timeout=30,
            )
        yield ns


def host(address: str, port: object) -> str:
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"


def spawn(ns: str, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        ["ip", "netns", "exec", ns, sys.executable, "-c", PEER, *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def stop(proc: subprocess.Popen[str]) -> None:
    proc.kill()
    proc.wait(timeout=10)


def line(proc: subprocess.Popen[str], timeout: float = 60) -> dict[str, object]:
    """The next JSON line the peer process prints, within ``timeout`` seconds."""
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    if not ready:
        stop(proc)
        raise AssertionError(f"peer process silent for {timeout} s")
    out = proc.stdout.readline()
    if not out:
        _, err = proc.communicate(timeout=10)
        raise AssertionError(f"peer process ended: {err}")
    return json.loads(out)


@pytest.mark.parametrize("kind", ["ipv6-firewall", "nat44"])
def test_punched_through_two_stateful_routers(kind: str, tmp_path: Path) -> None:
    """Both peers behind a router that drops what it did not ask for: two stateful IPv6
    firewalls, or two NAT44 routers (masquerade) with the same filter."""
    plan = PLANS[kind]
    data = os.urandom(2 << 20)
    src = tmp_path / "src"
    src.write_bytes(data)
    with behind_routers(kind) as ns, ExitStack() as procs:
        c = spawn(ns["in"], "c")
        procs.callback(stop, c)
        c_info = line(c)
        c_addr = host(str(plan["c"]), c_info["port"])
        b = spawn(ns["hb"], "b", str(c_info["peer"]), c_addr, str(src))
        procs.callback(stop, b)
        b_info = line(b)
        # What A could know of B without a coordinator: its public address (the host's
        # own for IPv6; the router's, with the same port, behind NAT44).
        public_b = plan["b"][2] if kind == "ipv6-firewall" else plan["b"][0]  # type: ignore[index]
        b_addr = host(str(public_b), b_info["port"])
        a = spawn(
            ns["ha"],
            "a",
            str(c_info["peer"]),
            c_addr,
            str(b_info["peer"]),
            b_addr,
            str(b_info["ticket"]),
            str(tmp_path / "dest"),
        )
        procs.callback(stop, a)
        out, err = a.communicate(timeout=90)
        assert a.returncode == 0, err
        result = json.loads(out.strip().splitlines()[-1])
        assert b.stdin is not None
        b.stdin.close()
        b_end = line(b)
        assert c.stdin is not None
        c.stdin.close()
    print(kind, json.dumps(result))  # the figures, for a run with -s
    # The firewall drops the unsolicited dial; the coordinated one gets through.
    assert result["direct"] in ("HandshakeError", "Unreachable"), result
    assert result["route"] == "punched" and result["peer_ok"], result
    assert result["connect_s"] < 10, result
    assert result["size"] == len(data)
    assert result["sha256"] == hashlib.sha256(data).hexdigest()
    assert "punched" in b_end["routes"], b_end
