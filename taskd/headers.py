"""Request headers with a grammar of their own: Content-Length, If-Match, If-None-Match (RFC 9110
§13.1) and Idempotency-Key."""

from __future__ import annotations

import re

from taskd.errors import unprocessable

# RFC 9110 §8.8.3: entity-tag = [ "W/" ] DQUOTE *etagc DQUOTE, etagc = %x21 / %x23-7E / obs-text.
# Tornado decodes header values as Latin-1, so obs-text arrives as U+0080-U+00FF.
_ENTITY_TAG = r'(W/)?("[\x21\x23-\x7e\x80-\xff]*")'
# Whitespace belongs to exactly one part of the pattern, so a long value that fails to match
# fails in linear time instead of backtracking through every way to split its blanks.
_ELEMENT = rf"[ \t]*(?:{_ENTITY_TAG}[ \t]*)?"
# A comma-separated list that may hold empty elements (RFC 9110 §5.6.1).
_ENTITY_TAG_LIST = re.compile(rf"{_ELEMENT}(?:,{_ELEMENT})*")


def content_length(value: str) -> int | None:
    """A Content-Length's number of bytes, or None when it is no number (RFC 9110 §8.6: 1*DIGIT,
    ASCII digits only: Python's `isdigit` and `int` also take other scripts' digits)."""
    if not (value.isascii() and value.isdigit()):
        return None
    return int(value)


def _entity_tags(value: str) -> list[tuple[bool, str]] | None:
    """(weak, opaque-tag) of each entity-tag listed, or None when the list does not parse."""
    if not _ENTITY_TAG_LIST.fullmatch(value):
        return None
    return [(weak == "W/", tag) for weak, tag in re.findall(_ENTITY_TAG, value)]


def parse_if_match(value: str | None) -> list[str] | None:
    """The entity-tags a write must match, or None when any current version will do (no
    If-Match, or `*`). If-Match uses the strong comparison, so a weak tag matches nothing; so
    does a list that does not parse, since it cannot name the current version (RFC 9110
    §13.1.1): the write is refused with 412, as for a stale tag."""
    if value is None or value.strip() == "*":
        return None
    tags = _entity_tags(value) or []
    return [tag for weak, tag in tags if not weak]


def if_match_allows(if_match: list[str] | None, etag: str) -> bool:
    return if_match is None or etag in if_match


def if_none_match_names(value: str | None, etag: str) -> bool:
    """Whether If-None-Match names `etag`, so a GET can answer 304. It uses the weak comparison
    (RFC 9110 §13.1.2); a list that does not parse names nothing, and the task is sent in full."""
    if value is None:
        return False
    if value.strip() == "*":
        return True
    return any(tag == etag for _, tag in _entity_tags(value) or [])


# RFC 9110 §12.5.3: Accept-Encoding = #( codings [ weight ] ), weight = OWS ";" OWS "q=" qvalue.
_TOKEN = r"[!#$%&'*+.^_`|~0-9A-Za-z-]+"
_CODING = re.compile(rf"[ \t]*({_TOKEN})[ \t]*(?:;[ \t]*[qQ]=([0-9.]{{1,5}}))?[ \t]*")
_GZIP_NAMES = ("gzip", "x-gzip")


def accepts_gzip(value: str | None) -> bool:
    """Whether Accept-Encoding allows a gzip-coded response: gzip (or x-gzip, or `*` when gzip is
    not named) with a weight above 0. A value that does not parse allows only identity."""
    if not value:
        return False
    weights: dict[str, float] = {}
    for element in value.split(","):
        if not element.strip():
            continue
        match = _CODING.fullmatch(element)
        if match is None:
            return False
        coding, weight = match.group(1).lower(), match.group(2)
        try:
            weights[coding] = 1.0 if weight is None else float(weight)
        except ValueError:
            return False
    named = [weights[name] for name in _GZIP_NAMES if name in weights]
    if named:
        return max(named) > 0
    return weights.get("*", 0) > 0


IDEMPOTENCY_KEY = "Idempotency-Key"
IDEMPOTENCY_KEY_MAX = 255
_IDEMPOTENCY_KEY = re.compile(rf"[\x21-\x7e]{{1,{IDEMPOTENCY_KEY_MAX}}}")


def parse_idempotency_key(values: list[str]) -> str | None:
    """The one Idempotency-Key sent, if any: 1-255 visible ASCII characters, else a 422."""
    if not values:
        return None
    if len(values) > 1:
        raise unprocessable(
            ["header", IDEMPOTENCY_KEY], "Send at most one Idempotency-Key", "too_many"
        )
    if not _IDEMPOTENCY_KEY.fullmatch(values[0]):
        raise unprocessable(
            ["header", IDEMPOTENCY_KEY],
            f"Must be 1-{IDEMPOTENCY_KEY_MAX} visible ASCII characters",
            "string_pattern_mismatch",
        )
    return values[0]
