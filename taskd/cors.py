"""CORS: which browser origins may read taskd's answers, and the headers that tell the browser.

taskd is bearer-only: a page sends its token in `Authorization`, never a cookie, so no answer
carries `Access-Control-Allow-Credentials` and a `credentials: "include"` fetch is refused by the
browser (README, Browsers).
"""

from __future__ import annotations

# What a page may send (a preflight's Access-Control-Request-Headers) and may read back.
REQUEST_HEADERS = (
    "Authorization, Content-Type, If-Match, If-None-Match, Idempotency-Key, Last-Event-ID, "
    "X-Request-ID"
)
EXPOSED_HEADERS = "ETag, Location, Link, Retry-After, WWW-Authenticate, X-Request-ID"


def response_headers(origin: str | None, allowed: tuple[str, ...]) -> dict[str, str]:
    """The CORS headers of any answer to a request from `origin`, CORS_ORIGINS being `allowed`.

    `origin` is echoed only when it is exactly one of `allowed`, so a value read from an
    unparsed header block (the 431) cannot put anything else into the answer.
    """
    if not allowed:
        return {}
    if origin not in allowed:
        return {"Vary": "Origin"}
    return {
        "Vary": "Origin",
        "Access-Control-Allow-Origin": origin,
        "Access-Control-Expose-Headers": EXPOSED_HEADERS,
    }
