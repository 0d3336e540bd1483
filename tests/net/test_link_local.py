"""IPv6 link-local addresses with scope ids, on a veth pair inside a namespace of the test's own."""

from __future__ import annotations

import json
import textwrap

from .netns import namespace, run_python, sh

SCRIPT = textwrap.dedent(
    """
    import asyncio, json
    from i6p import Identity, Node

    async def main():
        a = await Node.bind(Identity.generate(), "[fe80::a%veth-a]:0")
        b = await Node.bind(Identity.generate(), "[fe80::b%veth-b]:0")
        wild = await Node.bind(Identity.generate(), "[::]:0")
        ours, theirs = await asyncio.gather(
            a.connect(b.peer_id, f"[fe80::b%veth-a]:{b.port}"), b.accept()
        )
        stream = await ours.open_stream()
        await stream.write(b"over link-local")
        await stream.finish()
        got = await (await theirs.accept_stream()).read()
        print(json.dumps({
            "a": a.local_addr, "b": b.local_addr,
            "remote": ours.remote_addr, "peer_ok": ours.remote_peer_id == b.peer_id,
            "data": got.decode(), "rtt": await ours.ping(),
            "wild_addrs": wild.local_addrs,
        }))
        for n in (a, b, wild):
            await n.close()

    asyncio.run(main())
    """
)


def test_link_local_addresses_with_scope_ids() -> None:
    with namespace("ll") as ns:
        sh("ip", "link", "add", "veth-a", "type", "veth", "peer", "name", "veth-b", ns=ns)
        for dev, addr in (("veth-a", "fe80::a/64"), ("veth-b", "fe80::b/64")):
            sh("ip", "addr", "add", addr, "dev", dev, "nodad", ns=ns)
            sh("ip", "link", "set", dev, "up", ns=ns)
        index = int(sh("cat", "/sys/class/net/veth-a/ifindex", ns=ns))
        out = run_python(ns, SCRIPT)
        assert out.returncode == 0, out.stderr
        result = json.loads(out.stdout)
    assert result["a"].startswith(f"[fe80::a%{index}]:")
    assert result["remote"].startswith(f"[fe80::b%{index}]:")
    assert result["peer_ok"] and result["data"] == "over link-local" and result["rtt"] > 0
    # A wildcard node lists its link-local addresses with their scope.
    assert any(a.startswith(f"[fe80::a%{index}]:") for a in result["wild_addrs"]), result
