"""`taskd smoke`: after a deploy, drive a running taskd through every endpoint and the auth
failures (CONTRACT §6), one PASS/FAIL line per step, then a summary.

The task it creates is deleted again, also when a step fails. HTTP goes through the standard
library alone, so the smoke test needs nothing a deployed taskd does not already have.
"""

from __future__ import annotations

import http.client
import json
import secrets
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import asdict, dataclass
from email.message import Message
from typing import Any
from urllib.parse import urlencode

from taskd.auth import issue_token
from taskd.user_ids import INTEGER, MAX_ID, TEXT, TEXT_ID_MAX_LENGTH, UserId

TOKEN_TTL = 300
# User ids no real account is given, so the task the smoke test creates is nobody's: the
# largest integer id, and a text id twice as long as Better Auth's.
DEFAULT_USER_IDS: dict[str, UserId] = {
    INTEGER: MAX_ID,
    TEXT: "taskdSmokeTest".ljust(TEXT_ID_MAX_LENGTH, "0"),
}


@dataclass
class Response:
    status: int
    headers: Message  # names are case-insensitive
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Step:
    name: str
    method: str
    path: str
    expected: int
    status: int | None = None
    passed: bool = False
    detail: str = ""
    ms: float = 0.0

    def line(self) -> str:
        got = "no response" if self.status is None else str(self.status)
        verdict = "PASS" if self.passed else "FAIL"
        text = f"{verdict}  {self.name}: {self.method} {self.path} -> {got}"
        if not self.passed and self.status is not None and self.status != self.expected:
            text += f" (expected {self.expected})"
        if self.detail:
            text += f": {self.detail}"
        return f"{text} [{self.ms:.0f} ms]"


# A check looks at a response that had the expected status and returns what is wrong, or "".
Check = Callable[[Response], str]


def base_url_of(url: str) -> str:
    """The server's URL without a trailing slash; only http:// and https:// are allowed."""
    if not url.startswith(("http://", "https://")):
        raise ValueError(f"must be an http:// or https:// URL, got {url!r}")
    return url.rstrip("/")


def _problem_detail(response: Response) -> str:
    try:
        detail = response.json().get("detail", "")
    except (ValueError, AttributeError):
        return ""
    return str(detail)


