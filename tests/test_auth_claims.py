"""CONTRACT §3: `iss` and `aud` are checked when TASKD_JWT_ISSUER / TASKD_JWT_AUDIENCE are set."""

from __future__ import annotations

from typing import Any

import pytest
from conftest import body, make_token

from taskd.app import make_app
from taskd.config import Settings

ISSUER = "https://auth.example"
AUDIENCE = "https://api.example"


@pytest.fixture
def app(settings: Settings, pool: Any) -> Any:
    return make_app(settings.replace(jwt_issuer=ISSUER, jwt_audience=AUDIENCE), pool)


async def test_a_token_with_the_configured_iss_and_aud_is_accepted(api, user_id):
    token = make_token(user_id, iss=ISSUER, aud=AUDIENCE)
    response = await api.request("GET", f"/api/{user_id}/tasks", token=token)
    assert response.code == 200, response.body
    assert response.headers["Content-Type"] == "application/json"
    assert body(response) == []


async def test_an_aud_list_that_includes_the_configured_audience_is_accepted(api, user_id):
    token = make_token(user_id, iss=ISSUER, aud=["https://other.example", AUDIENCE])
    response = await api.request("GET", f"/api/{user_id}/tasks", token=token)
    assert response.code == 200, response.body
    assert body(response) == []


@pytest.mark.parametrize(
    "claims",
    [
        {"iss": "https://evil.example", "aud": AUDIENCE},
        {"iss": ISSUER + "/", "aud": AUDIENCE},
        {"iss": None, "aud": AUDIENCE},
        {"iss": ISSUER, "aud": "https://other.example"},
        {"iss": ISSUER, "aud": ["https://other.example"]},
        {"iss": ISSUER, "aud": None},
        {"iss": None, "aud": None},
    ],
    ids=[
        "wrong iss",
        "iss with a trailing slash",
        "missing iss",
        "wrong aud",
        "aud list without ours",
        "missing aud",
        "neither",
    ],
)
async def test_a_wrong_or_missing_iss_or_aud_is_401(api, user_id, claims):
    response = await api.request(
        "GET", f"/api/{user_id}/tasks", token=make_token(user_id, **claims)
    )
    assert response.code == 401
    assert response.headers["Content-Type"] == "application/problem+json"
    assert 'error="invalid_token"' in response.headers["WWW-Authenticate"]
    problem = body(response)
    assert problem == {
        "type": "about:blank",
        "title": "Unauthorized",
        "status": 401,
        "detail": problem["detail"],
    }
