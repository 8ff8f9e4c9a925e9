"""CONTRACT §3: Better Auth's asymmetric tokens, verified with the keys its JWKS serves.

The JWKS is a Tornado server on loopback that the tests rotate, break and count requests to. The
cache runs on a fake clock the tests move forward, so no test sleeps through an interval.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterator
from typing import Any

import jwt
import orjson
import pytest
from conftest import SECRET, Api, make_token
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from test_auth import assert_accepted, assert_problem, assert_rejected, claims_for, hand_token
from tornado.httpserver import HTTPServer
from tornado.netutil import bind_sockets
from tornado.testing import bind_unused_port
from tornado.web import Application, RequestHandler

from taskd.app import make_app, make_verifier
from taskd.config import ConfigError, Settings, load_settings
from taskd.jwks import JwksCache

ED25519_KEY = ed25519.Ed25519PrivateKey.generate()
P256_KEY = ec.generate_private_key(ec.SECP256R1())
RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
ISSUER = AUDIENCE = "https://app.example.com"
TIMEOUT = 0.5


def public_jwk(private_key: Any, algorithm: str, kid: str, **fields: Any) -> dict[str, Any]:
    """The JWKS entry of `private_key`'s public half."""
    public = jwt.get_algorithm_by_name(algorithm).to_jwk(private_key.public_key(), as_dict=True)
    return {**public, "kid": kid, **fields}


# As Better Auth publishes its keys: a kid and no "alg", so the key type decides the algorithm.
ED25519_JWK = public_jwk(ED25519_KEY, "EdDSA", "ed-1")
P256_JWK = public_jwk(P256_KEY, "ES256", "ec-1", use="sig")
RSA_JWK = public_jwk(RSA_KEY, "RS256", "rsa-1")
RSA_RS256_ONLY_JWK = public_jwk(RSA_KEY, "RS256", "rsa-rs256", alg="RS256")
KEY_SET = [ED25519_JWK, P256_JWK, RSA_JWK, RSA_RS256_ONLY_JWK]

# The private key and kid that sign each algorithm's tokens.
SIGNERS = {
    "EdDSA": (ED25519_KEY, "ed-1"),
    "ES256": (P256_KEY, "ec-1"),
    "RS256": (RSA_KEY, "rsa-1"),
    "PS256": (RSA_KEY, "rsa-1"),
}


def sign(algorithm: str, user: int | str, *, key: Any = None, kid: Any = "", **claims: Any) -> str:
    """A token as Better Auth signs it; `key` and `kid` default to the algorithm's signer, and
    `kid=None` leaves the kid out."""
    default_key, default_kid = SIGNERS.get(algorithm, (None, None))
    kid = default_kid if kid == "" else kid
    headers = {"kid": kid} if kid is not None else None
    payload = {k: v for k, v in claims_for(user, **claims).items() if v is not None}
    return jwt.encode(payload, key or default_key, algorithm=algorithm, headers=headers)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class JwksServer:
    """A JWKS endpoint on loopback: serves a document, counts requests, and can be broken."""

    def __init__(self) -> None:
        self.document = b""
        self.status = 200
        self.requests = 0
        self.statuses: list[int] = []  # of the answers, 304s included
        self.if_none_match: list[str | None] = []  # of the requests
        self.etags = True
        self.delay = 0.0
        self.stalled = False
        self.released = asyncio.Event()
        self._server: HTTPServer | None = None
        socket, self.port = bind_unused_port()
        self.url = f"http://127.0.0.1:{self.port}/api/auth/jwks"
        self.serve(*KEY_SET)
        self._listen([socket])

    def serve(self, *jwks: dict[str, Any]) -> None:
        self.serve_body(orjson.dumps({"keys": list(jwks)}))

    def serve_body(self, document: bytes, status: int = 200) -> None:
        self.document, self.status, self.stalled = document, status, False

    def stall(self) -> None:
        """Accept requests and never answer them (until teardown)."""
        self.stalled = True

    def down(self) -> None:
        """Stop listening: connections are refused."""
        assert self._server is not None
        self._server.stop()
        self._server = None

    def up(self) -> None:
        self._listen(bind_sockets(self.port, "127.0.0.1"))

    def _listen(self, sockets: list[Any]) -> None:
        self._server = HTTPServer(Application([("/api/auth/jwks", JwksHandler, {"jwks": self})]))
        self._server.add_sockets(sockets)

    async def close(self) -> None:
        self.released.set()
        await asyncio.sleep(0.01)  # lets stalled handlers finish before the loop closes
        if self._server is not None:
            self.down()


