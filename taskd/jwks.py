"""Better Auth's public signing keys: a JWKS fetched over HTTP, cached, and refetched sparingly.

The cache policy, per worker process (the README's "Better Auth" section says the same for
operators):
- The set is fetched when a token needs a key and nothing is cached, when a token names a `kid`
  the cached set lacks, and when the cached set is `max_age` (10 s) old; requests that need a
  fetch under way wait for it and share it.
- Two fetches are at least `refetch_interval` (2 s) apart, however many unknown kids arrive: a
  flood of made-up kids costs the JWKS one request per worker per 2 s. A key the JWKS newly
  publishes is therefore accepted within 2 s (and a fetch) of its publication, and a key it
  removes stops verifying within 10 s (and a fetch).
- Each fetch after the first sends the ETag it last got as If-None-Match: an unchanged set is a
  304 with no body. An unchanged set (a 304, or the same document) is neither parsed nor logged
  again.
- A failed fetch (refused, timed out, not 200 or 304, not a JWKS, no usable key) keeps the cached
  set, and the next attempt waits `cached_outage_retry` (30 s), so that an outage does not hold
  up a request every 2 s. With nothing cached, it is a 503 for the requests that needed keys, and
  the next attempt waits `outage_retry` (2 s, the Retry-After those requests get).
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey
from jwt import PyJWK, PyJWTError
from tornado.httpclient import AsyncHTTPClient, HTTPClientError

from taskd.errors import Unavailable

log = logging.getLogger("taskd")

# The algorithms of Better Auth's JWT plugin that taskd accepts (EdDSA, Ed25519, is its default).
EDDSA, ES256, RS256, PS256 = "EdDSA", "ES256", "RS256", "PS256"
ASYMMETRIC_ALGORITHMS = frozenset({EDDSA, ES256, RS256, PS256})
MIN_RSA_BITS = 2048


class JwksError(Exception):
    """The JWKS could not be fetched or holds no usable key; the message says why, for the log."""


def key_algorithms(jwk: Mapping[str, Any]) -> tuple[str, ...]:
    """The algorithms a JWK may verify: its key type decides, and its `alg`, if any, narrows.

    Symmetric (`oct`) keys get none: a JWKS is public, so HMAC with one of its keys proves nothing.
    """
    kty, crv = jwk.get("kty"), jwk.get("crv")
    if kty == "OKP" and crv == "Ed25519":
        allowed: tuple[str, ...] = (EDDSA,)
    elif kty == "EC" and crv == "P-256":
        allowed = (ES256,)
    elif kty == "RSA":
        allowed = (RS256, PS256)
    else:
        return ()
    declared = jwk.get("alg")
    return allowed if declared is None else tuple(alg for alg in allowed if alg == declared)


@dataclass(frozen=True)
class SigningKey:
    """One public key of the set, as a PyJWK bound to each algorithm it may verify."""

    kid: str | None
    by_algorithm: Mapping[str, PyJWK]

    @classmethod
    def from_jwk(cls, jwk: Any) -> SigningKey | None:
        """The key a JWKS entry describes, or None when it is not one taskd can verify with."""
        if not isinstance(jwk, dict) or jwk.get("use", "sig") != "sig":
            return None
        kid = jwk.get("kid")
        if kid is not None and not isinstance(kid, str):
            return None
        try:
            by_algorithm = {alg: PyJWK(jwk, alg) for alg in key_algorithms(jwk)}
        except PyJWTError:
            return None
        weak = any(
            isinstance(key.key, RSAPublicKey) and key.key.key_size < MIN_RSA_BITS
            for key in by_algorithm.values()
        )
        return cls(kid, by_algorithm) if by_algorithm and not weak else None


class KeySet:
    """The usable keys of one JWKS document, by `kid`."""

    def __init__(self, keys: Sequence[SigningKey]) -> None:
        self._by_kid = {key.kid: key for key in keys if key.kid is not None}
        # Better Auth always sends a kid; a token without one may still use a set's only key.
        self._only_key = keys[0] if len(keys) == 1 else None
        self.size = len(keys)

    @classmethod
    def parse(cls, document: bytes) -> KeySet:
        try:
            jwks = orjson.loads(document)
        except orjson.JSONDecodeError:
            raise JwksError("the response is not JSON") from None
        entries = jwks.get("keys") if isinstance(jwks, dict) else None
        if not isinstance(entries, list):
            raise JwksError('the response is not a JWKS (no "keys" list)')
        keys = [key for key in map(SigningKey.from_jwk, entries) if key is not None]
        if not keys:
            raise JwksError(f"none of its {len(entries)} keys is usable")
        return cls(keys)

    def find(self, kid: str | None) -> SigningKey | None:
        return self._only_key if kid is None else self._by_kid.get(kid)


class JwksCache:
    """The keys at a JWKS URL, cached and refetched by the policy in this module's docstring."""

    def __init__(
        self,
        url: str,
        *,
        timeout: float = 3.0,
        refetch_interval: float = 2.0,
        max_age: float = 10.0,
        cached_outage_retry: float = 30.0,
        outage_retry: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.url = url
        self._timeout = timeout
        self._refetch_interval = refetch_interval
        self._max_age = max_age
        self._cached_outage_retry = cached_outage_retry
        self._outage_retry = outage_retry
        self._clock = clock
        self._keys: KeySet | None = None
        # The answer the cached keys came from: its ETag, and its body.
        self._etag: str | None = None
        self._document = b""
        self._fetched_at = -math.inf
        self._next_fetch_at = -math.inf
        self._fetch: asyncio.Future[None] | None = None

    async def signing_key(self, kid: str | None) -> SigningKey | None:
        """The key `kid` names (None: not in the set), fetching the set first when it is missing,
        stale or lacks the kid and the rate limit allows. Unavailable when no set was ever had."""
        keys = self._keys
        wanted = keys is None or keys.find(kid) is None or self._is_stale()
        if wanted and (self._fetch is not None or self._clock() >= self._next_fetch_at):
            await self._refresh()
            keys = self._keys
        if keys is None:
            wait = math.ceil(self._next_fetch_at - self._clock())
            raise Unavailable(
                "The token signing keys cannot be fetched; retry shortly.",
                retry_after=max(wait, 1),
            )
        return keys.find(kid)

    def _is_stale(self) -> bool:
        return self._clock() - self._fetched_at >= self._max_age

    async def _refresh(self) -> None:
        if self._fetch is None:
            self._fetch = asyncio.ensure_future(self._fetch_keys())
        # A waiting request that goes away must not cancel the fetch the others are sharing.
        await asyncio.shield(self._fetch)

    async def _fetch_keys(self) -> None:
        try:
            keys = await self._download()
        except JwksError as error:
            cached = self._keys is not None
            log.warning(
                "JWKS %s: %s; %s",
                self.url,
                error,
                "keeping the cached keys" if cached else "no keys to verify tokens with",
            )
            retry = self._cached_outage_retry if cached else self._outage_retry
            self._next_fetch_at = self._clock() + retry
        else:
            if keys is not self._keys:
                log.info("JWKS %s: %d usable keys", self.url, keys.size)
            self._keys = keys
            self._fetched_at = self._clock()
            self._next_fetch_at = self._fetched_at + self._refetch_interval
        finally:
            self._fetch = None

    async def _download(self) -> KeySet:
        """The set at the URL: the cached one again when the JWKS has not changed (a 304, or the
        same document again from a JWKS without ETags)."""
        headers = {"Accept": "application/json"}
        if self._keys is not None and self._etag is not None:
            headers["If-None-Match"] = self._etag
        try:
            response = await AsyncHTTPClient().fetch(
                self.url,
                headers=headers,
                connect_timeout=self._timeout,
                request_timeout=self._timeout,
                raise_error=False,
            )
        except (HTTPClientError, OSError) as error:
            raise JwksError(f"fetch failed: {error}") from None
        if response.code == 304 and self._keys is not None:
            return self._keys
        if response.code != 200:
            raise JwksError(f"fetch failed: HTTP {response.code}")
        if response.body == self._document and self._keys is not None:
            return self._keys
        keys = KeySet.parse(response.body)
        self._etag, self._document = response.headers.get("ETag"), response.body
        return keys
