"""Token attacks (RFC 8725) that test_auth.py and test_jwks.py leave out: critical header
extensions, algorithm confusion with the JWKS's Ed25519 and P-256 keys, keys the token brings
along, and oversized tokens and header blocks.

taskd here has both the HS256 secret and a JWKS: the configuration where an HS256 token keyed with
a public key has the best chance, since HS256 tokens are accepted at all.
"""

from __future__ import annotations

import http.client
import time
from typing import Any
from urllib.parse import urlsplit

import jwt
import orjson
import pytest
from conftest import SECRET, make_token
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from jwt import PyJWK
from test_auth import assert_accepted, assert_rejected, b64url, claims_for, hand_token
from test_jwks import ED25519_JWK, ED25519_KEY, P256_JWK, P256_KEY, RSA_KEY, JwksServer
from test_jwks import jwks_server as jwks_server  # the fixture

from taskd.app import make_app
from taskd.auth import MAX_TOKEN_LENGTH
from taskd.client_stream import MAX_HEADER_BYTES
from taskd.config import Settings
from taskd.jwks import JwksCache

# A token refused for its size is refused before any parsing: this is ample on a busy machine.
QUICKLY = 1.0


@pytest.fixture
def app(settings: Settings, pool: Any, jwks_server: JwksServer) -> Any:
    jwks = JwksCache(jwks_server.url, timeout=0.5)
    return make_app(settings.replace(jwks_url=jwks.url), pool, jwks=jwks)


async def list_with(api: Any, user: int, token: str) -> Any:
    return await api.request("GET", f"/api/{user}/tasks", token=token)


def secret_token(header: dict[str, Any], user: int) -> str:
    """An HS256 token signed with the real secret: only its header can be wrong."""
    return hand_token({"alg": "HS256", "typ": "JWT", **header}, claims_for(user), SECRET.encode())


# --- crit (RFC 7515 §4.1.11): taskd understands no extension, so it refuses every one ---------

CRIT_HEADERS = {
    # PyJWT itself accepts this one: it implements b64, and b64 true changes nothing.
    "b64 listed and present": {"crit": ["b64"], "b64": True},
    "b64 false": {"crit": ["b64"], "b64": False},
    "unknown, present": {"crit": ["x-taskd-tenant"], "x-taskd-tenant": "acme"},
    "unknown, absent": {"crit": ["x-taskd-tenant"]},
    "a registered name": {"crit": ["exp"], "exp": 1},
    "empty list": {"crit": []},
    "a string": {"crit": "b64", "b64": True},
    "an object": {"crit": {"b64": True}, "b64": True},
    "null": {"crit": None},
    "a number in the list": {"crit": [1]},
    "a nested list": {"crit": [["b64"]], "b64": True},
}


@pytest.mark.parametrize("header", CRIT_HEADERS.values(), ids=CRIT_HEADERS.keys())
async def test_a_token_with_a_crit_header_is_401(api, user_id, header):
    assert_rejected(await list_with(api, user_id, secret_token(header, user_id)))


async def test_the_same_token_without_crit_is_accepted(api, user_id):
    # So the tokens above are refused for their crit, not for how they were built.
    assert_accepted(await list_with(api, user_id, secret_token({}, user_id)))


async def test_a_jwks_token_with_a_crit_header_is_401(api, user_id):
    header = {"alg": "EdDSA", "kid": "ed-1", "crit": ["b64"], "b64": True}
    signing_input = f"{b64url(orjson.dumps(header))}.{b64url(orjson.dumps(claims_for(user_id)))}"
    signature = ED25519_KEY.sign(signing_input.encode())
    token = f"{signing_input}.{b64url(signature)}"
    # PyJWT verifies this token; taskd must not.
    assert jwt.decode(token, PyJWK(ED25519_JWK, "EdDSA"), algorithms=["EdDSA"])
    assert_rejected(await list_with(api, user_id, token))


# --- algorithm confusion: the JWKS's public keys as HMAC secrets -----------------------------


