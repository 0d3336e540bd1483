"""The command line and the README example, run as a user would."""

from __future__ import annotations

import json
import os
import re
import signal
import stat
import subprocess
import sys
from pathlib import Path

import i6p
import pytest

ROOT = Path(__file__).resolve().parent.parent


def run(
    *args: str, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "i6p.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )


def test_version() -> None:
    out = run("--version")
    assert out.returncode == 0
    assert out.stdout.strip() == f"i6p {i6p.__version__}"


def test_id_creates_the_identity_once(tmp_path: Path) -> None:
    key = tmp_path / "sub" / "id.pem"
    first = run("id", "--identity", str(key))
    assert first.returncode == 0, first.stderr
    assert re.fullmatch(r"[0-9a-f]{64}\n", first.stdout)
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    second = run("id", "--identity", str(key))
    assert second.stdout == first.stdout
    assert str(i6p.Identity.load(key).peer_id) == first.stdout.strip()


def test_id_uses_the_per_user_default(tmp_path: Path) -> None:
    out = run("id", env={"I6P_HOME": str(tmp_path)})
    assert out.returncode == 0
    assert (tmp_path / "identity.pem").exists()
    out2 = run("id", env={"XDG_CONFIG_HOME": str(tmp_path / "xdg"), "I6P_HOME": ""})
    assert out2.returncode == 0
    assert (tmp_path / "xdg" / "i6p" / "identity.pem").exists()


def test_id_refuses_an_insecure_key_file(tmp_path: Path) -> None:
    key = tmp_path / "id.pem"
    assert run("id", "--identity", str(key)).returncode == 0
    key.chmod(0o644)
    out = run("id", "--identity", str(key))
    assert out.returncode == 1
    assert "chmod 600" in out.stderr and out.stdout == ""


def test_demo_moves_and_verifies_data() -> None:
    out = run("demo", "--size", "16MiB", "--json")
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert result["verified"] is True
    assert result["bytes"] == 16 << 20 and result["rate_bytes_per_s"] > 0
    assert len(result["hash"]) == 64


def test_readme_example_runs() -> None:
    readme = (ROOT / "README.md").read_text()
    block = re.search(r"```python\n(.*?)```", readme, re.S)
    assert block is not None
    expected = re.search(r"prints `(.*?)`", readme)
    assert expected is not None
    out = subprocess.run(
        [sys.executable, "-c", block.group(1)], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == expected.group(1)


@pytest.mark.parametrize("mode", ["plain", "fec"])
def test_send_once_and_get_json(tmp_path: Path, mode: str) -> None:
    src, dest = tmp_path / "file.bin", tmp_path / "copy.bin"
    src.write_bytes(os.urandom(3 << 20))
    env = {**os.environ, "I6P_HOME": str(tmp_path / "home")}
    sender = subprocess.Popen(
        [sys.executable, "-m", "i6p.cli", "send", str(src), "--once", "--json", "--progress"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert sender.stdout is not None
        info = json.loads(sender.stdout.readline())
        got = run(
            "get",
            info["ticket"],
            "-o",
            str(dest),
            "--json",
            "--mode",
            mode,
            *(["--combine"] if mode == "fec" else []),
            env={"I6P_HOME": str(tmp_path / "h2")},
        )
        assert got.returncode == 0, got.stderr
        result = json.loads(got.stdout)
        assert result["hash"] == info["hash"] and result["size"] == 3 << 20
        assert result["bytes_fetched"] == 3 << 20 and result["bytes_reused"] == 0
        assert result["duration_s"] > 0
        assert result["providers"] == {info["peer_id"]: 3 << 20} and result["dropped"] == {}
        assert (result["fec"] is None) == (mode == "plain")
        assert dest.read_bytes() == src.read_bytes()
        assert sender.wait(timeout=30) == 0  # --once: exits after the complete transfer
        assert sender.stderr is not None
        # The provider's bar counts what the peer acknowledged: it ends at the full size.
        assert "acknowledged" in (bar := sender.stderr.read()) and "3.0/3.0 MiB" in bar
    finally:
        sender.kill()
        sender.wait()


def test_send_stops_cleanly_on_ctrl_c(tmp_path: Path) -> None:
    src = tmp_path / "file.bin"
    src.write_bytes(b"x" * 1000)
    sender = subprocess.Popen(
        [sys.executable, "-m", "i6p.cli", "send", str(src)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "I6P_HOME": str(tmp_path / "home")},
    )
    assert sender.stdout is not None
    assert sender.stdout.readline().startswith("i6p")  # the ticket
    sender.send_signal(signal.SIGINT)
    _, err = sender.communicate(timeout=30)
    assert sender.returncode == 130
    assert "Traceback" not in err


def test_join_writes_one_ticket_for_several_providers() -> None:
    from i6p import Identity, Ticket

    blob = "ab" * 32
    tickets = [
        Ticket(Identity.generate().peer_id, [f"[2001:db8::{i}]:4433"], blob, 99) for i in (1, 2)
    ]
    joined = run("join", *(str(t) for t in tickets))
    assert joined.returncode == 0, joined.stderr
    assert Ticket.parse_all(joined.stdout.strip()) == tickets
    other = Ticket(Identity.generate().peer_id, [], "cd" * 32, 99)
    bad = run("join", str(tickets[0]), str(other))
    assert bad.returncode == 1 and "different blobs" in bad.stderr


def test_get_failures_are_one_line(tmp_path: Path) -> None:
    env = {"I6P_HOME": str(tmp_path / "home")}
    bad = run("get", "i6pnotaticket", "-o", str(tmp_path / "x"), env=env)
    assert bad.returncode == 1
    assert bad.stderr.count("\n") == 1 and "invalid ticket" in bad.stderr
    # A real provider that does not have the blob.
    src = tmp_path / "f"
    src.write_bytes(b"y" * 10)
    sender = subprocess.Popen(
        [sys.executable, "-m", "i6p.cli", "send", str(src), "--json"],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "I6P_HOME": str(tmp_path / "h1")},
    )
    try:
        assert sender.stdout is not None
        info = json.loads(sender.stdout.readline())
        ticket = i6p.Ticket.parse(info["ticket"])
        other = i6p.Ticket(ticket.peer_id, ticket.addrs, "00" * 32, 10)
        out = run("get", str(other), "-o", str(tmp_path / "y"), env=env)
        assert out.returncode == 1
        assert out.stderr.count("\n") == 1 and "does not have" in out.stderr, out.stderr
        assert not (tmp_path / "y").exists()
    finally:
        sender.kill()
        sender.wait()


def test_send_allow_needs_at_least_one_peer(tmp_path: Path) -> None:
    """``--allow`` alone used to mean "allow everyone" (an empty, falsy list)."""
    src = tmp_path / "src"
    src.write_bytes(b"secret")
    out = run("send", str(src), "--allow", "--identity", str(tmp_path / "id.pem"), timeout=30)
    assert out.returncode == 2
    assert "expected at least one argument" in out.stderr


def test_a_ticket_by_key_is_fetched_from_what_the_address_book_learned(tmp_path: Path) -> None:
    """The getter's address book (in its state directory) learns where the provider is from
    a first fetch; a ticket naming the provider by key alone then finds it there, and a
    getter that never met it says so in one line."""
    src = tmp_path / "file.bin"
    src.write_bytes(os.urandom(1 << 20))
    sender = subprocess.Popen(
        [sys.executable, "-m", "i6p.cli", "send", str(src), "--json"],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "I6P_HOME": str(tmp_path / "h1")},
    )
    try:
        assert sender.stdout is not None
        info = json.loads(sender.stdout.readline())
        key = i6p.PublicKey.parse(info["key"])
        assert str(key.peer_id) == info["peer_id"]
        by_key = str(i6p.Ticket.by_key(key, info["hash"], info["size"]))
        home, stranger = {"I6P_HOME": str(tmp_path / "h2")}, {"I6P_HOME": str(tmp_path / "h3")}
        lost = run("get", by_key, "-o", str(tmp_path / "lost"), env=stranger)
        assert lost.returncode == 1 and lost.stderr.count("\n") == 1, lost.stderr
        assert "no address known" in lost.stderr
        assert run("resolve", info["key"], env=stranger).returncode == 1
        first = run("get", info["ticket"], "-o", str(tmp_path / "a"), env=home)
        assert first.returncode == 0, first.stderr
        found = run("resolve", info["key"], "--json", env=home)
        assert found.returncode == 0 and json.loads(found.stdout)["book"], found.stdout
        again = run("get", by_key, "-o", str(tmp_path / "b"), env=home)
        assert again.returncode == 0, again.stderr
        assert (tmp_path / "b").read_bytes() == src.read_bytes()
    finally:
        sender.kill()
        sender.wait()


def test_dht_testnet_send_and_get_by_key_through_the_dht(tmp_path: Path) -> None:
    """`i6p dht-testnet` runs a DHT on 127.0.0.1; `send --dht` prints a key ticket and
    publishes a record there, naming its `--rendezvous` node; a getter that never met the
    sender resolves and fetches."""
    src = tmp_path / "file.bin"
    src.write_bytes(os.urandom(1 << 20))
    procs = []
    try:
        testnet = subprocess.Popen(
            [sys.executable, "-m", "i6p.cli", "dht-testnet", "20"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        procs.append(testnet)
        assert testnet.stdout is not None
        bootstrap = testnet.stdout.readline().strip()
        assert bootstrap and all(a.startswith("127.0.0.1:") for a in bootstrap.split(","))
        dht = ["--dht", "--dht-bootstrap", bootstrap, "--dht-timeout", "0.5"]
        rendezvous = subprocess.Popen(
            [sys.executable, "-m", "i6p.cli", "rendezvous", "--json", "--listen", "[::1]:0"],
            stdout=subprocess.PIPE, text=True,
            env={**os.environ, "I6P_HOME": str(tmp_path / "h0")},
        )  # fmt: skip
        procs.append(rendezvous)
        assert rendezvous.stdout is not None
        contact = json.loads(rendezvous.stdout.readline())["contact"]
        sender = subprocess.Popen(
            [sys.executable, "-m", "i6p.cli", "send", str(src), "--json", *dht,
             "--publish-addrs", "--addr", "[::1]:0", "--rendezvous", contact],
            stdout=subprocess.PIPE, text=True,
            env={**os.environ, "I6P_HOME": str(tmp_path / "h1")},
        )  # fmt: skip
        procs.append(sender)
        assert sender.stdout is not None
        info = json.loads(sender.stdout.readline())
        ticket = i6p.Ticket.parse(info["ticket"])
        assert ticket.key is not None and ticket.addrs == [] and str(ticket.key) == info["key"]
        home = {"I6P_HOME": str(tmp_path / "h2")}
        for _ in range(10):  # the record is published a moment after the ticket is printed
            found = run("resolve", info["key"], "--json", *dht, env=home)
            if found.returncode == 0 and json.loads(found.stdout)["dht"]:
                break
        assert json.loads(found.stdout)["dht"], found.stdout
        assert json.loads(found.stdout)["dht contacts"] == [contact], found.stdout
        got = run("get", info["ticket"], "-o", str(tmp_path / "copy"), *dht, env=home)
        assert got.returncode == 0, got.stderr
        assert (tmp_path / "copy").read_bytes() == src.read_bytes()
    finally:
        for p in procs:
            p.kill()
            p.wait()
