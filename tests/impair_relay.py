"""Runs ``i6p-impair`` (tests/impair, a Rust binary) as an async context manager.

The relay sits between a client and ``upstream`` and emulates a long, lossy or narrow link:
the client sends to ``relay.addr`` instead of the upstream. On exit the relay is stopped with
SIGTERM and its counters land in ``relay.stats``: ``{"up": {...}, "down": {...}, "seconds": s}``,
"up" being client to upstream. The binary is ``target/release/i6p-impair`` (``make impair``
builds it), or the path in ``I6P_IMPAIR_BIN``.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
from pathlib import Path
from types import TracebackType
from typing import Any

REPO = Path(__file__).resolve().parent.parent


def impair_binary() -> Path:
    """The relay's executable; a clear error when it has not been built."""
    path = Path(os.environ.get("I6P_IMPAIR_BIN") or REPO / "target" / "release" / "i6p-impair")
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: run `make impair` to build the relay")
    return path


class ImpairRelay:
    """An ``i6p-impair`` process relaying to ``upstream`` (an address such as "[::1]:4433")."""

    def __init__(
        self,
        upstream: str,
        *,
        listen: str = "[::1]:0",
        delay_ms: float = 0,
        jitter_ms: float = 0,
        loss: float = 0.0,
        reorder: float = 0.0,
        reorder_ms: float | None = None,
        rate: float | None = None,
        queue_bytes: int | None = None,
        seed: int | None = None,
        max_seconds: float = 120,
        extra_args: tuple[str, ...] = (),
    ) -> None:
        self.args = [
            "--listen",
            listen,
            "--upstream",
            upstream,
            "--delay-ms",
            str(delay_ms),
            "--jitter-ms",
            str(jitter_ms),
            "--loss",
            str(loss),
            "--reorder",
            str(reorder),
            "--max-seconds",
            str(max_seconds),
        ]
        for flag, value in (
            ("--reorder-ms", reorder_ms),
            ("--rate", rate),
            ("--queue-bytes", queue_bytes),
            ("--seed", seed),
        ):
            if value is not None:
                self.args += [flag, str(value)]
        self.args += extra_args
        self.stats: dict[str, Any] = {}
        self._addr: str | None = None
        self._proc: asyncio.subprocess.Process | None = None

    @property
    def addr(self) -> str:
        """Where clients send, as the relay printed it (e.g. "[::1]:40123")."""
        if self._addr is None:
            raise RuntimeError("the relay is not running")
        return self._addr

    @property
    def port(self) -> int:
        """The port of ``addr``."""
        return int(self.addr.rsplit(":", 1)[1])

    async def __aenter__(self) -> ImpairRelay:
        self._proc = await asyncio.create_subprocess_exec(
            str(impair_binary()),
            *self.args,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
        )
        assert self._proc.stdout is not None
        try:
            line = await asyncio.wait_for(self._proc.stdout.readline(), timeout=10)
        except TimeoutError:
            await self._stop()
            raise
        text = line.decode().strip()
        if not text.startswith("LISTEN "):
            await self._stop()
            raise RuntimeError(f"i6p-impair did not start (said {text!r}); see its stderr")
        self._addr = text.removeprefix("LISTEN ")
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._stop()

    async def _stop(self) -> None:
        """Stops the relay and reads its counters."""
        proc = self._proc
        if proc is None:
            return
        self._proc = None
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
        try:
            out, _ = await asyncio.wait_for(proc.communicate(), timeout=10)
        except TimeoutError:
            proc.kill()
            await proc.wait()
            raise
        for line in reversed(out.decode().splitlines()):
            if line.startswith("{"):
                self.stats = json.loads(line)
                break
