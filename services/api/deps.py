"""Request dependencies as named Annotated aliases."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from psycopg_pool import ConnectionPool

from callmeter_common.bus import Bus

from .access import Access
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
    access: Access


def get_platform(request: Request) -> Platform:
    return request.app.state.platform  # type: ignore[no-any-return]


PlatformDep = Annotated[Platform, Depends(get_platform)]
