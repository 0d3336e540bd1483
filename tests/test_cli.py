"""The command line and the README example, run as a user would."""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
import sys
from pathlib import Path

import i6p

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
