"""The lab's middleboxes proven with plain UDP (no i6p), one test per topology, before any
reachability test relies on them.

Per side: a datagram from the internet that the host did not ask for reaches it only if the
side is open; once the host sent to the reflector on c, the reflector's answers come back
(outbound first opens a return path), but another port of c still cannot get in
(port-restricted filtering); the address c sees is the side's public one (the router's WAN
address behind a NAT, the host's own behind a firewall); and a second destination sees the
same external port behind endpoint-independent mapping, another one behind
endpoint-dependent mapping. Then A and B punch at once towards each other's mapping as
learned from c: that works exactly in the topologies where both sides map independently of
the endpoint and share an address family. And the issue's finding, both ways: NAT44 punching works
only while the routers also drop NEW WAN packets in their INPUT hook.
"""

from __future__ import annotations

import asyncio

import pytest

from .lab import TOPOLOGIES, Agent, Lab
from .udp_probe import split

REFLECTOR, SECOND_REFLECTOR = 3478, 3479
# Simultaneous open works in these and fails in the others (the table), which the
# sides' kinds must agree with: see `punch_should_work`.
PUNCHABLE = {1, 2, 3, 4, 5}


def c_addr(lab: Lab, side: str) -> str:
    """c's address in the side's family (IPv6 when the side has it)."""
    c = lab.host("c")
    return str(c.v6 if lab.host(side).v6 else c.v4)


def punch_should_work(lab: Lab) -> bool:
    t = lab.topology
    same_family = bool(lab.host("a").v6) == bool(lab.host("b").v6)
    return same_family and "nat44-edm" not in (t.a, t.b)


async def start_reflectors(c: Agent) -> None:
    await c.run(
        "from tests.net import udp_probe as u\n"
        f"await u.reflector({REFLECTOR})\nawait u.reflector({SECOND_REFLECTOR})\n"
        "intruder = u.Probe()"
    )


async def check_side(lab: Lab, side: str) -> None:
    kind = getattr(lab.topology, side)
    host, agent, c = lab.host(side), lab.agent(side), lab.agent("c")
    public = str(host.public_v6 or host.public_v4)
    reflector = c_addr(lab, side)
    port = await agent.run("from tests.net import udp_probe as u\np = u.Probe()\np.port")

    async def intrude(target: str) -> list[object]:
        h, p = split(target)
        await c.run(f"for _ in range(3): intruder.send({h!r}, {p})")
        got: list[object] = await agent.run("await p.receive(0.5)", timeout=5)
        return got

    # Unsolicited: nothing was sent out from this port yet.
    unsolicited = await intrude(f"[{public}]:{port}")
    assert bool(unsolicited) == kind.startswith("open"), (kind, unsolicited)
    seen = await agent.run(f"await p.observe({reflector!r}, {REFLECTOR})", timeout=5)
    assert seen is not None, f"{kind}: the reflector's answer did not come back"
    seen_host, seen_port = split(seen)
    assert seen_host == public, (kind, seen, public)
    # The mapping exists now, but only for the reflector's own address and port.
    from_elsewhere = await intrude(seen)
    assert bool(from_elsewhere) == kind.startswith("open"), (kind, from_elsewhere)
    again = await agent.run(f"await p.observe({reflector!r}, {SECOND_REFLECTOR})", timeout=5)
    assert again is not None
    same_port = split(again)[1] == seen_port
    assert same_port == (kind != "nat44-edm"), (kind, seen, again)
    if not kind.startswith("nat"):
        assert seen_port == port  # no translation at all
    await agent.run("p.close()")


async def simultaneous_open(lab: Lab) -> dict[str, list[object]]:
    a, b = lab.agent("a"), lab.agent("b")
    for side, agent in (("a", a), ("b", b)):
        await agent.run(
            "from tests.net import udp_probe as u\nq = u.Probe()\n"
            f"mapped = await q.observe({c_addr(lab, side)!r}, {REFLECTOR})\nmapped",
            timeout=5,
        )
    mapped = {"a": await a.run("mapped"), "b": await b.run("mapped")}
    assert None not in mapped.values(), mapped

    async def punch(agent: Agent, towards: str) -> list[object]:
        h, p = split(towards)
        got: list[object] = await agent.run(
            # 3 s of punching: the two agents may start up to a second or two apart on a
            # loaded machine, and the first side's hole must still be open when the
            # other's packets come.
            f"sender = asyncio.create_task(q.punch({h!r}, {p}, count=30, gap=0.1))\n"
            "got = await q.receive(3.5)\nawait sender\n"
            "[s for s, data in got if data.startswith(b'punch')]",
            timeout=10,
        )
        return got

    got_a, got_b = await asyncio.gather(punch(a, mapped["b"]), punch(b, mapped["a"]))
    return {"a": got_a, "b": got_b, "mapped": [mapped["a"], mapped["b"]]}


@pytest.mark.parametrize("number", sorted(TOPOLOGIES))
async def test_middleboxes_filter_map_and_punch_as_the_topology_says(number: int) -> None:
    async with Lab(number) as lab:
        assert lab.setup_seconds < 5, lab.setup_seconds
        await start_reflectors(lab.agent("c"))
        for side in ("a", "b"):
            await check_side(lab, side)
        punched = await simultaneous_open(lab)
        works = bool(punched["a"]) and bool(punched["b"])
        assert punch_should_work(lab) == (number in PUNCHABLE)
        assert works == (number in PUNCHABLE), punched
        if works:  # each heard the other from the very mapping c reported
            assert set(punched["a"]) == {punched["mapped"][1]}, punched
            assert set(punched["b"]) == {punched["mapped"][0]}, punched


@pytest.mark.parametrize("drop_new_wan_input", [True, False])
async def test_nat44_punching_needs_the_routers_to_drop_new_wan_packets_on_input(
    drop_new_wan_input: bool,
) -> None:
    """A punches alone first, so its packets reach B's router before B sent anything; only
    if that router drops them on input (no conntrack entry confirmed) does B's own packet to
    A keep its mapped port, and the punch work."""
    async with Lab(4, drop_new_wan_input=drop_new_wan_input) as lab:
        await start_reflectors(lab.agent("c"))
        a, b = lab.agent("a"), lab.agent("b")
        mapped = {}
        for side, agent in (("a", a), ("b", b)):
            mapped[side] = await agent.run(
                "from tests.net import udp_probe as u\nq = u.Probe()\n"
                f"await q.observe({c_addr(lab, side)!r}, {REFLECTOR})",
                timeout=5,
            )
        ha, pa = split(mapped["a"])
        hb, pb = split(mapped["b"])
        await a.run(
            f"sender = asyncio.create_task(q.punch({hb!r}, {pb}, count=40, gap=0.1))\n"
            "rx = asyncio.create_task(q.receive(5.0))\nawait asyncio.sleep(0.5)",
            timeout=5,
        )
        got_b = await b.run(
            f"sender = asyncio.create_task(q.punch({ha!r}, {pa}, count=25, gap=0.1))\n"
            "got = await q.receive(3.0)\nawait sender\n"
            "[s for s, data in got if data.startswith(b'punch')]",
            timeout=10,
        )
        got_a = await a.run(
            "got = await rx\nawait sender\n[s for s, data in got if data.startswith(b'punch')]",
            timeout=10,
        )
        assert (bool(got_a) and bool(got_b)) == drop_new_wan_input, (mapped, got_a, got_b)
