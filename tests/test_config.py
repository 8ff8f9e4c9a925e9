"""CONTRACT §5: settings from the environment, flags on top, one-line errors; CORS origins."""

from __future__ import annotations

from typing import Any

import pytest
from conftest import SECRET, body, make_token

from taskd.app import make_app
from taskd.config import ConfigError, Settings, load_settings

ORIGIN = "https://app.example"


def test_defaults():
    settings = load_settings(environ={})
    assert settings.host == "127.0.0.1"
    assert settings.port == 8000
    assert settings.pool_max == 20
    assert settings.workers == 1
    assert settings.jwt_leeway == 30
    assert settings.jwt_issuer is None
    assert settings.jwt_audience is None
    assert settings.cors_origins == ()
    assert settings.database_url is None
    assert settings.embedded is True
    assert settings.secret is None
    assert settings.user_ids == "integer"


def test_the_environment_sets_every_value():
    settings = load_settings(
        environ={
            "DATABASE_URL": "postgresql://taskd@db.example/taskd",
            "BETTER_AUTH_SECRET": SECRET,
            "API_HOST": "0.0.0.0",
            "API_PORT": "9000",
            "CORS_ORIGINS": "https://a.example, https://b.example/",
            "TASKD_POOL_MIN": "3",
            "TASKD_POOL_MAX": "40",
            "TASKD_WORKERS": "4",
            "TASKD_JWT_LEEWAY": "5",
            "TASKD_JWT_ISSUER": "https://auth.example",
            "TASKD_JWT_AUDIENCE": "taskd",
            "TASKD_USER_IDS": "text",
        }
    )
    assert settings.database_url == "postgresql://taskd@db.example/taskd"
    assert settings.embedded is False
    assert settings.secret == SECRET
    assert settings.host == "0.0.0.0"
    assert settings.port == 9000
    assert settings.cors_origins == ("https://a.example", "https://b.example")
    assert settings.pool_min == 3
    assert settings.pool_max == 40
    assert settings.workers == 4
    assert settings.jwt_leeway == 5
    assert settings.jwt_issuer == "https://auth.example"
    assert settings.jwt_audience == "taskd"
    assert settings.user_ids == "text"


def test_overrides_beat_the_environment():
    settings = load_settings(
        environ={"API_PORT": "9000", "API_HOST": "10.0.0.1", "TASKD_JWT_LEEWAY": "5"},
        overrides={"port": "9001", "host": None, "jwt_leeway": "0"},
    )
    assert settings.port == 9001
    assert settings.host == "10.0.0.1"
    assert settings.jwt_leeway == 0


def test_an_override_is_validated_like_the_environment():
    with pytest.raises(ConfigError, match=r"^API_PORT"):
        load_settings(environ={"API_PORT": "9000"}, overrides={"port": "not-a-port"})


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("API_PORT", "http"),
        ("API_PORT", "80.5"),
        ("API_PORT", "70000"),
        ("API_PORT", "-1"),
        ("API_PORT", "80\n80"),
        ("TASKD_POOL_MAX", "0"),
        ("TASKD_POOL_MIN", "-1"),
        ("TASKD_WORKERS", "0"),
        ("TASKD_JWT_LEEWAY", "soon"),
        ("TASKD_JWT_LEEWAY", "-1"),
        ("BETTER_AUTH_SECRET", "s" * 31),
        ("BETTER_AUTH_SECRET", "\u00e9" * 15),
        ("DATABASE_URL", "mysql://x"),
        ("CORS_ORIGINS", "ftp://x"),
        ("CORS_ORIGINS", "https://ok.example,app.example"),
        ("TASKD_DB_TIMEOUT", "-1"),
        ("TASKD_DB_TIMEOUT", "0"),
        ("TASKD_DB_TIMEOUT", "nan"),
        ("TASKD_USER_IDS", "uuid"),
        ("TASKD_USER_IDS", "integers"),
    ],
)
def test_a_bad_value_is_a_one_line_error_naming_the_variable(variable, value):
    with pytest.raises(ConfigError) as raised:
        load_settings(environ={variable: value})
    message = str(raised.value)
    assert message.startswith(f"{variable}:"), message
    assert len(message) > len(variable) + 2
    assert "\n" not in message
    assert "\r" not in message


def test_a_rejected_secret_is_not_echoed():
    secret = "short-but-secret-value"
    with pytest.raises(ConfigError) as raised:
        load_settings(environ={"BETTER_AUTH_SECRET": secret})
    assert secret not in str(raised.value)


def test_a_secret_of_32_bytes_is_enough():
    assert load_settings(environ={"BETTER_AUTH_SECRET": "s" * 32}).secret == "s" * 32


