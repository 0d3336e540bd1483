"""A lab agent: runs async Python snippets inside a network namespace, for tests outside it.

Started as ``ip netns exec NS python -m tests.net.agent`` (from the repository root). It
reads one JSON request per line on stdin and writes one JSON reply per line on stdout:

    {"id": 1, "code": "node = await i6p.Node.bind(i6p.Identity.generate())\\nnode.port",
     "timeout": 10}
    {"id": 1, "ok": true, "value": 40123}
    {"id": 2, "ok": false, "type": "Unreachable", "module": "i6p.errors", "message": "..."}

A snippet is a block of statements that may ``await``; its globals persist across requests
(``i6p``, ``asyncio``, ``json``, ``socket`` and whatever earlier snippets defined: nodes,
sessions, tasks). The reply's value is the last statement's value if it is an expression
(made JSON-able: bytes as hex, other objects as ``repr``). Requests run concurrently (one
snippet may wait on ``node.accept()`` while another dials); each is cancelled at its timeout
and answered with type ``"AgentTimeout"``. A snippet's own prints go to stderr: stdout
carries replies only. The agent exits when stdin closes, so it never outlives its test.
"""

from __future__ import annotations

import ast
import asyncio
import json
import os
import sys
import traceback
from typing import Any, TextIO

MAX_TIMEOUT = 300.0


def compile_snippet(code: str) -> Any:
    """Compiles a snippet so that its last expression lands in ``__value__``."""
    tree = ast.parse(code, "<snippet>", "exec")
    if tree.body and isinstance(tree.body[-1], ast.Expr):
        last = tree.body[-1]
        assign = ast.Assign(
            targets=[ast.Name("__value__", ast.Store())], value=last.value, lineno=last.lineno
        )
        tree.body[-1] = ast.copy_location(assign, last)
    ast.fix_missing_locations(tree)
    return compile(tree, "<snippet>", "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)


def jsonable(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return repr(value)


async def execute(code: str, scope: dict[str, Any]) -> Any:
    scope.pop("__value__", None)
    result = eval(compile_snippet(code), scope)  # a coroutine when the snippet awaits
    if asyncio.iscoroutine(result):
        await result
    return scope.pop("__value__", None)


async def serve(request: dict[str, Any], scope: dict[str, Any], out: TextIO) -> None:
    rid = request.get("id")
    timeout = min(float(request.get("timeout", 30)), MAX_TIMEOUT)
    # A task, not wait_for: the snippet's own TimeoutError (i6p.errors.Timeout is one) must
    # not pass for the agent's timeout.
    task = asyncio.create_task(execute(str(request["code"]), scope))
    done, _ = await asyncio.wait({task}, timeout=timeout)
    reply: dict[str, Any] = {"id": rid, "ok": True}
    if not done:
        task.cancel()
        reply.update(ok=False, type="AgentTimeout", module="", mro=["AgentTimeout"])
        reply["message"] = f"snippet still running after {timeout} s"
    elif task.cancelled():  # the snippet cancelled itself
        reply.update(ok=False, type="CancelledError", module="asyncio", mro=["CancelledError"])
        reply["message"] = "the snippet was cancelled"
    elif (e := task.exception()) is not None:
        reply.update(ok=False, type=type(e).__name__, module=type(e).__module__)
        reply.update(message=str(e), mro=[c.__name__ for c in type(e).__mro__])
        reply["traceback"] = "".join(traceback.format_exception(e))[-4000:]
    else:
        reply["value"] = jsonable(task.result())
    out.write(json.dumps(reply) + "\n")
    out.flush()


async def main() -> None:
    # Replies get their own copy of stdout; fd 1 (and print) go to stderr from now on.
    out = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    import socket

    import i6p

    scope: dict[str, Any] = {
        "__name__": "__agent__",
        "asyncio": asyncio,
        "json": json,
        "socket": socket,
        "i6p": i6p,
    }
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=1 << 22)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    out.write(json.dumps({"id": None, "ok": True, "value": "ready"}) + "\n")
    out.flush()
    tasks: set[asyncio.Task[None]] = set()
    while line := await reader.readline():
        task = asyncio.create_task(serve(json.loads(line), scope, out))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    # stdin closed: the test is over (or died). Leave at once, whatever is still running.
    os._exit(0)


if __name__ == "__main__":
    asyncio.run(main())
