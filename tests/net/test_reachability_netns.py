"""Reachability behind real middleboxes: a router namespace with nftables between a LAN
namespace (the node under test) and a WAN namespace (two helper nodes).

- A stateful IPv6 firewall (new packets from the WAN dropped in forward and input, replies
  let through): the node's address is trusted (both helpers see it) but their dial-backs,
  from ports it never sent to, are dropped: "filtered".
- NAT44 with ``masquerade random`` (endpoint-dependent mapping): the two helpers see the
  router's address with different ports: mapping "edm"; a dial-back is dropped too.

Documentation prefixes only (2001:db8::/32, 198.51.100.0/24 inside, 203.0.113.0/24
outside); every namespace is the test's own and is deleted after it.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

from .netns import namespace, sh

# The firewall every router runs: what the WAN did not ask for is dropped, in forward and
# in the router's own input hook (a punch or dial-back must not meet the router's stack).
FIREWALL = """
table inet fw {
  chain forward {
    type filter hook forward priority 0; policy accept;
    ct state established,related accept
    iifname "wan0" ct state new drop
  }
  chain input {
    type filter hook input priority 0; policy accept;
    ct state established,related accept
    iifname "wan0" ct state new drop
  }
}
"""

NAT44_RANDOM = """
table ip nat {
  chain postrouting {
    type nat hook postrouting priority 100; policy accept;
    oifname "wan0" masquerade random
  }
}
"""

HELPERS = textwrap.dedent(
    """
    import asyncio, json, sys
    from i6p import Identity, Node

    async def main():
        nodes = [await Node.bind(Identity.generate(), "[::]:0") for _ in range(2)]
        print(json.dumps([[str(n.peer_id), n.port] for n in nodes]), flush=True)
        # Serve until the test closes stdin (bounded by the test's own timeout).
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
        for n in nodes:
            await n.close()

    asyncio.run(main())
    """
)

ASKER = textwrap.dedent(
    """
    import asyncio, json, sys
    from i6p import Identity, Node

    async def main():
        host, helpers, explicit = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3] == "1"
        # Explicit: the dial-backs are asked for below (one per helper at a time), not also
        # automatically.
        node = await Node.bind(Identity.generate(), "[::]:0", dial_back=not explicit)
        sessions = [await node.connect(p, f"{host}:{port}") for p, port in helpers]
        answers = []
        if explicit:
            answers = [await s.dial_back() for s in sessions]
        # Automatic dial-backs take up to 3 s each, concurrently.
        for _ in range(150):
            report = node.reachability()
            if report and (explicit or report[0].reached + report[0].unreached >= 2):
                break
            await asyncio.sleep(0.1)
        print(json.dumps({
            "answers": answers,
            "public": node.is_public(),
            "report": [
                {"addr": r.addr, "status": r.status, "mapping": r.mapping,
                 "reporters": r.reporters, "trusted": r.trusted,
                 "reached": r.reached, "unreached": r.unreached}
                for r in node.reachability()
            ],
        }))
        await node.close()

    asyncio.run(main())
    """
)


def veth(ns_a: str, dev_a: str, ns_b: str, dev_b: str) -> None:
    sh("ip", "link", "add", dev_a, "type", "veth", "peer", "name", dev_b, "netns", ns_b, ns=ns_a)
    sh("ip", "link", "set", dev_a, "up", ns=ns_a)
    sh("ip", "link", "set", dev_b, "up", ns=ns_b)


@contextmanager
def lab(tag: str, family: int, rules: str) -> Iterator[tuple[str, str, str]]:
    """LAN and WAN namespaces joined by a router namespace running ``rules``; yields
    (lan, wan, the helpers' address)."""
    with ExitStack() as stack:
        lan, rtr, wan = (stack.enter_context(namespace(f"{tag}{n}")) for n in ("l", "r", "w"))
        veth(lan, "eth0", rtr, "lan0")
        veth(rtr, "wan0", wan, "eth0")
        if family == 6:
            plan = [
                (lan, "eth0", "2001:db8:1::2/64"),
                (rtr, "lan0", "2001:db8:1::1/64"),
                (rtr, "wan0", "2001:db8:2::1/64"),
                (wan, "eth0", "2001:db8:2::2/64"),
            ]
            for ns, dev, addr in plan:
                sh("ip", "-6", "addr", "add", addr, "dev", dev, "nodad", ns=ns)
            sh("ip", "-6", "route", "add", "default", "via", "2001:db8:1::1", ns=lan)
            sh("ip", "-6", "route", "add", "default", "via", "2001:db8:2::1", ns=wan)
            sh("sysctl", "-qw", "net.ipv6.conf.all.forwarding=1", ns=rtr)
            helpers = "[2001:db8:2::2]"
        else:
            plan = [
                (lan, "eth0", "198.51.100.2/24"),
                (rtr, "lan0", "198.51.100.1/24"),
                (rtr, "wan0", "203.0.113.1/24"),
                (wan, "eth0", "203.0.113.2/24"),
            ]
            for ns, dev, addr in plan:
                sh("ip", "addr", "add", addr, "dev", dev, ns=ns)
            sh("ip", "route", "add", "default", "via", "198.51.100.1", ns=lan)
            # The WAN knows no route to the LAN: only the NAT's address is reachable.
            sh("sysctl", "-qw", "net.ipv4.ip_forward=1", ns=rtr)
            helpers = "203.0.113.2"
        nft(rtr, rules)
        yield lan, wan, helpers


def nft(ns: str, rules: str) -> None:
    out = subprocess.run(
        ["ip", "netns", "exec", ns, "nft", "-f", "-"],
        input=rules,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert out.returncode == 0, out.stderr


def ask_behind(lan: str, wan: str, host: str, explicit: bool) -> dict[str, object]:
    """Runs two helpers in ``wan`` and the asker in ``lan``; the asker's report."""
    helpers = subprocess.Popen(
        ["ip", "netns", "exec", wan, sys.executable, "-c", HELPERS],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert helpers.stdout is not None and helpers.stdin is not None
        ids = helpers.stdout.readline()
        assert ids, "the helpers did not start"
        asker = subprocess.run(
            [
                "ip",
                "netns",
                "exec",
                lan,
                sys.executable,
                "-c",
                ASKER,
                host,
                ids,
                str(int(explicit)),
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert asker.returncode == 0, asker.stderr
        helpers.stdin.close()
        helpers.wait(timeout=15)
        result: dict[str, object] = json.loads(asker.stdout)
        return result
    finally:
        if helpers.poll() is None:
            helpers.kill()
            helpers.wait(timeout=5)


def test_behind_a_stateful_ipv6_firewall_the_address_is_trusted_but_filtered() -> None:
    with lab("rf", 6, FIREWALL) as (lan, wan, host):
        result = ask_behind(lan, wan, host, explicit=False)
    [ours] = result["report"]  # type: ignore[misc]
    assert ours["addr"].startswith("[2001:db8:1::2]:"), result
    assert ours["trusted"] and ours["reporters"] == 2, result
    assert ours["mapping"] == "eim", result
    assert (ours["status"], ours["reached"], ours["unreached"]) == ("filtered", 0, 2), result
    assert result["public"] is False


def test_behind_nat44_masquerade_random_the_mapping_is_endpoint_dependent() -> None:
    with lab("re", 4, FIREWALL + NAT44_RANDOM) as (lan, wan, host):
        result = ask_behind(lan, wan, host, explicit=True)
    report = result["report"]
    assert isinstance(report, list) and len(report) == 2, result
    ports = {r["addr"] for r in report}
    assert all(a.startswith("203.0.113.1:") for a in ports) and len(ports) == 2, result
    assert all(r["mapping"] == "edm" and not r["trusted"] for r in report), result
    # Each helper dialed back the mapping it saw, from another port: the NAT dropped it.
    assert result["answers"] == [False, False], result
    assert all(r["status"] == "filtered" for r in report), result
    assert result["public"] is False
