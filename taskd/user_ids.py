"""User ids: which strings name a user, in a deployment of integer ids or of text ids.

A deployment's kind is chosen once, when its database is first migrated (TASKD_USER_IDS), and
recorded there as the type of `users.id` (migration 0009). Integer ids are what Better Auth
issues with `generateId: "serial"`: a positive 64-bit integer in decimal, compared as a number.
Text ids are Better Auth's default: `generateId()` draws 32 characters from a-z, A-Z and 0-9
(@better-auth/core, src/utils/id.ts). taskd accepts 1 to 64 of those characters, compared
exactly: room for an app's own length, and still nothing a URL path, a header or a log line
would have to escape. The database's CHECK on `users.id` (migration 0009) is the same grammar.
"""

from __future__ import annotations

import re

INTEGER = "integer"
TEXT = "text"
KINDS = (INTEGER, TEXT)

UserId = int | str

# Task ids are positive 64-bit integers too.
MAX_ID = 2**63 - 1
TEXT_ID_MAX_LENGTH = 64
_TEXT_ID_CHARACTERS = "[A-Za-z0-9]"
# For the OpenAPI document and the CHECK of migration 0009 (written out there).
TEXT_ID_PATTERN = f"^{_TEXT_ID_CHARACTERS}{{1,{TEXT_ID_MAX_LENGTH}}}$"
_DECIMAL = re.compile(r"[0-9]{1,19}")
_TEXT_ID = re.compile(f"{_TEXT_ID_CHARACTERS}{{1,{TEXT_ID_MAX_LENGTH}}}")

# What a user id of each kind is, in words, for error messages and the OpenAPI document.
DESCRIPTIONS = {
    INTEGER: "a positive 64-bit integer",
    TEXT: f"1 to {TEXT_ID_MAX_LENGTH} ASCII letters and digits",
}


def parse_id(text: str) -> int | None:
    """A positive 64-bit integer written in decimal digits, or None (user and task ids)."""
    if not _DECIMAL.fullmatch(text):
        return None
    number = int(text)
    return number if 0 < number <= MAX_ID else None


def parse_user_id(kind: str, text: str) -> UserId | None:
    """The user id `text` spells in a deployment of `kind`, or None when it spells none."""
    if kind == TEXT:
        return text if _TEXT_ID.fullmatch(text) else None
    return parse_id(text)
