"""taskd behind the real Better Auth (npm `better-auth`, pinned in package-lock.json), in both of
its id configurations: `generateId: "serial"` (a taskd of integer user ids) and its default
(random strings: a taskd of text user ids). The JWT plugin keeps its defaults: EdDSA keys at
/api/auth/jwks, which taskd is pointed at, and tokens from GET /api/auth/token.

Users sign up and sign in as a browser does (a cookie jar keeps the session cookie), fetch their
JWT with that cookie, and drive the installed `taskd serve` with it. `make check-better-auth`
installs the Node packages (npm ci) and runs this file; `make test` leaves it out (pyproject's
norecursedirs), since it needs Node and the npm registry.
"""

from __future__ import annotations

import base64
import http.cookiejar
import json
import os
import secrets
import shutil
import subprocess
import threading
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from live import START_TIMEOUT, STOP_TIMEOUT, request, taskd

HERE = Path(__file__).parent
# Better Auth's configuration -> the kind of user ids the taskd deployment behind it chooses.
CONFIGURATIONS = {"serial": "integer", "default": "text"}


@pytest.fixture(scope="module")
def node() -> str:
    path = shutil.which("node")
    if path is None:
        pytest.fail("node is not installed: the Better Auth check needs Node.js 20 or later")
    if not (HERE / "node_modules" / "better-auth").is_dir():
        pytest.fail("tests/better_auth/node_modules is missing: run `make check-better-auth`")
    return path


@dataclass
class BetterAuthApp:
    configuration: str  # a key of CONFIGURATIONS
    url: str


@pytest.fixture
def better_auth(
    request: pytest.FixtureRequest, node: str, create_database: Any
) -> Iterator[BetterAuthApp]:
    """The Better Auth app of tests/better_auth/server.mjs on a free loopback port, its tables in
    a fresh database; stopped (SIGTERM) at teardown."""
    env = {
        **os.environ,
        "BETTER_AUTH_USER_IDS": request.param,
        "BETTER_AUTH_DATABASE_URL": create_database(),
        "BETTER_AUTH_SECRET": secrets.token_urlsafe(32),
    }
    process = subprocess.Popen(
        [node, str(HERE / "server.mjs")],
        cwd=HERE,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        yield BetterAuthApp(request.param, _announced_url(process))
    finally:
        process.terminate()
        try:
            process.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=STOP_TIMEOUT)
        for stream in (process.stdout, process.stderr):
            if stream is not None:
                stream.close()


def _announced_url(process: subprocess.Popen[str]) -> str:
    """The URL of the app's first stdout line, within START_TIMEOUT."""
    assert process.stdout is not None
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.append(process.stdout.readline()), daemon=True)
    reader.start()
    reader.join(START_TIMEOUT)
    if not lines or not lines[0]:
        process.kill()
        _, stderr = process.communicate(timeout=STOP_TIMEOUT)
        pytest.fail(f"the Better Auth app did not start:\n{stderr}")
    url: str = json.loads(lines[0])["url"]
    return url


class Browser:
    """A user agent on the Better Auth app's pages: its cookie jar keeps the session cookie."""

    def __init__(self, app_url: str) -> None:
        self.app_url = app_url
        self.cookies = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.cookies))

    def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        headers = {"Origin": self.app_url}
        if data is not None:
            headers["Content-Type"] = "application/json"
        call = urllib.request.Request(
            self.app_url + path, data=data, headers=headers, method=method
        )
        with self.opener.open(call, timeout=10) as response:
            return json.loads(response.read())

    def sign_up_and_in(self, email: str) -> str:
        """Signs up, signs in with a fresh session; returns the user's id."""
        password = secrets.token_urlsafe(16)
        self.call(
            "POST", "/api/auth/sign-up/email", {"email": email, "password": password, "name": email}
        )
        self.cookies.clear()
        signed_in = self.call(
            "POST", "/api/auth/sign-in/email", {"email": email, "password": password}
        )
        assert [cookie.name for cookie in self.cookies] == ["better-auth.session_token"]
        user_id: str = signed_in["user"]["id"]
        return user_id

    def token(self) -> str:
        """The JWT for the signed-in session, as authClient.token() fetches it."""
        token: str = self.call("GET", "/api/auth/token")["token"]
        return token


