"""Network namespaces for tests: created by the test, torn down after it, never touching the
host's own interfaces. Needs root and iproute2 (installed by .ci/run)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager


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
