"""CONTRACT §7: /docs renders the document with no request leaving the machine."""

from __future__ import annotations

import re
from pathlib import Path

from swagger_ui_bundle import swagger_ui_path

from taskd.handlers.docs import ASSETS

EXTERNAL_URL = re.compile(rb"https?://")
REFERENCE = re.compile(rb'(?:src|href)="([^"]*)"')


async def test_the_page_and_its_files_come_from_taskd_alone(api):
    page = await api.request("GET", "/docs")
    assert page.code == 200
    assert page.headers["Content-Type"] == "text/html; charset=utf-8"
    assert not EXTERNAL_URL.search(page.body)
    policy = page.headers["Content-Security-Policy"]
    assert "default-src 'self'" in policy
    assert "http" not in policy

    references = [reference.decode() for reference in REFERENCE.findall(page.body)]
    assert sorted(references) == sorted(f"/docs/{name}" for name in ASSETS)
    for reference in references:
        response = await api.request("GET", reference)
        assert response.code == 200, reference
        name = reference.removeprefix("/docs/")
        assert response.headers["Content-Type"] == ASSETS[name]
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert response.headers["Content-Security-Policy"] == policy
        if name == "taskd-docs.js":
            script = response.body
        else:
            # Swagger UI's own files, exactly as the pip package installed them.
            assert response.body == (Path(swagger_ui_path) / name).read_bytes()

    # taskd's script loads taskd's document and turns off the validator badge, which would
    # otherwise send the document to validator.swagger.io.
    assert not EXTERNAL_URL.search(script)
    assert b'fetch("/openapi.json")' in script
    assert b"validatorUrl: null" in script


async def test_only_the_pages_files_are_served(api):
    for path in ("/docs/index.html", "/docs/../setup.py", "/docs/swagger-ui.js"):
        assert (await api.request("GET", path)).code == 404
