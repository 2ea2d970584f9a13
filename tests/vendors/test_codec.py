"""The AES/gzip/md5 codec, cross-checked against openssl so client and simulator
cannot share one mistake, plus round-trip properties."""

from __future__ import annotations

import gzip
import hashlib
import shutil
import subprocess

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sms_provider.errors import AuthenticationError, ProtocolError
from sms_provider.vendors.codec import (
    aes_decrypt,
    aes_encrypt,
    gzip_compress,
    gzip_decompress,
    hex_decode,
    md5_hex,
)
from sms_provider.vendors.emay_common import decode_secure, encode_secure

KEYS = ["0123456789abcdef", "0123456789abcdef01234567", "0123456789abcdef0123456789abcdef"]

needs_openssl = pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl missing")


def openssl(args: list[str], data: bytes) -> bytes:
    return subprocess.run(["openssl", *args], input=data, capture_output=True,
                          check=True).stdout


@needs_openssl
@pytest.mark.parametrize("key", KEYS)
@pytest.mark.parametrize("plain", [b"", b"x", b"0123456789abcdef",
                                   '{"mobile":"0061422118000","content":"你好"}'.encode()])
def test_aes_matches_openssl_both_ways(key: str, plain: bytes) -> None:
    bits = len(key) * 8
    hexkey = key.encode().hex()
    ours = aes_encrypt(key, plain)
    theirs = openssl(["enc", f"-aes-{bits}-ecb", "-K", hexkey, "-nosalt"], plain)
    assert ours == theirs
    assert aes_decrypt(key, theirs) == plain
    assert openssl(["enc", "-d", f"-aes-{bits}-ecb", "-K", hexkey, "-nosalt"], ours) == plain


@needs_openssl
def test_emay_envelope_decodes_with_openssl_and_gunzip() -> None:
    key = KEYS[0]
    payload = {"mobile": "0061422118000", "content": "Hello 世界", "requestTime": 1}
    body = encode_secure(payload, key, gzip_on=True)
    decrypted = openssl(["enc", "-d", "-aes-128-ecb", "-K", key.encode().hex(), "-nosalt"], body)
    assert gzip.decompress(decrypted).decode() == (
        '{"mobile":"0061422118000","content":"Hello 世界","requestTime":1}')


def test_md5_matches_hashlib_and_vendor_example_form() -> None:
    assert md5_hex("abc") == hashlib.md5(b"abc").hexdigest()
    assert md5_hex("密码") == hashlib.md5("密码".encode()).hexdigest()
    assert md5_hex("x") == md5_hex("x").lower()


@pytest.mark.parametrize("length", [0, 8, 15, 17, 33])
def test_bad_key_length_is_refused_without_echoing_the_key(length: int) -> None:
    key = "k" * length
    with pytest.raises(AuthenticationError) as err:
        aes_encrypt(key, b"data")
    assert f"{length} bytes" in str(err.value)
    if key:
        assert key not in str(err.value)


def test_wrong_key_is_a_protocol_error() -> None:
    body = aes_encrypt(KEYS[0], b'{"a": 1}' * 4)
    with pytest.raises(ProtocolError, match="padding"):
        aes_decrypt("fedcba9876543210", body)


@pytest.mark.parametrize("cipher", [b"", b"short", b"x" * 17])
def test_truncated_ciphertext_is_a_protocol_error(cipher: bytes) -> None:
    with pytest.raises(ProtocolError, match="multiple of 16"):
        aes_decrypt(KEYS[0], cipher)


def test_bad_gzip_and_hex_are_protocol_errors() -> None:
    with pytest.raises(ProtocolError, match="gzip"):
        gzip_decompress(b"not gzip at all")
    with pytest.raises(ProtocolError, match="hex"):
        hex_decode("zz")


@settings(max_examples=200, deadline=None)
@given(key=st.sampled_from(KEYS), plain=st.binary(max_size=2048))
def test_aes_round_trip(key: str, plain: bytes) -> None:
    cipher = aes_encrypt(key, plain)
    assert len(cipher) % 16 == 0 and len(cipher) > len(plain)
    assert aes_decrypt(key, cipher) == plain


@settings(max_examples=200, deadline=None)
@given(plain=st.binary(max_size=4096))
def test_gzip_round_trip(plain: bytes) -> None:
    assert gzip_decompress(gzip_compress(plain)) == plain


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=50),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=10), inner,
                                                               max_size=5),
    max_leaves=20)


@settings(max_examples=200, deadline=None)
@given(payload=json_values, key=st.sampled_from(KEYS), gzip_on=st.booleans())
def test_emay_envelope_round_trip(payload: object, key: str, gzip_on: bool) -> None:
    assert decode_secure(encode_secure(payload, key, gzip_on=gzip_on), key,
                         gzip_on=gzip_on) == payload
