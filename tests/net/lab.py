"""The reachability lab: two peers behind real firewalls and NATs, in network namespaces.

``Lab(n)`` builds topology ``n`` (1-8, the table ``TOPOLOGIES``) and tears it down on exit::

    async with Lab(1) as lab:            # or `with Lab(1) as lab:` when no agent is used
        a, b = lab.agent("a"), lab.agent("b")
        pid, port = await b.run(
            "node = await i6p.Node.bind(i6p.Identity.generate())\n[str(node.peer_id), node.port]"
        )
        await a.run("node = await i6p.Node.bind(i6p.Identity.generate(), handshake_timeout=2.0)")
        await a.run(f"s = await node.connect({pid!r}, '{lab.public('b')}:{port}')\ns.route")

Layout. An ``inet`` namespace holds the bridge ``br0`` (the "internet": 2001:db8:ff::/64 and
203.0.113.0/24). The coordinator host ``c`` sits on it, dual-stack (2001:db8:ff::c,
203.0.113.3). Sides ``a`` and ``b`` each get a host namespace and, unless the side is open, a
router namespace ``ra``/``rb`` (interfaces ``wan`` on the bridge, ``lan`` towards the host)
whose nftables rules make it one of these middleboxes (``Side``):

- ``open6``: the host is on the bridge with a global IPv6 address only (no router);
- ``open4``: the host is on the bridge with an IPv4 address only;
- ``fw6``: a stateful IPv6 firewall routing the LAN 2001:db8:a::/64 (b: 2001:db8:b::/64):
  only LAN->WAN and established/related packets pass; the internet's hosts route the LAN
  prefix via the router's WAN address, so unsolicited packets do reach it and are dropped;
- ``nat44``: NAT44 with endpoint-independent mapping (``masquerade`` keeps the host's port)
  and port-restricted filtering (conntrack admits replies from the exact remote address and
  port only), LAN 198.51.100.0/25 (b: 198.51.100.128/25), IPv4 only;
- ``nat44-edm``: the same with endpoint-dependent mapping (``masquerade random``: a new
  external port for every new destination);
- ``nat66``: the LAN 2001:db8:a::/64 masqueraded to the router's WAN address, not routed.

Every router drops NEW packets from the WAN in its INPUT hook as well as in FORWARD: if the
router accepted a peer's first punch packet addressed to its own WAN address, conntrack would
confirm an entry for it, and the router's own translation of its host's outgoing packet to
that peer would then clash with that entry and pick another external port; the punch fails.
``Lab(n, drop_new_wan_input=False)`` builds the routers without that rule, to show it.

Addresses (``lab.host("a")``): ``v6``/``v4`` are the host's own addresses, ``public_v6``/
``public_v4`` what the internet sees (the router's WAN address behind a NAT), ``lab.public(
"a")`` the preferred public address in URL form (``[v6]`` or ``v4``) for an ``addr:port``,
``lab.public_for("c", seen_from="a")`` the one in a family ``a`` has. ``lab.exec(role, *cmd)``
runs a command in a namespace (``nft list ruleset``).

Agents. ``lab.agent(name)`` is a Python process inside that namespace (started on first use,
``tests/net/agent.py``) that runs async snippets with persistent globals; ``await
agent.run(code, timeout=...)`` returns the last expression's JSON value or raises
``AgentError`` (the snippet's exception type and message) or ``AgentTimeout``. Every agent is
killed when the lab closes, and exits by itself when its stdin closes (the test died).

I6P helpers over agents (bind, serve a random blob, connect, connect via a coordinator,
verified fetch, join a coordinator) are in ``tests/net/lab_peers.py``; UDP probes and a reflector in
``tests/net/udp_probe.py``. Building a topology takes 0.1-0.5 s (one ``ip -batch`` per
namespace, one ``nft -f`` per router), ``lab.setup_seconds`` says how long it took.

Namespaces are named ``i6p-lab<pid>-<role>``; building one removes namespaces left by a killed
earlier run (a dead pid, or this pid reused). Teardown kills every process in them and deletes
them even when building failed halfway. Only documentation prefixes are used.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Literal

from .agent_handle import Agent, AgentError, AgentTimeout
from .netns import sh

__all__ = ["TOPOLOGIES", "Agent", "AgentError", "AgentTimeout", "Host", "Lab", "Side", "Topology"]

Side = Literal["open6", "open4", "fw6", "nat44", "nat44-edm", "nat66"]
Route = Literal["direct", "punched", "relayed"]


@dataclass(frozen=True)
class Topology:
    """Two sides and the route the reachability work must end with between them."""

    number: int
    a: Side
    b: Side
    expected: Route
    why: str


TOPOLOGIES: dict[int, Topology] = {
    1: Topology(1, "open6", "open6", "direct", "both open IPv6"),
    2: Topology(2, "fw6", "fw6", "punched", "both behind stateful IPv6 firewalls"),
    3: Topology(3, "fw6", "open6", "direct", "one firewalled, one open: reversal"),
    4: Topology(4, "nat44", "nat44", "punched", "NAT44 EIM + port-restricted, both sides"),
    5: Topology(5, "nat66", "fw6", "punched", "NAT66 masquerade vs stateful IPv6 firewall"),
    6: Topology(6, "nat44", "nat44-edm", "relayed", "NAT44 EIM vs NAT44 EDM"),
    7: Topology(7, "nat44-edm", "nat44-edm", "relayed", "EDM vs EDM"),
    8: Topology(8, "open6", "open4", "relayed", "IPv6-only vs IPv4-only"),
}

BRIDGE_V6 = "2001:db8:ff::/64"
BRIDGE_V4 = "203.0.113.0/24"
C_V6, C_V4 = "2001:db8:ff::c", "203.0.113.3"


@dataclass(frozen=True)
class SidePlan:
    """A side's addresses: as an open host, on its router's WAN, and in its LAN."""

    open6: str
    open4: str
    wan6: str
    wan4: str
    lan6: str  # a /64: the router is ::1, the host ::2
    router4: str  # the NAT44 LAN is a /25: the router's and the host's addresses in it
    host4: str


PLAN = {
    "a": SidePlan(
        "2001:db8:ff::a",
        "203.0.113.10",
        "2001:db8:ff::1a",
        "203.0.113.11",
        "2001:db8:a::",
        "198.51.100.1",
        "198.51.100.2",
    ),
    "b": SidePlan(
        "2001:db8:ff::b",
        "203.0.113.20",
        "2001:db8:ff::1b",
        "203.0.113.21",
        "2001:db8:b::",
        "198.51.100.129",
        "198.51.100.130",
    ),
}

SYSCTLS = (
    "net.ipv6.conf.all.accept_dad=0 net.ipv6.conf.default.accept_dad=0 "
    "net.ipv6.conf.all.accept_ra=0 net.ipv6.conf.default.accept_ra=0"
)
ROUTER_SYSCTLS = "net.ipv4.ip_forward=1 net.ipv6.conf.all.forwarding=1"

FORWARD_FILTER = """
table inet lab_filter {
  chain forwarding {
    type filter hook forward priority filter; policy drop;
    ct state established,related accept
    iifname "lan" accept
  }
}
"""
# NEW packets from the WAN are dropped here too, not only in forwarding: a peer's punch
# packet to our WAN address, if accepted, leaves a confirmed conntrack entry that clashes
# with our later translation of the host's packet to that peer (another port is chosen).
INPUT_FILTER = """
table inet lab_filter {
  chain inbound {
    type filter hook input priority filter; policy drop;
    icmpv6 type { nd-neighbor-solicit, nd-neighbor-advert } accept
    ct state established,related accept
    iifname { "lo", "lan" } accept
  }
}
"""
NAT = """
table {family} lab_nat {{
  chain postrouting {{
    type nat hook postrouting priority srcnat; policy accept;
    oifname "wan" masquerade{flags}
  }}
}}
"""


@dataclass(frozen=True)
class Host:
    """A host namespace and its addresses (None where it has none of that family)."""

    name: str
    ns: str
    v6: str | None
    v4: str | None
    public_v6: str | None
    public_v4: str | None


def is_stale(pid: int) -> bool:
    """A lab of this pid is left over: its process is gone, or it is ours (a reused pid;
    no lab of ours is open while we build one)."""
    return pid == os.getpid() or not os.path.exists(f"/proc/{pid}")


def remove_stale_namespaces() -> list[str]:
    """Deletes lab namespaces (and the agents' temporary directories) of stale labs."""
    removed = []
    for line in sh("ip", "netns", "list").splitlines():
        m = re.match(r"(i6p-lab(\d+)-\S+)", line)
        if not m or not is_stale(int(m.group(2))):
            continue
        kill_namespace_processes(m.group(1))
        subprocess.run(["ip", "netns", "del", m.group(1)], capture_output=True, timeout=20)
        removed.append(m.group(1))
    for path in Path(tempfile.gettempdir()).glob("i6p-lab*-*"):
        m = re.match(r"i6p-lab(\d+)-", path.name)
        if m and path.is_dir() and is_stale(int(m.group(1))):
            shutil.rmtree(path, ignore_errors=True)
    return removed


def kill_namespace_processes(ns: str) -> None:
    """Kills what runs inside one of the lab's namespaces (only the lab starts anything
    there)."""
    out = subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True, timeout=10)
    for pid in out.stdout.split():
        try:
            os.kill(int(pid), 9)
        except (ProcessLookupError, ValueError):
            pass


