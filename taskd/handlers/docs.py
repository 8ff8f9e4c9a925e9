"""The API's documentation (CONTRACT §7): `/openapi.json`, and `/docs` rendering it.

Swagger UI comes from the swagger-ui-bundle package and is served by taskd itself: no request
leaves the machine (the Content-Security-Policy makes the browser hold the page to that). Public
on purpose: documentation needs no token.
"""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path

from swagger_ui_bundle import swagger_ui_path

from taskd.handlers.base import BaseHandler, public

OPENAPI_TYPE = "application/json"
# The browser may load the page's files from taskd alone; `data:` images are Swagger UI's icons.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
)
ASSET_MAX_AGE = 24 * 3600

PAGE = b"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>taskd API</title>
<link rel="icon" type="image/png" href="/docs/favicon-32x32.png">
<link rel="stylesheet" href="/docs/swagger-ui.css">
</head>
<body>
<div id="swagger-ui"></div>
<script src="/docs/swagger-ui-bundle.js"></script>
<script src="/docs/taskd-docs.js"></script>
</body>
</html>
"""

# Swagger UI 4 (the one swagger-ui-bundle ships) accepts only 3.0.x in a document's `openapi`
# field. taskd's document uses only what OpenAPI 3.0 and 3.1 share (a test validates it as
# both), so the page hands it over relabelled rather than keeping a second document.
INITIALIZER = b"""fetch("/openapi.json")
  .then((response) => response.json())
  .then((document) => {
    window.ui = SwaggerUIBundle({
      spec: { ...document, openapi: "3.0.3" },
      dom_id: "#swagger-ui",
      deepLinking: true,
      validatorUrl: null,
    });
  });
"""

# What the page loads from /docs/, and the media type of each.
ASSETS = {
    "swagger-ui.css": "text/css; charset=utf-8",
    "swagger-ui-bundle.js": "text/javascript; charset=utf-8",
    "favicon-32x32.png": "image/png",
    "taskd-docs.js": "text/javascript; charset=utf-8",
}


@cache
def asset(name: str) -> bytes:
    if name == "taskd-docs.js":
        return INITIALIZER
    return (Path(swagger_ui_path) / name).read_bytes()


@public
class OpenApiHandler(BaseHandler):
    def get(self) -> None:
        document: bytes = self.settings["openapi"]
        self.send_json(document)


class _PageHandler(BaseHandler):
    def set_default_headers(self) -> None:
        super().set_default_headers()
        self.set_header("Content-Security-Policy", CONTENT_SECURITY_POLICY)


@public
class DocsHandler(_PageHandler):
    def get(self) -> None:
        self.set_header("Content-Type", "text/html; charset=utf-8")
        self.finish(PAGE)


@public
class DocsAssetHandler(_PageHandler):
    def get(self, name: str) -> None:
        self.set_header("Content-Type", ASSETS[name])
        self.set_header("Cache-Control", f"public, max-age={ASSET_MAX_AGE}")
        self.finish(asset(name))


ROUTES = [
    (r"/openapi\.json", OpenApiHandler),
    (r"/docs", DocsHandler),
    (r"/docs/(" + "|".join(re.escape(name) for name in ASSETS) + ")", DocsAssetHandler),
]
