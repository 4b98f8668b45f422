"""orchestra.services.credentials: hashing, tokens, password strength (the login throttle is in
tests/integration/test_login_throttle.py: it lives in the database)."""

from __future__ import annotations

import hashlib

import pytest

from orchestra.errors import InvalidInput
from orchestra.services import credentials


def test_credentials_argon2id_hash_verifies_and_records_its_parameters() -> None:
    hashed = credentials.hash_password("a good password")
    assert hashed.hash_function == "argon2id"
    assert hashed.hash_function_parameters == credentials.ARGON2_PARAMETERS
    assert len(bytes.fromhex(hashed.hash_function_salt)) == 16
    assert credentials.verify_password("a good password", hashed)
    assert not credentials.verify_password("a good passwore", hashed)
    assert not credentials.needs_rehash(hashed)
    assert credentials.hash_password("a good password").secret != hashed.secret


def test_credentials_pbkdf2_verifies_and_needs_rehash() -> None:
    hashed = credentials.hash_password_pbkdf2("a good password", iterations=1000)
    assert hashed.hash_function == "pbkdf2_sha256"
    assert credentials.verify_password("a good password", hashed)
    assert not credentials.verify_password("wrong", hashed)
    assert credentials.needs_rehash(hashed)
    assert credentials.PBKDF2_MIN_ITERATIONS >= 600_000


def test_credentials_argon2_with_older_parameters_needs_rehash() -> None:
    hashed = credentials.hash_password("a good password")
    older = credentials.HashedSecret(
        hashed.hash_function,
        {**hashed.hash_function_parameters, "time_cost": 1},
        hashed.hash_function_salt,
        hashed.secret,
    )
    assert credentials.needs_rehash(older)


def test_credentials_unknown_hash_function_never_verifies() -> None:
    unknown = credentials.HashedSecret("md5", {}, "00", hashlib.md5(b"x").hexdigest())
    assert not credentials.verify_password("x", unknown)


@pytest.mark.parametrize("password", ["short", "x" * 1025, "with\x00nul", 12345678])
def test_credentials_password_strength_refuses(password: object) -> None:
    with pytest.raises(InvalidInput):
        credentials.check_password_strength(password)


def test_credentials_token_secret_is_prefixed_random_and_stored_as_sha256() -> None:
    secrets = {credentials.new_token_secret() for _ in range(50)}
    assert len(secrets) == 50
    secret = secrets.pop()
    assert secret.startswith("orc_")
    assert len(secret) >= 4 + 43
    hashed = credentials.hash_token(secret)
    assert hashed.secret == hashlib.sha256(secret.encode()).hexdigest()
    assert secret not in hashed.secret
