"""The instance key (services/keyring.py): AES-GCM bound to its context, several keys during a
rotation, and where the keys come from (the environment, the key file, a new key file)."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestra.services.keyring import (
    Keyring,
    KeyringError,
    encode_key,
    load_keyring,
    new_key,
    read_key_file,
)
from orchestra.settings import load_settings


def test_a_value_decrypts_only_in_its_context_and_with_a_key_of_the_ring() -> None:
    ring = Keyring([new_key()])
    sealed = ring.encrypt("s3cret ✓", "secret:p:A")
    assert Keyring.is_encrypted(sealed) and "s3cret" not in sealed
    assert sealed.startswith(f"enc:v1:{ring.current_id}:")
    assert ring.encrypt("s3cret ✓", "secret:p:A") != sealed  # a fresh nonce each time
    assert ring.decrypt(sealed, "secret:p:A") == "s3cret ✓"
    with pytest.raises(KeyringError, match="belongs elsewhere"):
        ring.decrypt(sealed, "secret:p:B")
    with pytest.raises(KeyringError, match="does not have"):
        Keyring([new_key()]).decrypt(sealed, "secret:p:A")
    tampered = sealed[:-2] + ("A" if sealed[-2] != "A" else "B") + sealed[-1]
    with pytest.raises(KeyringError):
        ring.decrypt(tampered, "secret:p:A")
    assert not Keyring.is_encrypted("plain") and not Keyring.is_encrypted(None)


def test_the_first_key_encrypts_and_every_key_decrypts() -> None:
    old = Keyring([new_key()])
    sealed = old.encrypt("v", "parameter")
    rotating = Keyring([new_key(), *old.keys])
    assert rotating.decrypt(sealed, "parameter") == "v"
    moved = rotating.reencrypt(sealed, "parameter")
    assert rotating.key_of(moved) == rotating.current_id != old.current_id
    assert rotating.reencrypt(moved, "parameter") == moved
    assert Keyring(rotating.keys[:1]).decrypt(moved, "parameter") == "v"


def test_a_key_file_is_created_private_at_the_first_start(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    settings = load_settings({"data_dir": data_dir}, environ={})
    first = load_keyring(settings)
    path = data_dir / "secret.key"
    assert path.stat().st_mode & 0o777 == 0o600
    assert data_dir.stat().st_mode & 0o777 == 0o700
    assert read_key_file(path) == first.keys
    assert load_keyring(settings).keys == first.keys  # read again, not made again
    assert [p.name for p in data_dir.iterdir()] == ["secret.key"]  # no temporary left
    with pytest.raises(KeyringError, match="does not exist"):
        load_keyring(load_settings({"data_dir": tmp_path / "none"}, environ={}), create=False)


def test_keys_from_the_environment_come_before_the_key_file(tmp_path: Path) -> None:
    current, previous = new_key(), new_key()
    text = f"{encode_key(current)}, {encode_key(previous)}"
    environ = {"ORCHESTRA_SECRET_KEY": text}
    ring = load_keyring(load_settings({"data_dir": tmp_path}, environ=environ))
    assert ring.keys == [current, previous]
    assert not (tmp_path / "secret.key").exists()
    assert "ORCHESTRA_SECRET_KEY" not in repr(load_settings({}, environ=environ))
    assert text not in repr(load_settings({}, environ=environ))


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("", "holds no key"),
        ("not a key\n", "line 1: a key must be the base64 of 32 bytes"),
        (encode_key(b"short") + "\n", "not 5"),
    ],
)
def test_a_bad_key_file_is_a_clear_error(tmp_path: Path, content: str, expected: str) -> None:
    path = tmp_path / "secret.key"
    path.write_text(content)
    settings = load_settings({"secret_key_file": path}, environ={})
    with pytest.raises(KeyringError, match=expected):
        load_keyring(settings)
