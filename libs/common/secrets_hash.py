"""Password hashes (argon2id) and API-key tokens: what the API and `callmeter users`
store instead of a password or a key. Pure."""

from __future__ import annotations

import hashlib
import hmac
import secrets

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

_HASHER = PasswordHasher()  # argon2id with the library's current recommended parameters
MIN_PASSWORD = 10
KEY_PREFIX = "cmk_"


def hash_password(password: str) -> str:
    if len(password) < MIN_PASSWORD:
        raise ValueError(f"password: at least {MIN_PASSWORD} characters")
    return _HASHER.hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    try:
        return _HASHER.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


# Verified against when the username is unknown, so timing does not tell which it was.
DUMMY_HASH = _HASHER.hash("not a password of anyone")


def new_api_key() -> tuple[str, str, str]:
    """(key, visible prefix, hash): the key is shown once; prefix and hash are stored."""
    key = KEY_PREFIX + secrets.token_hex(24)
    return key, key[: len(KEY_PREFIX) + 8], key_hash(key)


def key_hash(key: str) -> str:
    """SHA-256 of a key: keys are 192 random bits, so a fast hash is enough."""
    return hashlib.sha256(key.encode()).hexdigest()


def same(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())
