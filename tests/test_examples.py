"""The examples in examples/ run as a user runs them (installed package, real sockets)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def test_the_echo_example_serves_an_unmodified_asyncio_handler() -> None:
    out = subprocess.run(
        [sys.executable, str(EXAMPLES / "echo.py")], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[1:] == ["echo: hello", "echo: over I6P"]
    assert out.stderr == ""


def test_the_echo_example_across_two_processes() -> None:
    server = subprocess.Popen(
        [sys.executable, str(EXAMPLES / "echo.py"), "serve"], stdout=subprocess.PIPE, text=True
    )
    try:
        assert server.stdout is not None
        contact = server.stdout.readline().strip()
        out = subprocess.run(
            [sys.executable, str(EXAMPLES / "echo.py"), "connect", contact],
            input="one\ntwo\n", capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert out.returncode == 0, out.stderr
        assert out.stdout.splitlines() == ["echo: one", "echo: two"]
    finally:
        server.kill()
        server.wait()


def test_the_http_example_fetches_through_the_tunnel_with_curl() -> None:
    bin_dir = str(Path(sys.executable).parent)  # where `i6p` is installed
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    out = subprocess.run(
        ["bash", str(EXAMPLES / "http_forward.sh")],
        capture_output=True, text=True, timeout=120, env=env,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert out.stdout == "hello from an HTTP server behind I6P\n"