class JwksHandler(RequestHandler):
    def initialize(self, jwks: JwksServer) -> None:
        self.jwks = jwks

    async def get(self) -> None:
        self.jwks.requests += 1
        self.jwks.if_none_match.append(self.request.headers.get("If-None-Match"))
        if self.jwks.stalled:
            await self.jwks.released.wait()
        await asyncio.sleep(self.jwks.delay)
        self.set_status(self.jwks.status)
        self.set_header("Content-Type", "application/json")
        # Tornado adds an ETag to a 200 and answers a matching If-None-Match with a 304.
        self.finish(self.jwks.document)

    def compute_etag(self) -> str | None:
        return super().compute_etag() if self.jwks.etags else None

    def on_finish(self) -> None:
        self.jwks.statuses.append(self.get_status())


@pytest.fixture
def jwks_server(io_loop: Any) -> Iterator[JwksServer]:
    server = JwksServer()
    yield server
    io_loop.run_sync(server.close)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def jwks(jwks_server: JwksServer, clock: FakeClock) -> JwksCache:
    return JwksCache(jwks_server.url, timeout=TIMEOUT, clock=clock)


@pytest.fixture
def verifier_settings(request: pytest.FixtureRequest) -> dict[str, Any]:
    """Settings of the tests' taskd besides its JWKS; parametrize indirectly to change them."""
    settings: dict[str, Any] = getattr(request, "param", {"secret": None})
    return settings


@pytest.fixture
def app(settings: Settings, pool: Any, jwks: JwksCache, verifier_settings: dict[str, Any]) -> Any:
    return make_app(settings.replace(jwks_url=jwks.url, **verifier_settings), pool, jwks=jwks)


@pytest.fixture
def api(app: Any, http_server_client: Any) -> Api:
    # Depends on `app` by name (conftest's reaches it only at run time), so that tests can
    # parametrize `verifier_settings` indirectly.
    return Api(http_server_client)


async def list_with(api: Any, user: int, token: str) -> Any:
    return await api.request("GET", f"/api/{user}/tasks", token=token)


def assert_unavailable(response: Any, retry_after: str = "2") -> None:
    assert_problem(response, 503)
    assert response.headers["Retry-After"] == retry_after
    assert "WWW-Authenticate" not in response.headers


# --- accepted tokens -----------------------------------------------------------------------


@pytest.mark.parametrize("algorithm", ["EdDSA", "ES256", "RS256", "PS256"])
async def test_a_token_of_each_better_auth_algorithm_is_accepted(
    api, user_id, jwks_server, algorithm
):
    response = await list_with(api, user_id, sign(algorithm, user_id))
    assert_accepted(response)
    assert jwks_server.requests == 1


async def test_the_keys_are_fetched_once_and_cached(api, user_id, jwks_server):
    for algorithm in ["EdDSA", "ES256", "RS256", "PS256", "EdDSA"]:
        assert_accepted(await list_with(api, user_id, sign(algorithm, user_id)))
    assert jwks_server.requests == 1


async def test_a_jwk_alg_limits_its_key_to_that_algorithm(api, user_id):
    rs256 = sign("RS256", user_id, kid="rsa-rs256")
    assert_accepted(await list_with(api, user_id, rs256))
    ps256 = sign("PS256", user_id, kid="rsa-rs256")
    assert_rejected(await list_with(api, user_id, ps256))


async def test_taskd_configured_by_its_settings_verifies_with_the_jwks(
    settings, jwks_server, user_id
):
    """The real wiring, without the tests' clock: TASKD_JWKS_URL alone makes a verifier."""
    verifier = make_verifier(settings.replace(secret=None, jwks_url=jwks_server.url))
    assert await verifier.user_id(sign("EdDSA", user_id)) == user_id
    assert jwks_server.requests == 1


