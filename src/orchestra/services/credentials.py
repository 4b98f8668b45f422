"""Password hashing and API token secrets.

Passwords: argon2id (OWASP: m=19 MiB, t=2, p=1 at least) by default; PBKDF2-HMAC-SHA256 with at
least 600,000 iterations is accepted too. The function, its parameters and the salt are stored
in the seed's fields, so a password hashed with older parameters is recognised and re-hashed at
the next login. Tokens: 32 random bytes behind a recognisable prefix, stored as SHA-256 only.

A new password must resist guessing: zxcvbn (Dropbox's estimator, with its frequency lists of
common passwords, names and words, keyboard patterns, sequences, repeats and dates) must rate
it at least "safely unguessable" (score 3, about 10^8 guesses), counting the user's identifier
and display name as known words.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from typing import Any

from argon2.low_level import Type, hash_secret_raw
from zxcvbn import zxcvbn

from orchestra.errors import InvalidInput

ARGON2ID = "argon2id"
PBKDF2_SHA256 = "pbkdf2_sha256"
SHA256 = "sha256"
ARGON2_PARAMETERS: dict[str, int] = {
    "time_cost": 2,
    "memory_cost": 19 * 1024,
    "parallelism": 1,
    "hash_len": 32,
}
PBKDF2_MIN_ITERATIONS = 600_000
TOKEN_PREFIX = "orc_"
MIN_PASSWORD_LENGTH = 8
MAX_PASSWORD_LENGTH = 1024
MIN_PASSWORD_SCORE = 3  # zxcvbn's scale of 0 to 4
# zxcvbn's time grows fast with the length: the first this many characters are rated (a longer
# password is at least as strong as its beginning).
RATED_PASSWORD_LENGTH = 72


@dataclass(frozen=True)
class HashedSecret:
    hash_function: str
    hash_function_parameters: dict[str, Any]
    hash_function_salt: str
    secret: str


def check_password_strength(password: object, known: tuple[str, ...] = ()) -> str:
    """The password, if it is long enough and hard to guess; `known` are words an attacker
    would try first (the user's identifier and name)."""
    if not isinstance(password, str):
        raise InvalidInput("password must be a string")
    if len(password) < MIN_PASSWORD_LENGTH:
        raise InvalidInput(f"password must have at least {MIN_PASSWORD_LENGTH} characters")
    if len(password) > MAX_PASSWORD_LENGTH or "\x00" in password:
        raise InvalidInput("password is too long or contains NUL")
    rated = zxcvbn(
        password[:RATED_PASSWORD_LENGTH],
        user_inputs=["orchestra", *(k for k in known if k)],
        max_length=RATED_PASSWORD_LENGTH,
    )
    if rated["score"] < MIN_PASSWORD_SCORE:
        feedback = rated["feedback"]
        advice = " ".join([feedback["warning"], *feedback["suggestions"]]).strip()
        advice = advice or "Add another word or two. Uncommon words are better."
        raise InvalidInput(f"password is too easy to guess: {advice}")
    return password


def hash_password(password: str) -> HashedSecret:
    salt = secrets.token_bytes(16)
    secret = _argon2(password, salt, ARGON2_PARAMETERS)
    return HashedSecret(ARGON2ID, dict(ARGON2_PARAMETERS), salt.hex(), secret)


def hash_password_pbkdf2(password: str, iterations: int = PBKDF2_MIN_ITERATIONS) -> HashedSecret:
    salt = secrets.token_bytes(16)
    parameters = {"iterations": iterations}
    return HashedSecret(PBKDF2_SHA256, parameters, salt.hex(), _pbkdf2(password, salt, parameters))


def _argon2(password: str, salt: bytes, parameters: dict[str, Any]) -> str:
    return hash_secret_raw(
        password.encode(),
        salt,
        time_cost=int(parameters["time_cost"]),
        memory_cost=int(parameters["memory_cost"]),
        parallelism=int(parameters["parallelism"]),
        hash_len=int(parameters["hash_len"]),
        type=Type.ID,
    ).hex()


def _pbkdf2(password: str, salt: bytes, parameters: dict[str, Any]) -> str:
    return hashlib.pbkdf2_hmac(
        "sha256", password.encode(), salt, int(parameters["iterations"])
    ).hex()


def verify_password(password: str, stored: HashedSecret) -> bool:
    """Constant-time check of a password against its stored hash."""
    salt = bytes.fromhex(stored.hash_function_salt)
    if stored.hash_function == ARGON2ID:
        computed = _argon2(password, salt, stored.hash_function_parameters)
    elif stored.hash_function == PBKDF2_SHA256:
        computed = _pbkdf2(password, salt, stored.hash_function_parameters)
    else:
        return False
    return hmac.compare_digest(computed, stored.secret)


def needs_rehash(stored: HashedSecret) -> bool:
    return stored.hash_function != ARGON2ID or stored.hash_function_parameters != ARGON2_PARAMETERS


_DUMMY = hash_password("orchestra-dummy-password")


def burn_password_time(password: str) -> None:
    """Spend the time of a real verification, so unknown users answer like known ones."""
    verify_password(password, _DUMMY)


def new_token_secret() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def hash_token(secret: str) -> HashedSecret:
    # A token has 256 bits of entropy: a fast unsalted hash is enough, and lets the server find
    # the token by its digest instead of verifying every stored hash.
    return HashedSecret(SHA256, {}, "", token_digest(secret))


def token_digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()
