"""Network namespaces for tests: created by the test, torn down after it, never touching the
host's own interfaces. Needs root and iproute2 (installed by .ci/run)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
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


@contextmanager
def bridged() -> Iterator[tuple[str, str]]:
    """(A's namespace, B's namespace), joined by a bridge in a third one (multicast, so
    mDNS, stays on it): A 2001:db8:18::a/64 and 192.0.2.10/24, B 2001:db8:18::b/64 and
    192.0.2.11/24 on their eth0."""
    with ExitStack() as stack:
        a, br, b = (stack.enter_context(namespace(f"mdns-{k}")) for k in ("a", "br", "b"))
        sh("ip", "link", "add", "br0", "type", "bridge", ns=br)
        sh("ip", "link", "set", "br0", "up", ns=br)
        for ns, v6, v4, port in ((a, "2001:db8:18::a", "192.0.2.10", "pa"),
                                 (b, "2001:db8:18::b", "192.0.2.11", "pb")):  # fmt: skip
            sh("ip", "link", "add", "eth0", "netns", ns, "type", "veth", "peer", "name", port,
               "netns", br)  # fmt: skip
            sh("ip", "link", "set", port, "master", "br0", ns=br)
            sh("ip", "link", "set", port, "up", ns=br)
            sh("ip", "addr", "add", f"{v6}/64", "dev", "eth0", "nodad", ns=ns)
            sh("ip", "addr", "add", f"{v4}/24", "dev", "eth0", ns=ns)
            sh("ip", "link", "set", "eth0", "up", ns=ns)
        # The link-local addresses mDNS answers from need DAD to finish.
        for ns in (a, b):
            deadline = time.monotonic() + 10
            while "tentative" in sh("ip", "-6", "addr", "show", "dev", "eth0", ns=ns):
                assert time.monotonic() < deadline, "link-local address still tentative"
                time.sleep(0.1)
        yield a, b


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
