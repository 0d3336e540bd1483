"""The test side of a lab agent (tests/net/agent.py): starts it in its namespace, sends it
snippets, matches replies to calls. Every call is bounded by its timeout (plus a grace for
the reply to travel); an agent that does not answer by then is killed, not waited for."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
GRACE = 5.0  # seconds past a call's timeout before the agent counts as wedged
START_TIMEOUT = 20.0


class AgentError(Exception):
    """A snippet raised: ``type`` is its exception class name, ``mro`` the names of its
    classes (``err.is_a("HandshakeError")`` is an isinstance check across the process)."""

    def __init__(self, agent: str, reply: dict[str, Any]) -> None:
        self.type: str = reply.get("type", "")
        self.module: str = reply.get("module", "")
        self.mro: list[str] = reply.get("mro", [])
        self.remote_message: str = reply.get("message", "")
        self.traceback: str = reply.get("traceback", "")
        super().__init__(f"[{agent}] {self.module}.{self.type}: {self.remote_message}")

    def is_a(self, name: str) -> bool:
        return name in self.mro


class AgentTimeout(AgentError):
    """A snippet was still running at its timeout (the agent cancelled it), or the agent
    did not answer at all (then it was killed)."""


class Agent:
    """A lab agent process in namespace ``ns``; ``await run(code)`` starts it if needed."""

    def __init__(self, ns: str, name: str, tmpdir: str | None = None) -> None:
        self.ns = ns
        self.name = name
        self.tmpdir = tmpdir  # the agent's TMPDIR: its temporary files go where the lab says
        self.proc: asyncio.subprocess.Process | None = None
        self.log = Path(tempfile.gettempdir()) / f"{ns}-agent.log"
        self._pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._next = 0
        self._reader: asyncio.Task[None] | None = None

    async def start(self) -> None:
        if self.proc is not None:
            return
        err = os.open(self.log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            self.proc = await asyncio.create_subprocess_exec(
                *("ip", "netns", "exec", self.ns, sys.executable, "-m", "tests.net.agent"),
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=err,
                cwd=REPO,
                env={
                    **os.environ,
                    "PYTHONUNBUFFERED": "1",
                    **({"TMPDIR": self.tmpdir} if self.tmpdir else {}),
                },
                limit=1 << 22,
            )
        finally:
            os.close(err)
        assert self.proc.stdout is not None
        try:
            line = await asyncio.wait_for(self.proc.stdout.readline(), START_TIMEOUT)
        except TimeoutError:
            line = b""
        if b'"ready"' not in line:
            self.kill()
            raise AgentError(self.name, {"type": "AgentStart", "message": self.stderr_tail()})
        self._reader = asyncio.create_task(self._read())

    async def run(self, code: str, timeout: float = 10.0) -> Any:  # noqa: ASYNC109
        """Runs a snippet in the agent; returns the value of its last expression."""
        await self.start()
        assert self.proc is not None and self.proc.stdin is not None
        self._next += 1
        rid = self._next
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[rid] = future
        request = {"id": rid, "code": code, "timeout": timeout}
        self.proc.stdin.write(json.dumps(request).encode() + b"\n")
        try:
            await self.proc.stdin.drain()
            reply = await asyncio.wait_for(future, timeout + GRACE)
        except (TimeoutError, ConnectionError) as e:
            self.kill()
            reply = {"type": "AgentTimeout", "message": f"{e!r} {self.stderr_tail()}"}
            raise AgentTimeout(self.name, reply) from e
        finally:
            self._pending.pop(rid, None)
        if reply.get("ok"):
            return reply.get("value")
        if reply.get("type") == "AgentTimeout":
            raise AgentTimeout(self.name, reply)
        raise AgentError(self.name, reply)

    async def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        while line := await self.proc.stdout.readline():
            reply = json.loads(line)
            future = self._pending.get(reply.get("id"))
            if future is not None and not future.done():
                future.set_result(reply)
        # The agent exited: every call still waiting fails now rather than at its timeout.
        gone = {"type": "AgentExited", "message": self.stderr_tail()}
        for future in self._pending.values():
            if not future.done():
                future.set_result({"ok": False, **gone})

    def stderr_tail(self, chars: int = 3000) -> str:
        try:
            return self.log.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    async def stop(self) -> None:
        """Closes the agent's stdin (it exits at once) and reaps it; kills it if it lingers."""
        if self.proc is None:
            return
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        try:
            await asyncio.wait_for(self.proc.wait(), 5)
        except TimeoutError:
            self.kill()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.proc.wait(), 5)
        if self._reader is not None:
            self._reader.cancel()

    def kill(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()
