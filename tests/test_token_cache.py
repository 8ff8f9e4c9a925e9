"""Verified tokens are remembered, but never past their expiry (CONTRACT §3)."""

from __future__ import annotations

import asyncio
import time

import jwt
import pytest
from conftest import SECRET

from taskd.auth import TokenVerifier, Unauthorized


def token_expiring_in(seconds: float, user: int = 7) -> str:
    claims = {"sub": str(user), "exp": int(time.time() + seconds)}
    return jwt.encode(claims, SECRET.encode(), algorithm="HS256")


async def test_a_remembered_token_is_refused_once_it_expires():
    verifier = TokenVerifier(SECRET, leeway=0)
    token = token_expiring_in(1.2)
    assert await verifier.user_id(token) == 7
    assert await verifier.user_id(token) == 7
    await asyncio.sleep(
        max(0.0, jwt.decode(token, options={"verify_signature": False})["exp"] - time.time() + 0.05)
    )
    with pytest.raises(Unauthorized):
        await verifier.user_id(token)


async def test_the_leeway_still_counts_for_a_remembered_token():
    verifier = TokenVerifier(SECRET, leeway=30)
    token = token_expiring_in(-5)
    assert await verifier.user_id(token) == 7
    assert await verifier.user_id(token) == 7


async def test_a_refused_token_is_not_remembered_as_valid():
    verifier = TokenVerifier(SECRET, leeway=0)
    forged = jwt.encode({"sub": "7", "exp": int(time.time()) + 60}, b"another secret" * 3, "HS256")
    for _ in range(2):
        with pytest.raises(Unauthorized):
            await verifier.user_id(forged)


async def test_each_token_is_remembered_for_its_own_user():
    verifier = TokenVerifier(SECRET, leeway=0)
    first, second = token_expiring_in(60, user=1), token_expiring_in(60, user=2)
    assert [await verifier.user_id(token) for token in (first, second, first, second)] == [
        1,
        2,
        1,
        2,
    ]
