"""CALLMETER_API_KEYS: the Bearer tokens the API accepts, each for every project or one.

Shared by the API (services/api/auth.py enforces them) and `callmeter up`, which
checks them before starting anything and creates the demo test with one. Pure.
"""

from __future__ import annotations

import hmac
import re
from dataclasses import dataclass

# TestDefinition.project's own rule, so a scoped key names a project a test can have.
_PROJECT = re.compile(r"[A-Za-z0-9 _.-]{1,64}")


@dataclass(frozen=True)
class ApiKey:
    token: str
    project: str | None = None  # None: every project


def parse_keys(value: str) -> tuple[ApiKey, ...]:
    """`KEY` or `PROJECT:KEY`, comma-separated; a malformed entry stops the start-up."""
    keys: list[ApiKey] = []
    for entry in (e.strip() for e in value.split(",")):
        if not entry:
            continue
        project, sep, token = entry.partition(":")
        if not sep:
            project, token = "", entry
        project, token = project.strip(), token.strip()
        if sep and not _PROJECT.fullmatch(project):
            raise ValueError(f"CALLMETER_API_KEYS: {project!r} is not a project name")
        if not token:
            raise ValueError(f"CALLMETER_API_KEYS: {entry!r} has an empty key")
        if any(k.token == token for k in keys):
            raise ValueError("CALLMETER_API_KEYS: a key is listed twice")  # which one stays secret
        keys.append(ApiKey(token, project if sep else None))
    return tuple(keys)


def match_key(header: str, keys: tuple[ApiKey, ...]) -> ApiKey | None:
    """The key of `Bearer <token>`, or None; compared in constant time."""
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    given = token.strip().encode()
    # Check every key, so timing does not reveal which one came close.
    hits = [k for k in keys if hmac.compare_digest(given, k.token.encode())]
    return hits[0] if hits else None
