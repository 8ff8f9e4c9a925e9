"""A small keep-alive HTTP client for seeding tasks and probing the API before the load."""

from __future__ import annotations

import http.client
import json
import re
from types import TracebackType
from typing import Any

from harness import HOST, BenchError

TIMEOUT_S = 30.0
BODY_EXCERPT_CHARS = 300
# taskd's counter of list-page-cache lookups, one sample per outcome (hit, patch, miss).
LIST_CACHE_SAMPLE = re.compile(r'^taskd_list_cache_lookups_total\{outcome="(\w+)"\} (\S+)$', re.M)


def list_cache_lookups(port: int) -> dict[str, int]:
    """taskd's list-page-cache lookups so far, by outcome, from its /metrics (all workers)."""
    connection = http.client.HTTPConnection(HOST, port, timeout=TIMEOUT_S)
    try:
        connection.request("GET", "/metrics")
        response = connection.getresponse()
        text = response.read().decode()
    finally:
        connection.close()
    if response.status != 200:
        raise BenchError(f"GET /metrics answered {response.status}")
    return {outcome: int(float(value)) for outcome, value in LIST_CACHE_SAMPLE.findall(text)}


class ApiClient:
    def __init__(self, port: int, user_id: int, token: str) -> None:
        self._port = port
        self._path = f"/api/{user_id}/tasks"
        self._token = token
        self._connection: http.client.HTTPConnection | None = None

    def __enter__(self) -> ApiClient:
        return self

    def __exit__(
        self,
        typ: type[BaseException] | None,
        value: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    def _request(self, method: str, body: dict[str, Any] | None = None) -> tuple[int, bytes]:
        headers = {"Authorization": f"Bearer {self._token}"}
        payload = None
        if body is not None:
            payload = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        if self._connection is None:
            self._connection = http.client.HTTPConnection(HOST, self._port, timeout=TIMEOUT_S)
        self._connection.request(method, self._path, payload, headers)
        response = self._connection.getresponse()
        return response.status, response.read()

    def _expect(self, method: str, status: int, body: dict[str, Any] | None = None) -> bytes:
        answered, content = self._request(method, body)
        if answered != status:
            excerpt = content[:BODY_EXCERPT_CHARS].decode(errors="replace")
            raise BenchError(f"{method} {self._path} answered {answered}, not {status}: {excerpt}")
        return content

    def answers(self) -> bool:
        """Whether listing tasks succeeds: the readiness probe."""
        try:
            status, _ = self._request("GET")
        except (OSError, http.client.HTTPException):
            self.close()
            return False
        return status == 200

    def create_task(self, title: str, description: str) -> int:
        content = self._expect("POST", 201, {"title": title, "description": description})
        return int(json.loads(content)["id"])

    def list_body(self) -> bytes:
        return self._expect("GET", 200)