@pytest.mark.parametrize("verifier_settings", [{"secret": SECRET}], indirect=True)
async def test_with_the_secret_and_the_jwks_both_kinds_of_token_are_accepted(
    api, user_id, jwks_server
):
    assert_accepted(await list_with(api, user_id, make_token(user_id)))
    assert jwks_server.requests == 0  # HS256 never waits for the JWKS
    assert_accepted(await list_with(api, user_id, sign("EdDSA", user_id)))


async def test_a_token_without_kid_uses_the_only_key_of_a_one_key_set(api, user_id, jwks_server):
    jwks_server.serve(ED25519_JWK)
    assert_accepted(await list_with(api, user_id, sign("EdDSA", user_id, kid=None)))


async def test_a_token_without_kid_is_401_when_the_set_has_several_keys(api, user_id):
    assert_rejected(await list_with(api, user_id, sign("EdDSA", user_id, kid=None)))


# --- refused tokens ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("algorithm", "other_key"),
    [
        ("EdDSA", ed25519.Ed25519PrivateKey.generate()),
        ("ES256", ec.generate_private_key(ec.SECP256R1())),
        ("RS256", rsa.generate_private_key(public_exponent=65537, key_size=2048)),
    ],
)
async def test_a_token_signed_by_another_key_under_a_known_kid_is_401(
    api, user_id, algorithm, other_key
):
    response = await list_with(api, user_id, sign(algorithm, user_id, key=other_key))
    assert_rejected(response)


@pytest.mark.parametrize("algorithm", ["EdDSA", "ES256", "RS256", "PS256"])
@pytest.mark.parametrize("part", [1, 2], ids=["payload", "signature"])
async def test_a_tampered_token_is_401(api, user_id, algorithm, part):
    parts = sign(algorithm, user_id).split(".")
    parts[part] = parts[part][:-2] + ("AA" if parts[part][-2:] != "AA" else "BB")
    assert_rejected(await list_with(api, user_id, ".".join(parts)))


async def test_an_hs256_token_is_401_when_only_the_jwks_is_configured(api, user_id, jwks_server):
    assert_rejected(await list_with(api, user_id, make_token(user_id)))
    assert jwks_server.requests == 0


RSA_PUBLIC_PEM = RSA_KEY.public_key().public_bytes(
    serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
)


@pytest.mark.parametrize(
    "verifier_settings", [{"secret": None}, {"secret": SECRET}], indirect=True, ids=["", "secret"]
)
@pytest.mark.parametrize(
    "hmac_key", [RSA_PUBLIC_PEM, orjson.dumps(RSA_JWK)], ids=["public PEM", "public JWK"]
)
async def test_an_hs256_token_keyed_with_the_rsa_public_key_is_401(api, user_id, hmac_key):
    """Algorithm confusion: the public key used as an HMAC secret verifies nothing."""
    header = {"alg": "HS256", "typ": "JWT", "kid": "rsa-1"}
    token = hand_token(header, claims_for(user_id), hmac_key)
    assert_rejected(await list_with(api, user_id, token))


@pytest.mark.parametrize(
    ("algorithm", "kid"),
    [("RS256", "ed-1"), ("PS256", "ec-1"), ("ES256", "ed-1"), ("EdDSA", "rsa-1")],
)
async def test_a_token_whose_alg_is_not_its_keys_type_is_401(api, user_id, algorithm, kid):
    assert_rejected(await list_with(api, user_id, sign(algorithm, user_id, kid=kid)))


@pytest.mark.parametrize(
    "alg", ["none", "HS384", "ES384", "RS512", "Ed25519", None, ["EdDSA"], {"EdDSA": 1}]
)
async def test_a_token_of_an_algorithm_better_auth_does_not_use_is_401(api, user_id, alg):
    header = {"alg": alg, "kid": "ed-1"} if alg is not None else {"kid": "ed-1"}
    token = hand_token(header, claims_for(user_id), None)
    assert_rejected(await list_with(api, user_id, token))


@pytest.mark.parametrize(
    "claims",
    # Made when the test runs, not when it is collected: the suite may reach it minutes later.
    [
        lambda: {"exp": int(time.time()) - 120},
        lambda: {"exp": None},
        lambda: {"nbf": int(time.time()) + 120},
        lambda: {"sub": "-1"},  # a user id of neither kind
    ],
    ids=["expired", "no exp", "not yet valid", "sub not a user id"],
)
async def test_the_claims_of_a_jwks_token_are_checked_like_hs256(api, user_id, claims):
    assert_rejected(await list_with(api, user_id, sign("EdDSA", user_id, **claims())))


