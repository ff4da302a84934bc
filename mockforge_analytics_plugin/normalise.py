"""Path normalisation for requests no route matched: id-like segments become ``{id}``.

Unmatched paths are kept (DESIGN.md §9 "called but not mocked"), so they must collapse to a
small set of templates: ``/users/42/orders/9f1c...`` -> ``/users/{id}/orders/{id}``.
"""

from __future__ import annotations

import re
from functools import lru_cache

__all__ = ["ID", "MAX_PATH_CHARS", "MAX_SEGMENTS", "MAX_SEGMENT_CHARS", "is_id_like", "normalise_path"]

ID = "{id}"
MAX_SEGMENTS = 16  # deeper paths end in "{...}"
MAX_SEGMENT_CHARS = 64  # longer segments are treated as ids (tokens, slugs, junk)
MAX_PATH_CHARS = 2048  # only this much of a raw path is looked at

_NUMBER = re.compile(r"[-+]?\d+(?:[.,]\d+)?")
_UUID = re.compile(r"[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}")
_HEX = re.compile(r"(?:0x)?[0-9a-fA-F]{16,}")
_ULID = re.compile(r"[0-9A-HJKMNP-TV-Za-hjkmnp-tv-z]{26}")
# Base64/base64url tokens and prefixed ids ("cus_J8k3...", "tok-AbC9..."): long, with at least
# two digits and either mixed case or many digits (a long word or slug like "api-v2-list" has
# neither).
_TOKEN = re.compile(r"[A-Za-z0-9_\-+~]{16,}={0,2}")
_DIGIT = re.compile(r"\d")
_UPPER = re.compile(r"[A-Z]")
_LOWER = re.compile(r"[a-z]")
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+")


def is_id_like(segment: str) -> bool:
    """True when a path segment looks like an identifier rather than a fixed name."""
    if len(segment) > MAX_SEGMENT_CHARS:
        return True
    if _NUMBER.fullmatch(segment) or _UUID.fullmatch(segment) or _HEX.fullmatch(segment):
        return True
    if len(segment) == 26 and _ULID.fullmatch(segment) and _DIGIT.search(segment):
        return True
    if _TOKEN.fullmatch(segment):
        digits = len(_DIGIT.findall(segment))
        if digits >= 2 and (
            digits * 5 >= len(segment) or (_UPPER.search(segment) and _LOWER.search(segment))
        ):
            return True
    return bool("@" in segment and _EMAIL.fullmatch(segment))


@lru_cache(maxsize=4096)
def _normalise(raw: str) -> str:
    parts = [p for p in raw.split("/") if p]
    if not parts:
        return "/"
    out = [ID if is_id_like(p) else p for p in parts[:MAX_SEGMENTS]]
    if len(parts) > MAX_SEGMENTS:
        out.append("{...}")
    return "/" + "/".join(out)


def normalise_path(path: str) -> str:
    """Return the template of an unmatched path: ids to ``{id}``, no empty segments, capped."""
    # Cap before the cache so a hostile 1 MB path neither fills memory nor costs a long split.
    return _normalise(path[:MAX_PATH_CHARS])
