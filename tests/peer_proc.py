"""A peer in a process of its own, for tests whose peer must die as after a crash: killed
with SIGKILL, it sends no CLOSE and no CONNECTION_CLOSE, and its port answers ICMP port
unreachable.

``python tests/peer_proc.py CONFIG_JSON`` binds (``addr``, ``identity`` key file,
``state_dir``), serves the file ``serve`` if given, dials ``dial`` = [peer_id, addr] if given,
prints ``{"peer_id", "port", "ticket"}``, then accepts sessions and holds them until killed.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from typing import Any

from i6p import Identity, Node, PeerId, Session


class Peer:
    """A running peer process; ``kill()`` ends it with SIGKILL."""

    def __init__(self, proc: asyncio.subprocess.Process, info: dict[str, Any]) -> None:
        self.proc, self.info = proc, info
        self.peer_id = PeerId.parse(info["peer_id"])
        self.addr = f"[::1]:{info['port']}"

    async def kill(self) -> None:
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGKILL)
        await self.proc.wait()


async def spawn(**config: object) -> Peer:
    """Starts a peer process with ``config`` and waits until it is ready."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, __file__, json.dumps(config), stdout=asyncio.subprocess.PIPE
    )
    assert proc.stdout is not None
    try:
        line = await asyncio.wait_for(proc.stdout.readline(), 60)
        return Peer(proc, json.loads(line))
    except BaseException:
        proc.kill()
        await proc.wait()
        raise


async def main(config: dict[str, Any]) -> None:
    key = config.get("identity")
    identity = Identity.load(key) if key else Identity.generate()
    node = await Node.bind(
        identity, config.get("addr", "[::1]:0"), state_dir=config.get("state_dir")
    )
    out: dict[str, Any] = {"peer_id": str(node.peer_id), "port": node.port}
    if config.get("serve"):
        out["ticket"] = str(node.ticket(await node.add_path(config["serve"])))
    held: list[Session] = []
    if config.get("dial"):
        peer_id, addr = config["dial"]
        held.append(await node.connect(PeerId.parse(peer_id), addr))
    print(json.dumps(out), flush=True)
    while True:
        held.append(await node.accept())


if __name__ == "__main__":
    asyncio.run(main(json.loads(sys.argv[1])))