@pytest.mark.parametrize(
    "verifier_settings",
    [{"secret": None, "jwt_issuer": ISSUER, "jwt_audience": AUDIENCE}],
    indirect=True,
)
@pytest.mark.parametrize(
    ("claims", "accepted"),
    [
        ({"iss": ISSUER, "aud": AUDIENCE}, True),
        ({"iss": "https://evil.example", "aud": AUDIENCE}, False),
        ({"iss": ISSUER, "aud": "https://evil.example"}, False),
        ({"aud": AUDIENCE}, False),
        ({"iss": ISSUER}, False),
    ],
    ids=["both right", "wrong iss", "wrong aud", "no iss", "no aud"],
)
async def test_iss_and_aud_are_enforced_when_configured(api, user_id, claims, accepted):
    response = await list_with(api, user_id, sign("EdDSA", user_id, **claims))
    if accepted:
        assert_accepted(response)
    else:
        assert_rejected(response)


# --- the cache: unknown kids, stampedes, rotation --------------------------------------------


async def test_an_unknown_kid_triggers_one_refetch_and_then_waits_2_seconds(
    api, user_id, jwks_server, clock
):
    assert_accepted(await list_with(api, user_id, sign("EdDSA", user_id)))
    assert jwks_server.requests == 1
    stranger = ed25519.Ed25519PrivateKey.generate()
    response = await list_with(api, user_id, sign("EdDSA", user_id, key=stranger, kid="ghost-0"))
    assert_rejected(response)
    assert jwks_server.requests == 1  # the set was fetched less than 2 s ago

    clock.advance(2)
    for kid in ["ghost-1", "ghost-2", "ghost-3"]:
        response = await list_with(api, user_id, sign("EdDSA", user_id, key=stranger, kid=kid))
        assert_rejected(response)
    assert jwks_server.requests == 2

    clock.advance(1.9)
    response = await list_with(api, user_id, sign("EdDSA", user_id, key=stranger, kid="ghost-4"))
    assert_rejected(response)
    assert jwks_server.requests == 2

    clock.advance(0.1)
    response = await list_with(api, user_id, sign("EdDSA", user_id, key=stranger, kid="ghost-5"))
    assert_rejected(response)
    assert jwks_server.requests == 3


async def test_a_stampede_of_unknown_kids_causes_one_fetch(api, user_id, jwks_server, clock):
    assert_accepted(await list_with(api, user_id, sign("EdDSA", user_id)))
    clock.advance(2)
    new_key = ed25519.Ed25519PrivateKey.generate()
    jwks_server.serve(*KEY_SET, public_jwk(new_key, "EdDSA", "ed-2"))
    jwks_server.delay = 0.05  # the requests all arrive while the refetch is under way

    tokens = [sign("EdDSA", user_id, key=new_key, kid="ed-2") for _ in range(10)]
    tokens += [sign("EdDSA", user_id, key=new_key, kid=f"ghost-{n}") for n in range(10)]
    responses = await asyncio.gather(*(list_with(api, user_id, token) for token in tokens))

    for response in responses[:10]:
        assert_accepted(response)
    for response in responses[10:]:
        assert_rejected(response)
    assert jwks_server.requests == 2


async def test_concurrent_first_requests_share_one_fetch(api, user_id, jwks_server):
    jwks_server.delay = 0.05
    algorithms = ["EdDSA", "ES256", "RS256", "PS256"] * 5
    responses = await asyncio.gather(
        *(list_with(api, user_id, sign(algorithm, user_id)) for algorithm in algorithms)
    )
    for response in responses:
        assert_accepted(response)
    assert jwks_server.requests == 1


async def test_a_rotated_in_key_verifies_after_one_refetch_and_the_rotated_out_one_stops(
    api, user_id, jwks_server, clock
):
    jwks_server.serve(ED25519_JWK)
    assert_accepted(await list_with(api, user_id, sign("EdDSA", user_id)))
    clock.advance(2)

    new_key = ed25519.Ed25519PrivateKey.generate()
    jwks_server.serve(public_jwk(new_key, "EdDSA", "ed-2", alg="EdDSA"))
    response = await list_with(api, user_id, sign("EdDSA", user_id, key=new_key, kid="ed-2"))
    assert_accepted(response)
    assert jwks_server.requests == 2

    # The refetch replaced the whole set: the removed key is gone with it.
    assert_rejected(await list_with(api, user_id, sign("EdDSA", user_id)))
    assert jwks_server.requests == 2


