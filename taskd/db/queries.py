"""Loads the named queries of `sql/*.sql` and refuses any that does not bind `%(user_id)s`.

A file holds blocks that start with `-- name: NAME` (a query) or `-- fragment: NAME` (SQL text
that queries and later fragments include as `{NAME}`). Comments document the blocks.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from taskd.user_ids import UserId

USER_ID_PARAM = "%(user_id)s"

_HEADER = re.compile(r"^--\s*(name|fragment):\s*([a-z_][a-z0-9_]*)\s*$", re.MULTILINE)
_PARAM = re.compile(r"%\((\w+)\)s")


class QueryLoadError(Exception):
    """The SQL files break a rule of the loader; raised at import, before serving anything."""


@dataclass(frozen=True)
class Query:
    name: str
    sql: str
    params: frozenset[str]

    def variant(self, name: str, **parts: str) -> Query:
        """The query with `{part}` placeholders filled from constants chosen by the caller."""
        return make_query(name, self.sql.format(**parts))

    def bind(self, *, user_id: UserId, **params: Any) -> dict[str, Any]:
        params["user_id"] = user_id
        return params


def make_query(name: str, sql: str) -> Query:
    if USER_ID_PARAM not in sql:
        raise QueryLoadError(f"query {name!r} does not bind {USER_ID_PARAM}")
    return Query(name, sql, frozenset(_PARAM.findall(sql)))


def parse_queries(text: str) -> dict[str, Query]:
    """Parse one file's blocks into queries, with fragments substituted."""
    blocks = _HEADER.split(text)[1:]
    fragments: dict[str, str] = {}
    raw: dict[str, str] = {}
    for kind, name, body in zip(blocks[::3], blocks[1::3], blocks[2::3], strict=True):
        sql = _strip_sql(body)
        if not sql:
            raise QueryLoadError(f"{kind} {name!r} is empty")
        target = fragments if kind == "fragment" else raw
        if name in target:
            raise QueryLoadError(f"{kind} {name!r} is defined twice")
        target[name] = _include(sql, fragments) if kind == "fragment" else sql
    return {name: make_query(name, _include(sql, fragments)) for name, sql in raw.items()}


def _include(sql: str, fragments: dict[str, str]) -> str:
    for name, fragment_sql in fragments.items():
        sql = sql.replace("{" + name + "}", fragment_sql)
    return sql


# A string literal (kept) or a comment (dropped), so a parameter named only in a comment
# cannot satisfy the user_id rule.
_LITERAL_OR_COMMENT = re.compile(r"('(?:[^']|'')*')|--[^\n]*|/\*.*?\*/", re.DOTALL)


def _strip_sql(body: str) -> str:
    sql = _LITERAL_OR_COMMENT.sub(lambda match: match.group(1) or "", body)
    lines = [line.rstrip() for line in sql.strip().splitlines() if line.strip()]
    return "\n".join(lines).rstrip(";").strip()


# Installed inside the package (setup.py maps the top-level sql/ there).
SQL_DIR = Path(__file__).parent.parent / "sql"


def load_queries(filename: str) -> dict[str, Query]:
    text = (SQL_DIR / filename).read_text(encoding="utf-8")
    try:
        return parse_queries(text)
    except QueryLoadError as error:
        raise QueryLoadError(f"sql/{filename}: {error}") from None
