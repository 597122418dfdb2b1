"""FOLD_VERSION: which fold code a stored state was made by.

A snapshot or a read model written by one version of the fold is only resumed by
the same version; any other rebuilds from sequence 1. The version is a hash of
the source of every module the fold depends on (these projections and the event
schemas they read), so no one has to remember to bump it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from pathlib import Path

import callmeter_events


def source_hash(files: Iterable[Path]) -> str:
    digest = hashlib.sha256()
    for path in sorted(files):
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def fold_sources() -> list[Path]:
    here = Path(__file__).parent
    events = Path(callmeter_events.__file__).parent
    return [*here.glob("*.py"), *events.glob("*.py")]


FOLD_VERSION = source_hash(fold_sources())