async def test_a_removed_key_verifies_until_the_cache_is_10_seconds_old(
    api, user_id, jwks_server, clock
):
    assert_accepted(await list_with(api, user_id, sign("EdDSA", user_id)))
    jwks_server.serve(P256_JWK)

    clock.advance(9.9)
    assert_accepted(await list_with(api, user_id, sign("EdDSA", user_id)))
    assert jwks_server.requests == 1

    clock.advance(0.1)
    assert_rejected(await list_with(api, user_id, sign("EdDSA", user_id)))
    assert jwks_server.requests == 2
    assert_accepted(await list_with(api, user_id, sign("ES256", user_id)))


async def test_an_unchanged_jwks_is_revalidated_with_if_none_match(
    api, user_id, jwks_server, clock
):
    assert_accepted(await list_with(api, user_id, sign("EdDSA", user_id)))
    clock.advance(10)
    assert_accepted(await list_with(api, user_id, sign("ES256", user_id)))
    assert jwks_server.statuses == [200, 304]
    first_etag = jwks_server.if_none_match[1]
    assert jwks_server.if_none_match == [None, first_etag] and first_etag

    # A changed set is a 200 again, and the keys are replaced.
    jwks_server.serve(P256_JWK)
    clock.advance(10)
    assert_rejected(await list_with(api, user_id, sign("EdDSA", user_id)))
    assert_accepted(await list_with(api, user_id, sign("ES256", user_id)))
    assert jwks_server.statuses == [200, 304, 200]


@pytest.mark.parametrize("etags", [True, False], ids=["with ETags", "without ETags"])
async def test_the_keys_are_logged_when_they_change_not_at_every_refetch(
    api, user_id, jwks_server, clock, caplog, etags
):
    caplog.set_level(logging.INFO, logger="taskd")
    jwks_server.etags = etags
    for _ in range(3):
        assert_accepted(await list_with(api, user_id, sign("EdDSA", user_id)))
        clock.advance(10)
    jwks_server.serve(P256_JWK)
    assert_accepted(await list_with(api, user_id, sign("ES256", user_id)))

    assert jwks_server.statuses == ([200, 304, 304, 200] if etags else [200] * 4)
    logged = [r.getMessage() for r in caplog.records if "usable keys" in r.getMessage()]
    assert logged == [
        f"JWKS {jwks_server.url}: 4 usable keys",
        f"JWKS {jwks_server.url}: 1 usable keys",
    ]


async def test_a_flood_of_made_up_kids_costs_one_fetch_per_2_seconds(
    api, user_id, jwks_server, clock
):
    assert_accepted(await list_with(api, user_id, sign("EdDSA", user_id)))
    stranger = ed25519.Ed25519PrivateKey.generate()
    for n in range(240):  # one every 0.25 s for a minute
        clock.advance(0.25)
        token = sign("EdDSA", user_id, key=stranger, kid=f"ghost-{n}")
        assert_rejected(await list_with(api, user_id, token))
    assert jwks_server.requests == 1 + 60 // 2


# --- JWKS outages --------------------------------------------------------------------------


def _break(jwks_server: JwksServer, outage: str) -> None:
    weak_rsa = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    unusable = {
        "symmetric key": [{"kty": "oct", "k": "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0", "kid": "h"}],
        "RSA key under 2048 bits": [public_jwk(weak_rsa, "RS256", "weak")],
        "encryption key": [{**ED25519_JWK, "use": "enc"}],
        "P-384 key": [public_jwk(ec.generate_private_key(ec.SECP384R1()), "ES384", "p384")],
        "key without its x": [{"kty": "OKP", "crv": "Ed25519", "kid": "ed-1"}],
    }
    if outage == "refused":
        jwks_server.down()
    elif outage == "timeout":
        jwks_server.stall()
    elif outage == "HTTP 500":
        jwks_server.serve_body(b'{"error": "oops"}', status=500)
    elif outage == "not JSON":
        jwks_server.serve_body(b"<html>Bad gateway</html>")
    elif outage == "not a JWKS":
        jwks_server.serve_body(b'{"keys": {"kty": "OKP"}}')
    else:
        jwks_server.serve(*unusable[outage])