class Lab:
    """One topology of ``TOPOLOGIES`` built in fresh namespaces; see the module docstring.
    A process has one lab open at a time (the namespaces are named after its pid)."""

    _open: Lab | None = None

    def __init__(self, topology: int | Topology, *, drop_new_wan_input: bool = True) -> None:
        """``drop_new_wan_input=False`` leaves the routers' INPUT hook open (to show why it
        must not be: NAT44 punching then fails)."""
        self.topology = topology if isinstance(topology, Topology) else TOPOLOGIES[topology]
        self.drop_new_wan_input = drop_new_wan_input
        self.prefix = f"i6p-lab{os.getpid()}"
        self.namespaces: list[str] = []
        self.hosts: dict[str, Host] = {}
        self.agents: dict[str, Agent] = {}
        self.setup_seconds = 0.0
        self.tmp: str | None = None  # the agents' TMPDIR (blobs, fetched files), removed last

    # -- public API ----------------------------------------------------------------------

    def ns(self, role: str) -> str:
        """The namespace of a role: "inet", "c", "a", "b", "ra", "rb"."""
        return f"{self.prefix}-{role}"

    def host(self, name: str) -> Host:
        return self.hosts[name]

    def public(self, name: str) -> str:
        """The host's public address as the internet sees it, IPv6 first, in the form that
        takes a ``:port`` (``[2001:db8:ff::1a]`` or ``203.0.113.11``)."""
        h = self.hosts[name]
        if h.public_v6:
            return f"[{h.public_v6}]"
        assert h.public_v4, h
        return h.public_v4

    def public_for(self, name: str, seen_from: str) -> str:
        """``name``'s public address in a family ``seen_from`` has (IPv6 first), in URL form;
        ``public(name)`` when they share none (a dial then fails: no route)."""
        target, viewer = self.hosts[name], self.hosts[seen_from]
        if target.public_v6 and viewer.v6:
            return f"[{target.public_v6}]"
        if target.public_v4 and viewer.v4:
            return target.public_v4
        return self.public(name)

    def agent(self, name: str) -> Agent:
        """The agent process of a host or router namespace, started on first ``run``."""
        if name not in self.agents:
            if self.tmp is None:
                self.tmp = tempfile.mkdtemp(prefix=f"{self.prefix}-")
            self.agents[name] = Agent(self.ns(name), name, self.tmp)
        return self.agents[name]

    def exec(self, role: str, *cmd: str, timeout: float = 20) -> str:
        """Runs a command inside a role's namespace (for checks: `nft list ruleset`)."""
        return sh(*cmd, ns=self.ns(role), timeout=timeout)

    # -- context managers ----------------------------------------------------------------

    def __enter__(self) -> Lab:
        if Lab._open is not None:
            raise RuntimeError("a lab is already open in this process: close it first")
        started = time.monotonic()
        Lab._open = self
        try:
            self._build()
        except BaseException:
            self.close()
            raise
        self.setup_seconds = time.monotonic() - started
        return self

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    async def __aenter__(self) -> Lab:
        return self.__enter__()

    async def __aexit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        for agent in self.agents.values():
            await agent.stop()
        self.close()

    def close(self) -> None:
        """Kills the agents and everything else in the lab's namespaces, then deletes them."""
        for agent in self.agents.values():
            agent.kill()
            agent.log.unlink(missing_ok=True)  # its tail is in any AgentError already
        for ns in reversed(self.namespaces):
            kill_namespace_processes(ns)
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=20)
        self.namespaces.clear()
        if self.tmp is not None:
            shutil.rmtree(self.tmp, ignore_errors=True)
            self.tmp = None
        if Lab._open is self:
            Lab._open = None

    # -- building ------------------------------------------------------------------------

    def _build(self) -> None:
        remove_stale_namespaces()
        t = self.topology
        roles = ["inet", "c", "a", "b"] + [
            f"r{s}" for s, kind in (("a", t.a), ("b", t.b)) if kind not in ("open6", "open4")
        ]
        sh("ip", "-batch", "-", stdin="".join(f"netns add {self.ns(r)}\n" for r in roles))
        self.namespaces = [self.ns(r) for r in roles]
        for role in roles:
            router = role.startswith("r")
            sysctls = SYSCTLS + (" " + ROUTER_SYSCTLS if router else "")
            self.exec(role, "sysctl", "-qw", *sysctls.split())
        links = ["link add br0 netns {} type bridge".format(self.ns("inet"))]
        # One veth per namespace on the bridge (its end there is named after the role), and
        # one between each router and its host.
        on_bridge = ["c"] + [
            s if kind in ("open6", "open4") else f"r{s}" for s, kind in (("a", t.a), ("b", t.b))
        ]
        for role in on_bridge:
            dev = "wan" if role.startswith("r") else "eth0"
            links.append(
                f"link add {dev} netns {self.ns(role)} type veth peer name {role} "
                f"netns {self.ns('inet')}"
            )
        for side in ("a", "b"):
            if f"r{side}" in roles:
                links.append(
                    f"link add lan netns {self.ns('r' + side)} type veth peer name eth0 "
                    f"netns {self.ns(side)}"
                )
        sh("ip", "-batch", "-", stdin="\n".join(links) + "\n")
        bridge = ["link set lo up", "link set br0 up"]
        bridge += [f"link set dev {role} master br0 up" for role in on_bridge]
        self._batch("inet", bridge)
        self._batch("c", self._host_on_bridge(C_V6, C_V4))
        self.hosts["c"] = Host("c", self.ns("c"), C_V6, C_V4, C_V6, C_V4)
        for side, kind in (("a", t.a), ("b", t.b)):
            self._build_side(side, kind)
        self._route_firewalled_lans(on_bridge)

    def _batch(self, role: str, commands: list[str]) -> None:
        sh("ip", "-n", self.ns(role), "-batch", "-", stdin="\n".join(commands) + "\n")

    @staticmethod
    def _host_on_bridge(v6: str | None, v4: str | None, dev: str = "eth0") -> list[str]:
        cmds = ["link set lo up", f"link set {dev} up"]
        if v6:
            cmds.append(f"addr add {v6}/64 dev {dev} nodad")
        if v4:
            cmds.append(f"addr add {v4}/24 dev {dev}")
        return cmds

    def _build_side(self, side: str, kind: Side) -> None:
        plan = PLAN[side]
        if kind == "open6":
            self._batch(side, self._host_on_bridge(plan.open6, None))
            self.hosts[side] = Host(side, self.ns(side), plan.open6, None, plan.open6, None)
            return
        if kind == "open4":
            self._batch(side, self._host_on_bridge(None, plan.open4))
            # IPv4 only: no link-local IPv6 either (it would reach an IPv6 host on the bridge).
            sh("sysctl", "-qw", "net.ipv6.conf.eth0.disable_ipv6=1", ns=self.ns(side))
            self.hosts[side] = Host(side, self.ns(side), None, plan.open4, None, plan.open4)
            return
        router = f"r{side}"
        wan6, wan4, lan6, r4, h4 = plan.wan6, plan.wan4, plan.lan6, plan.router4, plan.host4
        cmds = ["link set lo up", "link set wan up", "link set lan up"]
        host = ["link set lo up", "link set eth0 up"]
        if kind in ("fw6", "nat66"):
            cmds += [f"addr add {wan6}/64 dev wan nodad", f"addr add {lan6}1/64 dev lan nodad"]
            host += [f"addr add {lan6}2/64 dev eth0 nodad", f"route add default via {lan6}1"]
            public = wan6 if kind == "nat66" else f"{lan6}2"
            self.hosts[side] = Host(side, self.ns(side), f"{lan6}2", None, public, None)
        else:
            cmds += [f"addr add {wan4}/24 dev wan", f"addr add {r4}/25 dev lan"]
            host += [f"addr add {h4}/25 dev eth0", f"route add default via {r4}"]
            self.hosts[side] = Host(side, self.ns(side), None, h4, None, wan4)
        self._batch(router, cmds)
        self._batch(side, host)
        rules = FORWARD_FILTER + (INPUT_FILTER if self.drop_new_wan_input else "")
        if kind in ("nat44", "nat44-edm"):
            rules += NAT.format(family="ip", flags=" random" if kind == "nat44-edm" else "")
        elif kind == "nat66":
            rules += NAT.format(family="ip6", flags="")
        sh("nft", "-f", "-", ns=self.ns(router), stdin=rules)

    def _route_firewalled_lans(self, on_bridge: list[str]) -> None:
        """Routes each firewalled (not NATed) LAN prefix via its router, from every other
        namespace on the bridge: unsolicited packets then reach the firewall and are dropped
        there, as on the internet."""
        t = self.topology
        routes: dict[str, list[str]] = {}
        for side, kind in (("a", t.a), ("b", t.b)):
            if kind != "fw6":
                continue
            route = f"route add {PLAN[side].lan6}/64 via {PLAN[side].wan6}"
            for role in on_bridge:
                if role != f"r{side}":
                    routes.setdefault(role, []).append(route)
        for role, cmds in routes.items():
            self._batch(role, cmds)
