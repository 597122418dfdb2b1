"""Reading a page's query string: an unknown or malformed value falls back to its
default, so a bad link still shows a page. Pure (no I/O)."""

from __future__ import annotations

from collections.abc import Collection


def number(
    params: dict[str, str],
    key: str,
    default: int,
    hi: int = 10**6,
    allowed: Collection[int] | None = None,
) -> int:
    """A whole number: one of `allowed` when given (else `default`), otherwise clamped
    to 1..`hi`."""
    try:
        value = int(params.get(key) or default)
    except ValueError:
        return default
    if allowed is not None:
        return value if value in allowed else default
    return max(1, min(hi, value))


def choice(params: dict[str, str], key: str, allowed: Collection[str], default: str = "") -> str:
    """The value when it is one of `allowed`, else `default`."""
    value = params.get(key, default)
    return value if value in allowed else default


def text(params: dict[str, str], key: str, limit: int) -> str:
    """Free text, cut to `limit` characters."""
    return params.get(key, "")[:limit]
