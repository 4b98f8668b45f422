"""The instance key: AES-GCM encryption of the values kept secret at rest (project secrets,
secret parameters), with several keys during a rotation.

A ciphertext is `enc:v1:<key id>:<base64url(nonce | ciphertext and tag)>`. Its `context` (where
the value belongs, e.g. `secret:PROJECT:NAME`) is bound as associated data, so a ciphertext copied
to another place does not decrypt. The current key encrypts; every key of the ring decrypts.

The keys come from `ORCHESTRA_SECRET_KEY` (base64 of 32 bytes, several separated by commas, the
first current) or from a key file (one key a line, the first current), created at the first start
when neither exists. The key is never stored in the database: a check value is
(`services/key_check.py`), which tells a server given the wrong key.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import os
import secrets
from collections.abc import Sequence
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from orchestra.errors import OrchestraError
from orchestra.settings import Settings

PREFIX = "enc:v1:"
KEY_BYTES = 32
NONCE_BYTES = 12
ENVIRONMENT_VARIABLE = "ORCHESTRA_SECRET_KEY"
KEY_FILE_NAME = "secret.key"


class KeyringError(OrchestraError):
    """The instance key is missing, malformed or not the one the data was encrypted with."""


def key_id(key: bytes) -> str:
    """A short digest naming a key (never the key itself)."""
    return hashlib.sha256(b"orchestra key id\0" + key).hexdigest()[:12]


def new_key() -> bytes:
    return secrets.token_bytes(KEY_BYTES)


def encode_key(key: bytes) -> str:
    return base64.b64encode(key).decode("ascii")


def decode_key(text: str, where: str) -> bytes:
    try:
        key = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise KeyringError(f"{where}: a key must be the base64 of 32 bytes") from None
    if len(key) != KEY_BYTES:
        raise KeyringError(f"{where}: a key must be the base64 of 32 bytes, not {len(key)}")
    return key


class Keyring:
    """Encrypts with the first key, decrypts with any."""

    def __init__(self, keys: Sequence[bytes]) -> None:
        if not keys:
            raise KeyringError("no instance key")
        self.keys = list(dict.fromkeys(keys))
        self._ciphers = {key_id(k): AESGCM(k) for k in self.keys}

    @property
    def current_id(self) -> str:
        return key_id(self.keys[0])

    @property
    def key_ids(self) -> list[str]:
        return [key_id(k) for k in self.keys]

    @staticmethod
    def is_encrypted(value: object) -> bool:
        return isinstance(value, str) and value.startswith(PREFIX)

    def encrypt(self, plaintext: str, context: str) -> str:
        nonce = secrets.token_bytes(NONCE_BYTES)
        sealed = self._ciphers[self.current_id].encrypt(
            nonce, plaintext.encode("utf-8"), context.encode("utf-8")
        )
        payload = base64.urlsafe_b64encode(nonce + sealed).decode("ascii").rstrip("=")
        return f"{PREFIX}{self.current_id}:{payload}"

    def key_of(self, value: str) -> str:
        """The id of the key `value` was encrypted with."""
        if not self.is_encrypted(value):
            raise KeyringError("not an encrypted value")
        return value[len(PREFIX) :].split(":", 1)[0]

    def decrypt(self, value: str, context: str) -> str:
        if not self.is_encrypted(value):
            raise KeyringError("not an encrypted value")
        ident, _, payload = value[len(PREFIX) :].partition(":")
        cipher = self._ciphers.get(ident)
        if cipher is None:
            raise KeyringError(
                f"a value was encrypted with key {ident}, which this server does not have: "
                "give it the instance's key (ORCHESTRA_SECRET_KEY or --secret-key-file)"
            )
        try:
            raw = base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
            plain = cipher.decrypt(raw[:NONCE_BYTES], raw[NONCE_BYTES:], context.encode("utf-8"))
        except (InvalidTag, binascii.Error, ValueError):
            raise KeyringError(
                f"a value does not decrypt with key {ident} for {context.split(':', 1)[0]}: "
                "it was altered or belongs elsewhere"
            ) from None
        return plain.decode("utf-8")

    def reencrypt(self, value: str, context: str) -> str:
        """`value` under the current key (unchanged if it already is)."""
        if self.key_of(value) == self.current_id:
            return value
        return self.encrypt(self.decrypt(value, context), context)

    def derive(self, purpose: str) -> bytes:
        """A 32-byte key for one `purpose` (e.g. "csrf"), derived from the current key with
        HKDF-SHA256: every server of the instance derives the same one, and it tells nothing
        of the instance key or of another purpose's key."""
        return HKDF(
            algorithm=hashes.SHA256(), length=KEY_BYTES, salt=None, info=purpose.encode("utf-8")
        ).derive(self.keys[0])


# Loading ---------------------------------------------------------------------------------------


def key_file_path(settings: Settings) -> Path:
    return settings.secret_key_file or settings.data_dir / KEY_FILE_NAME


def read_key_file(path: Path) -> list[bytes]:
    try:
        lines = path.read_text(encoding="ascii").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise KeyringError(f"cannot read the key file {path}: {exc}") from None
    keys = [decode_key(line, f"{path} line {n}") for n, line in enumerate(lines, 1) if line.strip()]
    if not keys:
        raise KeyringError(f"the key file {path} holds no key")
    return keys


def write_key_file(path: Path, keys: Sequence[bytes]) -> None:
    """Write the key file atomically, readable by its owner only (its directory too, when this
    creates it)."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    text = "".join(f"{encode_key(k)}\n" for k in keys)
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="ascii") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            temporary.unlink()
        raise
    with contextlib.suppress(OSError):
        directory = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)


def keys_from_environment(text: str) -> list[bytes]:
    parts = [p for p in text.split(",") if p.strip()]
    if not parts:
        raise KeyringError(f"{ENVIRONMENT_VARIABLE} is set but holds no key")
    return [decode_key(p, ENVIRONMENT_VARIABLE) for p in parts]


def load_keyring(settings: Settings, *, create: bool = True) -> Keyring:
    """The keys of `settings`: the environment's, else the key file's, else (with `create`) a
    new key written to the key file."""
    if settings.secret_key:
        return Keyring(keys_from_environment(settings.secret_key))
    path = key_file_path(settings)
    if path.exists():
        return Keyring(read_key_file(path))
    if not create:
        raise KeyringError(
            f"the key file {path} does not exist: restore it from a backup, "
            f"or set {ENVIRONMENT_VARIABLE}"
        )
    key = new_key()
    write_key_file(path, [key])
    return Keyring([key])
