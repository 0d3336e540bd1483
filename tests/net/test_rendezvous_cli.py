"""The command line across the lab: `i6p rendezvous` on the "internet", `i6p send
--rendezvous` behind one middlebox, `i6p get` behind another; the fetch is verified and
`--json` says which route it took (what a user behind a firewall or NAT runs)."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import i6p
import pytest

from .lab import TOPOLOGIES, Lab


def cli(lab: Lab, role: str, home: Path, *args: str) -> list[str]:
    """The command that runs ``i6p ARGS`` inside ``role``'s namespace."""
    env = f"I6P_HOME={home}"
    return ["ip", "netns", "exec", lab.ns(role), "env", env, sys.executable, "-m", "i6p.cli", *args]


def start(cmd: list[str]) -> subprocess.Popen[str]:
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def first_line(proc: subprocess.Popen[str]) -> dict[str, object]:
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line:
        assert proc.stderr is not None
        raise AssertionError(f"no output; stderr: {proc.stderr.read()}")
    info: dict[str, object] = json.loads(line)
    return info


@pytest.mark.parametrize("number", [2, 7, 8])
def test_get_reaches_a_sender_behind_a_middlebox_through_a_rendezvous_node(
    number: int, tmp_path: Path
) -> None:
    data = os.urandom(1 << 20)
    src = tmp_path / "file.bin"
    src.write_bytes(data)
    with Lab(number) as lab:
        # Dual-stack: the contact lists the host's IPv6 and IPv4 addresses.
        rendezvous = start(cli(lab, "c", tmp_path / "c", "rendezvous", "--relay", "--json"))
        sender = None
        try:
            contact = first_line(rendezvous)
            assert contact["relay"] is True
            sender = start(
                cli(
                    lab,
                    "a",
                    tmp_path / "a",
                    "send",
                    str(src),
                    "--json",
                    "--once",
                    "--rendezvous",
                    str(contact["contact"]),
                )
            )
            ticket = first_line(sender)["ticket"]
            dest = tmp_path / "copy.bin"
            got = subprocess.run(
                cli(lab, "b", tmp_path / "b", "get", str(ticket), "-o", str(dest), "--json"),
                capture_output=True,
                text=True,
                timeout=60,
            )
            assert got.returncode == 0, got.stderr
            result = json.loads(got.stdout)
            assert result["route"] == TOPOLOGIES[number].expected, result
            assert result["hash"] == ticket_hash(str(ticket))
            assert hashlib.sha256(dest.read_bytes()).digest() == hashlib.sha256(data).digest()
            assert sender.wait(timeout=30) == 0  # --once: done after one complete transfer
        finally:
            for proc in (rendezvous, sender):
                if proc is not None:
                    proc.kill()
                    proc.wait()


def ticket_hash(text: str) -> str:
    return i6p.Ticket.parse(text).hash
