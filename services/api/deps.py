"""Request dependencies as named Annotated aliases."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from psycopg_pool import ConnectionPool

from callmeter_common.bus import Bus

from .live import LiveRuns
from .projector import Projector
from .settings import ApiSettings


@dataclass
class Platform:
    settings: ApiSettings
    bus: Bus
    pool: ConnectionPool
    projector: Projector
    live: LiveRuns
    master_key: bytes  # the secret store's (secret_store.py)


def get_platform(request: Request) -> Platform:
    return request.app.state.platform  # type: ignore[no-any-return]


PlatformDep = Annotated[Platform, Depends(get_platform)]


@dataclass(frozen=True)
class Scope:
    """The projects the caller may see: its API key's one, or every one (None)."""

    project: str | None = None

    def sees(self, project: str | None) -> bool:
        return self.project is None or project == self.project


EVERY_PROJECT = Scope()


def get_scope(request: Request) -> Scope:
    # Set by the API-key middleware; absent when no keys are configured.
    return Scope(getattr(request.state, "project", None))


ScopeDep = Annotated[Scope, Depends(get_scope)]