class SmokeTest:
    def __init__(
        self,
        base_url: str,
        user_id: UserId,
        token: str,
        *,
        timeout: float = 10.0,
        on_step: Callable[[Step], None] = lambda step: None,
    ) -> None:
        self.base_url = base_url_of(base_url)
        self.user_id = user_id
        self.token = token
        self.timeout = timeout
        self.on_step = on_step
        self.steps: list[Step] = []

    @property
    def passed(self) -> bool:
        return all(step.passed for step in self.steps)

    def _send(self, method: str, path: str, token: str | None, body: Any) -> Response:
        headers = {"Accept": "application/json"}
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        # An http(s) URL: base_url_of checked the scheme.
        url = self.base_url + path
        request = urllib.request.Request(url, data, headers, method=method)  # noqa: S310
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as answer:  # noqa: S310
                return Response(answer.status, answer.headers, answer.read())
        except urllib.error.HTTPError as error:
            try:
                return Response(error.code, error.headers, error.read())
            finally:
                error.close()

    def step(
        self,
        name: str,
        method: str,
        path: str,
        expected: int,
        *,
        token: str | None = None,
        body: Any = None,
        check: Check | None = None,
    ) -> Response | None:
        """Send one request and record whether it answered as expected."""
        step = Step(name, method, path, expected)
        self.steps.append(step)
        started = time.monotonic()
        try:
            response: Response | None = self._send(method, path, token, body)
        except (OSError, http.client.HTTPException) as error:
            step.detail = str(getattr(error, "reason", error))
            response = None
        step.ms = (time.monotonic() - started) * 1000
        if response is not None:
            step.status = response.status
            step.detail = self._verdict(response, expected, check)
            step.passed = not step.detail
        self.on_step(step)
        return response if step.passed else None

    @staticmethod
    def _verdict(response: Response, expected: int, check: Check | None) -> str:
        """What is wrong with the response ("" when nothing is)."""
        if response.status != expected:
            return _problem_detail(response)
        try:
            return check(response) if check else ""
        except (ValueError, KeyError, TypeError) as error:
            return f"unexpected body: {error!r}"

    def run(self) -> bool:
        user = self.user_id
        tasks = f"/api/{user}/tasks"
        other = another_user(user)
        forged = issue_token(secrets.token_urlsafe(48), user, TOKEN_TTL, now=time.time())

        self.step("liveness", "GET", "/healthz", 200)
        self.step("readiness", "GET", "/readyz", 200)
        self.step(
            "a request without a token is refused",
            "GET",
            tasks,
            401,
            check=lambda r: "" if "WWW-Authenticate" in r.headers else "no WWW-Authenticate",
        )
        self.step("a forged token is refused", "GET", tasks, 401, token=forged)
        self.step(
            "another user's tasks are forbidden",
            "GET",
            f"/api/{other}/tasks",
            403,
            token=self.token,
        )
        title = f"taskd smoke {secrets.token_hex(6)}"
        created = self.step(
            "create a task",
            "POST",
            tasks,
            201,
            token=self.token,
            body={"title": title, "description": "made by taskd smoke; deleted at its end"},
            check=lambda r: _check_created(r, user, title),
        )
        if created is None:
            return False
        task = created.json()
        try:
            self._follow_up(tasks, task)
        finally:
            self._clean_up(f"{tasks}/{task['id']}")
        return self.passed

    def _follow_up(self, tasks: str, task: dict[str, Any]) -> None:
        item = f"{tasks}/{task['id']}"
        self.step(
            "list finds it",
            "GET",
            f"{tasks}?{urlencode({'q': task['title']})}",
            200,
            token=self.token,
            check=lambda r: "" if r.json() == [task] else f"listed {r.json()!r}",
        )
        self.step(
            "get it",
            "GET",
            item,
            200,
            token=self.token,
            check=lambda r: "" if r.json() == task else f"got {r.json()!r}",
        )
        self._stream_step(tasks, item)
        renamed = task["title"] + " (renamed)"
        self.step(
            "update it",
            "PUT",
            item,
            200,
            token=self.token,
            body={"title": renamed},
            check=lambda r: "" if r.json()["title"] == renamed else "the title did not change",
        )
        self.step(
            "toggle its completion",
            "PATCH",
            f"{item}/complete",
            200,
            token=self.token,
            check=lambda r: "" if r.json()["is_completed"] is True else "is_completed is not true",
        )
        self.step("delete it", "DELETE", item, 204, token=self.token)
        self.step("it is gone", "GET", item, 404, token=self.token)

    def _stream_step(self, tasks: str, item: str) -> None:
        """Live updates: a stream's first event comes at once, and a change made on another
        connection arrives on it as an event."""
        path = f"{tasks}/events"
        step = Step("live updates push a change", "GET", path, 200)
        self.steps.append(step)
        started = time.monotonic()
        headers = {"Accept": "text/event-stream", "Authorization": f"Bearer {self.token}"}
        # An http(s) URL: base_url_of checked the scheme.
        request = urllib.request.Request(self.base_url + path, headers=headers)  # noqa: S310
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as stream:  # noqa: S310
                step.status = stream.status
                step.detail = _stream_detail(stream, lambda: self._touch(item))
        except urllib.error.HTTPError as error:
            step.status = error.code
            step.detail = _problem_detail(Response(error.code, error.headers, error.read()))
            error.close()
        except (OSError, http.client.HTTPException, ValueError, KeyError) as error:
            step.detail = str(getattr(error, "reason", error))
        step.passed = step.status == 200 and not step.detail
        step.ms = (time.monotonic() - started) * 1000
        self.on_step(step)

    def _touch(self, item: str) -> dict[str, Any]:
        """Change the task on a connection of its own; the task as changed."""
        response = self._send("PATCH", f"{item}/complete", self.token, {"is_completed": False})
        if response.status != 200:
            raise ValueError(f"PATCH {item}/complete answered {response.status}")
        task: dict[str, Any] = response.json()
        return task

    def _clean_up(self, item: str) -> None:
        """Delete the task unless a step already did."""
        deleted = any(s.name == "delete it" and s.passed for s in self.steps)
        if not deleted:
            self.step("clean up", "DELETE", item, 204, token=self.token)

    def report(self) -> dict[str, Any]:
        failed = sum(not step.passed for step in self.steps)
        return {
            "url": self.base_url,
            "user_id": self.user_id,
            "passed": self.passed,
            "summary": {"passed": len(self.steps) - failed, "failed": failed},
            "steps": [asdict(step) for step in self.steps],
        }

    def summary(self) -> str:
        counts = self.report()["summary"]
        verdict = "PASS" if self.passed else "FAIL"
        return (
            f"{verdict}: {counts['passed']} passed, {counts['failed']} failed "
            f"against {self.base_url} as user {self.user_id}"
        )


def _next_event(stream: Any) -> dict[str, Any]:
    """The data of the stream's next event, past heartbeat comments."""
    data: list[str] = []
    while True:
        line = stream.readline().decode()
        if not line:
            raise ValueError("the stream ended")
        line = line.rstrip("\n")
        if line.startswith("data:"):
            data.append(line[5:].removeprefix(" "))
        elif not line and data:
            event: dict[str, Any] = json.loads("\n".join(data))
            return event


def _stream_detail(stream: Any, change: Callable[[], dict[str, Any]]) -> str:
    """What is wrong with an open event stream that `change()` should show up on ("" if
    nothing)."""
    media_type = stream.headers.get("Content-Type", "")
    if media_type != "text/event-stream":
        return f"Content-Type is {media_type!r}"
    first = _next_event(stream)
    if set(first) != {"tasks", "deleted", "next", "has_more"}:
        return f"the first event is {first!r}"
    changed = change()
    pushed = _next_event(stream)
    if changed not in pushed["tasks"]:
        return f"the change did not arrive: {pushed!r}"
    return ""


def another_user(user: UserId) -> UserId:
    """A user id of the same kind that is not `user`."""
    if isinstance(user, int):
        return user - 1 if user == MAX_ID else user + 1
    return user[:-1] + ("b" if user.endswith("a") else "a")


def _check_created(response: Response, user: UserId, title: str) -> str:
    task = response.json()
    location = response.headers.get("Location")
    if location != f"/api/{user}/tasks/{task['id']}":
        return f"Location is {location!r}"
    if (task["title"], task["user_id"], task["is_completed"]) != (title, user, False):
        return f"created {task!r}"
    return ""
