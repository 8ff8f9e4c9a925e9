"""Logs: one access line per request, JSON for machines and text for people, request ids, no
tokens or bodies in either."""

from __future__ import annotations

import json
import logging
import re
from typing import Any

import pytest
from conftest import OneConnectionPool, make_token

from taskd.logs import JsonFormatter, TextFormatter, formatter_for

HEX_ID = re.compile(r"[0-9a-f]{32}")


def formatted(caplog: pytest.LogCaptureFixture, formatter: logging.Formatter) -> Any:
    caplog.set_level(logging.DEBUG)

    def lines() -> list[str]:
        return [formatter.format(record) for record in caplog.records]

    return lines


@pytest.fixture
def log_lines(caplog: pytest.LogCaptureFixture) -> Any:
    """The records logged so far, as the JSON lines `taskd serve` writes to stderr."""
    return formatted(caplog, JsonFormatter())


@pytest.fixture
def text_log_lines(caplog: pytest.LogCaptureFixture) -> Any:
    """The records logged so far, as the lines `taskd serve` writes to a terminal."""
    return formatted(caplog, TextFormatter())


@pytest.mark.parametrize(
    ("log_format", "terminal", "expected"),
    [
        ("auto", True, TextFormatter),
        ("auto", False, JsonFormatter),
        ("text", False, TextFormatter),
        ("json", True, JsonFormatter),
    ],
)
def test_auto_is_text_on_a_terminal_and_json_elsewhere_unless_told(log_format, terminal, expected):
    assert type(formatter_for(log_format, terminal)) is expected


def access_entries(lines: list[str]) -> list[dict[str, Any]]:
    entries = [json.loads(line) for line in lines]
    return [entry for entry in entries if entry["logger"] == "taskd.access"]


async def test_access_line_names_route_status_duration_and_request_id(api, user_id, log_lines):
    task = await api.create(user_id, "logged")
    response = await api.request(
        "GET",
        f"/api/{user_id}/tasks/{task['id']}",
        user=user_id,
        headers={"X-Request-ID": "req-42.a:b"},
    )
    assert response.code == 200
    assert response.headers["X-Request-ID"] == "req-42.a:b"

    [entry] = [e for e in access_entries(log_lines()) if e["request_id"] == "req-42.a:b"]
    assert entry["method"] == "GET"
    assert entry["route"] == "/api/{user_id}/tasks/{id}"
    assert entry["status"] == 200
    assert isinstance(entry["duration_ms"], float) and entry["duration_ms"] >= 0
    assert entry["level"] == "info"
    assert entry["msg"] == "GET /api/{user_id}/tasks/{id} 200"
    assert str(user_id) not in json.dumps(entry)  # the raw URL is not logged
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", entry["ts"])
    assert isinstance(entry["pid"], int)


async def test_a_text_access_line_reads_route_status_duration_and_request_id(
    api, user_id, text_log_lines
):
    task = await api.create(user_id, "logged")
    response = await api.request(
        "GET", f"/api/{user_id}/tasks/{task['id']}", user=user_id, headers={"X-Request-ID": "r-7"}
    )
    assert response.code == 200
    [line] = [line for line in text_log_lines() if "request r-7" in line]
    assert re.fullmatch(
        r"\d\d:\d\d:\d\d INFO    taskd\.access: GET /api/\{user_id\}/tasks/\{id\} 200 "
        r"\(\d+\.\d ms, request r-7\)",
        line,
    ), line


@pytest.mark.parametrize("sent", [None, "", "has spaces", "x" * 129, 'quote"d', "new\\nline"])
async def test_request_id_is_generated_when_absent_or_not_sane(api, user_id, log_lines, sent):
    headers = {} if sent is None else {"X-Request-ID": sent}
    response = await api.request("GET", f"/api/{user_id}/tasks", user=user_id, headers=headers)
    assert response.code == 200
    generated = response.headers["X-Request-ID"]
    assert HEX_ID.fullmatch(generated)
    [entry] = access_entries(log_lines())
    assert entry["request_id"] == generated


async def test_errors_carry_the_request_id_too(api, user_id):
    response = await api.request("GET", f"/api/{user_id}/tasks", headers={"X-Request-ID": "e-1"})
    assert response.code == 401
    assert response.headers["X-Request-ID"] == "e-1"


async def test_unknown_paths_are_logged_as_unmatched_not_by_url(api, log_lines):
    response = await api.request("GET", "/no/such/place?secret=1")
    assert response.code == 404
    [entry] = access_entries(log_lines())
    assert (entry["route"], entry["status"]) == ("unmatched", 404)
    assert "/no/such/place" not in "".join(log_lines())


async def test_tokens_and_bodies_never_reach_the_log(api, user_id, log_lines, text_log_lines):
    token = make_token(user_id)
    forged = make_token(user_id, secret="forged-" + "f" * 40)
    marker = "body-text-that-must-not-be-logged"
    created = await api.request(
        "POST", f"/api/{user_id}/tasks", token=token, json={"title": marker, "description": marker}
    )
    assert created.code == 201
    bad = await api.request("POST", f"/api/{user_id}/tasks", token=token, json={"x": marker})
    assert bad.code == 422
    assert (await api.request("GET", f"/api/{user_id}/tasks", token=forged)).code == 401

    lines = log_lines()
    assert len(access_entries(lines)) == 3
    text = "\n".join(lines + text_log_lines())
    for secret in (token, forged, token.split(".")[2], forged.split(".")[2], marker):
        assert secret not in text


def test_an_error_is_logged_with_its_cause():
    try:
        try:
            raise ConnectionRefusedError("connection refused")
        except ConnectionRefusedError as cause:
            raise RuntimeError("cannot list tasks") from cause
    except RuntimeError as error:
        record = logging.LogRecord("taskd", logging.ERROR, __file__, 1, "failed", (), None)
        record.exc_info = (type(error), error, error.__traceback__)
    entry = json.loads(JsonFormatter().format(record))
    assert entry["level"] == "error"
    assert entry["error"]["type"] == "RuntimeError"
    assert entry["error"]["message"] == "cannot list tasks"
    assert entry["error"]["cause"] == "ConnectionRefusedError: connection refused"
    assert "direct cause" in entry["error"]["traceback"]

    first, *traceback = TextFormatter().format(record).splitlines()
    assert re.fullmatch(r"\d\d:\d\d:\d\d ERROR   taskd: failed", first), first
    assert traceback[0] == "Traceback (most recent call last):"
    assert "ConnectionRefusedError: connection refused" in traceback
    assert traceback[-1] == "RuntimeError: cannot list tasks"


class TestDatabaseOutage(OneConnectionPool):
    async def test_a_503_is_logged_with_its_cause(self, api, user_id, pool, log_lines):
        async with pool.connection():
            response = await api.request("GET", f"/api/{user_id}/tasks", user=user_id)
        assert response.code == 503
        entries = [json.loads(line) for line in log_lines()]
        [warning] = [entry for entry in entries if entry["level"] == "warning"]
        assert warning["msg"].startswith("answering 503: PoolTimeout: ")
        [access] = access_entries(log_lines())
        assert (access["status"], access["level"]) == (503, "error")
