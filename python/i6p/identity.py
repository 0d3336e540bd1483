"""Node identity: an Ed25519 key pair, stored as a PKCS#8 PEM file readable only by its owner.

The PeerId of an identity is the SHA-256 of its raw 32-byte public key. Key files are written
atomically (temporary file, fsync, rename) with mode 0600, and a key file that group or others
may read is refused, as ssh does.
"""

from __future__ import annotations

import errno
import os
import stat
import tempfile
from pathlib import Path

from . import _core
from .errors import FileError, I6PError, InsecureKeyFile, InvalidKey

__all__ = ["Identity", "PeerId", "PublicKey", "default_identity_path"]

PeerId = _core.PeerId
PublicKey = _core.PublicKey


def default_identity_path() -> Path:
    """Where the CLI keeps this user's identity: ``$I6P_HOME`` or the XDG config directory."""
    home = os.environ.get("I6P_HOME")
    if home:
        return Path(home) / "identity.pem"
    config = os.environ.get("XDG_CONFIG_HOME") or os.path.join(Path.home(), ".config")
    return Path(config) / "i6p" / "identity.pem"


class Identity:
    """An Ed25519 key pair: who a node is."""

    __slots__ = ("_core",)

    def __init__(self, core: _core.Identity) -> None:
        self._core = core

    @classmethod
    def generate(cls) -> Identity:
        """A new random identity."""
        return cls(_core.Identity.generate())

    @classmethod
    def from_pem(cls, pem: str | bytes) -> Identity:
        """Parses a PKCS#8 PEM private key."""
        text = pem.decode("ascii", "replace") if isinstance(pem, bytes) else pem
        return cls(_core.Identity.from_pkcs8_pem(text))

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Identity:
        """Loads a key file; refuses one that group or others can access (``InsecureKeyFile``).

        A key file that cannot be read raises a ``FileError`` (``FileNotFound``,
        ``PermissionDenied``...); one that holds no usable key, ``InvalidKey``.
        """
        path = Path(path)
        try:
            data = _read_key_file(path)
        except I6PError:
            raise
        except OSError as e:
            raise FileError.of(e, "cannot load the key file") from e
        try:
            return cls.from_pem(data)
        except InvalidKey as e:
            raise InvalidKey(f"{path}: {e}") from None

    @classmethod
    def load_or_generate(cls, path: str | os.PathLike[str]) -> Identity:
        """Loads the key file at ``path``, creating it first if there is none."""
        path = Path(path)
        if path.exists():
            return cls.load(path)
        identity = cls.generate()
        try:
            identity.save(path, exist_ok=False)
        except FileExistsError:  # another process created it first: use theirs
            return cls.load(path)
        return identity

    def save(self, path: str | os.PathLike[str], *, exist_ok: bool = True) -> None:
        """Writes the key atomically as PKCS#8 PEM with mode 0600. A file system that refuses
        raises a ``FileError``; without ``exist_ok``, an existing file ``FileExists``."""
        path = Path(path)
        try:
            self._write_key_file(path, exist_ok)
        except OSError as e:
            # os.link names its source (our temporary file) first: the file in the way is
            # the one asked for.
            named = e if e.filename2 is None else OSError(e.errno, e.strerror, e.filename2)
            raise FileError.of(named, "cannot save the key file") from e

    def _write_key_file(self, path: Path, exist_ok: bool) -> None:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd, tmp = tempfile.mkstemp(prefix=".identity-", suffix=".tmp", dir=path.parent)
        try:
            os.fchmod(fd, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(self._core.private_key_pem().encode("ascii"))
                f.flush()
                os.fsync(f.fileno())
            if exist_ok:
                os.replace(tmp, path)
            else:
                os.link(tmp, path)  # atomic, and fails if the file exists
                os.unlink(tmp)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)

    @property
    def peer_id(self) -> _core.PeerId:
        """The PeerId: SHA-256 of the public key."""
        return self._core.peer_id

    @property
    def public_key(self) -> bytes:
        """The raw 32-byte Ed25519 public key."""
        return self._core.public_key

    @property
    def key(self) -> _core.PublicKey:
        """The public key as the handle to share: ``str(identity.key)`` is 52 z-base-32
        characters, from which the PeerId derives (``key.peer_id``)."""
        return self._core.key

    def sign(self, data: bytes) -> bytes:
        """A 64-byte Ed25519 signature over ``data``."""
        return self._core.sign(data)

    @staticmethod
    def verify(public_key: bytes, data: bytes, signature: bytes) -> bool:
        """True if ``signature`` is a valid signature of ``data`` by ``public_key``."""
        return _core.Identity.verify(public_key, data, signature)

    def __repr__(self) -> str:
        return f"Identity(peer_id={self.peer_id})"

    def __reduce__(self) -> str | tuple[object, ...]:
        raise TypeError("Identity objects hold a secret key and cannot be pickled")


def _read_key_file(path: Path) -> bytes:
    """The bytes of a key file that only its owner can access."""
    # O_NONBLOCK: a FIFO in the key's place must not hang us; it is refused below.
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | os.O_NONBLOCK
    fd = os.open(path, flags)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise InvalidKey(f"{path}: not a regular file")
        mode = st.st_mode
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise InsecureKeyFile(
                errno.EACCES,
                f"key file permissions {stat.S_IMODE(mode):04o} allow access by group or "
                f"others; run: chmod 600 {path}",
                str(path),
            )
        with os.fdopen(fd, "rb", closefd=False) as f:
            return f.read(64 * 1024)
    finally:
        os.close(fd)
