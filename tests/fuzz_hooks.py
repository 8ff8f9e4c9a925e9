"""schemathesis hooks for `make fuzz`: every request carries a token for the user its URL names,
so generated cases reach the handlers instead of stopping at 403 (ignored_auth still strips it)."""

import os
import time

import jwt
import schemathesis

SECRET = os.environ["BETTER_AUTH_SECRET"]
MAX_USER_ID = 2**63 - 1
# Tokens for URLs that name no valid user: signed, but for some other user (a 403).
OTHER_USER = "1"


@schemathesis.auth(refresh_interval=None, retry_on=[])
class UrlUserToken:
    def get(self, case, context):
        user = (case.path_parameters or {}).get("user_id")
        valid = isinstance(user, int) and not isinstance(user, bool) and 0 < user <= MAX_USER_ID
        now = int(time.time())
        claims = {"sub": str(user) if valid else OTHER_USER, "iat": now, "exp": now + 3600}
        return jwt.encode(claims, SECRET, algorithm="HS256")

    def set(self, case, data, context):
        case.headers = case.headers or {}
        case.headers["Authorization"] = f"Bearer {data}"