def _public_bytes(key: Any, encoding: serialization.Encoding) -> bytes:
    """The public half of `key` in `encoding`: SubjectPublicKeyInfo, or Raw for Ed25519."""
    raw = encoding == serialization.Encoding.Raw
    form = (
        serialization.PublicFormat.Raw if raw else serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return bytes(key.public_key().public_bytes(encoding, form))


PEM, DER, RAW = serialization.Encoding.PEM, serialization.Encoding.DER, serialization.Encoding.Raw

# test_jwks.py covers the RSA key's PEM and JWK; these are the other keys and encodings.
PUBLIC_KEY_MATERIAL = {
    "Ed25519 PEM": (_public_bytes(ED25519_KEY, PEM), "ed-1"),
    "Ed25519 DER": (_public_bytes(ED25519_KEY, DER), "ed-1"),
    "Ed25519 raw bytes": (_public_bytes(ED25519_KEY, RAW), "ed-1"),
    "Ed25519 JWK": (orjson.dumps(ED25519_JWK), "ed-1"),
    "Ed25519 JWK x": (ED25519_JWK["x"].encode(), "ed-1"),
    "P-256 PEM": (_public_bytes(P256_KEY, PEM), "ec-1"),
    "P-256 JWK": (orjson.dumps(P256_JWK), "ec-1"),
    "RSA DER": (_public_bytes(RSA_KEY, DER), "rsa-1"),
}


@pytest.mark.parametrize("with_kid", [True, False], ids=["kid", "no kid"])
@pytest.mark.parametrize(
    ("material", "kid"), PUBLIC_KEY_MATERIAL.values(), ids=PUBLIC_KEY_MATERIAL.keys()
)
async def test_an_hs256_token_keyed_with_a_jwks_public_key_is_401(
    api, user_id, with_kid, material, kid
):
    header: dict[str, Any] = {"alg": "HS256", "typ": "JWT"}
    if with_kid:
        header["kid"] = kid
    token = hand_token(header, claims_for(user_id), material)
    assert_rejected(await list_with(api, user_id, token))


# --- keys and key locations the token brings along (RFC 7515 jwk, jku, x5u) -------------------


ATTACKER_KEY = ed25519.Ed25519PrivateKey.generate()
ATTACKER_JWK = jwt.get_algorithm_by_name("EdDSA").to_jwk(ATTACKER_KEY.public_key(), as_dict=True)


@pytest.mark.parametrize(
    "header",
    [
        {"jwk": ATTACKER_JWK},
        {"jwk": {**ATTACKER_JWK, "kid": "ed-1"}, "kid": "ed-1"},
        {"jku": "http://127.0.0.1:1/jwks", "kid": "attacker"},
        {"x5u": "http://127.0.0.1:1/cert.pem", "kid": "attacker"},
    ],
    ids=["embedded jwk", "embedded jwk under a known kid", "jku", "x5u"],
)
async def test_a_token_signed_by_a_key_it_names_itself_is_401(api, user_id, jwks_server, header):
    token = jwt.encode(claims_for(user_id), ATTACKER_KEY, algorithm="EdDSA", headers=header)
    assert_rejected(await list_with(api, user_id, token))
    assert jwks_server.requests == 1  # taskd asked its own JWKS, nobody else


# --- oversized tokens ----------------------------------------------------------------------


def _tokens_around(user: int, length: int) -> tuple[str, str]:
    """The longest HS256 token of at most `length` characters and the shortest over it, both
    correctly signed with the secret."""
    pad = (length - len(make_token(user, pad=""))) * 3 // 4 - 4
    shorter = make_token(user, pad="p" * pad)
    while len(longer := make_token(user, pad="p" * (pad + 1))) <= length:
        shorter, pad = longer, pad + 1
    return shorter, longer


def _padded_token(user: int, length: int) -> str:
    return _tokens_around(user, length)[1]


async def test_a_long_but_reasonable_token_is_accepted(api, user_id):
    token = _tokens_around(user_id, MAX_TOKEN_LENGTH)[0]
    assert MAX_TOKEN_LENGTH - 3 < len(token) <= MAX_TOKEN_LENGTH
    assert_accepted(await list_with(api, user_id, token))


@pytest.mark.parametrize(
    "token",
    [
        lambda user: _padded_token(user, MAX_TOKEN_LENGTH),
        lambda user: _padded_token(user, 20_000),
        lambda user: make_token(user) + "A" * 20_000,
        lambda user: "eyJ" + "A" * 20_000,
        lambda user: ".".join(["A" * 7000] * 3),
    ],
    ids=["just too long", "20 KB signed", "20 KB signature", "20 KB header", "3 parts"],
)
async def test_an_oversized_token_is_401_at_once(api, user_id, token):
    started = time.monotonic()
    response = await list_with(api, user_id, token(user_id))
    assert time.monotonic() - started < QUICKLY
    assert_rejected(response)


# --- oversized header blocks: the live server's HTTP/1 limit -----------------------------------


def get(url: str, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    try:
        conn.request("GET", parts.path, headers=headers)
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        conn.close()


def test_a_header_block_over_the_limit_is_431_and_the_server_keeps_serving(spawn, external_env):
    server = spawn("serve", "--port", "0", env=external_env)
    base = server.base_url()
    user = 5_000_000_000
    url = f"{base}/api/{user}/tasks"
    token = make_token(user)

    # A 20 KB If-Match (as test_conditional.py sends) and a few KB of cookies fit.
    fitting = {"Authorization": f"Bearer {token}", "If-None-Match": "  ,  " * 4000}
    status, _, body = get(url, fitting)
    assert (status, orjson.loads(body)) == (200, [])

    oversized = {
        "one 100 KB header": {"Authorization": f"Bearer {token}", "Cookie": "c" * 100_000},
        "a 100 KB token": {"Authorization": "Bearer " + "A" * 100_000},
        "100 headers of 1 KB": {f"X-Pad-{n}": "p" * 1000 for n in range(100)},
        "1 MB of headers": {f"X-Pad-{n}": "p" * 1000 for n in range(1000)},
        "just over the limit": {"Cookie": "c" * MAX_HEADER_BYTES},
    }
    for name, headers in oversized.items():
        status, response_headers, body = get(url, headers)
        assert status == 431, name
        assert response_headers["Content-Type"] == "application/problem+json"
        assert response_headers["Connection"] == "close"
        assert response_headers["X-Content-Type-Options"] == "nosniff"
        assert "Server" not in response_headers
        assert orjson.loads(body) == {
            "type": "about:blank",
            "title": "Request Header Fields Too Large",
            "status": 431,
            "detail": f"The request's header fields must total at most {MAX_HEADER_BYTES} bytes.",
        }

    status, _, body = get(url, fitting)
    assert (status, orjson.loads(body)) == (200, [])