def test_fewer_connections_than_workers_is_an_error_naming_the_pool():
    with pytest.raises(ConfigError, match=r"^TASKD_POOL_MAX:"):
        load_settings(environ={"TASKD_POOL_MAX": "2", "TASKD_WORKERS": "4"})


# CORS: browser preflight works for exactly the configured origins.


@pytest.fixture
def app(settings: Settings, pool: Any) -> Any:
    return make_app(settings.replace(cors_origins=(ORIGIN,)), pool)


def preflight(origin: str, method: str) -> dict[str, str]:
    return {
        "Origin": origin,
        "Access-Control-Request-Method": method,
        "Access-Control-Request-Headers": "authorization, content-type",
    }


def header_items(value: str) -> set[str]:
    return {item.strip().lower() for item in value.split(",")}


@pytest.mark.parametrize(
    ("path", "method"),
    [
        ("/api/1/tasks", "POST"),
        ("/api/1/tasks", "GET"),
        ("/api/1/tasks/5", "PUT"),
        ("/api/1/tasks/5", "DELETE"),
        ("/api/1/tasks/5/complete", "PATCH"),
    ],
)
async def test_a_preflight_from_an_allowed_origin_is_allowed(api, path, method):
    response = await api.request("OPTIONS", path, headers=preflight(ORIGIN, method))
    assert response.code == 204, response.body
    assert response.body == b""
    assert response.headers["Access-Control-Allow-Origin"] == ORIGIN
    assert method.lower() in header_items(response.headers["Access-Control-Allow-Methods"])
    allowed_headers = header_items(response.headers["Access-Control-Allow-Headers"])
    assert {"authorization", "content-type"} <= allowed_headers
    assert "origin" in header_items(response.headers["Vary"])
    assert "Access-Control-Allow-Credentials" not in response.headers


@pytest.mark.parametrize(
    "origin",
    [
        "https://evil.example",
        "http://app.example",
        "https://app.example.evil.example",
        "https://app.example:8443",
        "null",
    ],
)
async def test_a_preflight_from_another_origin_is_not_allowed(api, origin):
    response = await api.request("OPTIONS", "/api/1/tasks", headers=preflight(origin, "POST"))
    assert "Access-Control-Allow-Origin" not in response.headers
    assert "Access-Control-Allow-Methods" not in response.headers
    assert "Access-Control-Allow-Headers" not in response.headers


async def test_a_request_from_an_allowed_origin_carries_the_allow_origin(api, user_id):
    response = await api.request(
        "GET", f"/api/{user_id}/tasks", user=user_id, headers={"Origin": ORIGIN}
    )
    assert response.code == 200
    assert body(response) == []
    assert response.headers["Access-Control-Allow-Origin"] == ORIGIN
    assert "origin" in header_items(response.headers["Vary"])


async def test_a_created_tasks_location_and_etag_are_readable_from_an_allowed_origin(api, user_id):
    response = await api.request(
        "POST",
        f"/api/{user_id}/tasks",
        user=user_id,
        json={"title": "from the browser"},
        headers={"Origin": ORIGIN},
    )
    assert response.code == 201
    assert response.headers["Access-Control-Allow-Origin"] == ORIGIN
    assert response.headers["ETag"]
    exposed = header_items(response.headers["Access-Control-Expose-Headers"])
    assert {"location", "etag"} <= exposed


async def test_a_preflight_allows_the_conditional_and_idempotency_headers(api):
    wanted = {"if-match", "if-none-match", "idempotency-key"}
    headers = {
        **preflight(ORIGIN, "PUT"),
        "Access-Control-Request-Headers": ", ".join(["authorization", "content-type", *wanted]),
    }
    response = await api.request("OPTIONS", "/api/1/tasks/5", headers=headers)
    assert response.code == 204, response.body
    assert wanted <= header_items(response.headers["Access-Control-Allow-Headers"])


async def test_an_error_for_an_allowed_origin_is_readable_by_the_browser(api, user_id):
    token = make_token(user_id, ttl=-120)
    response = await api.request(
        "GET", f"/api/{user_id}/tasks", token=token, headers={"Origin": ORIGIN}
    )
    assert response.code == 401
    assert response.headers["Content-Type"] == "application/problem+json"
    assert response.headers["Access-Control-Allow-Origin"] == ORIGIN
    exposed = header_items(response.headers["Access-Control-Expose-Headers"])
    assert "www-authenticate" in exposed


async def test_a_request_from_another_origin_gets_no_allow_origin(api, user_id):
    response = await api.request(
        "GET", f"/api/{user_id}/tasks", user=user_id, headers={"Origin": "https://evil.example"}
    )
    assert response.code == 200
    assert "Access-Control-Allow-Origin" not in response.headers