OUTAGES = [
    "refused",
    "timeout",
    "HTTP 500",
    "not JSON",
    "not a JWKS",
    "symmetric key",
    "RSA key under 2048 bits",
    "encryption key",
    "P-384 key",
    "key without its x",
]


@pytest.mark.parametrize("outage", OUTAGES)
async def test_a_jwks_outage_with_nothing_cached_is_503_then_recovers(
    api, user_id, jwks_server, clock, outage
):
    _break(jwks_server, outage)
    token = sign("EdDSA", user_id)
    assert_unavailable(await list_with(api, user_id, token))
    attempts = jwks_server.requests

    # Until the Retry-After has passed, taskd does not ask the JWKS again.
    clock.advance(1)
    assert_unavailable(await list_with(api, user_id, token), retry_after="1")
    assert jwks_server.requests == attempts

    if outage == "refused":
        jwks_server.up()
    jwks_server.serve(*KEY_SET)
    clock.advance(1)
    assert_accepted(await list_with(api, user_id, token))


@pytest.mark.parametrize("verifier_settings", [{"secret": SECRET}], indirect=True)
async def test_hs256_tokens_are_served_while_the_jwks_is_down(api, user_id, jwks_server):
    jwks_server.down()
    assert_accepted(await list_with(api, user_id, make_token(user_id)))
    assert_unavailable(await list_with(api, user_id, sign("EdDSA", user_id)))


@pytest.mark.parametrize("outage", ["refused", "timeout", "HTTP 500", "not JSON", "symmetric key"])
async def test_a_jwks_outage_with_keys_cached_keeps_serving_the_cached_keys(
    api, user_id, jwks_server, clock, outage
):
    assert_accepted(await list_with(api, user_id, sign("EdDSA", user_id)))
    _break(jwks_server, outage)

    clock.advance(10)  # the cache is due for a refresh, which fails
    assert_accepted(await list_with(api, user_id, sign("ES256", user_id)))
    # An unknown kid is still a 401: the keys taskd has say it is not theirs.
    stranger = ed25519.Ed25519PrivateKey.generate()
    response = await list_with(api, user_id, sign("EdDSA", user_id, key=stranger, kid="ghost"))
    assert_rejected(response)


async def test_a_jwks_outage_with_keys_cached_is_retried_every_30_seconds(
    api, user_id, jwks_server, clock
):
    """Not every 2 s: each retry may hold the requests that wait for it up to the timeout."""
    assert_accepted(await list_with(api, user_id, sign("EdDSA", user_id)))
    jwks_server.stall()
    clock.advance(10)
    assert_accepted(await list_with(api, user_id, sign("EdDSA", user_id)))
    assert jwks_server.requests == 2

    stranger = ed25519.Ed25519PrivateKey.generate()
    ghost = sign("EdDSA", user_id, key=stranger, kid="ghost")
    clock.advance(29.9)
    assert_rejected(await list_with(api, user_id, ghost))
    started = time.monotonic()
    assert_accepted(await list_with(api, user_id, sign("ES256", user_id)))
    assert time.monotonic() - started < TIMEOUT  # no request waited for a fetch
    assert jwks_server.requests == 2

    jwks_server.serve(*KEY_SET)
    clock.advance(0.1)
    assert_rejected(await list_with(api, user_id, ghost))
    assert jwks_server.requests == 3


# --- the TASKD_JWKS_URL setting ------------------------------------------------------------


def test_the_jwks_url_is_read_from_the_environment():
    url = "https://app.example.com/api/auth/jwks"
    assert load_settings(environ={"TASKD_JWKS_URL": url}).jwks_url == url
    assert load_settings(environ={}).jwks_url is None


@pytest.mark.parametrize(
    "value", ["ftp://app.example.com/jwks", "app.example.com/api/auth/jwks", "https://", "http://["]
)
def test_a_jwks_url_that_is_not_http_is_a_config_error(value):
    with pytest.raises(ConfigError, match=r"^TASKD_JWKS_URL: must be an http:// or https:// URL"):
        load_settings(environ={"TASKD_JWKS_URL": value})
