"""Byte codecs the vendors use: AES/ECB/PKCS5Padding, gzip, md5, hex.

Kept apart from the clients so the simulator uses the very same functions and
tests can cross-check them against an independent implementation (openssl).
"""

from __future__ import annotations

import gzip
import hashlib
import threading
import zlib
from typing import Any

from Crypto.Cipher import AES

from sms_provider.errors import AuthenticationError, ProtocolError

_BLOCK = 16


def aes_key_bytes(key: str | bytes) -> bytes:
    """The secretKey string's own bytes are the key: no hashing, no hex-decoding."""
    raw = key.encode("utf-8") if isinstance(key, str) else bytes(key)
    if len(raw) not in (16, 24, 32):
        # Never echo the key: only its length.
        raise AuthenticationError(
            f"AES key must be 16, 24 or 32 bytes long, got {len(raw)} bytes")
    return raw


#: this thread's ECB ciphers by (key, direction): making one costs more than encrypting
#: a request's body, and ECB keeps no state from one call to the next
_CIPHERS = threading.local()


def _ecb(key: str | bytes, direction: str) -> Any:
    raw = aes_key_bytes(key)
    ciphers: dict[tuple[bytes, str], Any] | None = getattr(_CIPHERS, "by_key", None)
    if ciphers is None:
        ciphers = _CIPHERS.by_key = {}
    cipher = ciphers.get((raw, direction))
    if cipher is None:
        cipher = ciphers[(raw, direction)] = AES.new(raw, AES.MODE_ECB)
    return cipher


def aes_encrypt(key: str | bytes, plain: bytes) -> bytes:
    """AES/ECB with PKCS#5 (= PKCS#7 on 16-byte blocks) padding."""
    pad = _BLOCK - len(plain) % _BLOCK
    return _ecb(key, "encrypt").encrypt(plain + bytes([pad]) * pad)


def aes_decrypt(key: str | bytes, cipher: bytes) -> bytes:
    """Inverse of :func:`aes_encrypt`; a wrong key shows up as bad padding."""
    if not cipher or len(cipher) % _BLOCK:
        raise ProtocolError(f"ciphertext length {len(cipher)} is not a positive multiple of 16")
    plain = _ecb(key, "decrypt").decrypt(cipher)
    pad = plain[-1]
    if not 1 <= pad <= _BLOCK or plain[-pad:] != bytes([pad]) * pad:
        raise ProtocolError("AES padding is invalid: wrong key or corrupted data")
    return plain[:-pad]


def gzip_compress(data: bytes) -> bytes:
    # mtime=0 keeps output deterministic, which the property tests rely on.
    return gzip.compress(data, compresslevel=6, mtime=0)


def gzip_decompress(data: bytes) -> bytes:
    try:
        return gzip.decompress(data)
    except (OSError, EOFError, zlib.error) as exc:
        raise ProtocolError(f"gzip data is invalid: {exc}") from None


def md5_hex(text: str) -> str:
    """Lower-case hex md5 of the UTF-8 bytes, as every vendor here wants it."""
    return hashlib.md5(text.encode("utf-8")).hexdigest()


def hex_decode(text: str) -> bytes:
    try:
        return bytes.fromhex(text.strip())
    except ValueError:
        raise ProtocolError("hex data is invalid") from None
