"""An echo service written for asyncio, served over I6P without a line changed.

    python examples/echo.py serve              # prints a contact, serves until Ctrl-C
    python examples/echo.py connect CONTACT    # sends stdin's lines, prints the answers
    python examples/echo.py                    # both, in this process, on ::1

`handle` is a plain `asyncio.start_server` handler: the same function serves TCP clients
and I6P peers. Peers reach the service by the node's key (the contact names its addresses);
nothing else about the network is asked of the application.
"""

from __future__ import annotations

import asyncio
import sys

import i6p
from i6p.streams import Server


async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """An ordinary asyncio echo handler: answers each line until the client ends."""
    while line := await reader.readline():
        writer.write(line)
        await writer.drain()
    writer.close()
    await writer.wait_closed()


async def serve(node: i6p.Node) -> Server:
    server = await i6p.start_server(handle, node, "echo")
    print(i6p.Contact(node.peer_id, node.local_addrs), flush=True)
    return server


async def ask(node: i6p.Node, contact: str, lines: list[bytes]) -> None:
    peer = i6p.Contact.parse(contact)
    reader, writer = await i6p.open_connection(node, peer.peer_id, "echo", peer.addrs)
    for line in lines:
        writer.write(line)
        await writer.drain()
        print("echo:", (await reader.readline()).decode().rstrip("\n"))
    writer.close()
    await reader.read()  # the service's end: it has seen ours and closed too
    await writer.wait_closed()


async def main(args: list[str]) -> None:
    async with await i6p.Node.bind(i6p.Identity.generate(), "[::1]:0") as node:
        if args[:1] == ["serve"]:
            server = await serve(node)
            await server.serve_forever()
        elif args[:1] == ["connect"]:
            await ask(node, args[1], [line.encode() for line in sys.stdin])
        else:
            async with await serve(node):
                async with await i6p.Node.bind(i6p.Identity.generate(), "[::1]:0") as client:
                    contact = str(i6p.Contact(node.peer_id, node.local_addrs))
                    await ask(client, contact, [b"hello\n", b"over I6P\n"])


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1:]))
