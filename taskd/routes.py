"""Route patterns as the templates people read: `/api/([^/]+)/tasks` is `/api/{user_id}/tasks`.

The access log and the metrics label a request with its route's template, never with its raw
URL (which would grow label values without bound), and the OpenAPI paths are these templates.
"""

from __future__ import annotations

import re

# A capture group is named after the path segment before it: /tasks/(id), /api/(user_id).
PARAMETER_NAMES = {"api": "user_id", "tasks": "id", "docs": "asset"}
UNMATCHED = "unmatched"

_GROUP = re.compile(r"\((?:[^()\\]|\\.)*\)")
_ESCAPE = re.compile(r"\\(.)")
_PARAMETER = re.compile(r"\{(\w+)\}")


def template(pattern: str) -> str:
    parts: list[str] = []
    position = 0
    for group in _GROUP.finditer(pattern):
        literal = _ESCAPE.sub(r"\1", pattern[position : group.start()])
        segment = literal.rstrip("/").rpartition("/")[2]
        if segment not in PARAMETER_NAMES:
            raise ValueError(f"route {pattern!r}: name the parameter after {segment!r}")
        parts += [literal, "{" + PARAMETER_NAMES[segment] + "}"]
        position = group.end()
    parts.append(_ESCAPE.sub(r"\1", pattern[position:]))
    return "".join(parts)


def parameters(path: str) -> list[str]:
    """The names of a template's parameters, in order."""
    return _PARAMETER.findall(path)
