"""Identity: bearer-token verification, and the mixin that authenticates every API request."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from typing import Any

import jwt
from jwt import PyJWK
from tornado.httputil import HTTPServerRequest

from taskd.errors import ApiError
from taskd.jwks import ASYMMETRIC_ALGORITHMS, JwksCache
from taskd.user_ids import DESCRIPTIONS, INTEGER, TEXT, UserId, parse_user_id

# An integer sub is written as Better Auth writes it: no sign, no leading zeros.
_CANONICAL_DECIMAL = re.compile(r"[1-9][0-9]{0,18}")
HS256 = "HS256"
# Better Auth's tokens are well under 1 KiB; a longer one is refused before it is even decoded.
MAX_TOKEN_LENGTH = 8 * 1024
# Verifying a token costs ~45 us of CPU, and a client sends the same one on every request, so
# each worker remembers the HS256 tokens it verified lately, for a minute at most.
VERIFIED_TOKENS_MAX = 4096
RECHECK_SECONDS = 60.0


class Unauthorized(ApiError):
    def __init__(self, detail: str, *, token_sent: bool) -> None:
        challenge = 'Bearer realm="taskd"'
        if token_sent:
            # `detail` is always one of our own fixed ASCII sentences, never text from the token.
            challenge += f', error="invalid_token", error_description="{detail}"'
        super().__init__(401, detail, headers={"WWW-Authenticate": challenge})


# Why a token was refused, by PyJWT's exception class (most specific first). PyJWT's own
# messages can quote the token's header, so they are never passed on to the client or log.
_REFUSALS: tuple[tuple[type[jwt.InvalidTokenError], str], ...] = (
    (jwt.ExpiredSignatureError, "The token has expired."),
    (jwt.ImmatureSignatureError, "The token is not valid yet."),
    (jwt.MissingRequiredClaimError, "The token lacks a required claim."),
    (jwt.InvalidIssuerError, "The token's issuer is not accepted."),
    (jwt.InvalidAudienceError, "The token's audience is not accepted."),
    (jwt.InvalidAlgorithmError, "The token's algorithm is not accepted."),
    (jwt.InvalidSignatureError, "The token's signature is invalid."),
    (jwt.DecodeError, "The token is malformed."),
)


def _refusal(error: jwt.InvalidTokenError) -> str:
    for kind, reason in _REFUSALS:
        if isinstance(error, kind):
            return reason
    return "The token is invalid."


@dataclass(frozen=True)
class Identity:
    """Whom a verified token speaks for, and until when (Unix time, the leeway included)."""

    user_id: UserId
    expires_at: float


class TokenVerifier:
    """Verifies bearer tokens by their header's `alg`: HS256 with the shared Better Auth secret,
    Better Auth's asymmetric algorithms with its JWKS. Each is accepted only when configured, and
    every key verifies only the algorithms of its own type (never HMAC with a public key)."""

    def __init__(
        self,
        secret: str | None,
        *,
        jwks: JwksCache | None = None,
        leeway: int = 30,
        issuer: str | None = None,
        audience: str | None = None,
        user_ids: str = INTEGER,
    ) -> None:
        self.user_ids = user_ids
        self._secret = secret.encode() if secret is not None else None
        self._jwks = jwks
        self._leeway = leeway
        self._issuer = issuer
        self._audience = audience
        self._options: Any = {"require": ["exp", "sub"], "verify_aud": audience is not None}
        # Tokens verified lately: token -> (identity, time until which it may be trusted).
        self._verified: dict[str, tuple[Identity, float]] = {}

    async def user_id(self, token: str) -> UserId:
        """The user the token speaks for; see `identity`."""
        return (await self.identity(token)).user_id

    async def identity(self, token: str) -> Identity:
        """The user the token speaks for and its expiry; Unauthorized when it is not a valid
        token, Unavailable when its keys cannot be fetched. An HS256 token never waits for I/O."""
        if len(token) > MAX_TOKEN_LENGTH:
            raise Unauthorized("The token is too long.", token_sent=True)
        now = time.time()
        verified = self._verified.get(token)
        if verified is not None and now < verified[1]:
            return verified[0]
        try:
            header = jwt.get_unverified_header(token)
        except jwt.InvalidTokenError as error:
            raise Unauthorized(_refusal(error), token_sent=True) from None
        # RFC 7515 §4.1.11: a recipient must refuse a token whose `crit` lists an extension it
        # does not understand. taskd understands none (Better Auth uses none), whatever PyJWT
        # lets through, so any `crit` at all, well-formed or not, is refused.
        if "crit" in header:
            raise Unauthorized(
                "The token requires an extension taskd does not support.", token_sent=True
            )
        # str(): a forged header's alg may be any JSON value, and only names are accepted.
        algorithm = str(header.get("alg"))
        key = await self._key(algorithm, header.get("kid"))
        claims = self._verify(token, key, algorithm)
        # Valid until it expires as PyJWT judges it (a verified exp is an integer).
        identity = Identity(_subject(claims, self.user_ids), int(claims["exp"]) + self._leeway)
        # Only tokens of the secret are remembered: a JWKS key can be withdrawn at any refresh.
        if key is self._secret:
            if len(self._verified) >= VERIFIED_TOKENS_MAX:
                self._verified.clear()
            self._verified[token] = (identity, min(identity.expires_at, now + RECHECK_SECONDS))
        return identity

    def _verify(self, token: str, key: bytes | PyJWK, algorithm: str) -> dict[str, Any]:
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=[algorithm],
                leeway=self._leeway,
                issuer=self._issuer,
                audience=self._audience,
                options=self._options,
            )
        except jwt.InvalidTokenError as error:
            raise Unauthorized(_refusal(error), token_sent=True) from None
        return claims

    async def _key(self, algorithm: str, kid: str | None) -> bytes | PyJWK:
        """The key for tokens of `algorithm`: the secret, or the JWKS key that `kid` names."""
        if algorithm == HS256 and self._secret is not None:
            return self._secret
        if algorithm in ASYMMETRIC_ALGORITHMS and self._jwks is not None:
            signing_key = await self._jwks.signing_key(kid)
            if signing_key is None:
                raise Unauthorized("The token's signing key is not known.", token_sent=True)
            key = signing_key.by_algorithm.get(algorithm)
            if key is not None:
                return key
        raise Unauthorized("The token's algorithm is not accepted.", token_sent=True)


def _subject(claims: dict[str, Any], user_ids: str) -> UserId:
    subject = claims["sub"]
    canonical = isinstance(subject, str) and (
        user_ids == TEXT or _CANONICAL_DECIMAL.fullmatch(subject) is not None
    )
    user_id = parse_user_id(user_ids, subject) if canonical else None
    if user_id is None:
        raise Unauthorized(f"The token's sub must be {DESCRIPTIONS[user_ids]}.", token_sent=True)
    return user_id


def bearer_token(authorization: str | None) -> str:
    """The token of an `Authorization: Bearer ...` header (scheme case-insensitive)."""
    if not authorization:
        raise Unauthorized("An Authorization: Bearer token is required.", token_sent=False)
    scheme, _, token = authorization.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise Unauthorized("The Authorization header must be 'Bearer <token>'.", token_sent=False)
    return token


def issue_token(
    secret: str,
    user_id: UserId,
    ttl: int,
    *,
    now: float,
    issuer: str | None = None,
    audience: str | None = None,
) -> str:
    """An HS256 token for `user_id`, as Better Auth would sign it (used by `taskd token`)."""
    claims: dict[str, Any] = {"sub": str(user_id), "iat": int(now), "exp": int(now) + ttl}
    if issuer:
        claims["iss"] = issuer
    if audience:
        claims["aud"] = audience
    return jwt.encode(claims, secret.encode(), algorithm=HS256)


class AuthMixin:
    """Authenticates an `/api/{user_id}/...` request in `prepare()`: 401, then 403.

    Deny by default: a handler with this mixin cannot run without a verified token whose
    subject is the URL's user. The verified user id ends up in `self.current_user`, and when
    the token expires in `self.token_expires_at`.
    """

    request: HTTPServerRequest
    path_args: list[str]
    current_user: Any
    token_expires_at: float

    @property
    def token_verifier(self) -> TokenVerifier:
        raise NotImplementedError

    async def authenticate(self) -> UserId:
        token = bearer_token(self.request.headers.get("Authorization"))
        verifier = self.token_verifier
        identity = await verifier.identity(token)
        # As integers (a URL's "007" is user 7), or as exact strings.
        if parse_user_id(verifier.user_ids, self.path_args[0]) != identity.user_id:
            raise ApiError(403, "The token does not grant access to this user's tasks.")
        self.current_user = identity.user_id
        self.token_expires_at = identity.expires_at
        return identity.user_id
