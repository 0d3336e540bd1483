"""Network namespaces for tests: created by the test, torn down after it, never touching the
host's own interfaces. Needs root and iproute2 (installed by .ci/run)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


def sh(*args: str, ns: str | None = None, timeout: float = 30, stdin: str | None = None) -> str:
    """Runs a command (inside namespace ``ns`` if given) and returns its output; raises
    RuntimeError with its stderr if it fails. ``stdin`` feeds `ip -batch -` or `nft -f -`."""
    cmd = ["ip", "netns", "exec", ns, *args] if ns else list(args)
    out = subprocess.run(cmd, input=stdin, capture_output=True, text=True, timeout=timeout)
    if out.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed: {out.stderr.strip()}")
    return out.stdout


@contextmanager
def namespace(tag: str) -> Iterator[str]:
    """A fresh network namespace with loopback up; deleted afterwards."""
    name = f"i6p-{tag}-{os.getpid()}"
    sh("ip", "netns", "add", name)
    try:
        sh("ip", "link", "set", "lo", "up", ns=name)
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=30)


def run_python(ns: str, script: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Runs ``script`` with this interpreter inside the namespace."""
    return subprocess.run(
        ["ip", "netns", "exec", ns, sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


class PeerProc:
    """A Python script run in a namespace, spoken to line by line: JSON lines out, commands
    in (every read bounded by the test's timeout; ``close`` sends ``quit``, then kills)."""

    def __init__(self, script: str, ns: str, *args: str) -> None:
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", ns, sys.executable, script, *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def read(self) -> Any:
        assert self.proc.stdout is not None
        text = self.proc.stdout.readline()
        if not text:
            self.proc.wait(timeout=10)
            assert self.proc.stderr is not None
            raise AssertionError(f"peer ended: {self.proc.stderr.read()[-3000:]}")
        return json.loads(text)

    def send(self, text: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(text + "\n")
        self.proc.stdin.flush()

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self.send("quit")
                self.proc.wait(timeout=15)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait(timeout=10)
