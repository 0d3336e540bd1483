"""SSH over I6P, as examples/README.md documents it: a real sshd exposed as a service with
`i6p expose`, and a real `ssh` reaching it through `i6p pipe` as its ProxyCommand (no local
port), then through `i6p forward`. Keys and configuration live in the test's directory."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

CLI = [sys.executable, "-m", "i6p.cli"]
SSHD = shutil.which("sshd") or "/usr/sbin/sshd"


def free_port() -> int:
    with socket.socket(socket.AF_INET6) as s:
        s.bind(("::1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture
def sshd(tmp_path: Path) -> Iterator[tuple[int, Path]]:
    """An sshd on ::1 that lets in one key: its port and the client's key file."""
    for key in ("host", "client"):
        subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / key)], check=True
        )
    (tmp_path / "authorized_keys").write_text((tmp_path / "client.pub").read_text())
    port = free_port()
    config = tmp_path / "sshd_config"
    config.write_text(
        f"Port {port}\nListenAddress ::1\nHostKey {tmp_path / 'host'}\n"
        f"AuthorizedKeysFile {tmp_path / 'authorized_keys'}\nStrictModes no\n"
        "PasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\n"
        f"PidFile {tmp_path / 'sshd.pid'}\nPermitRootLogin prohibit-password\n"
    )
    Path("/run/sshd").mkdir(exist_ok=True)  # its privilege-separation directory
    server = subprocess.Popen([SSHD, "-D", "-e", "-f", str(config)], stderr=subprocess.PIPE)
    try:
        yield port, tmp_path / "client"
    finally:
        server.kill()
        server.wait()


def ssh(
    key: Path, proxy: list[str] | None, port: int, command: str, stdin: str = ""
) -> subprocess.CompletedProcess[str]:
    options = [
        "-i", str(key), "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no",
        "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR", "-p", str(port),
    ]  # fmt: skip
    if proxy is not None:
        options += ["-o", "ProxyCommand=" + shlex.join(proxy)]
    user = os.environ.get("USER", "root")
    return subprocess.run(
        ["ssh", *options, f"{user}@::1", command],
        input=stdin, capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def test_ssh_through_i6p_pipe_and_i6p_forward(sshd: tuple[int, Path], tmp_path: Path) -> None:
    port, key = sshd
    procs = []
    try:
        env = {**os.environ, "I6P_HOME": str(tmp_path / "server"), "I6P_MDNS": "0"}
        exposer = subprocess.Popen(
            [*CLI, "expose", str(port), "--host", "::1", "--service", "ssh", "--json",
             "--addr", "[::1]:0"],
            stdout=subprocess.PIPE, text=True, env=env,
        )  # fmt: skip
        procs.append(exposer)
        assert exposer.stdout is not None
        contact = json.loads(exposer.stdout.readline())["contact"]
        home = str(tmp_path / "laptop")
        pipe = ["env", f"I6P_HOME={home}", "I6P_MDNS=0", *CLI, "pipe", contact, "--service", "ssh"]
        # Port 1 is never dialed: the ProxyCommand carries the connection.
        out = ssh(key, pipe, 1, "echo over-i6p; uname -s")
        assert out.returncode == 0, out.stderr
        assert out.stdout.split() == ["over-i6p", "Linux"]

        env = {**os.environ, "I6P_HOME": home, "I6P_MDNS": "0"}
        forwarder = subprocess.Popen(
            [*CLI, "forward", contact, "0", "--service", "ssh", "--json"],
            stdout=subprocess.PIPE, text=True, env=env,
        )  # fmt: skip
        procs.append(forwarder)
        assert forwarder.stdout is not None
        local = json.loads(forwarder.stdout.readline())["port"]
        # What is typed goes one way, what the remote shell prints comes back.
        typed = "".join(f"echo line {i}\n" for i in range(1000))
        out = ssh(key, None, local, "sh", stdin=typed)
        assert out.returncode == 0, out.stderr
        assert out.stdout.splitlines() == [f"line {i}" for i in range(1000)]
    finally:
        for p in procs:
            p.kill()
            p.wait()