def unverified_part(token: str, index: int) -> dict[str, Any]:
    part = token.split(".")[index]
    decoded: dict[str, Any] = json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))
    return decoded


@pytest.mark.parametrize("better_auth", list(CONFIGURATIONS), indirect=True)
def test_better_auth_users_use_taskd_with_their_jwts(
    better_auth: BetterAuthApp,
    create_database: Any,
    environ: dict[str, str],
    workdir: Path,
    spawn: Any,
) -> None:
    user_ids = CONFIGURATIONS[better_auth.configuration]
    env = {
        **environ,
        "DATABASE_URL": create_database(),
        "TASKD_USER_IDS": user_ids,
        "TASKD_JWKS_URL": f"{better_auth.url}/api/auth/jwks",
        "TASKD_JWT_ISSUER": better_auth.url,
        "TASKD_JWT_AUDIENCE": better_auth.url,
    }
    migrated = taskd("migrate", env=env, cwd=workdir)
    assert migrated.returncode == 0, migrated.stderr
    base_url = spawn("serve", "--port", "0", env=env).base_url()

    alice, bob = Browser(better_auth.url), Browser(better_auth.url)
    alice_id = alice.sign_up_and_in(f"alice-{secrets.token_hex(4)}@example.com")
    bob_id = bob.sign_up_and_in(f"bob-{secrets.token_hex(4)}@example.com")
    alice_token, bob_token = alice.token(), bob.token()
    assert unverified_part(alice_token, 0)["alg"] == "EdDSA"
    assert unverified_part(alice_token, 1)["sub"] == alice_id
    # The id in taskd's bodies: a number with serial ids, Better Auth's string otherwise.
    alice_user_id: int | str = int(alice_id) if user_ids == "integer" else alice_id
    if user_ids == "text":
        assert len(alice_id) == 32 and alice_id.isalnum() and alice_id.isascii()

    tasks = f"{base_url}/api/{alice_id}/tasks"
    status, headers, answer = request(
        "POST", tasks, token=alice_token, json_body={"title": "signed in with Better Auth"}
    )
    assert status == 201, answer
    task = json.loads(answer)
    assert task["user_id"] == alice_user_id
    assert task["title"] == "signed in with Better Auth"
    assert headers["Location"] == f"/api/{alice_id}/tasks/{task['id']}"
    status, _, answer = request("GET", tasks, token=alice_token)
    assert (status, json.loads(answer)) == (200, [task])
    status, _, answer = request("GET", f"{tasks}/{task['id']}", token=alice_token)
    assert (status, json.loads(answer)) == (200, task)

    # Each user sees only their own tasks: another user's URL is a 403 either way round, and
    # another user's task id under one's own URL is a 404.
    assert request("GET", tasks, token=bob_token)[0] == 403
    assert request("GET", f"{tasks}/{task['id']}", token=bob_token)[0] == 403
    assert request("GET", f"{base_url}/api/{bob_id}/tasks", token=alice_token)[0] == 403
    status, _, answer = request("GET", f"{base_url}/api/{bob_id}/tasks", token=bob_token)
    assert (status, json.loads(answer)) == (200, [])
    assert request("GET", f"{base_url}/api/{bob_id}/tasks/{task['id']}", token=bob_token)[0] == 404

    # What a client generated from the served document expects a user id to be.
    document = json.loads(request("GET", f"{base_url}/openapi.json")[2])
    user_id_schema = document["components"]["schemas"]["Task"]["properties"]["user_id"]
    assert user_id_schema["type"] == ("integer" if user_ids == "integer" else "string")
