"""Encryption for secrets: the master key, per-secret data keys, sealing for one worker.

Pure functions over bytes (AES-256-GCM and X25519 from `cryptography`):
- the master key (CALLMETER_SECRET_KEY, else `<data_dir>/secret.key`, created 0600 on
  first start) wraps each secret's own data key; the data key encrypts the secret;
  deleting the row that holds the wrapped data key destroys the secret for good
  (crypto-shredding: no copy of the plaintext or of the data key exists elsewhere);
- a credential for a run is sealed to the X25519 public key of the worker process that
  asked for it (ephemeral-static ECDH, HKDF-SHA256, AES-GCM): only that process, whose
  private key lives in its memory, can open it.
"""

from __future__ import annotations

import base64
import binascii
import os
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

KEY_BYTES = 32
NONCE_BYTES = 12
KEY_FILE = "secret.key"


class CryptoError(ValueError):
    """A key that is not one, or a ciphertext that does not open with it."""


def parse_key(text: str) -> bytes:
    """A master key as given: 32 bytes, base64 (urlsafe or standard) or 64 hex digits."""
    text = text.strip()
    try:
        key = (
            bytes.fromhex(text)
            if len(text) == 2 * KEY_BYTES
            else base64.b64decode(
                text.replace("-", "+").replace("_", "/") + "=" * (-len(text) % 4), validate=True
            )
        )
    except (ValueError, binascii.Error):
        key = b""
    if len(key) != KEY_BYTES:
        raise CryptoError(
            "CALLMETER_SECRET_KEY: expected 32 bytes as base64 or 64 hex digits "
            "(python -c 'import secrets; print(secrets.token_hex(32))')"
        )
    return key


def master_key(env_value: str, data_dir: Path) -> bytes:
    """CALLMETER_SECRET_KEY when set, else the key file under data_dir (made on first use).

    The file is created with O_EXCL and mode 0600, so two processes starting together
    agree on one key: the loser of the race reads the winner's file.
    """
    if env_value:
        return parse_key(env_value)
    path = data_dir / KEY_FILE
    data_dir.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return parse_key(_read_when_written(path))
    with os.fdopen(fd, "w") as f:
        f.write(os.urandom(KEY_BYTES).hex() + "\n")
    return parse_key(path.read_text())


def _read_when_written(path: Path) -> str:
    """Another process may have created the file and not yet written it."""
    for _ in range(100):
        text = path.read_text()
        if text.endswith("\n"):
            return text
        os.sched_yield()
    return path.read_text()


def encrypt(key: bytes, plaintext: bytes, aad: bytes) -> bytes:
    """nonce || AES-GCM(key, plaintext, aad)."""
    nonce = os.urandom(NONCE_BYTES)
    return nonce + AESGCM(key).encrypt(nonce, plaintext, aad)


def decrypt(key: bytes, box: bytes, aad: bytes) -> bytes:
    try:
        return AESGCM(key).decrypt(box[:NONCE_BYTES], box[NONCE_BYTES:], aad)
    except (InvalidTag, ValueError):
        raise CryptoError("the secret does not open with this key") from None


def new_data_key() -> bytes:
    return AESGCM.generate_key(bit_length=8 * KEY_BYTES)


# --- sealing a credential for one worker process --------------------------------------


def new_private_key() -> X25519PrivateKey:
    return X25519PrivateKey.generate()


def public_key_text(private: X25519PrivateKey) -> str:
    raw = private.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    return base64.b64encode(raw).decode()


def _shared_key(shared: bytes, ephemeral: bytes, recipient: bytes, aad: bytes) -> bytes:
    hkdf = HKDF(hashes.SHA256(), KEY_BYTES, salt=ephemeral + recipient, info=b"callmeter " + aad)
    return hkdf.derive(shared)


def seal(recipient_text: str, plaintext: bytes, aad: bytes) -> str:
    """Encrypt for the holder of the private key of `recipient_text` (base64 X25519)."""
    try:
        recipient_raw = base64.b64decode(recipient_text, validate=True)
        recipient = X25519PublicKey.from_public_bytes(recipient_raw)
    except (ValueError, binascii.Error):
        raise CryptoError("public_key: not a base64 X25519 public key") from None
    ephemeral = X25519PrivateKey.generate()
    ephemeral_raw = ephemeral.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    key = _shared_key(ephemeral.exchange(recipient), ephemeral_raw, recipient_raw, aad)
    return base64.b64encode(ephemeral_raw + encrypt(key, plaintext, aad)).decode()


def open_sealed(private: X25519PrivateKey, sealed_text: str, aad: bytes) -> bytes:
    try:
        raw = base64.b64decode(sealed_text, validate=True)
        ephemeral = X25519PublicKey.from_public_bytes(raw[:KEY_BYTES])
    except (ValueError, binascii.Error):
        raise CryptoError("not a sealed credential") from None
    recipient_raw = private.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    key = _shared_key(private.exchange(ephemeral), raw[:KEY_BYTES], recipient_raw, aad)
    return decrypt(key, raw[KEY_BYTES:], aad)
