"""Identity, PeerId and key files."""

from __future__ import annotations

import hashlib
import os
import pickle
import stat
from pathlib import Path

import pytest
from i6p import Identity, PeerId
from i6p.errors import InsecureKeyFile, InvalidKey


def test_peer_id_is_sha256_of_the_public_key() -> None:
    identity = Identity.generate()
    assert len(identity.public_key) == 32
    digest = hashlib.sha256(identity.public_key).digest()
    assert bytes(identity.peer_id) == digest
    assert str(identity.peer_id) == digest.hex()
    assert PeerId.from_public_key(identity.public_key) == identity.peer_id


def test_peer_id_text_round_trip_equality_and_hashing() -> None:
    a, b = Identity.generate().peer_id, Identity.generate().peer_id
    text = str(a)
    assert len(text) == 64 and text == text.lower()
    assert PeerId.parse(text) == a
    assert PeerId.parse(text.upper()) == a
    assert a != b and a != text
    assert {a, PeerId.parse(text), b} == {a, b}
    assert {a: 1}[PeerId.from_bytes(bytes(a))] == 1
    assert text[:12] in repr(a)


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("", "64 hex"),
        ("abc", "64 hex"),
        ("0" * 63, "64 hex"),
        ("0" * 65, "64 hex"),
        ("0" * 10 + "g" + "0" * 53, "position 10"),
        ("é" * 32, "64 hex"),
    ],
)
def test_bad_peer_id_text_is_a_clear_value_error(text: str, fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment):
        PeerId.parse(text)


def test_signatures_verify() -> None:
    identity = Identity.generate()
    sig = identity.sign(b"message")
    assert len(sig) == 64
    assert Identity.verify(identity.public_key, b"message", sig)
    assert not Identity.verify(identity.public_key, b"messagE", sig)
    assert not Identity.verify(Identity.generate().public_key, b"message", sig)
    assert not Identity.verify(b"short", b"message", sig)


def test_key_file_round_trip_is_0600_and_atomic(tmp_path: Path) -> None:
    identity = Identity.generate()
    path = tmp_path / "keys" / "id.pem"
    identity.save(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_text().startswith("-----BEGIN PRIVATE KEY-----")
    assert Identity.load(path).peer_id == identity.peer_id
    # Overwriting leaves no temporary files behind.
    Identity.generate().save(path)
    assert os.listdir(path.parent) == ["id.pem"]


def test_key_file_is_standard_pkcs8(tmp_path: Path) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    identity = Identity.generate()
    path = tmp_path / "id.pem"
    identity.save(path)
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    assert raw == identity.public_key
    # And a key made by another implementation loads here.
    other = Ed25519PrivateKey.generate()
    pem = other.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    loaded = Identity.from_pem(pem)
    assert loaded.public_key == other.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660])
def test_key_file_readable_by_others_is_refused(tmp_path: Path, mode: int) -> None:
    path = tmp_path / "id.pem"
    Identity.generate().save(path)
    path.chmod(mode)
    with pytest.raises(InsecureKeyFile, match="chmod 600"):
        Identity.load(path)


def test_garbage_key_files_are_invalid_key(tmp_path: Path) -> None:
    path = tmp_path / "id.pem"
    for content in [
        b"",
        b"not a key",
        b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
    ]:
        path.write_bytes(content)
        path.chmod(0o600)
        with pytest.raises(InvalidKey, match=str(path)):
            Identity.load(path)


def test_no_secret_in_repr_or_pickle(tmp_path: Path) -> None:
    identity = Identity.generate()
    path = tmp_path / "id.pem"
    identity.save(path)
    body = "".join(path.read_text().splitlines()[1:-1])
    shown = repr(identity) + str(identity) + repr(identity._core)
    assert str(identity.peer_id) in shown
    assert body not in shown and body[:16] not in shown
    with pytest.raises(TypeError):
        pickle.dumps(identity)


def test_a_fifo_in_place_of_the_key_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "id.pem"
    os.mkfifo(path, 0o600)
    with pytest.raises(InvalidKey, match="not a regular file"):
        Identity.load(path)


def test_exclusive_save_never_replaces_an_existing_key(tmp_path: Path) -> None:
    path = tmp_path / "id.pem"
    first = Identity.generate()
    first.save(path, exist_ok=False)
    with pytest.raises(FileExistsError):
        Identity.generate().save(path, exist_ok=False)
    assert Identity.load(path).peer_id == first.peer_id
    assert Identity.load_or_generate(path).peer_id == first.peer_id
    assert sorted(os.listdir(tmp_path)) == ["id.pem"]
